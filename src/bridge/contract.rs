//! The Redis contract v1 with AskTable Server, in one place: every key name
//! and every JSON shape the gateway reads or writes. `docs/PROTOCOL.md`
//! describes the same contract for people; keep the two in step.
//!
//! Adapting the gateway to another server format is an edit of this file.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::channel::{ChannelConfig, Domain, GroupPolicy, Routing, Secret};
use crate::feishu::event::Message;

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

/// One channel's status.
pub fn status_key(channel_id: &str) -> String {
    format!("at:channel:status:feishu:{channel_id}")
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

/// A channel config entry as `channel put` writes it.
pub struct NewChannel<'a> {
    pub channel_id: &'a str,
    pub app_id: &'a str,
    pub app_secret: &'a str,
    pub encrypt_key: &'a str,
    pub verification_token: &'a str,
    pub agent_id: Option<&'a str>,
    pub project_id: Option<&'a str>,
    pub domain: &'a str,
    pub group_policy: &'a str,
    pub enabled: bool,
}

pub fn channel_config_json(c: &NewChannel, now_ms: u64) -> String {
    json!({
        "schema": "at.channel.config", "v": VERSION, "ts": now_ms,
        "channel_id": c.channel_id, "agent_id": c.agent_id, "project_id": c.project_id,
        "enabled": c.enabled, "app_id": c.app_id, "app_secret": c.app_secret,
        "encrypt_key": c.encrypt_key, "verification_token": c.verification_token,
        "domain": c.domain, "group_policy": c.group_policy,
    })
    .to_string()
}

/// Seconds a heartbeat key lives.
pub const HEARTBEAT_TTL: u64 = 30;

/// The inbound `id`: stable across Feishu redeliveries.
pub fn inbound_id(app_id: &str, message_id: &str) -> String {
    format!("feishu:{app_id}:{message_id}")
}

#[derive(Deserialize)]
struct RawConfig {
    schema: Option<String>,
    v: Option<i64>,
    channel_id: Option<String>,
    agent_id: Option<Value>,
    project_id: Option<Value>,
    enabled: Option<bool>,
    app_id: Option<String>,
    app_secret: Option<String>,
    encrypt_key: Option<String>,
    verification_token: Option<String>,
    domain: Option<String>,
    group_policy: Option<String>,
}

/// An id that the server may send as a string or a number.
fn id_string(v: Option<Value>, field: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

/// Parses one field of the config hash. Errors are operator-readable and
/// never contain a secret.
pub fn parse_channel_config(field: &str, raw: &[u8]) -> Result<ChannelConfig, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "config is not UTF-8".to_owned())?;
    let raw: RawConfig =
        serde_json::from_str(text).map_err(|e| format!("config is not valid JSON: {e}"))?;
    if let Some(schema) = raw.schema.as_deref().filter(|s| *s != "at.channel.config") {
        return Err(format!("unknown schema {schema:?} (expected \"at.channel.config\")"));
    }
    if let Some(v) = raw.v.filter(|v| *v != VERSION) {
        return Err(format!(
            "unsupported contract version v={v} (this gateway speaks v={VERSION})"
        ));
    }
    let channel_id = raw.channel_id.unwrap_or_else(|| field.to_owned());
    if channel_id != field {
        return Err(format!("channel_id {channel_id:?} differs from its hash field {field:?}"));
    }
    let required = |v: Option<String>, name: &str| match v.map(|s| s.trim().to_owned()) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("{name} is missing or empty")),
    };
    let app_id = required(raw.app_id, "app_id")?;
    let app_secret = required(raw.app_secret, "app_secret")?;
    let domain = match raw.domain.as_deref().map(str::trim) {
        None | Some("") | Some("feishu") => Domain::Feishu,
        Some("lark") => Domain::Lark,
        Some(url) if url.starts_with("https://") && url.len() > "https://".len() => {
            Domain::Custom(url.trim_end_matches('/').to_owned())
        }
        Some(other) => {
            return Err(format!(
                "domain {other:?} is not \"feishu\", \"lark\" or an https:// base URL"
            ));
        }
    };
    let group_policy = match raw.group_policy.as_deref() {
        None | Some("") | Some("mention") => GroupPolicy::Mention,
        Some("all") => GroupPolicy::All,
        Some(other) => return Err(format!("group_policy {other:?} is not \"mention\" or \"all\"")),
    };
    Ok(ChannelConfig {
        channel_id,
        enabled: raw.enabled.unwrap_or(true),
        app_id,
        app_secret: Secret::new(app_secret),
        encrypt_key: Secret::new(raw.encrypt_key.unwrap_or_default()),
        verification_token: Secret::new(raw.verification_token.unwrap_or_default()),
        domain,
        routing: Routing {
            agent_id: id_string(raw.agent_id, "agent_id")?,
            project_id: id_string(raw.project_id, "project_id")?,
            group_policy,
        },
    })
}

/// The inbound item for one stored message.
pub fn inbound_item(
    channel_id: &str,
    app_id: &str,
    routing: &Routing,
    msg: &Message,
    now_ms: u64,
) -> String {
    json!({
        "schema": "at.channel.inbound", "v": VERSION,
        "id": inbound_id(app_id, &msg.message_id),
        "ts": now_ms,
        "channel_type": "feishu",
        "channel_id": channel_id,
        "agent_id": routing.agent_id,
        "project_id": routing.project_id,
        "session_key": format!("feishu:{channel_id}:{}", msg.sender.open_id.as_deref().unwrap_or("")),
        "sender": {
            "open_id": msg.sender.open_id, "union_id": msg.sender.union_id, "user_id": msg.sender.user_id,
            "tenant_key": msg.sender.tenant_key, "sender_type": msg.sender.sender_type,
        },
        "chat": { "chat_id": msg.chat_id, "chat_type": msg.chat_type },
        "message": {
            "message_id": msg.message_id, "root_id": msg.root_id, "parent_id": msg.parent_id,
            "thread_id": msg.thread_id, "create_time": msg.create_time, "msg_type": msg.msg_type,
        },
        "question": msg.question,
        "mentions": msg.mentions.iter().map(|m| json!({"name": m.name, "open_id": m.open_id})).collect::<Vec<_>>(),
        "event_id": msg.event_id,
    })
    .to_string()
}

/// A channel's reported state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Connected,
    Disconnected,
    Error,
    Disabled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Disconnected => "disconnected",
            State::Error => "error",
            State::Disabled => "disabled",
        }
    }
}

/// Everything in a status key.
pub struct Status<'a> {
    pub channel_id: &'a str,
    pub app_id: Option<&'a str>,
    pub state: State,
    pub since: u64,
    pub last_event_at: Option<u64>,
    /// `(code, message)`.
    pub last_error: Option<(&'a str, &'a str)>,
    pub instance_id: &'a str,
    pub now_ms: u64,
}

pub fn status_json(s: &Status) -> String {
    json!({
        "schema": "at.channel.status", "v": VERSION, "ts": s.now_ms,
        "channel_id": s.channel_id, "app_id": s.app_id,
        "state": s.state.as_str(), "since": s.since,
        "last_event_at": s.last_event_at,
        "last_error": s.last_error.map(|(code, message)| json!({"code": code, "message": message})),
        "instance_id": s.instance_id, "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string()
}

/// The heartbeat value of this instance.
pub fn heartbeat_json(
    instance_id: &str,
    pid: u32,
    started_at: u64,
    channels: &[&str],
    now_ms: u64,
) -> String {
    json!({
        "schema": "at.channel.gateway", "v": VERSION, "ts": now_ms,
        "instance_id": instance_id, "version": env!("CARGO_PKG_VERSION"),
        "pid": pid, "started_at": started_at, "channels": channels,
    })
    .to_string()
}

/// Dedup + push in one step, for one or more messages in order.
/// KEYS: one dedup key per message, then the inbound list.
/// ARGV: the dedup TTL, then one item per message.
/// Returns per message 1 when pushed, 0 when it was seen before.
pub const INBOUND_SCRIPT: &str = include_str!("inbound.lua");

/// Marks a question answered. KEYS: typing key. ARGV: TTL, [`TYPING_DONE`].
/// Returns the reaction id stored there before (to delete it), if any.
pub const TYPING_DONE_SCRIPT: &str = r"
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
return old
";

/// Compare-and-set. KEYS: key. ARGV: expected, new value ('' = delete), TTL.
pub const REPLACE_IF_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return 1
";

/// "Connected wins" status write. KEYS: status key. ARGV: json, TTL,
/// '1' when this instance is connected, instance id. Returns 1 when written.
pub const STATUS_SCRIPT: &str = r"
local write = ARGV[3] == '1'
if not write then
  local cur = redis.call('GET', KEYS[1])
  if not cur then
    write = true
  else
    local ok, obj = pcall(cjson.decode, cur)
    write = (not ok) or type(obj) ~= 'table' or obj.instance_id == ARGV[4] or obj.state ~= 'connected'
  end
end
if write then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
";

/// Deletes a status key only if this instance wrote it. KEYS: status key. ARGV: instance id.
pub const STATUS_CLEAR_SCRIPT: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if (not ok) or type(obj) ~= 'table' or obj.instance_id == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
  end
end
return 0
";

/// How an outbound item is meant to be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The complete answer.
    Final,
    /// The answer so far; later items update the same card.
    Progress,
}

/// A validated outbound item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub id: String,
    pub channel_id: String,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
    pub chat_id: Option<String>,
    pub reply_in_thread: bool,
    pub kind: Kind,
    /// Markdown to show (for `status: "error"`, the error message or an apology).
    pub text: String,
    pub links: Vec<crate::render::Link>,
    pub is_error: bool,
}

impl Outbound {
    /// The key that orders replies: items with the same lane key are handled
    /// in order by one worker.
    pub fn lane_key(&self) -> &str {
        self.chat_id.as_deref().or(self.message_id.as_deref()).unwrap_or(&self.channel_id)
    }
}

/// The reply shown for `status: "error"` items without a message.
pub const APOLOGY: &str = "抱歉，处理您的问题时出错了，请稍后再试。Sorry, something went wrong while answering; please try again later.";

#[derive(Deserialize)]
struct RawOutbound {
    schema: Option<String>,
    v: Option<i64>,
    id: Option<String>,
    channel_id: Option<String>,
    in_reply_to: Option<String>,
    #[serde(default)]
    target: RawTarget,
    kind: Option<String>,
    status: Option<String>,
    #[serde(default)]
    content: RawContent,
    error: Option<RawError>,
}

#[derive(Deserialize, Default)]
struct RawTarget {
    message_id: Option<String>,
    chat_id: Option<String>,
    #[serde(default)]
    reply_in_thread: bool,
}

#[derive(Deserialize, Default)]
struct RawContent {
    #[serde(default)]
    text: String,
    #[serde(default)]
    attachments: Vec<Value>,
}

#[derive(Deserialize)]
struct RawError {
    message: Option<String>,
}

/// Parses and validates one outbound item; the error is the dead-letter reason.
pub fn parse_outbound(raw: &str) -> Result<Outbound, String> {
    let r: RawOutbound = serde_json::from_str(raw).map_err(|e| format!("invalid JSON: {e}"))?;
    match r.schema.as_deref() {
        Some("at.channel.outbound") => {}
        other => {
            return Err(format!("unknown schema {other:?} (expected \"at.channel.outbound\")"));
        }
    }
    if r.v != Some(VERSION) {
        return Err(format!(
            "unsupported contract version v={:?} (this gateway speaks v={VERSION})",
            r.v
        ));
    }
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let id = nonempty(r.id).ok_or("id is missing")?;
    if id.chars().count() > 64 {
        return Err("id is longer than 64 characters".into());
    }
    let channel_id = nonempty(r.channel_id).ok_or("channel_id is missing")?;
    let (message_id, chat_id) = (nonempty(r.target.message_id), nonempty(r.target.chat_id));
    if message_id.is_none() && chat_id.is_none() {
        return Err("target has neither message_id nor chat_id".into());
    }
    let kind = match r.kind.as_deref() {
        None | Some("final") => Kind::Final,
        Some("progress") => Kind::Progress,
        Some(other) => return Err(format!("unknown kind {other:?}")),
    };
    let in_reply_to = nonempty(r.in_reply_to);
    if kind == Kind::Progress && in_reply_to.is_none() {
        return Err("a progress item needs in_reply_to".into());
    }
    let is_error = match r.status.as_deref() {
        None | Some("ok") => false,
        Some("error") => true,
        Some(other) => return Err(format!("unknown status {other:?}")),
    };
    let text = if is_error {
        r.error.and_then(|e| nonempty(e.message)).unwrap_or_else(|| APOLOGY.to_owned())
    } else {
        r.content.text
    };
    let links: Vec<crate::render::Link> = r
        .content
        .attachments
        .iter()
        .filter_map(|a| {
            let info = a.get("info").unwrap_or(a);
            let s = |k: &str| info.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            let (name, url) = (s("name"), s("url"));
            (!name.is_empty() || !url.is_empty()).then(|| crate::render::Link {
                name: if name.is_empty() { url.clone() } else { name },
                url,
            })
        })
        .collect();
    if !is_error && text.trim().is_empty() && links.is_empty() {
        return Err("content.text is empty".into());
    }
    Ok(Outbound {
        id,
        channel_id,
        in_reply_to,
        message_id,
        chat_id,
        reply_in_thread: r.target.reply_in_thread,
        kind,
        text,
        links,
        is_error,
    })
}

/// 32 hex characters of SHA-256: a short, stable id derived from `s`.
pub fn short_hash(s: &str) -> String {
    openssl::sha::sha256(s.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A dead letter: why, and the raw item as received.
pub fn dead_letter_json(reason: &str, raw: &str, now_ms: u64) -> String {
    json!({ "ts": now_ms, "reason": reason, "item": raw }).to_string()
}

/// The reply the gateway itself queues for a non-text message: an outbound
/// item like the server's, answered by the same workers.
pub fn hint_item(
    channel_id: &str,
    app_id: &str,
    m: &crate::feishu::event::NonText,
    text: &str,
    now_ms: u64,
) -> String {
    let inbound = inbound_id(app_id, &m.message_id);
    let id = short_hash(&inbound);
    json!({
        "schema": "at.channel.outbound", "v": VERSION, "id": format!("hint-{id}"), "ts": now_ms,
        "channel_id": channel_id, "in_reply_to": inbound,
        "target": { "message_id": m.message_id, "chat_id": m.chat_id, "reply_in_thread": false },
        "kind": "final", "status": "ok", "content": { "text": text, "attachments": [] }, "error": null,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feishu::event::{Mention, Sender};

    fn cfg(json: &str) -> Result<ChannelConfig, String> {
        parse_channel_config("ch_1", json.as_bytes())
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = cfg(r#"{"app_id":"cli_a","app_secret":"s"}"#).unwrap();
        assert!(c.enabled);
        assert_eq!(c.channel_id, "ch_1");
        assert_eq!(c.domain, Domain::Feishu);
        assert_eq!(c.routing.group_policy, GroupPolicy::Mention);
        assert!(c.encrypt_key.is_empty());
    }

    #[test]
    fn full_config() {
        let c = cfg(r#"{"schema":"at.channel.config","v":1,"ts":1,"channel_id":"ch_1","agent_id":"ag","project_id":7,
            "enabled":false,"app_id":"cli_a","app_secret":"s","encrypt_key":"e","verification_token":"t",
            "domain":"https://open.example.com/","group_policy":"all","extra":"ignored"}"#)
        .unwrap();
        assert!(!c.enabled);
        assert_eq!(c.domain, Domain::Custom("https://open.example.com".into()));
        assert_eq!(c.routing.project_id.as_deref(), Some("7"));
        assert_eq!(c.routing.group_policy, GroupPolicy::All);
        assert_eq!(
            cfg(r#"{"app_id":"a","app_secret":"s","domain":"lark"}"#).unwrap().domain,
            Domain::Lark
        );
    }

    #[test]
    fn bad_configs_say_what_is_wrong_without_secrets() {
        let cases = [
            (r#"{"app_id":"a""#, "not valid JSON"),
            (r#"{"app_id":"a"}"#, "app_secret is missing"),
            (r#"{"app_id":" ","app_secret":"topsecret"}"#, "app_id is missing"),
            (r#"{"app_id":"a","app_secret":"topsecret","v":2}"#, "v=2"),
            (r#"{"app_id":"a","app_secret":"topsecret","schema":"x"}"#, "unknown schema"),
            (r#"{"app_id":"a","app_secret":"topsecret","channel_id":"ch_2"}"#, "differs"),
            (r#"{"app_id":"a","app_secret":"topsecret","domain":"http://x"}"#, "domain"),
            (r#"{"app_id":"a","app_secret":"topsecret","group_policy":"some"}"#, "group_policy"),
            (r#"{"app_id":"a","app_secret":"topsecret","agent_id":[1]}"#, "agent_id"),
            (r#"{"app_id":5,"app_secret":"topsecret"}"#, "not valid JSON"),
        ];
        for (json, want) in cases {
            let err = cfg(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
            assert!(!err.contains("topsecret"), "{err}");
        }
        assert_eq!(parse_channel_config("c", &[0xff]).unwrap_err(), "config is not UTF-8");
    }

    #[test]
    fn outbound_items_are_validated() {
        let ok = r#"{"schema":"at.channel.outbound","v":1,"id":"o1","ts":1,"channel_id":"ch","in_reply_to":"feishu:a:om",
            "target":{"message_id":"om_1","chat_id":"oc_1","reply_in_thread":true},"kind":"final","status":"ok",
            "content":{"text":"**x**","attachments":[{"type":"link","info":{"name":"f.xlsx","url":"https://f"}}]},"error":null}"#;
        let o = parse_outbound(ok).unwrap();
        assert_eq!(o.id, "o1");
        assert!(o.reply_in_thread && !o.is_error);
        assert_eq!(
            o.links,
            vec![crate::render::Link { name: "f.xlsx".into(), url: "https://f".into() }]
        );
        assert_eq!(o.lane_key(), "oc_1");
        let err = r#"{"schema":"at.channel.outbound","v":1,"id":"o2","channel_id":"ch","target":{"chat_id":"oc"},
            "status":"error","error":{"code":"E1","message":"数据源不可用"}}"#;
        let o = parse_outbound(err).unwrap();
        assert!(o.is_error);
        assert_eq!(o.text, "数据源不可用");
        let err = r#"{"schema":"at.channel.outbound","v":1,"id":"o2","channel_id":"ch","target":{"chat_id":"oc"},"status":"error"}"#;
        assert_eq!(parse_outbound(err).unwrap().text, APOLOGY);
        let cases = [
            ("{", "invalid JSON"),
            (r#"{"schema":"x","v":1}"#, "unknown schema"),
            (r#"{"schema":"at.channel.outbound","v":2}"#, "v=Some(2)"),
            (
                r#"{"schema":"at.channel.outbound","v":1,"channel_id":"c","target":{"chat_id":"oc"}}"#,
                "id is missing",
            ),
            (
                r#"{"schema":"at.channel.outbound","v":1,"id":"i","target":{"chat_id":"oc"}}"#,
                "channel_id is missing",
            ),
            (
                r#"{"schema":"at.channel.outbound","v":1,"id":"i","channel_id":"c","content":{"text":"x"}}"#,
                "neither",
            ),
            (
                r#"{"schema":"at.channel.outbound","v":1,"id":"i","channel_id":"c","target":{"chat_id":"oc"},"kind":"progress","content":{"text":"x"}}"#,
                "in_reply_to",
            ),
            (
                r#"{"schema":"at.channel.outbound","v":1,"id":"i","channel_id":"c","target":{"chat_id":"oc"},"content":{"text":" "}}"#,
                "empty",
            ),
        ];
        for (raw, want) in cases {
            let e = parse_outbound(raw).unwrap_err();
            assert!(e.contains(want), "{raw}: {e}");
        }
        let long = format!(
            r#"{{"schema":"at.channel.outbound","v":1,"id":"{}","channel_id":"c","target":{{"chat_id":"oc"}},"content":{{"text":"x"}}}}"#,
            "x".repeat(65)
        );
        assert!(parse_outbound(&long).unwrap_err().contains("64"));
    }

    #[test]
    fn hint_items_are_valid_outbound_items() {
        let m = crate::feishu::event::NonText {
            event_id: "e".into(),
            message_id: "om_1".into(),
            chat_id: "oc_1".into(),
            msg_type: "image".into(),
        };
        let raw = hint_item("ch_1", "cli_a", &m, "only text", 5);
        let o = parse_outbound(&raw).unwrap();
        assert_eq!(o.text, "only text");
        assert_eq!(o.message_id.as_deref(), Some("om_1"));
        assert!(o.id.len() <= 64);
        assert_eq!(raw, hint_item("ch_1", "cli_a", &m, "only text", 5), "deterministic");
    }

    #[test]
    fn inbound_item_has_every_contract_field() {
        let msg = Message {
            event_id: "ev".into(),
            sender: Sender {
                open_id: Some("ou_1".into()),
                union_id: Some("on_1".into()),
                user_id: None,
                tenant_key: Some("tk".into()),
                sender_type: "user".into(),
            },
            chat_id: "oc_1".into(),
            chat_type: "group".into(),
            message_id: "om_1".into(),
            root_id: None,
            parent_id: None,
            thread_id: Some("omt_1".into()),
            create_time: 5,
            msg_type: "text".into(),
            question: "q".into(),
            mentions: vec![Mention { name: "A".into(), open_id: Some("ou_a".into()) }],
        };
        let routing = Routing {
            agent_id: Some("ag".into()),
            project_id: None,
            group_policy: GroupPolicy::Mention,
        };
        let v: Value =
            serde_json::from_str(&inbound_item("ch_1", "cli_a", &routing, &msg, 9)).unwrap();
        assert_eq!(
            v,
            json!({
                "schema": "at.channel.inbound", "v": 1, "id": "feishu:cli_a:om_1", "ts": 9,
                "channel_type": "feishu", "channel_id": "ch_1", "agent_id": "ag", "project_id": null,
                "session_key": "feishu:ch_1:ou_1",
                "sender": {"open_id": "ou_1", "union_id": "on_1", "user_id": null, "tenant_key": "tk", "sender_type": "user"},
                "chat": {"chat_id": "oc_1", "chat_type": "group"},
                "message": {"message_id": "om_1", "root_id": null, "parent_id": null, "thread_id": "omt_1",
                            "create_time": 5, "msg_type": "text"},
                "question": "q", "mentions": [{"name": "A", "open_id": "ou_a"}], "event_id": "ev"
            })
        );
    }
}
