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
