//! `check`: walks the troubleshooting list (Redis, channel configs,
//! credentials, endpoint, token, bot info, the running gateway) and prints
//! ✔/✘ with a hint per failed line.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command line prints

use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

use super::server::{self, ServerSide};
use super::{store, table};
use crate::bridge::contract;
use crate::config::Config;
use crate::feishu::api::{Api, AppCreds};
use crate::feishu::endpoint;
use crate::feishu::http::Http;

/// One line of the `check` report.
struct Line {
    ok: bool,
    what: String,
    detail: String,
    hint: String,
}

fn line(
    ok: bool,
    what: impl Into<String>,
    detail: impl Into<String>,
    hint: impl Into<String>,
) -> Line {
    Line { ok, what: what.into(), detail: detail.into(), hint: hint.into() }
}

/// `check`: walks the troubleshooting list and prints ✔/✘ with hints.
pub fn check(cfg: Result<Config, crate::config::ConfigError>) -> ExitCode {
    let mut lines = Vec::new();
    let cfg = match cfg {
        Ok(c) => {
            lines.push(line(
                true,
                "environment",
                format!("instance {}, redis {}", c.instance_id, c.redis_url_for_logs()),
                "",
            ));
            c
        }
        Err(e) => {
            lines.push(line(
                false,
                "environment",
                e.to_string(),
                "fix the variable in /etc/asktable-feishu-gateway/env",
            ));
            return report(&lines);
        }
    };
    let mut st = match store(&cfg) {
        Ok(s) => s,
        Err(e) => {
            lines.push(line(false, "redis", e.to_string(), "check REDIS_URL"));
            return report(&lines);
        }
    };
    let version = st.server_version();
    match version.and_then(|v| st.probe(&cfg.instance_id).map(|()| v)) {
        Ok(v) => lines.push(line(
            true,
            "redis",
            format!("reachable, version {v}; takes writes and the gateway's scripts"),
            "",
        )),
        Err(e) => {
            let p = e.problem();
            lines.push(line(
                false,
                "redis",
                format!("{}: {}: {e}", cfg.redis_url_for_logs(), p.as_str()),
                p.hint(),
            ));
            return report(&lines);
        }
    }
    let configs = match st.read_configs() {
        Ok(c) if c.is_empty() => {
            lines.push(line(
                false,
                "channel config",
                format!("{} is empty", contract::CONFIG),
                "enable the Feishu channel in AskTable, or add one with `channel put`",
            ));
            Vec::new()
        }
        Ok(c) => c,
        Err(e) => {
            lines.push(line(false, "channel config", e.to_string(), "check Redis permissions"));
            Vec::new()
        }
    };
    let http = Http::new(Duration::from_secs(10));
    let api = Api::new(http.clone());
    for (id, raw) in &configs {
        let c = match contract::parse_channel_config(id, raw) {
            Ok(c) => c,
            Err(e) => {
                lines.push(line(
                    false,
                    format!("{id}: config"),
                    e.to_string(),
                    "fix the entry in AskTable (or `channel put`)",
                ));
                continue;
            }
        };
        if !c.enabled {
            lines.push(line(
                true,
                format!("{id}: config"),
                format!("app {}, disabled", c.app_id),
                "",
            ));
            continue;
        }
        lines.push(line(true, format!("{id}: config"), format!("app {}", c.app_id), ""));
        let base = cfg.feishu_base_url.clone().unwrap_or_else(|| c.domain.base_url().to_owned());
        match endpoint::fetch(&http, &base, &c.app_id, c.app_secret.expose()) {
            Ok(ep) => lines.push(line(
                true,
                format!("{id}: long connection"),
                format!("endpoint OK ({})", endpoint::safe_url(&ep.url)),
                "",
            )),
            Err(e) => {
                let hint = if let endpoint::ConnectError::Untrusted(_) = e {
                    "set SSL_CERT_FILE=/path/to/ca-bundle.pem in /etc/asktable-feishu-gateway/env \
                     when a proxy re-signs TLS; else check the clock"
                } else if e.needs_operator() {
                    "in the Feishu developer console: check App ID/Secret, publish the app version, enable \
                     'receive events through long connection'"
                } else {
                    "check outbound HTTPS to the Feishu domain (proxy, firewall, DNS)"
                };
                lines.push(line(false, format!("{id}: long connection"), e.to_string(), hint));
            }
        }
        let creds =
            AppCreds { base_url: base, app_id: c.app_id.clone(), app_secret: c.app_secret.clone() };
        match api.tenant_token(&creds) {
            Ok(_) => lines.push(line(true, format!("{id}: tenant token"), "obtained", "")),
            Err(e) => lines.push(line(
                false,
                format!("{id}: tenant token"),
                e.to_string(),
                "check App ID and App Secret",
            )),
        }
        match api.bot_info(&creds) {
            Ok(bot) => lines.push(line(
                true,
                format!("{id}: bot"),
                format!("\"{}\" ({})", bot.name, bot.open_id),
                "",
            )),
            Err(e) => lines.push(line(
                false,
                format!("{id}: bot"),
                e.to_string(),
                "enable the bot capability and publish a new app version",
            )),
        }
    }
    match st.scan_values(contract::HEARTBEAT_PATTERN) {
        Ok(beats) if beats.is_empty() => lines.push(line(
            false,
            "gateway",
            "no running gateway instance reports a heartbeat",
            "systemctl status asktable-feishu-gateway; journalctl -u asktable-feishu-gateway",
        )),
        Ok(beats) => {
            let ids: Vec<String> = beats
                .iter()
                .filter_map(|(_, v)| serde_json::from_str::<Value>(v).ok())
                .map(|v| v["instance_id"].as_str().unwrap_or("?").to_owned())
                .collect();
            lines.push(line(true, "gateway", format!("running: {}", ids.join(", ")), ""));
        }
        Err(e) => lines.push(line(false, "gateway", e.to_string(), "")),
    }
    for (id, raw) in &configs {
        if !contract::parse_channel_config(id, raw).is_ok_and(|c| c.enabled) {
            continue;
        }
        let status = st
            .get(&contract::status_key(id))
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_str::<Value>(&v).ok());
        match status {
            Some(s) if s["state"] == "connected" => lines.push(line(
                true,
                format!("{id}: status"),
                format!("connected via {}", s["instance_id"].as_str().unwrap_or("?")),
                "",
            )),
            Some(s) => lines.push(line(
                false,
                format!("{id}: status"),
                format!(
                    "{}: {}",
                    s["state"].as_str().unwrap_or("?"),
                    s["last_error"]["message"].as_str().unwrap_or("no error recorded")
                ),
                "see the error; journalctl -u asktable-feishu-gateway",
            )),
            None => lines.push(line(
                false,
                format!("{id}: status"),
                "no status key",
                "is a gateway running for this Redis?",
            )),
        }
    }
    // The other side of Redis: does AskTable Server read and answer?
    match ServerSide::read(&mut st) {
        Ok(side) => {
            lines.push(line(
                side.reading(),
                "AskTable Server",
                side.inbound_line(),
                "compare REDIS_URL of AskTable Server and of this gateway: both must name the same Redis and database",
            ));
            lines.push(line(
                side.dead_last_hour.is_empty(),
                "answers",
                side.dead_line(),
                "read the reasons: LRANGE at:channel:outbound:feishu:dead 0 9",
            ));
        }
        Err(e) => lines.push(line(false, "AskTable Server", e.to_string(), "")),
    }
    for (id, raw) in &configs {
        if contract::parse_channel_config(id, raw).is_ok_and(|c| c.enabled)
            && let Some(last) = server::last_answer(&mut st, id)
        {
            lines.push(line(true, format!("{id}: answers"), last, ""));
        }
    }
    report(&lines)
}

fn report(lines: &[Line]) -> ExitCode {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let detail = if l.hint.is_empty() || l.ok {
                l.detail.clone()
            } else {
                format!("{} → {}", l.detail, l.hint)
            };
            vec![if l.ok { "✔".into() } else { "✘".into() }, l.what.clone(), detail]
        })
        .collect();
    table(&["", "CHECK", "RESULT"], &rows);
    let failed = lines.iter().filter(|l| !l.ok).count();
    if failed == 0 {
        println!("\nall {} checks passed", lines.len());
        ExitCode::SUCCESS
    } else {
        println!("\n{failed} of {} checks failed", lines.len());
        ExitCode::FAILURE
    }
}
