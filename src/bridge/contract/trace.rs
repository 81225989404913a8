//! What the gateway remembers of each question for `trace <message_id>` and
//! for `ANSWER_TIMEOUT` (PROTOCOL.md "Trace and unanswered questions"):
//! a small hash per Feishu message (ids, times and outcomes, never text),
//! the set of questions stored and not yet answered, and per channel the
//! count of questions that went unanswered.
use serde_json::json;

use super::{VERSION, short_hash};

/// The trace of one Feishu message (HASH; [`TRACE_TTL`]). Fields written
/// on receipt (by the inbound script): `outcome` (`stored`, `duplicate`,
/// `skipped`), `received_at`, `instance`, `inbound_id`, `channel`, `chat`,
/// `chat_type`, `thread` ("1" when in a thread), `copies` (redeliveries);
/// for a skipped message `skipped` (why). By the workers: `answered_by`
/// (the outbound item id), `answered_at`, `delivered_as` (the Feishu
/// message id), `progress` (progress items shown), `dead_reason` and
/// `dead_at`, `notice_at` and `unanswered_at`.
pub fn trace_key(message_id: &str) -> String {
    format!("at:channel:trace:feishu:{message_id}")
}

/// What the inbound script writes into a stored message's trace, as its
/// trace record argument: inbound id, channel, chat, chat type, thread
/// ("1" in a thread), message id, tab-separated (a tab inside a value
/// becomes a space).
pub fn trace_record(channel_id: &str, app_id: &str, m: &crate::feishu::event::Message) -> String {
    let thread = if m.thread_id.as_deref().is_some_and(|t| !t.is_empty()) { "1" } else { "" };
    let id = super::inbound_id(app_id, &m.message_id);
    [id.as_str(), channel_id, &m.chat_id, &m.chat_type, thread, &m.message_id]
        .map(|v| v.replace('\t', " "))
        .join("\t")
}

/// How long a message's trace is kept (3 days).
pub const TRACE_TTL: u64 = 3 * 86_400;

/// Questions stored and not yet answered (ZSET: member = the Feishu
/// message id, score = when it was stored, ms since the epoch).
pub const PENDING: &str = "at:channel:pending:feishu";

/// A channel's unanswered questions (HASH `count`, `last_at`,
/// `last_message_id`; [`UNANSWERED_TTL`] from the last one).
pub fn unanswered_key(channel_id: &str) -> String {
    format!("at:channel:unanswered:feishu:{channel_id}")
}

/// How long a channel's unanswered count is kept after the last one (7 days).
pub const UNANSWERED_TTL: u64 = 7 * 86_400;

/// HSET of field/value pairs and EXPIRE (`trace_note.lua`). KEYS: the
/// hash. ARGV: TTL, then field, value, field, value, …
pub const TRACE_NOTE_SCRIPT: &str = include_str!("trace_note.lua");

/// Claims unanswered questions (`unanswered.lua`): removes from
/// [`PENDING`] up to ARGV[2] members stored before ARGV[1] (ms) and returns
/// them; the replica whose call removed a member tells its user.
pub const UNANSWERED_SCRIPT: &str = include_str!("unanswered.lua");

/// The item the gateway queues when a question got no answer in time
/// (`kind: "notice"`: a reply that is not the answer, so a late answer is
/// still delivered normally).
pub fn notice_item(
    channel_id: &str,
    inbound_id: &str,
    message_id: &str,
    chat_id: &str,
    in_thread: bool,
    text: &str,
    now_ms: u64,
) -> String {
    let id = short_hash(&format!("notice\n{inbound_id}"));
    json!({
        "schema": "at.channel.outbound", "v": VERSION, "id": format!("notice-{id}"), "ts": now_ms,
        "channel_id": channel_id, "in_reply_to": inbound_id,
        "target": { "message_id": message_id, "chat_id": chat_id, "reply_in_thread": in_thread },
        "kind": "notice", "status": "ok", "content": { "text": text, "attachments": [] }, "error": null,
    })
    .to_string()
}

/// The app id in an inbound id (`feishu:<app_id>:<message_id>`).
pub fn app_of_inbound_id(inbound_id: &str) -> Option<&str> {
    let rest = inbound_id.strip_prefix("feishu:")?;
    rest.split_once(':').map(|(app, _)| app).filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::contract::{Kind, parse_outbound};

    #[test]
    fn a_notice_is_a_valid_outbound_item_that_is_not_the_answer() {
        let raw = notice_item("ch_1", "feishu:cli_a:om_1", "om_1", "oc_1", true, "no answer", 5);
        let o = parse_outbound(&raw).unwrap();
        assert_eq!((o.kind, o.text.as_str(), o.reply_in_thread), (Kind::Notice, "no answer", true));
        assert_eq!(o.in_reply_to.as_deref(), Some("feishu:cli_a:om_1"));
        assert_eq!(
            raw,
            notice_item("ch_1", "feishu:cli_a:om_1", "om_1", "oc_1", true, "no answer", 5)
        );
    }

    #[test]
    fn the_app_of_an_inbound_id() {
        assert_eq!(app_of_inbound_id("feishu:cli_a:om_1"), Some("cli_a"));
        assert_eq!(app_of_inbound_id("feishu::om_1"), None);
        assert_eq!(app_of_inbound_id("slack:x:y"), None);
    }
}
