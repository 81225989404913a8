//! A Redis connection owned by one thread, reconnected lazily, with
//! timeouts on every call, and the gateway's Redis operations on it.
//!
//! Every operation fails with one [`RedisError`] (`bridge/error.rs`),
//! whose `Display` never shows the Redis URL (it may hold a password).

use redis::{Connection, RedisResult, Script};
use std::time::{Duration, Instant};

use super::connect::{CONNECT_DEADLINE, HOLD_OFF};
pub use super::connect::{Connector, Target, target};
use super::contract;
pub use super::error::{Problem, RedisError, Result};

/// One lazily connected Redis connection.
pub struct Store {
    connector: Connector,
    con: Option<Connection>,
    /// Until when calls fail at once after a failed connection attempt.
    hold_off: Option<(Instant, RedisError)>,
    /// How long a call waits for a connection attempt.
    connect_wait: Duration,
    /// Sentinel mode: a stored question is confirmed by a replica first.
    pub(super) replicated: bool,
    /// The Lua scripts, shared by every Store (each holds its code).
    pub(super) scripts: &'static Scripts,
}

/// Every script the gateway runs, compiled once per process: a `Script`
/// copies its source, and there is one Store per channel.
pub(super) struct Scripts {
    pub(super) inbound: Script,
    pub(super) status: Script,
    pub(super) status_clear: Script,
    typing_done: Script,
    replace_if: Script,
    probe: Script,
    dead_letter: Script,
    lengths: Script,
    pub(super) trace_note: Script,
    pub(super) unanswered: Script,
    pub(super) stream_seq: Script,
}

static SCRIPTS: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(|| Scripts {
    inbound: Script::new(contract::INBOUND_SCRIPT),
    status: Script::new(contract::STATUS_SCRIPT),
    status_clear: Script::new(contract::STATUS_CLEAR_SCRIPT),
    typing_done: Script::new(contract::TYPING_DONE_SCRIPT),
    replace_if: Script::new(contract::REPLACE_IF_SCRIPT),
    probe: Script::new(contract::PROBE_SCRIPT),
    dead_letter: Script::new(contract::DEAD_LETTER_SCRIPT),
    lengths: Script::new(contract::LENGTHS_SCRIPT),
    trace_note: Script::new(contract::TRACE_NOTE_SCRIPT),
    unanswered: Script::new(contract::UNANSWERED_SCRIPT),
    stream_seq: Script::new(contract::STREAM_SEQ_SCRIPT),
});

impl Store {
    pub fn new(target: Target) -> Store {
        Store {
            replicated: target.replicated(),
            connector: Connector::new(target),
            con: None,
            hold_off: None,
            connect_wait: CONNECT_DEADLINE,
            scripts: &SCRIPTS,
        }
    }

    /// Waits at most `wait` for a connection attempt; one still running
    /// goes on in the background (the main loop, which must stay prompt).
    pub fn with_connect_wait(mut self, wait: Duration) -> Store {
        self.connect_wait = wait;
        self
    }

    /// Drops the connection (after a panic left it in an unknown state).
    pub fn reset(&mut self) {
        self.con = None;
    }

    /// Runs `f` on the connection, connecting first if needed. A failed
    /// call drops the connection so the next one starts afresh; a failed
    /// connection attempt makes calls fail at once for [`HOLD_OFF`].
    pub(super) fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &Store) -> RedisResult<T>,
    ) -> Result<T> {
        let mut con = match self.con.take() {
            Some(c) => c,
            None => {
                if let Some((until, e)) = &self.hold_off
                    && Instant::now() < *until
                {
                    return Err(e.again());
                }
                match self.connector.connect_within(self.connect_wait) {
                    Ok(c) => {
                        self.hold_off = None;
                        c
                    }
                    Err(e) => {
                        self.hold_off = Some((Instant::now() + HOLD_OFF, e.again()));
                        return Err(e);
                    }
                }
            }
        };
        let result = f(&mut con, self);
        if keep_connection(&result) {
            self.con = Some(con);
        }
        Ok(result?)
    }

    /// The server's `redis_version` (from `INFO server`).
    pub fn server_version(&mut self) -> Result<String> {
        self.with(|con, _| {
            let info: String = redis::cmd("INFO").arg("server").query(con)?;
            Ok(info
                .lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .unwrap_or("unknown")
                .trim()
                .to_owned())
        })
    }

    /// Checks what the gateway needs of Redis, as its own user: scripts
    /// run, the inbound list has the right type and may be pushed to, and a
    /// write is accepted (a key of this instance, kept 10 s).
    pub fn probe(&mut self, instance_id: &str) -> Result<()> {
        self.with(|con, me| {
            me.scripts
                .probe
                .key(contract::INBOUND)
                .key(contract::OUTBOUND)
                .key(contract::probe_key(instance_id))
                .invoke::<i64>(con)?;
            Ok(())
        })
    }

    /// Writes one channel's config entry and announces the change.
    pub fn put_config(&mut self, channel_id: &str, json: &str) -> Result<()> {
        self.with(|con, _| {
            redis::pipe()
                .cmd("HSET")
                .arg(contract::CONFIG)
                .arg(channel_id)
                .arg(json)
                .ignore()
                .cmd("PUBLISH")
                .arg(contract::CONFIG_CHANGED)
                .arg(channel_id)
                .ignore()
                .query(con)
        })
    }

    /// Removes one channel's config entry and announces it. `false` when absent.
    pub fn remove_config(&mut self, channel_id: &str) -> Result<bool> {
        self.with(|con, _| {
            let (removed,): (i64,) = redis::pipe()
                .cmd("HDEL")
                .arg(contract::CONFIG)
                .arg(channel_id)
                .cmd("PUBLISH")
                .arg(contract::CONFIG_CHANGED)
                .arg(channel_id)
                .ignore()
                .query(con)?;
            Ok(removed == 1)
        })
    }

    /// The values of every key matching `pattern` (SCAN + GET).
    pub fn scan_values(&mut self, pattern: &str) -> Result<Vec<(String, String)>> {
        self.with(|con, _| {
            let mut out = Vec::new();
            for k in scan_keys(con, pattern)? {
                let v: Option<String> = redis::cmd("GET").arg(&k).query(con)?;
                out.extend(v.map(|v| (k, v)));
            }
            out.sort();
            Ok(out)
        })
    }

    /// Every field of the channel config hash.
    pub fn read_configs(&mut self) -> Result<Vec<(String, Vec<u8>)>> {
        self.with(|con, _| {
            // Fields as bytes: one that is not UTF-8 must not fail the read.
            let map: std::collections::HashMap<Vec<u8>, Vec<u8>> =
                redis::cmd("HGETALL").arg(contract::CONFIG).query(con)?;
            let mut v: Vec<_> =
                map.into_iter().map(|(k, raw)| (contract::field_name(&k), raw)).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(v)
        })
    }

    /// `BLMOVE from to RIGHT LEFT timeout`: the oldest item, kept in `to`.
    /// Items are bytes: one that is not UTF-8 must not fail the read.
    pub fn blmove(&mut self, from: &str, to: &str, timeout: Duration) -> Result<Option<Vec<u8>>> {
        self.with(|con, _| {
            redis::cmd("BLMOVE")
                .arg(from)
                .arg(to)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(timeout.as_secs_f64())
                .query(con)
        })
    }

    /// `LREM list 1 item`.
    pub fn lrem(&mut self, list: &str, item: &[u8]) -> Result<()> {
        self.with(|con, _| redis::cmd("LREM").arg(list).arg(1).arg(item).query(con))
    }

    /// `LRANGE list start stop`, as bytes.
    pub fn lrange(&mut self, list: &str, start: i64, stop: i64) -> Result<Vec<Vec<u8>>> {
        self.with(|con, _| redis::cmd("LRANGE").arg(list).arg(start).arg(stop).query(con))
    }

    /// `LINDEX list i`, as bytes.
    pub fn lindex(&mut self, list: &str, i: i64) -> Result<Option<Vec<u8>>> {
        self.with(|con, _| redis::cmd("LINDEX").arg(list).arg(i).query(con))
    }

    /// In one script: pushes a dead letter, trims the list to the newest
    /// entries, removes the item from its processing list (so an item is
    /// never both dead-lettered and still pending) and, when the item had
    /// an id, writes its receipt (`receipt`: the receipt's JSON).
    pub fn dead_letter(
        &mut self,
        json: &str,
        processing: &str,
        raw: &[u8],
        receipt: Option<(&str, &str)>,
    ) -> Result<()> {
        self.with(|con, me| {
            let mut call = me.scripts.dead_letter.prepare_invoke();
            call.key(contract::DEAD).key(processing).arg(json).arg(contract::DEAD_MAX).arg(raw);
            if let Some((id, receipt)) = receipt {
                call.key(contract::receipt_key(id)).arg(receipt).arg(contract::RECEIPT_TTL);
            }
            call.invoke::<i64>(con)?;
            Ok(())
        })
    }

    /// Moves every item of a processing list back to the outbound list, at
    /// the end that is read next, oldest last-read. Returns how many.
    pub fn requeue(&mut self, processing: &str) -> Result<usize> {
        let mut n = 0;
        loop {
            let moved: Option<Vec<u8>> = self.with(|con, _| {
                redis::cmd("LMOVE")
                    .arg(processing)
                    .arg(contract::OUTBOUND)
                    .arg("LEFT")
                    .arg("RIGHT")
                    .query(con)
            })?;
            if moved.is_none() {
                return Ok(n);
            }
            n += 1;
        }
    }

    /// Every instance's processing list.
    pub fn processing_lists(&mut self) -> Result<Vec<String>> {
        self.with(|con, _| scan_keys(con, &format!("{}*", contract::processing_prefix())))
    }

    /// Lengths of several lists in one round trip (and one reply).
    pub fn llens(&mut self, keys: &[&str]) -> Result<Vec<u64>> {
        self.with(|con, me| {
            let mut call = me.scripts.lengths.prepare_invoke();
            for k in keys {
                call.key(*k);
            }
            call.invoke(con)
        })
    }

    pub fn exists(&mut self, key: &str) -> Result<bool> {
        self.with(|con, _| redis::cmd("EXISTS").arg(key).query(con))
    }

    pub fn get(&mut self, key: &str) -> Result<Option<String>> {
        self.with(|con, _| redis::cmd("GET").arg(key).query(con))
    }

    /// Sets `key` to `value` (or deletes it when `value` is empty) only if it
    /// still holds `expected`. Returns whether it did.
    pub fn replace_if(&mut self, key: &str, expected: &str, value: &str, ttl: u64) -> Result<bool> {
        self.with(|con, me| {
            let done: i64 =
                me.scripts.replace_if.key(key).arg(expected).arg(value).arg(ttl).invoke(con)?;
            Ok(done == 1)
        })
    }

    pub fn set_ex(&mut self, key: &str, value: &str, ttl: u64) -> Result<()> {
        self.with(|con, _| redis::cmd("SET").arg(key).arg(value).arg("EX").arg(ttl).query(con))
    }

    /// `SET key value NX EX ttl`: `false` when the key existed.
    pub fn set_nx_ex(&mut self, key: &str, value: &str, ttl: u64) -> Result<bool> {
        self.with(|con, _| {
            let r: Option<String> =
                redis::cmd("SET").arg(key).arg(value).arg("NX").arg("EX").arg(ttl).query(con)?;
            Ok(r.is_some())
        })
    }

    /// Marks a question answered; returns the typing reaction id to delete.
    pub fn typing_done(&mut self, app_id: &str, message_id: &str) -> Result<Option<String>> {
        self.with(|con, me| {
            me.scripts
                .typing_done
                .key(contract::typing_key(app_id, message_id))
                .arg(contract::REPLY_TTL)
                .arg(contract::TYPING_DONE)
                .invoke(con)
        })
    }

    /// The channel's config entry, read directly (for an unknown channel).
    pub fn read_config(&mut self, channel_id: &str) -> Result<Option<Vec<u8>>> {
        self.with(|con, _| redis::cmd("HGET").arg(contract::CONFIG).arg(channel_id).query(con))
    }

    pub fn write_heartbeat(&mut self, instance_id: &str, json: &str) -> Result<()> {
        self.with(|con, _| {
            redis::cmd("SET")
                .arg(contract::heartbeat_key(instance_id))
                .arg(json)
                .arg("EX")
                .arg(contract::HEARTBEAT_TTL)
                .query(con)
        })
    }

    pub fn delete_heartbeat(&mut self, instance_id: &str) -> Result<()> {
        self.with(|con, _| redis::cmd("DEL").arg(contract::heartbeat_key(instance_id)).query(con))
    }
}

/// Every key matching `pattern` (SCAN, so Redis is never blocked).
fn scan_keys(con: &mut Connection, pattern: &str) -> RedisResult<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500)
            .query(con)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Keep a connection after success or a server's error reply (the
/// connection itself is fine); drop it after I/O trouble.
/// Also drop it when the server is no longer a master (READONLY after a
/// failover) or cannot serve (LOADING, MASTERDOWN): the next connection
/// finds the master (through Sentinel) again.
fn keep_connection<T>(result: &RedisResult<T>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => {
            !(e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || matches!(e.code(), Some("READONLY" | "LOADING" | "MASTERDOWN")))
        }
    }
}
