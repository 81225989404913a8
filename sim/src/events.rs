//! Builders for the event payloads Feishu pushes (`im.message.receive_v1`,
//! schema 2.0), shaped like the samples in Feishu's documentation.

use serde_json::{Value, json};

use crate::{now_ms, rand_hex};

/// One `im.message.receive_v1` event under construction.
#[derive(Debug, Clone)]
pub struct MessageEvent {
    pub app_id: String,
    pub event_id: String,
    pub message_id: String,
    pub chat_id: String,
    pub chat_type: String,
    pub sender_open_id: String,
    pub sender_type: String,
    pub msg_type: String,
    pub content: Value,
    pub mentions: Vec<Value>,
    pub create_time: u64,
    pub thread_id: Option<String>,
    pub token: String,
}

impl MessageEvent {
    /// A one-on-one text message from a user, sent now.
    pub fn text(app_id: &str, text: &str) -> MessageEvent {
        MessageEvent {
            app_id: app_id.into(),
            event_id: rand_hex(32),
            message_id: format!("om_{}", rand_hex(32)),
            chat_id: format!("oc_{}", rand_hex(32)),
            chat_type: "p2p".into(),
            sender_open_id: format!("ou_{}", rand_hex(32)),
            sender_type: "user".into(),
            msg_type: "text".into(),
            content: json!({ "text": text }),
            mentions: Vec::new(),
            create_time: now_ms(),
            thread_id: None,
            token: String::new(),
        }
    }

    /// The same message under a new event id and message id (as Feishu
    /// has redelivered one).
    pub fn with_new_ids(mut self) -> MessageEvent {
        self.event_id = rand_hex(32);
        self.message_id = format!("om_{}", rand_hex(32));
        self
    }

    /// A message of another type (`image`, `file`, `post`, …) with its content.
    pub fn of_type(app_id: &str, msg_type: &str, content: Value) -> MessageEvent {
        MessageEvent { msg_type: msg_type.into(), content, ..MessageEvent::text(app_id, "") }
    }

    /// Moves the message into a group chat.
    pub fn in_group(mut self, chat_id: &str) -> MessageEvent {
        self.chat_type = "group".into();
        self.chat_id = chat_id.into();
        self
    }

    /// Adds a mention; `key` (e.g. `@_user_1`) should appear in the text.
    pub fn mention(mut self, key: &str, open_id: &str, name: &str) -> MessageEvent {
        self.mentions.push(json!({
            "key": key,
            "id": {"union_id": format!("on_{}", rand_hex(16)), "user_id": null, "open_id": open_id},
            "name": name,
            "tenant_key": "736588c9260f175e",
        }));
        self
    }

    pub fn from_sender(mut self, open_id: &str) -> MessageEvent {
        self.sender_open_id = open_id.into();
        self
    }

    pub fn sent_by_app(mut self) -> MessageEvent {
        self.sender_type = "app".into();
        self
    }

    pub fn created_at(mut self, ms: u64) -> MessageEvent {
        self.create_time = ms;
        self
    }

    pub fn with_token(mut self, token: &str) -> MessageEvent {
        self.token = token.into();
        self
    }

    /// The event envelope as Feishu sends it.
    pub fn json(&self) -> String {
        json!({
            "schema": "2.0",
            "header": {
                "event_id": self.event_id,
                "event_type": "im.message.receive_v1",
                "create_time": self.create_time.to_string(),
                "token": self.token,
                "app_id": self.app_id,
                "tenant_key": "2ca1d211f64f6438",
            },
            "event": {
                "sender": {
                    "sender_id": {"union_id": format!("on_{}", &self.sender_open_id[3.min(self.sender_open_id.len())..]),
                                  "user_id": null, "open_id": self.sender_open_id},
                    "sender_type": self.sender_type,
                    "tenant_key": "736588c9260f175e",
                },
                "message": {
                    "message_id": self.message_id,
                    "root_id": "",
                    "parent_id": "",
                    "create_time": self.create_time.to_string(),
                    "update_time": self.create_time.to_string(),
                    "chat_id": self.chat_id,
                    "thread_id": self.thread_id,
                    "chat_type": self.chat_type,
                    "message_type": self.msg_type,
                    "content": self.content.to_string(),
                    "mentions": self.mentions,
                    "user_agent": "Mozilla/5.0 Lark/7.30",
                },
            },
        })
        .to_string()
    }
}

/// `im.chat.member.bot.added_v1`: the bot was added to group `chat_id`.
pub fn bot_added_to(app_id: &str, chat_id: &str) -> String {
    chat_event(
        app_id,
        "im.chat.member.bot.added_v1",
        json!({"chat_id": chat_id, "name": "Sales",
        "operator_id": {"open_id": format!("ou_{}", rand_hex(32))}, "external": false}),
    )
}

/// `im.chat.access_event.bot_p2p_chat_entered_v1`: a user opened the
/// one-on-one chat `chat_id` with the bot.
pub fn p2p_entered(app_id: &str, chat_id: &str) -> String {
    chat_event(
        app_id,
        "im.chat.access_event.bot_p2p_chat_entered_v1",
        json!({"chat_id": chat_id,
        "operator_id": {"open_id": format!("ou_{}", rand_hex(32))}, "last_message_id": ""}),
    )
}

/// Any other event (`event_type`, `event` body): acknowledged and ignored.
pub fn chat_event(app_id: &str, event_type: &str, event: Value) -> String {
    json!({
        "schema": "2.0",
        "header": {"event_id": rand_hex(32), "event_type": event_type,
                   "create_time": now_ms().to_string(), "token": "", "app_id": app_id, "tenant_key": "t"},
        "event": event,
    })
    .to_string()
}

/// Another event type the gateway must acknowledge and ignore.
pub fn bot_added(app_id: &str) -> String {
    json!({
        "schema": "2.0",
        "header": {"event_id": rand_hex(32), "event_type": "im.chat.member.bot.added_v1",
                   "create_time": now_ms().to_string(), "token": "", "app_id": app_id, "tenant_key": "t"},
        "event": {"chat_id": format!("oc_{}", rand_hex(32)), "name": "Sales"}
    })
    .to_string()
}
