//! The config watcher: a thread subscribed to the config-changed Pub/Sub
//! channel that tells the supervisor when to re-read the config hash.
//!
//! A missed notification only delays a change (the supervisor also re-reads
//! periodically). After every (re)subscription it reports `Subscribed`, so
//! changes made while Redis was unreachable are picked up.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::Duration;

use super::contract;
use super::store::{Connector, RedisError};
use crate::panics;

/// What the watcher reports.
#[derive(Debug)]
pub enum WatchEvent {
    /// A change was announced for this channel id (or `*`).
    Changed(String),
    /// (Re)subscribed: re-read everything.
    Subscribed,
    /// The subscription failed; retrying.
    Lost(RedisError),
}

/// How long a read of the subscription waits before it looks at `stop`.
const READ_WAIT: Duration = Duration::from_secs(30);

/// Runs until `stop` fires. Sends events to `tx`.
pub fn run(connector: &mut Connector, tx: Sender<WatchEvent>, stop: Receiver<()>) {
    let mut delay = Duration::from_millis(250);
    loop {
        let err = match subscribe_loop(connector, &tx, &stop) {
            Ok(()) => return,
            Err(e) => e,
        };
        if tx.send(WatchEvent::Lost(err)).is_err() {
            return;
        }
        match stop.recv_timeout(delay) {
            Err(RecvTimeoutError::Timeout) => delay = (delay * 2).min(Duration::from_secs(5)),
            _ => return,
        }
    }
}

/// `Ok` when stopped, `Err` when the subscription broke.
fn subscribe_loop(
    connector: &mut Connector,
    tx: &Sender<WatchEvent>,
    stop: &Receiver<()>,
) -> Result<(), RedisError> {
    let mut con = connector.connect()?;
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe(contract::CONFIG_CHANGED)?;
    // Long reads: the thread wakes for a message or every READ_WAIT; at
    // shutdown the process does not wait for it (see ARCHITECTURE.md).
    pubsub.set_read_timeout(Some(READ_WAIT))?;
    if tx.send(WatchEvent::Subscribed).is_err() {
        return Ok(());
    }
    loop {
        if !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
            return Ok(());
        }
        match pubsub.get_message() {
            Ok(msg) => {
                panics::inject("config-watch");
                let payload: String = msg.get_payload().unwrap_or_else(|_| "*".into());
                if tx.send(WatchEvent::Changed(payload)).is_err() {
                    return Ok(());
                }
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e.into()),
        }
    }
}
