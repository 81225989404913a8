//! `trace <message_id> [--json]`: where did this Feishu message go? From
//! what the gateway records in Redis (contract `trace`, kept 3 days):
//! received by which instance and when, stored or skipped and why, taken
//! by AskTable Server or still waiting, answered by which item and shown
//! as which Feishu message, dead-lettered with what reason, or unanswered.
#![allow(clippy::print_stderr)] // a command line prints

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::ExitCode;

use super::server::ago;
use super::{fail, store, utc};
use crate::bridge::contract;
use crate::bridge::store::Store;
use crate::clock::now_ms;
use crate::config::Config;
use crate::feishu::event::is_feishu_id;

/// How many inbound items `trace` looks through for a waiting question.
const INBOUND_SCAN: i64 = 10_000;

/// What a skip reason means, and what to do about it.
fn skip_meaning(why: &str) -> &str {
    match why {
        "not_mentioned" => {
            "a group message that does not @-mention the bot, and the channel's group_policy is `mention` (mention the bot, or set group_policy all)"
        }
        "stale" => "older than MAX_MESSAGE_AGE when it arrived (a redelivery after a long outage?)",
        "empty" => "nothing left after removing the bot's @-mention",
        "not_from_user" => "sent by an app or bot, not by a user",
        "token_mismatch" => {
            "its verification token differs from the channel's verification_token (fix the token in AskTable)"
        }
        other => other,
    }
}

/// `trace <message_id> [--json]`.
pub fn trace(cfg: &Config, args: &[String]) -> ExitCode {
    let (id, as_json) = match args {
        [id] => (id.as_str(), false),
        [id, flag] | [flag, id] if flag == "--json" => (id.as_str(), true),
        _ => return fail("usage: trace <message_id> [--json]"),
    };
    if !is_feishu_id(id) {
        return fail(format!(
            "trace: {:?} is not a Feishu message id (om_…)",
            id.escape_default().to_string()
        ));
    }
    let mut st = match store(cfg) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match gather(&mut st, id) {
        Ok(Some(t)) if as_json => {
            outln!("{t}");
            ExitCode::SUCCESS
        }
        Ok(Some(t)) => {
            for line in lines(id, &t) {
                outln!("{line}");
            }
            ExitCode::SUCCESS
        }
        Ok(None) => {
            if as_json {
                outln!("{}", json!({"message_id": id, "found": false}));
            } else {
                outln!(
                    "{id}: no gateway on this Redis recorded it in the last 3 days. Feishu did not deliver it to a gateway here: is im.message.receive_v1 subscribed with the long connection and the app version published (`check`), is the bot in that chat, and is this the Redis the gateway uses?"
                );
            }
            ExitCode::FAILURE
        }
        Err(e) => fail(format!("Redis at {}: {e}", cfg.redis_url_for_logs())),
    }
}

/// The trace as JSON: the recorded fields plus `waiting` (position in the
/// inbound list, counted from the end the server pops) and `pending`.
fn gather(st: &mut Store, id: &str) -> crate::bridge::store::Result<Option<Value>> {
    let fields: BTreeMap<String, String> = st.read_trace(id)?.into_iter().collect();
    if fields.is_empty() {
        return Ok(None);
    }
    let mut t = json!({"message_id": id, "found": true});
    for (k, v) in &fields {
        t[k] = match v.parse::<u64>() {
            Ok(n) if k.ends_with("_at") || k == "copies" => json!(n),
            _ => json!(v),
        };
    }
    if let Some(inbound_id) = fields.get("inbound_id") {
        let items = st.lrange(contract::INBOUND, -INBOUND_SCAN, -1)?;
        let needle = format!("\"id\":\"{inbound_id}\"");
        let from_end = items
            .iter()
            .rev()
            .position(|raw| std::str::from_utf8(raw).is_ok_and(|s| s.contains(&needle)));
        t["waiting"] = json!(from_end.map(|p| p + 1));
    }
    t["pending"] = json!(st.pending_since(id)?);
    Ok(Some(t))
}

/// The trace for people, one line per step.
fn lines(id: &str, t: &Value) -> Vec<String> {
    let s = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
    let when = |k: &str| t[k].as_u64().map(|ms| format!("{} UTC", utc(ms))).unwrap_or_default();
    let mut out = vec![format!(
        "{id}: received {} by instance {} on channel {}{}",
        when("received_at"),
        s("instance"),
        s("channel"),
        match s("chat").as_str() {
            "" => String::new(),
            chat => format!(" ({} chat {chat})", s("chat_type")),
        }
    )];
    if let Some(n) = t["copies"].as_u64().filter(|n| *n > 0) {
        out.push(format!("  redelivered {n} more time(s) by Feishu, stored once"));
    }
    match s("outcome").as_str() {
        "skipped" => {
            out.push(format!("  not stored: {}", skip_meaning(&s("skipped"))));
            return out;
        }
        "duplicate" => out.push("  a copy of a message stored earlier (not stored again)".into()),
        _ => out.push(format!("  stored in {} as {}", contract::INBOUND, s("inbound_id"))),
    }
    let answered = t["answered_at"].is_u64();
    match t["waiting"].as_u64() {
        Some(pos) => out.push(format!(
            "  waiting in {}: number {pos} in line; AskTable Server has not taken it yet (is it running and reading this Redis?)",
            contract::INBOUND
        )),
        None if t.get("waiting").is_some() || answered => {
            out.push("  taken by AskTable Server".into());
        }
        None => {}
    }
    if !s("progress_card").is_empty() {
        out.push(format!("  progress shown in card {}", s("progress_card")));
    }
    if answered {
        out.push(format!(
            "  answered by item {} at {}, shown as Feishu message {}",
            s("answered_by"),
            when("answered_at"),
            s("delivered_as")
        ));
    }
    if !s("dead_reason").is_empty() {
        out.push(format!(
            "  answer item {} dead-lettered at {}: {} (see `dead list`)",
            s("dead_item"),
            when("dead_at"),
            s("dead_reason")
        ));
    }
    if t["unanswered_at"].is_u64() {
        out.push(format!(
            "  no answer within ANSWER_TIMEOUT: counted as unanswered at {}{}",
            when("unanswered_at"),
            match s("notice_delivered_as").as_str() {
                "" => String::new(),
                m => format!(", the user was told (message {m})"),
            }
        ));
    }
    if let Some(since) = t["pending"].as_u64() {
        out.push(format!("  not answered yet: waiting {}", ago(now_ms().saturating_sub(since))));
    }
    out
}
