//! The simulator's IM REST side: reply, send, card update, reactions and
//! follow-up bubbles, with Feishu's `uuid` idempotency, size limits and
//! injected faults. A message can show a CardKit entity (`cardkit`).

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::cardkit::{CardKit, FollowUps};
use crate::http::{Request, Response};
use crate::rand_hex;

/// A message the bot made visible in Feishu.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub message_id: String,
    pub app_id: String,
    /// The chat, when sent to a chat or replying to a known message.
    pub chat_id: Option<String>,
    /// The message replied to.
    pub reply_to: Option<String>,
    pub in_thread: bool,
    pub msg_type: String,
    /// The `content` JSON string as last set (updates replace it).
    pub content: String,
    pub uuid: Option<String>,
    /// How many times the content was updated.
    pub updates: usize,
    pub at: Instant,
    /// The CardKit entity it shows (its `content` is the entity's card).
    pub card_id: Option<String>,
    /// Follow-up bubbles under it.
    pub follow_ups: Vec<String>,
}

impl SentMessage {
    /// The visible text: the text of a text message, the markdown of a card.
    pub fn text(&self) -> String {
        let v: Value = serde_json::from_str(&self.content).unwrap_or(Value::Null);
        match self.msg_type.as_str() {
            "text" => v["text"].as_str().unwrap_or_default().to_owned(),
            "interactive" => v["body"]["elements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => self.content.clone(),
        }
    }
}

/// A reaction the bot added.
#[derive(Debug, Clone)]
pub struct Reaction {
    pub reaction_id: String,
    pub message_id: String,
    pub emoji: String,
    pub deleted: bool,
}

/// Which REST call a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Reply,
    Send,
    Update,
    AddReaction,
    DeleteReaction,
    /// Any reply, send or update.
    AnyMessage,
    /// CardKit: create an entity.
    CardCreate,
    /// CardKit: stream an element's content.
    CardContent,
    /// CardKit: settings (streaming on/off, summary).
    CardSettings,
    /// CardKit: replace the card or an element.
    CardReplace,
    /// Any CardKit call.
    AnyCard,
    /// `push_follow_up`.
    FollowUp,
}

/// An injected fault: the next matching call gets it instead of success.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An error answer (HTTP status, Feishu code, optional rate-limit reset seconds).
    Error { http: u16, code: i64, msg: String, reset: Option<u64> },
    /// A slow answer (then handled normally).
    Delay(Duration),
}

impl Fault {
    pub fn rate_limited(reset_secs: u64) -> Fault {
        Fault::Error {
            http: 429,
            code: 99991400,
            msg: "request trigger frequency limit".into(),
            reset: Some(reset_secs),
        }
    }
    pub fn server_error() -> Fault {
        Fault::Error { http: 500, code: 500, msg: "internal error".into(), reset: None }
    }
    pub fn code(http: u16, code: i64, msg: &str) -> Fault {
        Fault::Error { http, code, msg: msg.into(), reset: None }
    }
}

#[derive(Default)]
pub(crate) struct Im {
    pub messages: Vec<SentMessage>,
    uuids: HashMap<(String, String), usize>,
    pub reactions: Vec<Reaction>,
    pub faults: VecDeque<(Route, Fault)>,
    pub withdrawn: HashSet<String>,
    /// User messages seen in pushed events: message id → chat id.
    pub user_messages: HashMap<String, String>,
    /// Apps whose every IM call answers only after this long.
    pub slow_apps: HashMap<String, Duration>,
    /// Chat types seen in pushed events (`p2p`, `group`).
    pub chat_types: HashMap<String, String>,
    /// CardKit's card entities.
    pub cards: CardKit,
    /// PATCH calls on messages showing an entity (Feishu ignores them).
    pub entity_patches: usize,
}

/// Text bodies over 150 KB and card/post bodies over 30 KB are refused.
const TEXT_LIMIT: usize = 150 * 1024;
const CARD_LIMIT: usize = 30 * 1024;

fn err(http: u16, code: i64, msg: &str) -> Response {
    Response::json(http, json!({ "code": code, "msg": msg }))
}

fn ok(data: Value) -> Response {
    Response::json(200, json!({ "code": 0, "msg": "success", "data": data }))
}

impl Im {
    /// Takes the first queued fault for `route`, if any.
    pub fn take_fault(&mut self, route: Route) -> Option<Fault> {
        let matches = |r: Route| {
            r == route
                || (r == Route::AnyMessage
                    && matches!(route, Route::Reply | Route::Send | Route::Update))
                || (r == Route::AnyCard
                    && matches!(
                        route,
                        Route::CardCreate
                            | Route::CardContent
                            | Route::CardSettings
                            | Route::CardReplace
                    ))
        };
        let i = self.faults.iter().position(|(r, _)| matches(*r))?;
        self.faults.remove(i).map(|(_, f)| f)
    }

    /// Answers an IM call for `app_id` (already authenticated).
    pub fn handle(
        &mut self,
        app_id: &str,
        route: Route,
        req: &Request,
        path_id: &str,
        sub_id: &str,
        follow_up_window: Duration,
    ) -> Response {
        let body = req.json();
        match route {
            Route::Reply | Route::Send => self.send(app_id, route, &body, path_id),
            Route::Update => {
                let content = body["content"].as_str().unwrap_or_default();
                if let Some(e) = check_content("interactive", content) {
                    return e;
                }
                match self
                    .messages
                    .iter_mut()
                    .find(|m| m.message_id == path_id && m.app_id == app_id)
                {
                    // The docs: PATCH does not change a message that
                    // references a card entity.
                    Some(m) if m.card_id.is_some() => {
                        self.entity_patches += 1;
                        ok(json!({}))
                    }
                    Some(m) if m.msg_type == "interactive" => {
                        m.content = content.to_owned();
                        m.updates += 1;
                        ok(json!({}))
                    }
                    Some(_) => err(400, 230001, "only cards can be updated with PATCH"),
                    None => err(400, 231003, "message not found"),
                }
            }
            Route::AddReaction => {
                let emoji = body["reaction_type"]["emoji_type"].as_str().unwrap_or_default();
                if emoji.is_empty() {
                    return err(400, 231001, "reaction type is invalid");
                }
                if self.withdrawn.contains(path_id) {
                    return err(400, 231003, "message not found");
                }
                let reaction_id = rand_hex(24);
                self.reactions.push(Reaction {
                    reaction_id: reaction_id.clone(),
                    message_id: path_id.into(),
                    emoji: emoji.into(),
                    deleted: false,
                });
                ok(json!({ "reaction_id": reaction_id, "reaction_type": { "emoji_type": emoji },
                           "operator": { "operator_id": app_id, "operator_type": "app" } }))
            }
            Route::DeleteReaction => {
                match self
                    .reactions
                    .iter_mut()
                    .find(|r| r.reaction_id == sub_id && r.message_id == path_id && !r.deleted)
                {
                    Some(r) => {
                        r.deleted = true;
                        ok(json!({ "reaction_id": sub_id }))
                    }
                    None => err(400, 231010, "reaction not found"),
                }
            }
            Route::FollowUp => self.follow_up(app_id, path_id, &body, follow_up_window),
            _ => err(404, 404, "not found"),
        }
    }

    /// `POST /im/v1/messages/:id/push_follow_up`.
    fn follow_up(&mut self, app_id: &str, id: &str, body: &Value, window: Duration) -> Response {
        let Some(i) = self.messages.iter().position(|m| m.message_id == id && m.app_id == app_id)
        else {
            return err(400, 231003, "message not found");
        };
        let m = &self.messages[i];
        let p2p = m.chat_id.as_ref().and_then(|c| self.chat_types.get(c)).map(String::as_str)
            == Some("p2p");
        let latest = !self.messages[i + 1..]
            .iter()
            .any(|n| n.app_id == app_id && n.chat_id.is_some() && n.chat_id == m.chat_id);
        let rules = FollowUps { window };
        match rules.check(p2p, latest, m.at, &body["follow_ups"]) {
            Ok(items) => {
                self.messages[i].follow_ups = items;
                ok(json!({}))
            }
            Err(e) => e,
        }
    }

    fn send(&mut self, app_id: &str, route: Route, body: &Value, path_id: &str) -> Response {
        let msg_type = body["msg_type"].as_str().unwrap_or_default();
        let content = body["content"].as_str().unwrap_or_default();
        let entity = serde_json::from_str::<Value>(content)
            .ok()
            .filter(|v| msg_type == "interactive" && v["type"] == "card");
        let mut card_id = None;
        if let Some(v) = &entity {
            // A uuid replay below answers with the message already sent.
            let replay = body["uuid"]
                .as_str()
                .is_some_and(|u| self.uuids.contains_key(&(app_id.to_owned(), u.to_owned())));
            if !replay {
                match self.cards.check_send(app_id, v) {
                    Ok(id) => card_id = Some(id),
                    Err(e) => return e,
                }
            }
        } else if let Some(e) = check_content(msg_type, content) {
            return e;
        }
        let uuid = body["uuid"].as_str().filter(|u| !u.is_empty()).map(str::to_owned);
        if uuid.as_ref().is_some_and(|u| u.chars().count() > 50) {
            return err(400, 230001, "uuid longer than 50 characters");
        }
        if let Some(u) = &uuid
            && let Some(&i) = self.uuids.get(&(app_id.to_owned(), u.clone()))
        {
            // Idempotent: the same uuid succeeds once; replays get the same message.
            return ok(json!({ "message_id": self.messages[i].message_id }));
        }
        let (chat_id, reply_to, in_thread) = match route {
            Route::Reply => {
                if self.withdrawn.contains(path_id) {
                    return err(400, 230011, "The message was withdrawn.");
                }
                (
                    self.user_messages.get(path_id).cloned(),
                    Some(path_id.to_owned()),
                    body["reply_in_thread"] == true,
                )
            }
            _ => {
                let chat = body["receive_id"].as_str().unwrap_or_default();
                if chat.is_empty() {
                    return err(400, 230001, "receive_id is empty");
                }
                (Some(chat.to_owned()), None, false)
            }
        };
        let message_id = format!("om_{}", rand_hex(32));
        self.messages.push(SentMessage {
            message_id: message_id.clone(),
            app_id: app_id.into(),
            chat_id,
            reply_to,
            in_thread,
            msg_type: msg_type.into(),
            content: content.into(),
            uuid: uuid.clone(),
            updates: 0,
            at: Instant::now(),
            card_id: card_id.clone(),
            follow_ups: Vec::new(),
        });
        if let Some(c) = card_id.and_then(|id| self.cards.cards.get_mut(&id)) {
            c.sent_as = Some(message_id.clone());
        }
        if let Some(u) = uuid {
            self.uuids.insert((app_id.to_owned(), u), self.messages.len() - 1);
        }
        ok(json!({ "message_id": message_id, "msg_type": msg_type }))
    }
}

/// Feishu's checks on `content`: a JSON string of the right shape and size.
fn check_content(msg_type: &str, content: &str) -> Option<Response> {
    let Ok(v) = serde_json::from_str::<Value>(content) else {
        return Some(err(400, 230001, "invalid content: not a JSON string"));
    };
    match msg_type {
        "text" if v["text"].is_string() => {
            (content.len() > TEXT_LIMIT).then(|| err(400, 230025, "content too long"))
        }
        "interactive" => {
            let elements = v["body"]["elements"].as_array();
            if v["schema"] != "2.0" || elements.is_none_or(|e| e.is_empty()) {
                return Some(err(400, 230099, "Failed to create card content"));
            }
            (content.len() > CARD_LIMIT).then(|| err(400, 230025, "card content too long"))
        }
        _ => Some(err(400, 230001, "invalid msg_type or content")),
    }
}
