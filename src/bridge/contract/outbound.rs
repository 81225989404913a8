//! Outbound items (`at:channel:outbound:feishu`, PROTOCOL.md "Outbound"):
//! parsed and validated into an [`Outbound`] (an invalid one's reason is
//! its dead letter), the dead-letter value, and the hash the gateway
//! derives idempotency keys from.
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Invalid, VERSION, shown};
use crate::feishu::event::{MAX_FEISHU_ID, is_feishu_id};

/// How an outbound item is meant to be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The complete answer.
    Final,
    /// The answer so far; later items update the same card.
    Progress,
    /// A message that is not the answer (the gateway's own "no answer yet"
    /// notice): a reply that neither completes nor claims the answer's card.
    Notice,
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
    /// `content.follow_ups`: short questions shown as follow-up bubbles
    /// under the answer in a one-on-one chat: the first [`MAX_FOLLOW_UPS`]
    /// of at most [`MAX_FOLLOW_UP_CHARS`] characters.
    pub follow_ups: Vec<String>,
}

/// Most follow-up questions shown under one answer.
pub const MAX_FOLLOW_UPS: usize = 5;
/// Longest follow-up question, in characters.
pub const MAX_FOLLOW_UP_CHARS: usize = 100;

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
    /// Suggested follow-up questions (additive to v1).
    #[serde(default)]
    follow_ups: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawError {
    message: Option<String>,
}

/// Parses and validates one outbound item; the error is the dead-letter reason.
pub fn parse_outbound(raw: &str) -> Result<Outbound, Invalid> {
    parse(raw).map_err(Invalid)
}

/// Largest outbound item accepted (its text becomes several Feishu parts;
/// Feishu takes 150 KB of text, 30 KB of card, per message).
pub const MAX_ITEM_BYTES: usize = 1 << 20;
/// Longest `in_reply_to` accepted (it goes into a Redis key).
const MAX_IN_REPLY_TO: usize = 256;

/// [`parse_outbound`] of an item as Redis holds it: any bytes. One too
/// large or not UTF-8 is rejected with the reason, like bad JSON.
pub fn parse_outbound_bytes(raw: &[u8]) -> Result<Outbound, Invalid> {
    if raw.len() > MAX_ITEM_BYTES {
        return Err(Invalid(format!(
            "item is {} bytes, over the {} byte limit",
            raw.len(),
            MAX_ITEM_BYTES
        )));
    }
    let text = std::str::from_utf8(raw).map_err(|e| {
        Invalid(format!("item is not UTF-8 (invalid byte at offset {})", e.valid_up_to()))
    })?;
    parse_outbound(text)
}

fn parse(raw: &str) -> Result<Outbound, String> {
    // serde's message may quote a value (a whole answer): at most 200 chars.
    let r: RawOutbound = serde_json::from_str(raw).map_err(|e| {
        format!("invalid JSON: {}", e.to_string().chars().take(200).collect::<String>())
    })?;
    match r.schema.as_deref() {
        Some("at.channel.outbound") => {}
        other => {
            let other = other.map(shown);
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
    super::config::check_channel_id(&channel_id)?;
    let (message_id, chat_id) = (nonempty(r.target.message_id), nonempty(r.target.chat_id));
    if message_id.is_none() && chat_id.is_none() {
        return Err("target has neither message_id nor chat_id".into());
    }
    // They go into REST paths and query strings: Feishu's id shape only.
    for (name, id) in [("target.message_id", &message_id), ("target.chat_id", &chat_id)] {
        if let Some(id) = id.as_deref().filter(|id| !is_feishu_id(id)) {
            let shown = shown(id);
            return Err(format!(
                "{name} \"{shown}\" is not a Feishu id (1 to {MAX_FEISHU_ID} ASCII letters, digits, '_' or '-')"
            ));
        }
    }
    let kind = match r.kind.as_deref() {
        None | Some("final") => Kind::Final,
        Some("progress") => Kind::Progress,
        Some("notice") => Kind::Notice,
        Some(other) => return Err(format!("unknown kind \"{}\"", shown(other))),
    };
    let in_reply_to = nonempty(r.in_reply_to);
    if in_reply_to.as_ref().is_some_and(|s| s.len() > MAX_IN_REPLY_TO) {
        return Err(format!("in_reply_to is longer than {MAX_IN_REPLY_TO} bytes"));
    }
    if kind == Kind::Progress && in_reply_to.is_none() {
        return Err("a progress item needs in_reply_to".into());
    }
    let is_error = match r.status.as_deref() {
        None | Some("ok") => false,
        Some("error") => true,
        Some(other) => return Err(format!("unknown status \"{}\"", shown(other))),
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
    // An empty notice shows nothing; it only ends the typing reaction.
    if !is_error && kind != Kind::Notice && text.trim().is_empty() && links.is_empty() {
        return Err("content.text is empty".into());
    }
    let follow_ups: Vec<String> = r
        .content
        .follow_ups
        .unwrap_or_default()
        .into_iter()
        .map(|q| q.trim().to_owned())
        // A bubble is a question to tap: too long to read is left out
        // (cutting it would change what is asked), and so are extra ones.
        .filter(|q| !q.is_empty() && q.chars().count() <= MAX_FOLLOW_UP_CHARS)
        .take(MAX_FOLLOW_UPS)
        .collect();
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
        follow_ups,
    })
}

/// 32 hex characters of SHA-256: a short, stable id derived from `s`.
///
/// On the hot path (every question's fingerprint). `Sha256` runs the
/// digest directly; OpenSSL 3's one-shot `SHA256()` looks the algorithm up
/// in its provider tables on every call, which was a tenth of the
/// connection thread's CPU per event (perf, the serial benchmark).
pub fn short_hash(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = openssl::sha::Sha256::new();
    h.update(s.as_bytes());
    let digest = h.finish();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Most of an item a dead letter keeps.
const DEAD_ITEM_MAX: usize = 64 * 1024;

/// A dead letter (`docs/schema/dead-letter.schema.json`): why, and the raw
/// item as received. An item that is not UTF-8 is kept with its invalid
/// bytes escaped (`\xff`, and `"item_escaped": true`); one over 64 KiB is
/// cut there (`"item_bytes"` says how long it was). `id` when it had one.
pub fn dead_letter_json(reason: &str, raw: &[u8], now_ms: u64) -> String {
    let kept = &raw[..raw.len().min(DEAD_ITEM_MAX)];
    let head = |item: &str| json!({ "schema": "at.channel.outbound.dead", "v": VERSION, "ts": now_ms, "reason": reason, "item": item });
    let mut v = match std::str::from_utf8(kept) {
        Ok(text) => head(text),
        // A cut inside a character is not an invalid item: keep the valid part.
        Err(e) if raw.len() > DEAD_ITEM_MAX && e.error_len().is_none() => {
            head(std::str::from_utf8(&kept[..e.valid_up_to()]).unwrap_or_default())
        }
        Err(_) => {
            let mut v = head(&escape_bytes(kept));
            v["item_escaped"] = json!(true);
            v
        }
    };
    if raw.len() > DEAD_ITEM_MAX {
        v["item_bytes"] = json!(raw.len());
    }
    if let Some(ids) = item_ids(raw) {
        v["id"] = json!(ids.id);
    }
    v.to_string()
}

/// What a receipt names of an item.
pub struct ItemIds {
    pub id: String,
    pub channel_id: String,
    pub in_reply_to: Option<String>,
}

/// The ids of an item, read leniently (also from one that does not parse
/// as an outbound item), when its `id` is usable as a key.
pub fn item_ids(raw: &[u8]) -> Option<ItemIds> {
    let v: Value = serde_json::from_slice(raw).ok()?;
    let id = v.get("id")?.as_str().filter(|id| {
        !id.trim().is_empty() && id.chars().count() <= 64 && !id.chars().any(char::is_control)
    })?;
    let text = |k: &str, max: usize| -> Option<String> {
        Some(v.get(k)?.as_str()?.chars().take(max).collect())
    };
    Some(ItemIds {
        id: id.to_owned(),
        channel_id: text("channel_id", 128).unwrap_or_default(),
        in_reply_to: text("in_reply_to", 256),
    })
}

/// What became of a final outbound item.
pub enum Fate<'a> {
    /// Shown in Feishu as these messages (the first is the answer's).
    Delivered(&'a [String]),
    /// Dead-lettered, with the dead letter's reason.
    DeadLettered(&'a str),
}

/// A delivery receipt (`docs/schema/receipt.schema.json`).
pub fn receipt_json(
    id: &str,
    channel_id: &str,
    in_reply_to: Option<&str>,
    fate: Fate,
    now_ms: u64,
) -> String {
    let mut v = json!({
        "schema": "at.channel.receipt", "v": VERSION, "ts": now_ms,
        "id": id, "channel_id": channel_id, "in_reply_to": in_reply_to,
    });
    match fate {
        Fate::Delivered(ids) => {
            v["status"] = json!("delivered");
            v["message_ids"] = json!(ids);
        }
        Fate::DeadLettered(reason) => {
            v["status"] = json!("dead_lettered");
            v["reason"] = json!(reason);
        }
    }
    v.to_string()
}

/// Bytes as text: valid UTF-8 as it is, every other byte as `\xNN`.
pub fn escape_bytes(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hashes_are_the_first_half_of_sha256_in_hex() {
        // Python: hashlib.sha256(b"feishu:cli_a:om_1").hexdigest()[:32]
        assert_eq!(short_hash("feishu:cli_a:om_1"), "d8de4b63313b508404b264ecc934e457");
        assert_eq!(short_hash(""), "e3b0c44298fc1c149afbf4c8996fb924");
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
            let e = parse_outbound(raw).unwrap_err().to_string();
            assert!(e.contains(want), "{raw}: {e}");
        }
        let long = format!(
            r#"{{"schema":"at.channel.outbound","v":1,"id":"{}","channel_id":"c","target":{{"chat_id":"oc"}},"content":{{"text":"x"}}}}"#,
            "x".repeat(65)
        );
        assert!(parse_outbound(&long).unwrap_err().to_string().contains("64"));
    }

    /// Found by an independent fault harness (issue 11): an item that is not
    /// UTF-8 was never dead-lettered and broke every read of its list.
    #[test]
    fn any_bytes_are_rejected_with_a_reason_and_kept_escaped() {
        let ok = br#"{"schema":"at.channel.outbound","v":1,"id":"i","channel_id":"c","target":{"chat_id":"oc"},"content":{"text":"x"}}"#;
        assert!(parse_outbound_bytes(ok).is_ok());
        let bad = b"{\"id\":\"\xff\xfe\"}";
        let e = parse_outbound_bytes(bad).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        let dead: Value = serde_json::from_str(&dead_letter_json(&e, bad, 1)).unwrap();
        assert_eq!(dead["item"], "{\"id\":\"\\xff\\xfe\"}");
        assert_eq!(dead["item_escaped"], true);
        let huge = vec![b'a'; MAX_ITEM_BYTES + 1];
        assert!(parse_outbound_bytes(&huge).unwrap_err().to_string().contains("byte limit"));
        let dead: Value = serde_json::from_str(&dead_letter_json("r", &huge, 1)).unwrap();
        assert_eq!(dead["item"].as_str().unwrap().len(), DEAD_ITEM_MAX);
        assert_eq!(dead["item_bytes"], MAX_ITEM_BYTES + 1);
        assert!(dead.get("item_escaped").is_none());
        let long_irt = format!(
            r#"{{"schema":"at.channel.outbound","v":1,"id":"i","channel_id":"c","in_reply_to":"{}","target":{{"chat_id":"oc"}},"content":{{"text":"x"}}}}"#,
            "r".repeat(257)
        );
        assert!(parse_outbound(&long_irt).unwrap_err().to_string().contains("in_reply_to"));
        let bad_channel = r#"{"schema":"at.channel.outbound","v":1,"id":"i","channel_id":"c h","target":{"chat_id":"oc"},"content":{"text":"x"}}"#;
        assert!(parse_outbound(bad_channel).unwrap_err().to_string().contains("channel id"));
    }

    /// Found by an independent fault harness (issue 11): an id went
    /// unvalidated into a REST path, and an invalid one was retried as
    /// transient for the whole window instead of dead-lettered at once.
    #[test]
    fn target_ids_must_have_feishu_s_shape() {
        let item = |target: &str| {
            format!(
                r#"{{"schema":"at.channel.outbound","v":1,"id":"i","channel_id":"c","target":{target},"content":{{"text":"x"}}}}"#
            )
        };
        assert!(parse_outbound(&item(r#"{"message_id":"om_dc13264520392913993dd051dba21dcf","chat_id":"oc_5ad11d72b830411d72b836c20"}"#)).is_ok());
        for (target, want) in [
            (r#"{"message_id":"om_1/../../chats"}"#, "target.message_id"),
            (r#"{"message_id":"om_1?x=1"}"#, "target.message_id"),
            (r#"{"chat_id":"oc 1"}"#, "target.chat_id"),
            (r#"{"message_id":"om_1","chat_id":"oc_1\u0000"}"#, "target.chat_id"),
        ] {
            let e = parse_outbound(&item(target)).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("not a Feishu id"), "{target}: {e}");
        }
        let long = format!(r#"{{"chat_id":"{}"}}"#, "o".repeat(129));
        assert!(parse_outbound(&item(&long)).unwrap_err().to_string().contains("not a Feishu id"));
    }
}
