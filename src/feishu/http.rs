//! The one HTTP client the gateway uses to reach Feishu's Open Platform.
//!
//! ureq with the native-tls provider chosen explicitly (ureq's default
//! provider is rustls, which is not compiled in), the system's CA store, a
//! global timeout on every call, and HTTP error statuses returned as values:
//! Feishu puts the real error in the JSON body's `code` and `msg`.

use serde_json::Value;
use std::fmt;
use std::time::Duration;
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};

/// A Feishu HTTP response with its body parsed as JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// `x-ogw-ratelimit-reset`: seconds to wait after a rate limit.
    pub rate_limit_reset: Option<u64>,
    /// `x-tt-logid`: Feishu's request id, for support tickets.
    pub log_id: Option<String>,
}

impl Reply {
    /// The body's `code` (0 = success; absent counts as -1).
    pub fn code(&self) -> i64 {
        self.body.get("code").and_then(Value::as_i64).unwrap_or(-1)
    }

    /// The body's `msg`, or the HTTP status when there is none.
    pub fn msg(&self) -> String {
        match self.body.get("msg").and_then(Value::as_str) {
            Some(m) if !m.is_empty() => m.to_owned(),
            _ => format!("HTTP {}", self.status),
        }
    }
}

/// The call did not produce a JSON response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Connect, TLS, timeout or read failure.
    Transport(String),
    /// The response body is not JSON.
    NotJson { status: u16 },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Transport(e) => write!(f, "{e}"),
            HttpError::NotJson { status } => {
                write!(f, "HTTP {status} with a body that is not JSON")
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// A shared, cheaply cloneable HTTP client.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl Http {
    /// A client whose every call finishes within `timeout`.
    pub fn new(timeout: Duration) -> Http {
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // Feishu's requests and response headers are small; ureq's 128 KiB
            // defaults would stay resident per pooled connection and thread.
            .input_buffer_size(32 * 1024)
            .output_buffer_size(16 * 1024)
            .user_agent(concat!("asktable-feishu-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Http { agent }
    }

    /// `POST url` with a JSON body and optional bearer token.
    pub fn post(&self, url: &str, body: &Value, bearer: Option<&str>) -> Result<Reply, HttpError> {
        let mut req = self
            .agent
            .post(url)
            .header("locale", "zh")
            .content_type("application/json; charset=utf-8");
        if let Some(token) = bearer {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        read(req.send(body.to_string()))
    }

    /// `PATCH url` with a JSON body and a bearer token.
    pub fn patch(&self, url: &str, body: &Value, bearer: &str) -> Result<Reply, HttpError> {
        let req = self
            .agent
            .patch(url)
            .content_type("application/json; charset=utf-8")
            .header("Authorization", &format!("Bearer {bearer}"));
        read(req.send(body.to_string()))
    }

    /// `PUT url` with a JSON body and a bearer token.
    pub fn put(&self, url: &str, body: &Value, bearer: &str) -> Result<Reply, HttpError> {
        let req = self
            .agent
            .put(url)
            .content_type("application/json; charset=utf-8")
            .header("Authorization", &format!("Bearer {bearer}"));
        read(req.send(body.to_string()))
    }

    /// `DELETE url` with a bearer token.
    pub fn delete(&self, url: &str, bearer: &str) -> Result<Reply, HttpError> {
        read(self.agent.delete(url).header("Authorization", &format!("Bearer {bearer}")).call())
    }

    /// `GET url` with an optional bearer token.
    pub fn get(&self, url: &str, bearer: Option<&str>) -> Result<Reply, HttpError> {
        let mut req = self.agent.get(url);
        if let Some(token) = bearer {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        read(req.call())
    }
}

fn read(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply, HttpError> {
    let mut res = res.map_err(|e| HttpError::Transport(describe(&e)))?;
    let status = res.status().as_u16();
    let header =
        |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let rate_limit_reset = header("x-ogw-ratelimit-reset").and_then(|v| v.trim().parse().ok());
    let log_id = header("x-tt-logid");
    let text = res.body_mut().read_to_string().map_err(|e| HttpError::Transport(describe(&e)))?;
    let body = serde_json::from_str(&text).map_err(|_| HttpError::NotJson { status })?;
    Ok(Reply { status, body, rate_limit_reset, log_id })
}

/// ureq's error text, which names the host but never the query string.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        other => other.to_string(),
    }
}
