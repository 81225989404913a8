//! The Redis contract v1 with AskTable Server, in one place: every key name
//! and every JSON shape the gateway reads or writes. `docs/PROTOCOL.md`
//! describes the same contract for people; keep the two in step.
//!
//! Adapting the gateway to another server format is an edit of this file.

mod config;
mod inbound;
mod outbound;
mod status;
mod stream;
mod trace;

use std::fmt;

pub use config::{NewChannel, channel_config_json, field_name, parse_channel_config};
pub use inbound::{hint_item, inbound_id, inbound_item, welcome_item};
pub use outbound::{
    APOLOGY, Fate, Kind, Outbound, dead_letter_json, escape_bytes, item_ids, parse_outbound,
    parse_outbound_bytes, receipt_json, short_hash,
};
pub use status::{State, Status, heartbeat_json, status_json};
pub use stream::*;
pub use trace::{
    PENDING, TRACE_NOTE_SCRIPT, TRACE_TTL, UNANSWERED_SCRIPT, UNANSWERED_TTL, app_of_inbound_id,
    notice_item, trace_key, trace_record, unanswered_key,
};

/// Why a value read from Redis breaks the contract: operator-readable,
/// never containing a secret (for an outbound item: the dead-letter reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// A value from Redis as an error message may show it: at most 64
/// characters, escaped (no control character reaches a log line).
fn shown(s: &str) -> String {
    s.chars().take(64).collect::<String>().escape_default().to_string()
}

/// Contract major version.
pub const VERSION: i64 = 1;

/// Questions for AskTable (LPUSH; the server pops from the right).
pub const INBOUND: &str = "at:channel:inbound";
/// Answers from AskTable.
pub const OUTBOUND: &str = "at:channel:outbound:feishu";
/// HASH field = channel_id, value = channel config JSON.
pub const CONFIG: &str = "at:channel:config:feishu";
/// Pub/Sub channel announcing config changes (payload: channel_id or `*`).
pub const CONFIG_CHANGED: &str = "at:channel:config:feishu:changed";

/// The dedup marker of one inbound message.
pub fn dedup_key(app_id: &str, message_id: &str) -> String {
    format!("at:channel:dedup:feishu:{app_id}:{message_id}")
}

/// A text message's second dedup key: Feishu has pushed the same message
/// again with a new `message_id` (shared/feishu-protocol.md §12), so a
/// fingerprint of who wrote what where and when is remembered too.
pub fn fingerprint_key(app_id: &str, m: &crate::feishu::event::Message) -> String {
    let place = m.thread_id.as_deref().or(m.root_id.as_deref()).unwrap_or("");
    let sender = m.sender.open_id.as_deref().or(m.sender.user_id.as_deref()).unwrap_or("");
    let print = format!(
        "{sender}\n{}\n{place}\n{}\n{}\n{}",
        m.chat_id, m.create_time, m.msg_type, m.question
    );
    format!("at:channel:dedup:feishu:{app_id}:fp:{}", short_hash(&print))
}

/// One channel's status.
pub fn status_key(channel_id: &str) -> String {
    format!("at:channel:status:feishu:{channel_id}")
}

/// The delivery receipt of an outbound item (`receipt_json`, EX [`RECEIPT_TTL`]).
pub fn receipt_key(item_id: &str) -> String {
    format!("at:channel:receipt:feishu:{item_id}")
}

/// When a channel's last answer was delivered (ms since the epoch; EX
/// [`RECEIPT_TTL`] × 7), for `check` and `status`.
pub fn last_answer_key(channel_id: &str) -> String {
    format!("at:channel:answered:feishu:{channel_id}")
}

/// How long a delivery receipt is kept.
pub const RECEIPT_TTL: u64 = 86_400;

/// A key `check` and `status` write (10 s) to prove Redis takes writes.
pub fn probe_key(instance_id: &str) -> String {
    format!("at:channel:feishu:probe:{instance_id}")
}

/// One gateway instance's heartbeat.
pub fn heartbeat_key(instance_id: &str) -> String {
    format!("at:channel:gateway:feishu:{instance_id}")
}

/// Items being handled by one instance (moved there by BLMOVE).
pub fn processing_key(instance_id: &str) -> String {
    format!("{OUTBOUND}:processing:{instance_id}")
}

/// The prefix of every instance's processing list (for recovery scans).
pub fn processing_prefix() -> String {
    format!("{OUTBOUND}:processing:")
}

/// Outbound items that could not be delivered, newest first.
pub const DEAD: &str = "at:channel:outbound:feishu:dead";
/// Most dead letters kept.
pub const DEAD_MAX: i64 = 10_000;

/// The Feishu message that streams the answer to `in_reply_to`.
pub fn reply_key(in_reply_to: &str) -> String {
    format!("at:channel:reply:feishu:{in_reply_to}")
}

/// The typing reaction on a user's message.
pub fn typing_key(app_id: &str, message_id: &str) -> String {
    format!("at:channel:typing:feishu:{app_id}:{message_id}")
}

/// Seconds reply and typing keys live.
pub const REPLY_TTL: u64 = 86_400;

/// The reply key's value while the first (progress) message is being created.
pub const REPLY_PENDING: &str = "pending";
/// The reply key's value while a final answer creates the reply itself.
pub const REPLY_FINAL_CLAIM: &str = "final-claim";
/// Prefix of the reply key's value once the final answer was delivered
/// (followed by the Feishu message id of its first part).
pub const REPLY_FINAL: &str = "final:";
/// Seconds a creation claim (`pending`, `final-claim`) lasts if its holder dies.
pub const REPLY_CLAIM_TTL: u64 = 60;
/// Seconds a progress card's claim is kept after creating the card failed,
/// so that a final answer can still find the card by its uuid.
pub const REPLY_FAILED_CLAIM_TTL: u64 = 3;

/// The reply key's value once the final answer was delivered.
pub fn reply_final_value(message_id: &str) -> String {
    format!("{REPLY_FINAL}{message_id}")
}

/// The typing key's value once the question was answered (a reaction added
/// later is removed at once).
pub const TYPING_DONE: &str = "done";

/// Pattern matching every status key.
pub const STATUS_PATTERN: &str = "at:channel:status:feishu:*";
/// Pattern matching every heartbeat key.
pub const HEARTBEAT_PATTERN: &str = "at:channel:gateway:feishu:*";

/// Seconds a heartbeat key lives.
pub const HEARTBEAT_TTL: u64 = 30;

/// Dedup + push in one step, for one or more messages in order.
/// KEYS: one dedup key per message, then the inbound list.
/// ARGV: the dedup TTL, then one item per message.
/// Returns per message 1 when pushed, 0 when it was seen before.
pub const INBOUND_SCRIPT: &str = include_str!("inbound.lua");

/// LPUSH + LTRIM of a dead letter and LREM of its item (`dead_letter.lua`).
pub const DEAD_LETTER_SCRIPT: &str = include_str!("dead_letter.lua");

/// Moves a dead letter's item back to the outbound list (`requeue_dead.lua`).
pub const REQUEUE_DEAD_SCRIPT: &str = include_str!("requeue_dead.lua");

/// Several LLENs in one reply (`lengths.lua`).
pub const LENGTHS_SCRIPT: &str = include_str!("lengths.lua");

/// Checks the gateway's needs of Redis as its user (`probe.lua`).
pub const PROBE_SCRIPT: &str = include_str!("probe.lua");

/// Marks a question answered. KEYS: typing key. ARGV: TTL, [`TYPING_DONE`].
/// Returns the reaction id stored there before (to delete it), if any.
pub const TYPING_DONE_SCRIPT: &str = include_str!("typing_done.lua");

/// Compare-and-set. KEYS: key. ARGV: expected, new value ('' = delete), TTL.
pub const REPLACE_IF_SCRIPT: &str = include_str!("replace_if.lua");

/// "Connected wins" status write. KEYS: status key. ARGV: json, TTL,
/// '1' when this instance is connected, instance id. Returns 1 when written.
pub const STATUS_SCRIPT: &str = include_str!("status.lua");

/// Deletes a status key only if this instance wrote it. KEYS: status key. ARGV: instance id.
pub const STATUS_CLEAR_SCRIPT: &str = include_str!("status_clear.lua");
