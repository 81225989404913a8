//! `status [--json]`: every configured or reported channel, as a table for
//! people or JSON for scripts.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command line prints

use serde_json::{Value, json};
use std::process::ExitCode;

use super::server::ServerSide;
use super::{fail, store, table, utc};
use crate::bridge::contract;
use crate::config::Config;

/// `status [--json]`: every configured or reported channel.
pub fn status(cfg: &Config, args: &[String]) -> ExitCode {
    let as_json = match args {
        [] => false,
        [a] if a == "--json" => true,
        other => return fail(format!("status: unknown arguments {other:?}")),
    };
    let mut st = match store(cfg) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let gathered =
        st.read_configs().and_then(|c| Ok((c, st.scan_values(contract::STATUS_PATTERN)?)));
    let (configs, statuses) = match gathered {
        Ok(v) => v,
        Err(e) => {
            let p = e.problem();
            eprintln!(
                "asktable-feishu-gateway: Redis at {}: {}: {e} ({})",
                cfg.redis_url_for_logs(),
                p.as_str(),
                p.hint()
            );
            return ExitCode::FAILURE;
        }
    };
    // Readable but not writable (OOM, READONLY, NOPERM): the statuses are
    // what the gateway could last write; say why they may be stale.
    if let Err(e) = st.probe(&cfg.instance_id) {
        let p = e.problem();
        eprintln!(
            "warning: Redis at {}: {}: {e}; the gateway cannot write, so these states may be stale ({})",
            cfg.redis_url_for_logs(),
            p.as_str(),
            p.hint()
        );
    }
    let mut rows: Vec<Value> = Vec::new();
    let status_of = |id: &str| {
        statuses
            .iter()
            .find(|(k, _)| k.as_str() == contract::status_key(id))
            .and_then(|(_, v)| serde_json::from_str::<Value>(v).ok())
    };
    let mut ids: Vec<String> = configs.iter().map(|(id, _)| id.clone()).collect();
    for (k, _) in &statuses {
        let id = k.trim_start_matches(contract::STATUS_PATTERN.trim_end_matches('*')).to_owned();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.sort();
    for id in ids {
        let config = configs
            .iter()
            .find(|(c, _)| *c == id)
            .map(|(_, raw)| contract::parse_channel_config(&id, raw));
        let mut row = status_of(&id).unwrap_or_else(|| {
            json!({"channel_id": id, "state": "unknown", "last_error":
                {"code": "no_status", "message": "no gateway reports this channel (is a gateway running?)"}})
        });
        row["configured"] = json!(config.is_some());
        if let Some(Ok(c)) = &config {
            row["app_id"] = json!(c.app_id);
        }
        rows.push(row);
    }
    for row in rows.iter_mut() {
        let id = row["channel_id"].as_str().unwrap_or_default().to_owned();
        let at = st.get(&contract::last_answer_key(&id)).ok().flatten();
        row["last_answer_at"] = json!(at.and_then(|v| v.parse::<u64>().ok()));
        row["unanswered"] = match st.unanswered(&id).ok().flatten() {
            Some((count, last_at)) => json!({"count": count, "last_at": last_at}),
            None => Value::Null,
        };
    }
    if as_json {
        outln!("{}", Value::Array(rows));
        return ExitCode::SUCCESS;
    }
    if let Ok(side) = ServerSide::read(&mut st) {
        outln!("inbound: {}", side.inbound_line());
        outln!("pending: {}", side.pending_line());
        outln!("answers: {}\n", side.dead_line());
    }
    let when = |v: &Value| v.as_u64().map(utc).unwrap_or_else(|| "-".into());
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let err = match &r["last_error"] {
                Value::Null => "-".to_owned(),
                e => format!("{}: {}", text(&e["code"]), text(&e["message"])),
            };
            vec![
                text(&r["channel_id"]),
                text(&r["app_id"]),
                text(&r["state"]),
                when(&r["since"]),
                when(&r["last_event_at"]),
                when(&r["last_answer_at"]),
                match r["unanswered"]["count"].as_u64() {
                    Some(n) => format!("{n} (last {})", when(&r["unanswered"]["last_at"])),
                    None => "-".into(),
                },
                err,
                text(&r["instance_id"]),
            ]
        })
        .collect();
    if table_rows.is_empty() {
        outln!("no channels configured in {}", contract::CONFIG);
    } else {
        table(
            &[
                "CHANNEL",
                "APP",
                "STATE",
                "SINCE (UTC)",
                "LAST EVENT (UTC)",
                "LAST ANSWER (UTC)",
                "UNANSWERED",
                "LAST ERROR",
                "INSTANCE",
            ],
            &table_rows,
        );
    }
    ExitCode::SUCCESS
}
