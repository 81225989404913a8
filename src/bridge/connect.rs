//! Where Redis is ([`Target`]: `REDIS_URL`, or the master Redis Sentinel
//! names), connection attempts with a deadline ([`Connector`]), and the
//! gateway's Redis timeouts.

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};
use redis::{Client, Connection, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisResult};
use std::sync::Arc;
use std::time::Duration;

use super::error::{RedisError, Result};

/// Connect and per-command I/O limits.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole of a connection attempt: name lookup, TCP, TLS handshake, AUTH.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(4);
/// After a failed connection attempt, calls fail at once for this long
/// instead of each waiting out its own attempt (a black-holed Redis).
pub const HOLD_OFF: Duration = Duration::from_millis(750);

/// How long a Sentinel may take to connect and to answer.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);

/// Redis Sentinel: the nodes to ask and the master's name.
#[derive(Debug, Clone)]
pub struct Sentinel {
    pub nodes: Vec<(String, u16)>,
    pub master: String,
    /// The Sentinels' own password (`requirepass` of sentinel.conf), if any.
    pub password: Option<String>,
}

/// Where the configured Redis is: `REDIS_URL`, or with `REDIS_SENTINELS`
/// the master the Sentinels name (nothing is connected yet).
pub fn target(cfg: &crate::config::Config) -> Result<Target> {
    let sentinel = (!cfg.redis_sentinels.is_empty()).then(|| Sentinel {
        nodes: cfg.redis_sentinels.clone(),
        master: cfg.redis_sentinel_master.clone(),
        password: cfg.redis_sentinel_password.clone(),
    });
    Target::open(&cfg.redis_url, sentinel)
}

/// Where the gateway's Redis is: `REDIS_URL` itself, or, with Sentinel,
/// whatever master the Sentinels name now (`REDIS_URL` then gives only the
/// scheme, user, password and database).
#[derive(Clone)]
pub struct Target {
    client: Client,
    sentinel: Option<Arc<Sentinel>>,
}

impl Target {
    pub fn open(url: &str, sentinel: Option<Sentinel>) -> Result<Target> {
        let client = Client::open(url)?;
        Ok(Target { client, sentinel: sentinel.map(Arc::new) })
    }

    /// Whether writes should be confirmed by a replica (Sentinel mode).
    pub fn replicated(&self) -> bool {
        self.sentinel.is_some()
    }

    /// One connection attempt (on the connector's helper thread).
    fn connect(&self) -> RedisResult<Connection> {
        let Some(sentinel) = &self.sentinel else {
            return self.client.get_connection_with_timeout(CONNECT_TIMEOUT);
        };
        let (host, port) = master_addr(sentinel)?;
        let info = self.client.get_connection_info().clone();
        let addr = match info.addr().clone() {
            ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
                ConnectionAddr::TcpTls { host: host.clone(), port, insecure, tls_params }
            }
            _ => ConnectionAddr::Tcp(host.clone(), port),
        };
        let mut con =
            Client::open(info.set_addr(addr))?.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        // Sentinel may not have noticed a failover yet: only a master will do.
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut con)?;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r == b"master" => Ok(con),
            _ => Err(redis::RedisError::from((
                ErrorKind::Io,
                "not the master",
                format!(
                    "Sentinel names {host}:{port} master of {} but it is not a master (a failover in progress)",
                    sentinel.master
                ),
            ))),
        }
    }
}

/// How long a stored question waits for a replica's confirmation (Sentinel).
const REPLICA_WAIT: Duration = Duration::from_millis(1000);

/// After a write that Feishu will be told is stored (Sentinel mode): waits
/// until a replica has it (`WAIT 1`), so a failover right after cannot lose
/// it. Also after a duplicate (the script wrote its markers again, so WAIT
/// covers the first copy too, whose own delivery was refused). Without a
/// replica the event is refused (Feishu delivers it again): a master with
/// no replica may be one being demoted, whose writes the new master never
/// sees.
pub fn confirm_replicated(con: &mut Connection) -> RedisResult<()> {
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(REPLICA_WAIT.as_millis() as u64).query(con)?;
    if acked >= 1 {
        return Ok(());
    }
    Err(redis::RedisError::from((
        ErrorKind::Io,
        "not replicated",
        format!(
            "no replica confirmed the write within {} ms; refused so that Feishu delivers it again",
            REPLICA_WAIT.as_millis()
        ),
    )))
}

/// The master's address, from the first Sentinel that knows it.
fn master_addr(sentinel: &Sentinel) -> RedisResult<(String, u16)> {
    let mut last = redis::RedisError::from((ErrorKind::Io, "no Sentinel answered"));
    for (host, port) in &sentinel.nodes {
        let mut redis = redis::RedisConnectionInfo::default();
        if let Some(pw) = &sentinel.password {
            redis = redis.set_password(pw.clone());
        }
        let asked = ConnectionAddr::Tcp(host.clone(), *port)
            .into_connection_info()
            .map(|info| info.set_redis_settings(redis))
            .and_then(Client::open)
            .and_then(|c| c.get_connection_with_timeout(SENTINEL_TIMEOUT))
            .and_then(|mut c| {
                c.set_read_timeout(Some(SENTINEL_TIMEOUT))?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&sentinel.master)
                    .query::<Option<(String, u16)>>(&mut c)
            });
        match asked {
            Ok(Some(addr)) => return Ok(addr),
            Ok(None) => {
                last = redis::RedisError::from((
                    ErrorKind::Io,
                    "unknown master",
                    format!("Sentinel {host}:{port} does not know master {}", sentinel.master),
                ))
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Opens connections with a bound on the whole attempt. The redis crate
/// bounds the TCP connect but not the name lookup or the TLS handshake (a
/// peer that accepts and never answers TLS would hang the caller, and
/// SIGTERM with it), so each attempt runs on a helper thread that is
/// waited for at most [`CONNECT_DEADLINE`]. An attempt still running then
/// is waited for again by the next call instead of starting another, so a
/// connector never has more than one helper.
pub struct Connector {
    target: Target,
    pending: Option<Receiver<RedisResult<Connection>>>,
}

impl Connector {
    pub fn new(target: Target) -> Connector {
        Connector { target, pending: None }
    }

    /// A connection with the gateway's read and write timeouts.
    pub fn connect(&mut self) -> Result<Connection> {
        self.connect_within(CONNECT_DEADLINE)
    }

    /// [`connect`](Self::connect), waiting at most `wait` (an attempt not
    /// finished by then goes on in the background for the next call).
    pub fn connect_within(&mut self, wait: Duration) -> Result<Connection> {
        let rx = match self.pending.take() {
            Some(rx) => rx,
            None => {
                let (tx, rx) = bounded(1);
                let target = self.target.clone();
                let spawned =
                    std::thread::Builder::new().name("redis-connect".into()).spawn(move || {
                        let _ = tx.send(target.connect());
                    });
                if let Err(e) = spawned {
                    return Err(RedisError::from(redis::RedisError::from(e)));
                }
                rx
            }
        };
        let con = match rx.recv_timeout(wait) {
            Ok(result) => result?,
            Err(RecvTimeoutError::Timeout) => {
                self.pending = Some(rx);
                return Err(timed_out("no answer to the connection attempt (TCP, TLS or AUTH)"));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(timed_out("the connection attempt failed"));
            }
        };
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }
}

fn timed_out(what: &'static str) -> RedisError {
    RedisError::from(redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        what,
    )))
}
