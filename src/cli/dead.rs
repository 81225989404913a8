//! `dead list [--json] [N]` and `dead requeue <id>`: the answers that could
//! not be delivered, with their reasons, and a way to send one again once
//! its cause is fixed (a channel re-enabled, a permission granted).
#![allow(clippy::print_stderr)] // a command line prints

use serde_json::{Value, json};
use std::process::ExitCode;

use super::{fail, store, table, utc};
use crate::bridge::contract;
use crate::bridge::store::Store;
use crate::config::Config;

/// How many dead letters `requeue` looks through for the id.
const SEARCH: i64 = 1_000;

/// `dead list [--json] [N]` | `dead requeue <id>`.
pub fn dead(cfg: &Config, args: &[String]) -> ExitCode {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["list", rest @ ..] => {
            let as_json = rest.contains(&"--json");
            let counts: Vec<&&str> = rest.iter().filter(|a| **a != "--json").collect();
            let n = match counts.as_slice() {
                [] => 20,
                [n] => match n.parse::<i64>() {
                    Ok(n) if (1..=contract::DEAD_MAX).contains(&n) => n,
                    _ => {
                        return fail(format!(
                            "dead list: {n:?} is not a count from 1 to {}",
                            contract::DEAD_MAX
                        ));
                    }
                },
                _ => return fail("usage: dead list [--json] [N]"),
            };
            list(cfg, n, as_json)
        }
        ["requeue", id] => requeue(cfg, id),
        _ => fail("usage: dead list [--json] [N] | dead requeue <item id>"),
    }
}

/// The store and the newest `n` dead letters as listed.
fn newest(cfg: &Config, n: i64) -> Result<(Store, Vec<Vec<u8>>), ExitCode> {
    let mut st = store(cfg).map_err(fail)?;
    let raw = st
        .lrange(contract::DEAD, 0, n - 1)
        .map_err(|e| fail(format!("Redis at {}: {e}", cfg.redis_url_for_logs())))?;
    Ok((st, raw))
}

fn list(cfg: &Config, n: i64, as_json: bool) -> ExitCode {
    let raw = match newest(cfg, n) {
        Ok((_, raw)) => raw,
        Err(code) => return code,
    };
    let letters: Vec<Value> = raw
        .iter()
        .map(|r| {
            serde_json::from_slice(r)
                .unwrap_or_else(|_| json!({"reason": "(unreadable dead letter)"}))
        })
        .collect();
    if as_json {
        outln!("{}", Value::Array(letters));
        return ExitCode::SUCCESS;
    }
    if letters.is_empty() {
        outln!("no dead letters in {}", contract::DEAD);
        return ExitCode::SUCCESS;
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|d| {
            let item: Value = d["item"]
                .as_str()
                .and_then(|i| serde_json::from_str(i).ok())
                .unwrap_or(Value::Null);
            vec![
                d["ts"].as_u64().map(utc).unwrap_or_else(|| "-".into()),
                d["id"].as_str().unwrap_or("-").to_owned(),
                item["channel_id"].as_str().unwrap_or("-").chars().take(40).collect(),
                d["reason"].as_str().unwrap_or("-").chars().take(160).collect(),
            ]
        })
        .collect();
    table(&["WHEN (UTC)", "ITEM", "CHANNEL", "REASON"], &rows);
    outln!("\nre-send one once its cause is fixed: asktable-feishu-gateway dead requeue <ITEM>");
    ExitCode::SUCCESS
}

fn requeue(cfg: &Config, id: &str) -> ExitCode {
    let (mut st, raw) = match newest(cfg, SEARCH) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let found = raw.iter().find_map(|r| {
        let d: Value = serde_json::from_slice(r).ok()?;
        (d["id"].as_str() == Some(id)).then(|| (r.clone(), d))
    });
    let Some((letter, d)) = found else {
        return fail(format!(
            "dead requeue: no dead letter with id {id:?} among the newest {SEARCH}"
        ));
    };
    if d["item_escaped"] == json!(true) || d["item_bytes"].is_u64() {
        return fail(format!(
            "dead requeue: {id}'s item was kept escaped or cut (not UTF-8, or over 64 KiB); AskTable Server must send it again"
        ));
    }
    let Some(item) = d["item"].as_str() else {
        return fail(format!("dead requeue: {id}'s dead letter holds no item"));
    };
    match st.requeue_dead(&letter, item) {
        Ok(true) => {
            outln!(
                "{id} is back on {}; it was dead-lettered for: {}",
                contract::OUTBOUND,
                d["reason"].as_str().unwrap_or("?")
            );
            ExitCode::SUCCESS
        }
        Ok(false) => fail(format!(
            "dead requeue: {id}'s dead letter was removed meanwhile (requeued by someone else?)"
        )),
        Err(e) => fail(format!("Redis at {}: {e}", cfg.redis_url_for_logs())),
    }
}
