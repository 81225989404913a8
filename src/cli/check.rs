//! `check [--json] [--chat <chat_id>]`: walks the troubleshooting list
//! (environment, Redis, channel configs, each Feishu app — see
//! `check_app` —, the running gateway, each channel's status, AskTable
//! Server on the other side of Redis) and prints ✔/✘ with what to do per
//! failed line, · for what could not be verified; `--json` for scripts and
//! for AskTable Server's console.
#![allow(clippy::print_stderr)] // a command line prints

use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use super::check_app::{AppCheck, Line, Mark};
use super::server::{self, ServerSide, ago};
use super::{fail, store, table};
use crate::bridge::contract;
use crate::clock::now_ms;
use crate::config::Config;
use crate::feishu::api::Api;
use crate::feishu::event::is_feishu_id;
use crate::feishu::http::Http;

/// Connected this long without one event: something takes or stops them.
pub const SILENT_AFTER_MS: u64 = 30 * 60_000;

/// `check`'s options.
struct Args {
    json: bool,
    chat: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut out = Args { json: false, chat: None };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => out.json = true,
            "--chat" => match it.next() {
                Some(c) if is_feishu_id(c) => out.chat = Some(c.clone()),
                Some(c) => return Err(format!("check: {c:?} is not a Feishu chat id (oc_…)")),
                None => return Err("check: --chat needs a chat id (oc_…)".into()),
            },
            other => {
                return Err(format!(
                    "check: unknown argument {other:?} (check [--json] [--chat <chat_id>])"
                ));
            }
        }
    }
    Ok(out)
}

/// `check [--json] [--chat <chat_id>]`.
pub fn check(cfg: Result<Config, crate::config::ConfigError>, args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let mut lines = Vec::new();
    // A failure that stops the walk is the last line.
    walk(cfg, &args, &mut lines);
    report(&lines, args.json)
}

/// Runs the checks into `lines`, stopping at a failure nothing after it
/// could get past (environment, Redis).
fn walk(cfg: Result<Config, crate::config::ConfigError>, args: &Args, lines: &mut Vec<Line>) {
    let cfg = match cfg {
        Ok(c) => {
            lines.push(Line::ok(
                "environment",
                format!("instance {}, redis {}", c.instance_id, c.redis_url_for_logs()),
            ));
            c
        }
        Err(e) => {
            lines.push(Line::fail("environment", e.to_string(), "fix the variable in /etc/asktable-feishu-gateway/env (or the container's environment)"));
            return;
        }
    };
    let mut st = match store(&cfg) {
        Ok(s) => s,
        Err(e) => {
            lines.push(Line::fail("redis", e.to_string(), "check REDIS_URL"));
            return;
        }
    };
    match st.server_version().and_then(|v| st.probe(&cfg.instance_id).map(|()| v)) {
        Ok(v) => lines.push(Line::ok(
            "redis",
            format!("reachable, version {v}; takes writes and the gateway's scripts"),
        )),
        Err(e) => {
            let p = e.problem();
            lines.push(Line::fail(
                "redis",
                format!("{}: {}: {e}", cfg.redis_url_for_logs(), p.as_str()),
                p.hint(),
            ));
            return;
        }
    }
    let configs = match st.read_configs() {
        Ok(c) if c.is_empty() => {
            lines.push(Line::fail(
                "channel config",
                format!("{} is empty", contract::CONFIG),
                "enable the Feishu channel in AskTable (is AskTable Server on this Redis? compare REDIS_URL), or add one with `channel put`",
            ));
            Vec::new()
        }
        Ok(c) => c,
        Err(e) => {
            lines.push(Line::fail("channel config", e.to_string(), "check Redis permissions"));
            Vec::new()
        }
    };
    let http = Http::new(Duration::from_secs(10));
    let api = Api::new(http.clone());
    let mut apps = AppCheck {
        api: &api,
        http: &http,
        unreachable: HashMap::new(),
        typing: !cfg.typing_reaction.is_empty(),
        chat: args.chat.clone(),
        cardkit: cfg.cardkit,
        cardkit_off: None,
    };
    let mut enabled = Vec::new();
    for (id, raw) in &configs {
        let c = match contract::parse_channel_config(id, raw) {
            Ok(c) => c,
            Err(e) => {
                lines.push(Line::fail(
                    format!("{id}: config"),
                    e.to_string(),
                    "fix the entry in AskTable (or `channel put`)",
                ));
                continue;
            }
        };
        if !c.enabled {
            lines.push(Line::ok(format!("{id}: config"), format!("app {}, disabled", c.app_id)));
            continue;
        }
        lines.push(Line::ok(format!("{id}: config"), format!("app {}", c.app_id)));
        let base = cfg.feishu_base_url.clone().unwrap_or_else(|| c.domain.base_url().to_owned());
        apps.cardkit_off = st.cardkit_off(&c.app_id).ok().flatten();
        apps.lines(lines, id, &c, base);
        enabled.push(id.clone());
    }
    match st.scan_values(contract::HEARTBEAT_PATTERN) {
        Ok(beats) if beats.is_empty() => lines.push(Line::fail(
            "gateway",
            "no running gateway instance reports a heartbeat on this Redis",
            "systemctl status asktable-feishu-gateway / docker ps; its REDIS_URL must be this one",
        )),
        Ok(beats) => {
            let ids: Vec<String> = beats
                .iter()
                .filter_map(|(_, v)| serde_json::from_str::<Value>(v).ok())
                .map(|v| v["instance_id"].as_str().unwrap_or("?").to_owned())
                .collect();
            lines.push(Line::ok("gateway", format!("running: {}", ids.join(", "))));
        }
        Err(e) => lines.push(Line::fail("gateway", e.to_string(), "")),
    }
    for id in &enabled {
        let status = st
            .get(&contract::status_key(id))
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_str::<Value>(&v).ok());
        lines.extend(status_lines(id, status));
    }
    // The other side of Redis: does AskTable Server read and answer?
    match ServerSide::read(&mut st) {
        Ok(side) => {
            lines.push(Line::of(
                side.reading(),
                "AskTable Server",
                side.inbound_line(),
                "compare REDIS_URL of AskTable Server and of this gateway: both must name the same Redis and database",
            ));
            lines.push(Line::of(
                side.dead_last_hour.is_empty(),
                "answers",
                side.dead_line(),
                "read the reasons with `dead list`; re-send one with `dead requeue <id>` once fixed",
            ));
        }
        Err(e) => lines.push(Line::fail("AskTable Server", e.to_string(), "")),
    }
    for id in &enabled {
        if let Some(last) = server::last_answer(&mut st, id) {
            lines.push(Line::ok(format!("{id}: answers"), last));
        }
        if let Ok(Some((n, at))) = st.unanswered(id) {
            lines.push(Line::fail(
                format!("{id}: unanswered"),
                format!("{n} question(s) got no answer within ANSWER_TIMEOUT, the last {} ago", ago(now_ms().saturating_sub(at))),
                "does the agent answer in the AskTable console? Is AskTable Server running and reading this Redis? `trace <message_id>` follows one",
            ));
        }
    }
}

/// The lines of one channel's status key: its state, and whether events
/// ever arrive.
fn status_lines(id: &str, status: Option<Value>) -> Vec<Line> {
    let what = format!("{id}: status");
    let Some(s) = status else {
        return vec![Line::fail(what, "no status key", "is a gateway running for this Redis?")];
    };
    if s["state"] != "connected" {
        return vec![Line::fail(
            what,
            format!(
                "{}: {}",
                s["state"].as_str().unwrap_or("?"),
                s["last_error"]["message"].as_str().unwrap_or("no error recorded")
            ),
            "see the error; the gateway's log (journalctl -u asktable-feishu-gateway, docker logs asktable_feishu_gateway)",
        )];
    }
    let mut out = vec![Line::ok(
        &what,
        format!("connected via {}", s["instance_id"].as_str().unwrap_or("?")),
    )];
    let since = s["since"].as_u64().unwrap_or(0);
    let connected_for = now_ms().saturating_sub(since);
    if since > 0 && s["last_event_at"].is_null() && connected_for >= SILENT_AFTER_MS {
        out.push(Line::fail(
            format!("{id}: events"),
            format!("connected for {} and no event received", ago(connected_for)),
            "is im.message.receive_v1 subscribed and the app version published? Is another process (an old bridge, a gateway on another Redis) connected with this app and taking its events?",
        ));
    }
    out
}

fn report(lines: &[Line], as_json: bool) -> ExitCode {
    let failed = lines.iter().filter(|l| l.mark == Mark::Fail).count();
    if as_json {
        let checks: Vec<Value> = lines
            .iter()
            .map(|l| {
                let state = match l.mark {
                    Mark::Ok => "ok",
                    Mark::Fail => "fail",
                    Mark::Skip => "skipped",
                };
                json!({"state": state, "check": l.what, "result": l.detail, "hint": l.hint})
            })
            .collect();
        outln!("{}", json!({"ok": failed == 0, "failed": failed, "checks": checks}));
    } else {
        let rows: Vec<Vec<String>> = lines
            .iter()
            .map(|l| {
                let detail = if l.hint.is_empty() || l.mark != Mark::Fail {
                    l.detail.clone()
                } else {
                    format!("{} → {}", l.detail, l.hint)
                };
                vec![l.mark.symbol().into(), l.what.clone(), detail]
            })
            .collect();
        table(&["", "CHECK", "RESULT"], &rows);
        if failed == 0 {
            outln!("\nall {} checks passed", lines.iter().filter(|l| l.mark == Mark::Ok).count());
        } else {
            outln!("\n{failed} of {} checks failed", lines.len());
        }
    }
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
