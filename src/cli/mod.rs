//! The operator commands: `check`, `status`, `channel put|rm|list`.
//!
//! They print for people (tables) or scripts (`--json`), read settings from
//! the same environment as the daemon, and never print a secret.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command line prints

use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use crate::bridge::contract::{self, NewChannel};
use crate::bridge::store::{self, RedisError, Store};
use crate::channel::ChannelConfig;
use crate::config::Config;
use crate::feishu::api::{Api, AppCreds};
use crate::feishu::endpoint;
use crate::feishu::http::Http;

/// Exit code for bad usage or configuration.
const USAGE_ERROR: u8 = 2;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("asktable-feishu-gateway: {msg}");
    ExitCode::from(USAGE_ERROR)
}

fn store(cfg: &Config) -> Result<Store, RedisError> {
    Ok(Store::new(store::client(&cfg.redis_url)?))
}

/// Formats ms since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn table(header: &[&str], rows: &[Vec<String>]) {
    let width = |s: &str| s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum::<usize>();
    let mut w: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(width(c));
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{}", " ".repeat(w[i] - width(c))))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

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
            eprintln!(
                "asktable-feishu-gateway: Redis at {} is unreachable: {}",
                cfg.redis_url_for_logs(),
                e
            );
            return ExitCode::FAILURE;
        }
    };
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
    if as_json {
        println!("{}", Value::Array(rows));
        return ExitCode::SUCCESS;
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
                err,
                text(&r["instance_id"]),
            ]
        })
        .collect();
    if table_rows.is_empty() {
        println!("no channels configured in {}", contract::CONFIG);
    } else {
        table(
            &[
                "CHANNEL",
                "APP",
                "STATE",
                "SINCE (UTC)",
                "LAST EVENT (UTC)",
                "LAST ERROR",
                "INSTANCE",
            ],
            &table_rows,
        );
    }
    ExitCode::SUCCESS
}

/// `channel put|rm|list`.
pub fn channel(cfg: &Config, args: &[String]) -> ExitCode {
    let mut st = match store(cfg) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let redis_down = |e: RedisError| {
        eprintln!(
            "asktable-feishu-gateway: Redis at {} is unreachable: {}",
            cfg.redis_url_for_logs(),
            e
        );
        ExitCode::FAILURE
    };
    match args.first().map(String::as_str) {
        Some("list") => match st.read_configs() {
            Ok(entries) => {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|(id, raw)| match contract::parse_channel_config(id, raw) {
                        Ok(c) => list_row(&c),
                        Err(e) => vec![
                            id.clone(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            format!("invalid: {e}"),
                        ],
                    })
                    .collect();
                table(&["CHANNEL", "APP", "ENABLED", "DOMAIN", "GROUP POLICY", "SECRETS"], &rows);
                ExitCode::SUCCESS
            }
            Err(e) => redis_down(e),
        },
        Some("rm") => match &args[1..] {
            [id] => match st.remove_config(id) {
                Ok(true) => {
                    println!("channel {id} removed");
                    ExitCode::SUCCESS
                }
                Ok(false) => fail(format!("channel rm: no channel {id}")),
                Err(e) => redis_down(e),
            },
            _ => fail("usage: channel rm <channel_id>"),
        },
        Some("put") => put(&mut st, &args[1..]).unwrap_or_else(|e| e),
        _ => fail("usage: channel put|rm|list (see --help)"),
    }
}

fn list_row(c: &ChannelConfig) -> Vec<String> {
    let mask = |name: &str, s: &crate::channel::Secret| {
        if s.is_empty() { None } else { Some(format!("{name}=***")) }
    };
    let secrets: Vec<String> = [
        mask("app_secret", &c.app_secret),
        mask("encrypt_key", &c.encrypt_key),
        mask("verification_token", &c.verification_token),
    ]
    .into_iter()
    .flatten()
    .collect();
    vec![
        c.channel_id.clone(),
        c.app_id.clone(),
        c.enabled.to_string(),
        c.domain.base_url().to_owned(),
        format!("{:?}", c.routing.group_policy).to_lowercase(),
        secrets.join(" "),
    ]
}

/// `channel put <id> --app-id ID [options]`; the secret comes from
/// `FEISHU_APP_SECRET` or the first line of stdin, never from argv.
fn put(st: &mut Store, args: &[String]) -> Result<ExitCode, ExitCode> {
    let usage = "usage: channel put <channel_id> --app-id <cli_…> [--agent-id ID] [--project-id ID] \
                 [--domain feishu|lark|https://…] [--group-policy mention|all] [--disabled]  \
                 (App Secret from FEISHU_APP_SECRET or stdin; FEISHU_ENCRYPT_KEY, FEISHU_VERIFICATION_TOKEN optional)";
    let (id, rest) = args.split_first().ok_or_else(|| fail(usage))?;
    if id.starts_with('-') {
        return Err(fail(usage));
    }
    let mut opt: std::collections::HashMap<&str, &str> = Default::default();
    let mut enabled = true;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--disabled" => enabled = false,
            "--app-id" | "--agent-id" | "--project-id" | "--domain" | "--group-policy" => {
                let v = it.next().ok_or_else(|| fail(format!("{flag} needs a value")))?;
                opt.insert(flag.as_str(), v.as_str());
            }
            "--app-secret" | "--secret" | "--encrypt-key" | "--verification-token" => {
                return Err(fail(format!(
                    "{flag}: secrets are never taken from the command line (it is visible in ps and shell history); \
                     use FEISHU_APP_SECRET / FEISHU_ENCRYPT_KEY / FEISHU_VERIFICATION_TOKEN or stdin"
                )));
            }
            other => return Err(fail(format!("unknown option {other}\n{usage}"))),
        }
    }
    let app_id = *opt.get("--app-id").ok_or_else(|| fail(usage))?;
    let secret = match std::env::var("FEISHU_APP_SECRET") {
        Ok(s) if !s.is_empty() => s,
        _ => {
            if std::io::stdin().is_terminal() {
                eprint!(
                    "App Secret for {app_id} (input is not echoed to the log; end with Enter): "
                );
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| fail(format!("reading stdin: {e}")))?;
            line.trim().to_owned()
        }
    };
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let (encrypt_key, verification_token) =
        (env("FEISHU_ENCRYPT_KEY"), env("FEISHU_VERIFICATION_TOKEN"));
    let new = NewChannel {
        channel_id: id,
        app_id,
        app_secret: &secret,
        encrypt_key: &encrypt_key,
        verification_token: &verification_token,
        agent_id: opt.get("--agent-id").copied(),
        project_id: opt.get("--project-id").copied(),
        domain: opt.get("--domain").copied().unwrap_or("feishu"),
        group_policy: opt.get("--group-policy").copied().unwrap_or("mention"),
        enabled,
    };
    let json = contract::channel_config_json(&new, crate::clock::now_ms());
    if let Err(e) = contract::parse_channel_config(id, json.as_bytes()) {
        return Err(fail(format!("channel put: {e}")));
    }
    match st.put_config(id, &json) {
        Ok(()) => {
            println!(
                "channel {id} saved (app {app_id}, {}); gateways were notified",
                if enabled { "enabled" } else { "disabled" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("asktable-feishu-gateway: cannot save channel {id}: {}", e);
            Ok(ExitCode::FAILURE)
        }
    }
}

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
    match st.server_version() {
        Ok(v) => lines.push(line(true, "redis", format!("reachable, version {v}"), "")),
        Err(e) => {
            lines.push(line(
                false,
                "redis",
                format!("{} unreachable: {}", cfg.redis_url_for_logs(), e),
                "check REDIS_URL, that Redis runs, and firewalls/passwords",
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

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_764_000_000_000), "2025-11-24 16:00:00");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
