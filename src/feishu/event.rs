//! Turns the JSON payload of an event frame into a decision: a question to
//! store, a non-text message, or a reason to ignore it.
//!
//! Handles `im.message.receive_v1` (schema 2.0): the optional `{"encrypt": …}`
//! envelope, the Verification Token check, sender and group filters, message
//! age, `text` and `post` content with mentions. No I/O: the clock and the
//! bot's identity are parameters.

use serde::Deserialize;
use serde_json::Value;
use std::fmt;

use super::{chat_event, crypto};
use crate::channel::GroupPolicy;

/// What the parser needs to know besides the payload.
pub struct Context<'a> {
    /// The bot's own open_id (from `/bot/v3/info`), when known.
    pub bot_open_id: Option<&'a str>,
    pub group_policy: GroupPolicy,
    /// Messages older than this many ms are stale (0 = never).
    pub max_age_ms: u64,
    pub now_ms: u64,
    pub encrypt_key: &'a str,
    pub verification_token: &'a str,
}

/// The sender of a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sender {
    pub open_id: Option<String>,
    pub union_id: Option<String>,
    pub user_id: Option<String>,
    pub tenant_key: Option<String>,
    pub sender_type: String,
}

/// A user mentioned in a message (never the bot itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    pub name: String,
    pub open_id: Option<String>,
}

/// A text or post message that should reach AskTable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub event_id: String,
    pub sender: Sender,
    pub chat_id: String,
    pub chat_type: String,
    pub message_id: String,
    pub root_id: Option<String>,
    pub parent_id: Option<String>,
    pub thread_id: Option<String>,
    pub create_time: u64,
    pub msg_type: String,
    pub question: String,
    pub mentions: Vec<Mention>,
}

/// Longest Feishu id accepted (message, chat, reaction, card ids).
pub const MAX_FEISHU_ID: usize = 128;

/// Whether `id` has the shape of a Feishu id (`om_…`, `oc_…`, a reaction
/// id): 1 to [`MAX_FEISHU_ID`] ASCII letters, digits, `_` or `-`, so it is
/// safe to put into a REST path. Every id that goes into a URL is checked.
pub fn is_feishu_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_FEISHU_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A message the gateway does not forward but may answer itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonText {
    pub event_id: String,
    pub message_id: String,
    pub chat_id: String,
    pub msg_type: String,
}

pub use super::chat_event::ChatEntered;

/// Why an event is acknowledged without being stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not an `im.message.receive_v1` event.
    OtherEvent,
    /// Sent by an app or bot.
    NotFromUser,
    /// A group message without an @-mention of the bot (policy `mention`).
    NotMentioned,
    /// Older than `MAX_MESSAGE_AGE`.
    Stale,
    /// Nothing left after removing the bot mention.
    Empty,
    /// The header token differs from the configured Verification Token.
    TokenMismatch,
}

impl Skip {
    /// A short, stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::OtherEvent => "other_event",
            Skip::NotFromUser => "not_from_user",
            Skip::NotMentioned => "not_mentioned",
            Skip::Stale => "stale",
            Skip::Empty => "empty",
            Skip::TokenMismatch => "token_mismatch",
        }
    }
}

/// The parser's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Message(Box<Message>),
    NonText(NonText),
    Entered(ChatEntered),
    /// Deliberately not stored; `message_id` when the event had one.
    Skipped {
        event_id: String,
        message_id: String,
        reason: Skip,
    },
}

/// A payload that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    /// Not JSON, or a field has the wrong shape.
    Malformed { event_id: Option<String>, detail: String },
    /// An `encrypt` envelope arrived but the channel has no Encrypt Key.
    NoEncryptKey,
    /// Decryption failed (wrong Encrypt Key or corrupt data).
    Decrypt(String),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Malformed { event_id: Some(id), detail } => {
                write!(f, "malformed event {id}: {detail}")
            }
            EventError::Malformed { event_id: None, detail } => {
                write!(f, "malformed event: {detail}")
            }
            EventError::NoEncryptKey => write!(
                f,
                "event is encrypted but the channel has no encrypt_key; set it to the Encrypt Key of the app's event settings"
            ),
            EventError::Decrypt(e) => write!(f, "cannot decrypt event (wrong encrypt_key?): {e}"),
        }
    }
}

impl std::error::Error for EventError {}

#[derive(Deserialize)]
struct Envelope {
    /// `{"encrypt": "<base64>"}` when the app has an Encrypt Key.
    encrypt: Option<Value>,
    schema: Option<String>,
    header: Option<Header>,
    /// Kept as text and parsed once into its own type: no JSON tree.
    event: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
struct ReceiveEvent {
    sender: RawSender,
    message: RawMessage,
}

#[derive(Deserialize, Default)]
struct UserId {
    open_id: Option<String>,
    union_id: Option<String>,
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct RawSender {
    #[serde(default)]
    sender_id: Option<UserId>,
    #[serde(default)]
    sender_type: String,
    tenant_key: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    message_id: String,
    root_id: Option<String>,
    parent_id: Option<String>,
    thread_id: Option<String>,
    create_time: String,
    chat_id: String,
    chat_type: String,
    message_type: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    mentions: Vec<RawMention>,
}

#[derive(Deserialize)]
struct RawMention {
    key: String,
    #[serde(default)]
    id: Option<UserId>,
    #[serde(default)]
    name: String,
    mentioned_type: Option<String>,
}

/// Parses one complete event payload.
pub fn parse(payload: &[u8], ctx: &Context) -> Result<Outcome, EventError> {
    let malformed = |event_id: Option<&str>, detail: String| EventError::Malformed {
        event_id: event_id.filter(|s| !s.is_empty()).map(str::to_owned),
        detail,
    };
    // Straight into the envelope: no intermediate tree of the whole payload.
    let shape = |what: &str, e: serde_json::Error| {
        if e.is_syntax() || e.is_eof() { format!("{what}not JSON: {e}") } else { e.to_string() }
    };
    let env: Envelope =
        serde_json::from_slice(payload).map_err(|e| malformed(None, shape("", e)))?;
    let env = match &env.encrypt {
        Some(Value::String(cipher)) => {
            if ctx.encrypt_key.is_empty() {
                return Err(EventError::NoEncryptKey);
            }
            let plain = crypto::decrypt(ctx.encrypt_key, cipher).map_err(EventError::Decrypt)?;
            serde_json::from_slice(&plain)
                .map_err(|e| malformed(None, shape("decrypted event is ", e)))?
        }
        _ => env,
    };
    let (Some("2.0"), Some(header)) = (env.schema.as_deref(), env.header) else {
        return Ok(Outcome::Skipped {
            event_id: String::new(),
            message_id: String::new(),
            reason: Skip::OtherEvent,
        });
    };
    let event_id = header.event_id;
    let skip = |reason| {
        Ok(Outcome::Skipped { event_id: event_id.clone(), message_id: String::new(), reason })
    };
    if !ctx.verification_token.is_empty()
        && !header.token.is_empty()
        && header.token != ctx.verification_token
    {
        return skip(Skip::TokenMismatch);
    }
    if header.event_type != "im.message.receive_v1" {
        let event: Option<Value> =
            env.event.as_ref().and_then(|r| serde_json::from_str(r.get()).ok());
        return match chat_event::entered(&header.event_type, event.as_ref(), &event_id) {
            Some(Some(c)) if is_feishu_id(&c.chat_id) => Ok(Outcome::Entered(c)),
            _ => skip(Skip::OtherEvent),
        };
    }
    let ev: ReceiveEvent = serde_json::from_str(env.event.as_ref().map_or("null", |r| r.get()))
        .map_err(|e| malformed(Some(&event_id), e.to_string()))?;
    let msg = ev.message;
    let skip = |reason| {
        Ok(Outcome::Skipped {
            event_id: event_id.clone(),
            message_id: msg.message_id.clone(),
            reason,
        })
    };
    if ev.sender.sender_type != "user" {
        return skip(Skip::NotFromUser);
    }
    let create_time: u64 = msg.create_time.parse().map_err(|_| {
        malformed(Some(&event_id), format!("create_time {:?} is not a number", msg.create_time))
    })?;
    if ctx.max_age_ms > 0 && ctx.now_ms.saturating_sub(create_time) > ctx.max_age_ms {
        return skip(Skip::Stale);
    }
    let is_bot = |m: &RawMention| match ctx.bot_open_id {
        Some(bot) => m.id.as_ref().and_then(|i| i.open_id.as_deref()) == Some(bot),
        None => m.mentioned_type.as_deref() == Some("bot"),
    };
    let bot_mentioned = match ctx.bot_open_id {
        Some(_) => msg.mentions.iter().any(is_bot),
        // Bot identity unknown: Feishu pushes group messages without an
        // @-mention only to apps with the group_msg scope, so any mention counts.
        None => msg.mentions.iter().any(is_bot) || !msg.mentions.is_empty(),
    };
    let in_group = msg.chat_type != "p2p";
    if in_group && ctx.group_policy == GroupPolicy::Mention && !bot_mentioned {
        return skip(Skip::NotMentioned);
    }
    let content = || -> Result<Value, EventError> {
        serde_json::from_str(&msg.content)
            .map_err(|e| malformed(Some(&event_id), format!("message content is not JSON: {e}")))
    };
    // Placeholder key → replacement text ("" for the bot itself).
    let mut replacements: Vec<(&str, String)> = msg
        .mentions
        .iter()
        .map(|m| (m.key.as_str(), if is_bot(m) { String::new() } else { format!("@{}", m.name) }))
        .collect();
    replacements.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let question = match msg.message_type.as_str() {
        "text" => {
            let text =
                content()?.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
            replace_mentions(&text, &replacements)
        }
        "post" => flatten_post(&content()?, &replacements),
        _ => {
            return Ok(Outcome::NonText(NonText {
                event_id,
                message_id: msg.message_id,
                chat_id: msg.chat_id,
                msg_type: msg.message_type,
            }));
        }
    };
    let question = tidy(&question);
    if question.is_empty() {
        return skip(Skip::Empty);
    }
    let mentions = msg
        .mentions
        .iter()
        .filter(|m| !is_bot(m))
        .map(|m| Mention {
            name: m.name.clone(),
            open_id: m.id.as_ref().and_then(|i| i.open_id.clone()),
        })
        .collect();
    let id = ev.sender.sender_id.unwrap_or_default();
    Ok(Outcome::Message(Box::new(Message {
        event_id,
        sender: Sender {
            open_id: id.open_id,
            union_id: id.union_id,
            user_id: id.user_id,
            tenant_key: ev.sender.tenant_key,
            sender_type: ev.sender.sender_type,
        },
        chat_id: msg.chat_id,
        chat_type: msg.chat_type,
        message_id: msg.message_id,
        root_id: msg.root_id.filter(|s| !s.is_empty()),
        parent_id: msg.parent_id.filter(|s| !s.is_empty()),
        thread_id: msg.thread_id.filter(|s| !s.is_empty()),
        create_time,
        msg_type: msg.message_type,
        question,
        mentions,
    })))
}

fn replace_mentions(text: &str, replacements: &[(&str, String)]) -> String {
    let mut out = text.replace("@_all", "@all");
    for (key, with) in replacements {
        if !key.is_empty() {
            out = out.replace(key, with);
        }
    }
    out
}

/// Trims every line, collapses runs of spaces left by removed mentions and
/// drops leading/trailing blank lines.
fn tidy(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" "))
        .collect();
    lines.join("\n").trim().to_owned()
}

/// Flattens a received `post` to text: one line per paragraph, text, links
/// and mentions kept, images and media dropped.
fn flatten_post(content: &Value, replacements: &[(&str, String)]) -> String {
    // Received posts have no locale wrapper, but accept one anyway.
    let post = match content.get("content") {
        Some(_) => content,
        None => content
            .as_object()
            .and_then(|o| o.values().find(|v| v.get("content").is_some()))
            .unwrap_or(content),
    };
    let mut lines = Vec::new();
    if let Some(title) = post.get("title").and_then(Value::as_str).filter(|t| !t.trim().is_empty())
    {
        lines.push(title.to_owned());
    }
    for paragraph in post.get("content").and_then(Value::as_array).into_iter().flatten() {
        let mut line = String::new();
        for el in paragraph.as_array().into_iter().flatten() {
            let text = el.get("text").and_then(Value::as_str).unwrap_or_default();
            match el.get("tag").and_then(Value::as_str).unwrap_or_default() {
                "text" | "md" => line.push_str(text),
                "code_block" => {
                    line.push_str("\n```\n");
                    line.push_str(text);
                    line.push_str("\n```\n");
                }
                "a" => {
                    let href = el.get("href").and_then(Value::as_str).unwrap_or_default();
                    match (text.is_empty(), href.is_empty() || href == text) {
                        (true, _) => line.push_str(href),
                        (false, true) => line.push_str(text),
                        (false, false) => line.push_str(&format!("{text} ({href})")),
                    }
                }
                "at" => {
                    let key = el.get("user_id").and_then(Value::as_str).unwrap_or_default();
                    match replacements.iter().find(|(k, _)| *k == key) {
                        Some((_, with)) => line.push_str(with),
                        None if key == "all" || key == "@_all" => line.push_str("@all"),
                        None => {
                            let name = el.get("user_name").and_then(Value::as_str).unwrap_or(key);
                            line.push('@');
                            line.push_str(name);
                        }
                    }
                }
                _ => {} // img, media, emotion, hr: dropped
            }
        }
        lines.push(line);
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BOT: &str = "ou_bot";
    const NOW: u64 = 1_764_000_000_000;

    fn ctx() -> Context<'static> {
        Context {
            bot_open_id: Some(BOT),
            group_policy: GroupPolicy::Mention,
            max_age_ms: 7_200_000,
            now_ms: NOW,
            encrypt_key: "",
            verification_token: "",
        }
    }

    fn event(chat_type: &str, msg_type: &str, content: Value, mentions: Value) -> Value {
        json!({
            "schema": "2.0",
            "header": {"event_id": "ev1", "event_type": "im.message.receive_v1", "create_time": "1",
                       "token": "tok", "app_id": "cli_x", "tenant_key": "t"},
            "event": {
                "sender": {"sender_id": {"open_id": "ou_user", "union_id": "on_u", "user_id": null},
                           "sender_type": "user", "tenant_key": "tk"},
                "message": {"message_id": "om_1", "root_id": "", "parent_id": "om_0", "create_time": (NOW - 1000).to_string(),
                            "chat_id": "oc_1", "chat_type": chat_type, "message_type": msg_type,
                            "content": content.to_string(), "mentions": mentions}
            }
        })
    }

    fn mention(key: &str, open_id: &str, name: &str) -> Value {
        json!({"key": key, "id": {"open_id": open_id, "union_id": "on", "user_id": null}, "name": name, "tenant_key": "t"})
    }

    fn parse_v(v: &Value, ctx: &Context) -> Outcome {
        parse(v.to_string().as_bytes(), ctx).unwrap()
    }

    #[test]
    fn p2p_text_becomes_a_message() {
        let v = event("p2p", "text", json!({"text": "  上个月的销售额？ "}), json!([]));
        let Outcome::Message(m) = parse_v(&v, &ctx()) else { panic!() };
        assert_eq!(m.question, "上个月的销售额？");
        assert_eq!(
            (m.event_id.as_str(), m.message_id.as_str(), m.chat_id.as_str()),
            ("ev1", "om_1", "oc_1")
        );
        assert_eq!(m.sender.open_id.as_deref(), Some("ou_user"));
        assert_eq!(m.sender.user_id, None);
        assert_eq!(m.root_id, None);
        assert_eq!(m.parent_id.as_deref(), Some("om_0"));
        assert_eq!(m.create_time, NOW - 1000);
    }

    #[test]
    fn group_mentions_are_resolved() {
        let mentions = json!([
            mention("@_user_1", BOT, "AskBot"),
            mention("@_user_2", "ou_a", "Alice"),
            mention("@_user_12", "ou_b", "Bob")
        ]);
        let v = event(
            "group",
            "text",
            json!({"text": "@_user_1 compare @_user_2 and @_user_12"}),
            mentions,
        );
        let Outcome::Message(m) = parse_v(&v, &ctx()) else { panic!() };
        assert_eq!(m.question, "compare @Alice and @Bob");
        assert_eq!(
            m.mentions,
            vec![
                Mention { name: "Alice".into(), open_id: Some("ou_a".into()) },
                Mention { name: "Bob".into(), open_id: Some("ou_b".into()) },
            ]
        );
    }

    #[test]
    fn group_without_bot_mention_follows_policy() {
        let v = event(
            "group",
            "text",
            json!({"text": "@_user_1 hi"}),
            json!([mention("@_user_1", "ou_a", "A")]),
        );
        assert_eq!(
            parse_v(&v, &ctx()),
            Outcome::Skipped {
                event_id: "ev1".into(),
                message_id: "om_1".into(),
                reason: Skip::NotMentioned
            }
        );
        let all = Context { group_policy: GroupPolicy::All, ..ctx() };
        let Outcome::Message(m) = parse_v(&v, &all) else { panic!() };
        assert_eq!(m.question, "@A hi");
    }

    #[test]
    fn filters() {
        let mut v = event("p2p", "text", json!({"text": "hi"}), json!([]));
        v["event"]["sender"]["sender_type"] = json!("app");
        assert!(matches!(parse_v(&v, &ctx()), Outcome::Skipped { reason: Skip::NotFromUser, .. }));
        let mut v = event("p2p", "text", json!({"text": "hi"}), json!([]));
        v["event"]["message"]["create_time"] = json!((NOW - 7_200_001).to_string());
        assert!(matches!(parse_v(&v, &ctx()), Outcome::Skipped { reason: Skip::Stale, .. }));
        let no_age = Context { max_age_ms: 0, ..ctx() };
        assert!(matches!(parse_v(&v, &no_age), Outcome::Message(_)));
        let v = event(
            "group",
            "text",
            json!({"text": "@_user_1 "}),
            json!([mention("@_user_1", BOT, "B")]),
        );
        assert!(matches!(parse_v(&v, &ctx()), Outcome::Skipped { reason: Skip::Empty, .. }));
        let mut v = event("p2p", "text", json!({"text": "hi"}), json!([]));
        v["header"]["event_type"] = json!("im.chat.member.bot.deleted_v1");
        assert!(matches!(parse_v(&v, &ctx()), Outcome::Skipped { reason: Skip::OtherEvent, .. }));
        // The two events a welcome answers: the chat they name.
        v["header"]["event_type"] = json!("im.chat.member.bot.added_v1");
        v["event"] = json!({"chat_id": "oc_g1", "name": "Sales"});
        let Outcome::Entered(c) = parse_v(&v, &ctx()) else { panic!() };
        assert_eq!((c.chat_id.as_str(), c.p2p), ("oc_g1", false));
        v["header"]["event_type"] = json!("im.chat.access_event.bot_p2p_chat_entered_v1");
        v["event"] = json!({"chat_id": "oc_p1", "last_message_id": ""});
        let Outcome::Entered(c) = parse_v(&v, &ctx()) else { panic!() };
        assert_eq!((c.chat_id.as_str(), c.p2p), ("oc_p1", true));
        // Without a usable chat id there is nobody to welcome.
        v["event"] = json!({"chat_id": "oc/../x"});
        assert!(matches!(parse_v(&v, &ctx()), Outcome::Skipped { reason: Skip::OtherEvent, .. }));
        let v = event("p2p", "text", json!({"text": "hi"}), json!([]));
        let vt = Context { verification_token: "other", ..ctx() };
        assert!(matches!(parse_v(&v, &vt), Outcome::Skipped { reason: Skip::TokenMismatch, .. }));
        let vt = Context { verification_token: "tok", ..ctx() };
        assert!(matches!(parse_v(&v, &vt), Outcome::Message(_)));
    }

    #[test]
    fn non_text_is_reported() {
        let v = event("p2p", "image", json!({"image_key": "img_1"}), json!([]));
        assert_eq!(
            parse_v(&v, &ctx()),
            Outcome::NonText(NonText {
                event_id: "ev1".into(),
                message_id: "om_1".into(),
                chat_id: "oc_1".into(),
                msg_type: "image".into()
            })
        );
    }

    #[test]
    fn post_is_flattened() {
        let content = json!({"title": "Q3", "content": [
            [{"tag": "at", "user_id": "@_user_1", "user_name": "AskBot"}, {"tag": "text", "text": " sales by "},
             {"tag": "text", "text": "region", "style": ["bold"]}],
            [{"tag": "img", "image_key": "img_1"}],
            [{"tag": "a", "text": "report", "href": "https://x/r"}, {"tag": "text", "text": " cc "},
             {"tag": "at", "user_id": "@_user_2", "user_name": "Alice"}]
        ]});
        let mentions =
            json!([mention("@_user_1", BOT, "AskBot"), mention("@_user_2", "ou_a", "Alice")]);
        let v = event("group", "post", content, mentions);
        let Outcome::Message(m) = parse_v(&v, &ctx()) else { panic!() };
        assert_eq!(m.question, "Q3\nsales by region\n\nreport (https://x/r) cc @Alice");
        assert_eq!(m.msg_type, "post");
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        assert!(matches!(
            parse(b"{not json", &ctx()),
            Err(EventError::Malformed { event_id: None, .. })
        ));
        let mut v = event("p2p", "text", json!({"text": "hi"}), json!([]));
        v["event"]["message"]["create_time"] = json!("yesterday");
        assert!(matches!(parse_v_err(&v), EventError::Malformed { event_id: Some(_), .. }));
        let v = event("p2p", "text", json!("x"), json!([]));
        let mut v2 = v.clone();
        v2["event"]["message"]["content"] = json!("{broken");
        assert!(matches!(parse_v_err(&v2), EventError::Malformed { .. }));
        let mut v3 = v;
        v3["event"]["message"] = json!(5);
        assert!(matches!(parse_v_err(&v3), EventError::Malformed { .. }));
        assert!(matches!(parse(b"[1,2]", &ctx()), Err(EventError::Malformed { .. })));
        assert!(matches!(
            parse(b"{}", &ctx()),
            Ok(Outcome::Skipped { reason: Skip::OtherEvent, .. })
        ));
    }

    fn parse_v_err(v: &Value) -> EventError {
        parse(v.to_string().as_bytes(), &ctx()).unwrap_err()
    }

    #[test]
    fn encrypted_envelopes() {
        let v = event("p2p", "text", json!({"text": "secret question"}), json!([]));
        let cipher = crypto::encrypt_for_tests("k3y", &v.to_string());
        let wrapped = json!({ "encrypt": cipher }).to_string();
        assert_eq!(parse(wrapped.as_bytes(), &ctx()), Err(EventError::NoEncryptKey));
        let keyed = Context { encrypt_key: "k3y", ..ctx() };
        let Outcome::Message(m) = parse(wrapped.as_bytes(), &keyed).unwrap() else { panic!() };
        assert_eq!(m.question, "secret question");
        let wrong = Context { encrypt_key: "nope", ..ctx() };
        assert!(matches!(parse(wrapped.as_bytes(), &wrong), Err(EventError::Decrypt(_))));
    }
}
