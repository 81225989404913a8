//! Inbound items (`at:channel:inbound`, PROTOCOL.md "Inbound"): the item
//! for a stored question, its stable `id`, and the hint reply the gateway
//! queues itself for a non-text message.
use serde_json::json;

use super::{VERSION, short_hash};
use crate::channel::Routing;
use crate::feishu::event::{Message, NonText};

/// The inbound `id`: stable across Feishu redeliveries.
pub fn inbound_id(app_id: &str, message_id: &str) -> String {
    format!("feishu:{app_id}:{message_id}")
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

/// The reply the gateway itself queues for a non-text message: an outbound
/// item like the server's, answered by the same workers.
pub fn hint_item(channel_id: &str, app_id: &str, m: &NonText, text: &str, now_ms: u64) -> String {
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

/// The welcome the gateway queues itself for a chat the bot entered: a
/// `notice` to the chat (id `welcome-<32 hex>` of app and chat, so both
/// replicas and every redelivery make the same item).
pub fn welcome_item(
    channel_id: &str,
    app_id: &str,
    chat_id: &str,
    text: &str,
    now_ms: u64,
) -> String {
    let id = short_hash(&format!("{app_id}:{chat_id}"));
    json!({
        "schema": "at.channel.outbound", "v": VERSION, "id": format!("welcome-{id}"), "ts": now_ms,
        "channel_id": channel_id,
        "target": { "chat_id": chat_id, "reply_in_thread": false },
        "kind": "notice", "status": "ok", "content": { "text": text, "attachments": [] }, "error": null,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::contract::parse_outbound;

    #[test]
    fn welcome_items_are_valid_notices_to_the_chat() {
        let raw = welcome_item("ch_1", "cli_a", "oc_9", "**你好**", 5);
        let o = parse_outbound(&raw).unwrap();
        assert_eq!(o.text, "**你好**");
        assert_eq!(o.chat_id.as_deref(), Some("oc_9"));
        assert_eq!(o.message_id, None);
        assert_eq!(o.kind, crate::bridge::contract::Kind::Notice);
        let again = parse_outbound(&welcome_item("ch_1", "cli_a", "oc_9", "other", 9)).unwrap();
        assert_eq!(o.id, again.id, "one id per app and chat");
        assert!(o.id.starts_with("welcome-"));
    }
    use crate::channel::GroupPolicy;
    use crate::feishu::event::{Mention, Sender};
    use serde_json::Value;

    #[test]
    fn hint_items_are_valid_outbound_items() {
        let m = NonText {
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
            welcome: None,
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
