//! Streaming answers into CardKit cards (PROTOCOL.md §3, "Streaming into
//! CardKit cards"): the stream hash replicas share per reply, the key that
//! remembers an app without CardKit, and the welcome marker per chat.

/// `HASH at:channel:stream:feishu:<in_reply_to>` (EX [`super::REPLY_TTL`]):
/// the CardKit cards an answer streams into.
pub fn stream_key(in_reply_to: &str) -> String {
    format!("at:channel:stream:feishu:{in_reply_to}")
}

/// Field: the index of the card being streamed (0 first).
pub const STREAM_PART: &str = "part";
/// Field: the last sequence used on the reply's cards.
pub const STREAM_SEQ: &str = "seq";
/// Field: set once a final answer started completing the stream.
pub const STREAM_CLOSING: &str = "closing";
/// Field: when streaming of the current card was last turned on (ms).
pub const STREAM_OPENED: &str = "opened";
/// Field: fewer tables per card than the render's limit, after Feishu
/// refused a card for its tables (`11310`).
pub const STREAM_TABLES: &str = "tables";

/// Field: the card entity of part `i`.
pub fn stream_card_field(i: usize) -> String {
    format!("card:{i}")
}

/// Field: the message showing part `i`.
pub fn stream_msg_field(i: usize) -> String {
    format!("msg:{i}")
}

/// Field: the hash of part `i`'s Markdown when it was completed.
pub fn stream_hash_field(i: usize) -> String {
    format!("hash:{i}")
}

/// The sequence script (`stream_seq.lua`).
pub const STREAM_SEQ_SCRIPT: &str = include_str!("stream_seq.lua");

/// `STRING at:channel:cardkit:feishu:<app_id>`: CardKit is not available
/// to this app (why, for `check`); progress then updates message cards.
pub fn cardkit_off_key(app_id: &str) -> String {
    format!("at:channel:cardkit:feishu:{app_id}")
}

/// How long an app is remembered as without CardKit (seconds).
pub const CARDKIT_OFF_TTL: u64 = 3_600;

/// `STRING at:channel:welcome:feishu:<app_id>:<chat_id>`: the welcome
/// message was sent to this chat (once per chat, across replicas).
pub fn welcome_key(app_id: &str, chat_id: &str) -> String {
    format!("at:channel:welcome:feishu:{app_id}:{chat_id}")
}

/// How long a chat is remembered as welcomed (seconds; a year).
pub const WELCOME_TTL: u64 = 365 * 86_400;
