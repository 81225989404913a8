//! A Redis connection owned by one thread, reconnected lazily, with
//! timeouts on every call, and the gateway's Redis operations on it.

use redis::{Client, Connection, RedisResult, Script};
use std::time::Duration;

use super::contract;
use crate::channel::Routing;
use crate::feishu::conn::{InboundStore, now_ms};
use crate::feishu::event::Message;

/// Connect and per-command I/O limits.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens a connection with the gateway's timeouts.
pub fn connect(client: &Client) -> RedisResult<Connection> {
    let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

/// Describes a Redis error without the URL (which may hold a password).
pub fn describe(e: &redis::RedisError) -> String {
    if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        e.to_string()
    }
}

/// One lazily connected Redis connection.
pub struct Store {
    client: Client,
    con: Option<Connection>,
    inbound: Script,
    status: Script,
    status_clear: Script,
}

impl Store {
    pub fn new(client: Client) -> Store {
        Store {
            client,
            con: None,
            inbound: Script::new(contract::INBOUND_SCRIPT),
            status: Script::new(contract::STATUS_SCRIPT),
            status_clear: Script::new(contract::STATUS_CLEAR_SCRIPT),
        }
    }

    /// Runs `f` on the connection, connecting first if needed. A failed
    /// call drops the connection so the next one starts afresh.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &Store) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let mut con = match self.con.take() {
            Some(c) => c,
            None => connect(&self.client)?,
        };
        let result = f(&mut con, self);
        if keep_connection(&result) {
            self.con = Some(con);
        }
        result
    }

    /// `PING`, for health checks.
    pub fn ping(&mut self) -> RedisResult<()> {
        self.with(|con, _| redis::cmd("PING").query(con))
    }

    /// Every field of the channel config hash.
    pub fn read_configs(&mut self) -> RedisResult<Vec<(String, Vec<u8>)>> {
        self.with(|con, _| {
            let map: std::collections::HashMap<String, Vec<u8>> =
                redis::cmd("HGETALL").arg(contract::CONFIG).query(con)?;
            let mut v: Vec<_> = map.into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(v)
        })
    }

    /// Dedup and LPUSH of several items in one script, in order. Per item
    /// `true` when newly pushed, `false` when seen before.
    pub fn push_inbound(
        &mut self,
        items: &[InboundItem],
        dedup_ttl: u64,
    ) -> RedisResult<Vec<bool>> {
        self.with(|con, me| {
            let mut call = me.inbound.prepare_invoke();
            for item in items {
                call.key(contract::dedup_key(item.app_id, item.message_id));
            }
            call.key(contract::INBOUND).arg(dedup_ttl);
            for item in items {
                call.arg(&item.json);
            }
            let pushed: Vec<i64> = call.invoke(con)?;
            Ok(pushed.into_iter().map(|p| p == 1).collect())
        })
    }

    /// Writes a status key under the "connected wins" rule.
    pub fn write_status(
        &mut self,
        channel_id: &str,
        json: &str,
        connected: bool,
        instance_id: &str,
        ttl: u64,
    ) -> RedisResult<bool> {
        self.with(|con, me| {
            let written: i64 = me
                .status
                .key(contract::status_key(channel_id))
                .arg(json)
                .arg(ttl)
                .arg(if connected { "1" } else { "0" })
                .arg(instance_id)
                .invoke(con)?;
            Ok(written == 1)
        })
    }

    /// Deletes a status key if this instance wrote it.
    pub fn clear_status(&mut self, channel_id: &str, instance_id: &str) -> RedisResult<()> {
        self.with(|con, me| {
            me.status_clear
                .key(contract::status_key(channel_id))
                .arg(instance_id)
                .invoke::<i64>(con)?;
            Ok(())
        })
    }

    pub fn write_heartbeat(&mut self, instance_id: &str, json: &str) -> RedisResult<()> {
        self.with(|con, _| {
            redis::cmd("SET")
                .arg(contract::heartbeat_key(instance_id))
                .arg(json)
                .arg("EX")
                .arg(contract::HEARTBEAT_TTL)
                .query(con)
        })
    }

    pub fn delete_heartbeat(&mut self, instance_id: &str) -> RedisResult<()> {
        self.with(|con, _| redis::cmd("DEL").arg(contract::heartbeat_key(instance_id)).query(con))
    }
}

/// Keep a connection after success or a server's error reply (the
/// connection itself is fine); drop it after I/O trouble.
fn keep_connection<T>(result: &RedisResult<T>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => {
            !(e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal())
        }
    }
}

/// One inbound item to store.
pub struct InboundItem<'a> {
    pub app_id: &'a str,
    pub message_id: &'a str,
    pub json: String,
}

/// The connection thread's view of Redis: stores inbound items.
pub struct InboundWriter {
    pub store: Store,
    pub channel_id: String,
    pub app_id: String,
    pub dedup_ttl: u64,
}

impl InboundStore for InboundWriter {
    fn store(&mut self, messages: &[&Message], routing: &Routing) -> Result<Vec<bool>, String> {
        let now = now_ms();
        let items: Vec<InboundItem> = messages
            .iter()
            .map(|m| InboundItem {
                app_id: &self.app_id,
                message_id: &m.message_id,
                json: contract::inbound_item(&self.channel_id, &self.app_id, routing, m, now),
            })
            .collect();
        self.store.push_inbound(&items, self.dedup_ttl).map_err(|e| describe(&e))
    }
}
