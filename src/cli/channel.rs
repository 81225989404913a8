//! `channel put|rm|list`: the operator's way to configure channels in
//! Redis by hand; secrets never come from argv and are masked in lists.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command line prints

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use super::{fail, store, table};
use crate::bridge::contract::{self, NewChannel};
use crate::bridge::store::{RedisError, Store};
use crate::channel::ChannelConfig;
use crate::config::Config;

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
                    outln!("channel {id} removed");
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

/// `channel put <id> [--app-id ID] [options]`; the secret comes from
/// `FEISHU_APP_SECRET` or the first line of stdin, never from argv. On an
/// existing channel only what is given changes: every other field (agent,
/// project, group policy, domain, the other secrets, fields AskTable Server
/// wrote) is kept, and no secret given keeps the current one.
fn put(st: &mut Store, args: &[String]) -> Result<ExitCode, ExitCode> {
    let usage = "usage: channel put <channel_id> [--app-id <cli_…>] [--agent-id ID] [--project-id ID] \
                 [--domain feishu|lark|https://…] [--group-policy mention|all] [--disabled|--enabled]  \
                 (App Secret from FEISHU_APP_SECRET or stdin; FEISHU_ENCRYPT_KEY, FEISHU_VERIFICATION_TOKEN optional; \
                 on an existing channel, what is not given is kept)";
    let (id, rest) = args.split_first().ok_or_else(|| fail(usage))?;
    if id.starts_with('-') {
        return Err(fail(usage));
    }
    let mut opt: std::collections::HashMap<&str, &str> = Default::default();
    let mut enabled = None;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--disabled" => enabled = Some(false),
            "--enabled" => enabled = Some(true),
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
    let current = match st.read_config(id) {
        Ok(raw) => raw.and_then(|r| serde_json::from_slice::<serde_json::Value>(&r).ok()),
        Err(e) => return Err(fail(format!("channel put: cannot read channel {id}: {e}"))),
    };
    let mut entry = match current {
        Some(v @ serde_json::Value::Object(_)) => v,
        _ => {
            let app_id = opt.get("--app-id").ok_or_else(|| {
                fail(format!("channel put: {id} is a new channel: --app-id is required\n{usage}"))
            })?;
            let new = NewChannel {
                channel_id: id,
                app_id,
                app_secret: "",
                encrypt_key: "",
                verification_token: "",
                agent_id: None,
                project_id: None,
                domain: "feishu",
                group_policy: "mention",
                enabled: true,
            };
            serde_json::from_str(&contract::channel_config_json(&new, 0)).expect("our own JSON")
        }
    };
    let app_id = opt
        .get("--app-id")
        .copied()
        .map(str::to_owned)
        .unwrap_or_else(|| entry["app_id"].as_str().unwrap_or_default().to_owned());
    let has_secret = entry["app_secret"].as_str().is_some_and(|s| !s.is_empty());
    let secret = match std::env::var("FEISHU_APP_SECRET") {
        Ok(s) if !s.is_empty() => s,
        _ => {
            if std::io::stdin().is_terminal() {
                eprint!(
                    "App Secret for {app_id}{} (input is not echoed to the log; end with Enter): ",
                    if has_secret { ", empty keeps the current one" } else { "" }
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
    let set = |entry: &mut serde_json::Value, k: &str, v: serde_json::Value| entry[k] = v;
    set(&mut entry, "app_id", app_id.clone().into());
    set(&mut entry, "ts", crate::clock::now_ms().into());
    if !secret.is_empty() {
        set(&mut entry, "app_secret", secret.into());
    }
    for (var, field) in
        [("FEISHU_ENCRYPT_KEY", "encrypt_key"), ("FEISHU_VERIFICATION_TOKEN", "verification_token")]
    {
        if let Ok(v) = std::env::var(var) {
            set(&mut entry, field, v.into());
        }
    }
    for (flag, field) in [
        ("--agent-id", "agent_id"),
        ("--project-id", "project_id"),
        ("--domain", "domain"),
        ("--group-policy", "group_policy"),
    ] {
        if let Some(v) = opt.get(flag) {
            set(&mut entry, field, (*v).into());
        }
    }
    if let Some(e) = enabled {
        set(&mut entry, "enabled", e.into());
    }
    let enabled = entry["enabled"].as_bool().unwrap_or(true);
    let json = entry.to_string();
    let parsed = contract::parse_channel_config(id, json.as_bytes())
        .map_err(|e| fail(format!("channel put: {e}")))?;
    if parsed.app_secret.is_empty() {
        return Err(fail(
            "channel put: no App Secret given (set FEISHU_APP_SECRET or write it to stdin)",
        ));
    }
    match st.put_config(id, &json) {
        Ok(()) => {
            outln!(
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
