//! `health`: is the gateway of this host or container healthy? The
//! Dockerfile's `HEALTHCHECK` runs it. Healthy means what `/healthz` says:
//! the main loop runs, its Redis reads and writes work, and no Feishu
//! event was refused in the last minute. A channel in `error` (wrong
//! secret, say) does not make the process unhealthy: restarting it would
//! not help; `status` and `check` name it.
//!
//! With `METRICS_ADDR` set (the image sets it) the answer is the running
//! gateway's own `/healthz`; without it, the heartbeat the instance
//! `GATEWAY_INSTANCE_ID` writes to Redis every 10 s must be fresh.
//! Every wait is bounded (3 s per step). Exit 0 healthy, 1 not.
#![allow(clippy::print_stderr)] // a command line prints

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use super::store;
use crate::bridge::contract;
use crate::clock::now_ms;
use crate::config::Config;

const STEP: Duration = Duration::from_secs(3);

/// `health`.
pub fn health(cfg: &Config, args: &[String]) -> ExitCode {
    if !args.is_empty() {
        return super::fail("usage: health (no arguments)");
    }
    let verdict = match cfg.metrics_addr {
        Some(addr) => probe(addr),
        None => heartbeat(cfg),
    };
    match verdict {
        Ok(why) => {
            outln!("healthy: {why}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            outln!("unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /healthz` on the gateway's metrics address (an unspecified listen
/// address is asked on loopback).
fn probe(mut addr: SocketAddr) -> Result<String, String> {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut s = TcpStream::connect_timeout(&addr, STEP)
        .map_err(|e| format!("the gateway does not answer on {addr} ({e}): is it running?"))?;
    let _ = s.set_read_timeout(Some(STEP));
    let _ = s.set_write_timeout(Some(STEP));
    s.write_all(b"GET /healthz HTTP/1.0\r\nhost: localhost\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut reply = Vec::new();
    let _ = s.take(16 * 1024).read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    let status = reply.split_whitespace().nth(1).unwrap_or("none");
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.trim()).unwrap_or_default();
    match status {
        "200" => Ok(format!("/healthz on {addr}: {body}")),
        "none" => Err(format!("/healthz on {addr} gave no answer within {}s", STEP.as_secs())),
        code => Err(format!("/healthz on {addr}: {code} {body}")),
    }
}

/// The instance's heartbeat in Redis is fresh.
fn heartbeat(cfg: &Config) -> Result<String, String> {
    let key = contract::heartbeat_key(&cfg.instance_id);
    let mut st = store(cfg).map_err(|e| e.to_string())?;
    let beat = st
        .get(&key)
        .map_err(|e| format!("Redis at {}: {}: {e}", cfg.redis_url_for_logs(), e.problem().as_str()))?
        .ok_or_else(|| {
            format!(
                "no heartbeat of instance {} in Redis: the gateway is not running, or uses another GATEWAY_INSTANCE_ID or Redis",
                cfg.instance_id
            )
        })?;
    let ts = serde_json::from_str::<Value>(&beat).ok().and_then(|v| v["ts"].as_u64()).unwrap_or(0);
    let age = now_ms().saturating_sub(ts);
    if age <= contract::HEARTBEAT_TTL * 1000 {
        Ok(format!("instance {} wrote its heartbeat {} s ago", cfg.instance_id, age / 1000))
    } else {
        Err(format!(
            "instance {}'s heartbeat is {} s old: its main loop is stuck",
            cfg.instance_id,
            age / 1000
        ))
    }
}
