//! The chat events a welcome answers (shared/feishu-protocol.md §15): the
//! bot added to a group (`im.chat.member.bot.added_v1`) and a user opening
//! the one-on-one chat (`im.chat.access_event.bot_p2p_chat_entered_v1`).
//! No I/O.

use serde_json::Value;

/// The bot was added to a group, or a user opened the one-on-one chat
/// with it: a chat the welcome message may go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEntered {
    pub event_id: String,
    pub chat_id: String,
    /// `im.chat.access_event.bot_p2p_chat_entered_v1` (else
    /// `im.chat.member.bot.added_v1`).
    pub p2p: bool,
}

/// `None`: not one of the two events. `Some(None)`: one of them without a
/// chat id (nobody to welcome). The caller checks the id's shape.
pub fn entered(
    event_type: &str,
    event: Option<&Value>,
    event_id: &str,
) -> Option<Option<ChatEntered>> {
    let p2p = match event_type {
        "im.chat.access_event.bot_p2p_chat_entered_v1" => true,
        "im.chat.member.bot.added_v1" => false,
        _ => return None,
    };
    let chat = event.and_then(|e| e.get("chat_id")).and_then(Value::as_str);
    Some(chat.map(|chat_id| ChatEntered {
        event_id: event_id.to_owned(),
        chat_id: chat_id.to_owned(),
        p2p,
    }))
}
