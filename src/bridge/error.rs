//! [`RedisError`], the one error of every Redis operation (its `Display`
//! never shows the Redis URL, which may hold a password), and [`Problem`]:
//! what kind of trouble it is, in the operator's words, with a hint.

use std::fmt;

/// A failed Redis call or an unusable `REDIS_URL`.
#[derive(Debug)]
pub struct RedisError(redis::RedisError);

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_connection_refusal() {
            f.write_str("connection refused")
        } else if self.0.is_timeout() {
            f.write_str("timed out")
        } else {
            fmt::Display::fmt(&self.0, f)
        }
    }
}

/// What kind of trouble a Redis error is, in the operator's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// No connection (refused, timed out, dropped).
    Unreachable,
    /// The TLS handshake failed (most often: the server's certificate is
    /// not signed by a CA this machine trusts).
    Tls,
    /// `OOM`: maxmemory reached, writes refused.
    OutOfMemory,
    /// `READONLY`: a replica (or a failover in progress).
    ReadOnly,
    /// `NOAUTH`/`WRONGPASS`: the password or user is wrong or missing.
    Auth,
    /// `NOPERM`: the ACL user may not run a command or touch a key.
    NoPermission,
    /// `WRONGTYPE`: one of the gateway's keys holds another type.
    WrongType,
    /// `LOADING`/`BUSY`/`MASTERDOWN`: Redis cannot serve yet.
    NotReady,
    /// Anything else.
    Other,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Unreachable => "unreachable",
            Problem::Tls => "TLS handshake failed",
            Problem::OutOfMemory => "out of memory (writes refused)",
            Problem::ReadOnly => "read-only (a replica, or a failover in progress)",
            Problem::Auth => "authentication failed",
            Problem::NoPermission => "permission denied (ACL)",
            Problem::WrongType => "a key holds the wrong type",
            Problem::NotReady => "not ready (loading, busy or its master is down)",
            Problem::Other => "error",
        }
    }

    /// What the operator can do about it.
    pub fn hint(self) -> &'static str {
        match self {
            Problem::Unreachable => {
                "check REDIS_URL, that Redis runs, and firewalls (the gateway retries by itself)"
            }
            Problem::Tls => {
                "if Redis's certificate is from a private CA, set SSL_CERT_FILE to that CA's PEM file in the gateway's environment"
            }
            Problem::OutOfMemory => "raise maxmemory or free memory in Redis",
            Problem::ReadOnly => "point REDIS_URL at the master (or use Sentinel)",
            Problem::Auth => "check the user and password in REDIS_URL",
            Problem::NoPermission => {
                "grant this Redis user the commands and keys in docs/PROTOCOL.md"
            }
            Problem::WrongType => {
                "delete or rename the key named in the error (docs/PROTOCOL.md lists the gateway's keys)"
            }
            Problem::NotReady => "wait for Redis to finish loading or for the failover",
            Problem::Other => "see the error",
        }
    }
}

impl RedisError {
    /// The same failure again, for a call that did not try (held off
    /// after a failed connection attempt).
    pub fn again(&self) -> RedisError {
        let e = &self.0;
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
        {
            let kind = if e.is_timeout() {
                std::io::ErrorKind::TimedOut
            } else {
                std::io::ErrorKind::ConnectionRefused
            };
            RedisError(redis::RedisError::from(std::io::Error::new(kind, "retrying shortly")))
        } else {
            RedisError(redis::RedisError::from((
                e.kind(),
                "as on the last attempt",
                self.to_string(),
            )))
        }
    }

    /// The kind of trouble, for logs, status and `check`.
    pub fn problem(&self) -> Problem {
        let e = &self.0;
        if e.to_string().contains("SSL Handshake") {
            return Problem::Tls;
        }
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            return Problem::Unreachable;
        }
        if e.kind() == redis::ErrorKind::AuthenticationFailed {
            return Problem::Auth;
        }
        match e.code() {
            Some("OOM") => Problem::OutOfMemory,
            Some("READONLY") => Problem::ReadOnly,
            Some("NOAUTH" | "WRONGPASS") => Problem::Auth,
            Some("NOPERM") => Problem::NoPermission,
            Some("WRONGTYPE") => Problem::WrongType,
            Some("LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN") => Problem::NotReady,
            _ => Problem::Other,
        }
    }
}

impl std::error::Error for RedisError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<redis::RedisError> for RedisError {
    fn from(e: redis::RedisError) -> RedisError {
        RedisError(e)
    }
}

/// The result of a Redis operation.
pub type Result<T, E = RedisError> = std::result::Result<T, E>;
