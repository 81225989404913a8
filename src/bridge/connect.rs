//! Redis connection attempts with a deadline ([`Connector`]) and the
//! gateway's Redis timeouts.

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};
use redis::{Client, Connection, RedisResult};
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

/// Opens connections with a bound on the whole attempt. The redis crate
/// bounds the TCP connect but not the name lookup or the TLS handshake (a
/// peer that accepts and never answers TLS would hang the caller, and
/// SIGTERM with it), so each attempt runs on a helper thread that is
/// waited for at most [`CONNECT_DEADLINE`]. An attempt still running then
/// is waited for again by the next call instead of starting another, so a
/// connector never has more than one helper.
pub struct Connector {
    client: Client,
    pending: Option<Receiver<RedisResult<Connection>>>,
}

impl Connector {
    pub fn new(client: Client) -> Connector {
        Connector { client, pending: None }
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
                let client = self.client.clone();
                let spawned =
                    std::thread::Builder::new().name("redis-connect".into()).spawn(move || {
                        let _ = tx.send(client.get_connection_with_timeout(CONNECT_TIMEOUT));
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
