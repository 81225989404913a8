//! The simulator's CardKit side: card entities with Feishu's rules
//! (shared/feishu-protocol.md §13): JSON 2.0 only, one strictly increasing
//! `sequence` per card across every operation, `uuid` replays answered
//! `200770`, at most 10 operations a second per card, streaming that
//! closes by itself a while after it was last opened (`200850` on the first
//! write after that, `300309` on every later one; the clock is
//! [`crate::SimOptions::stream_timeout`]), the 30 KB and table limits, and
//! an entity sent at most once. Follow-up bubbles (§15) live here too.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::http::Response;
use crate::rand_u64;

/// Card JSON over this many bytes is refused (`200860`).
const CARD_LIMIT: usize = 30 * 1024;
/// Tables per card (`230099` with `11310` beyond).
pub const TABLE_LIMIT: usize = 5;
/// Operations per card per second.
pub const OPS_PER_SECOND: usize = 10;

/// One operation on a card, as the tests read them.
#[derive(Debug, Clone)]
pub struct CardOp {
    pub at: Instant,
    /// `content`, `settings` or `replace`.
    pub kind: &'static str,
    pub sequence: i64,
    /// What the operation answered (0 = success).
    pub code: i64,
}

/// A card entity.
#[derive(Debug, Clone)]
pub struct Card {
    pub card_id: String,
    pub app_id: String,
    /// The card JSON 2.0 as it is now.
    pub card: Value,
    pub sequence: i64,
    pub streaming: bool,
    /// When streaming was last turned on.
    pub opened_at: Instant,
    /// The message it was sent as.
    pub sent_as: Option<String>,
    pub ops: Vec<CardOp>,
    /// How often streaming closed by itself.
    pub timeouts: usize,
    uuids: HashSet<String>,
    recent: VecDeque<Instant>,
}

impl Card {
    /// The text of its markdown and plain-text elements, in order.
    pub fn text(&self) -> String {
        elements(&self.card)
            .iter()
            .filter_map(|e| e["content"].as_str().or_else(|| e["text"]["content"].as_str()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `config.summary.content`.
    pub fn summary(&self) -> String {
        self.card["config"]["summary"]["content"].as_str().unwrap_or_default().to_owned()
    }

    /// The most operations that succeeded within any one second.
    pub fn peak_ops_per_second(&self) -> usize {
        let ok: Vec<Instant> = self.ops.iter().filter(|o| o.code == 0).map(|o| o.at).collect();
        (0..ok.len())
            .map(|i| ok[i..].iter().take_while(|t| **t < ok[i] + Duration::from_secs(1)).count())
            .max()
            .unwrap_or(0)
    }
}

fn elements(card: &Value) -> Vec<Value> {
    card["body"]["elements"].as_array().cloned().unwrap_or_default()
}

fn err(http: u16, code: i64, msg: &str) -> Response {
    Response::json(http, json!({ "code": code, "msg": msg }))
}

fn ok(data: Value) -> Response {
    Response::json(200, json!({ "code": 0, "msg": "success", "data": data }))
}

/// Tables in a card's markdown (a header row followed by a `|---` row).
pub fn tables(card: &Value) -> usize {
    elements(card)
        .iter()
        .filter_map(|e| e["content"].as_str())
        .map(|md| {
            let lines: Vec<&str> = md.lines().map(str::trim).collect();
            lines
                .windows(2)
                .filter(|w| w[0].starts_with('|') && w[1].starts_with('|') && w[1].contains("---"))
                .count()
        })
        .sum()
}

/// Feishu's checks on a whole card.
fn check_card(card: &Value, raw_len: usize) -> Option<Response> {
    if card["schema"] != "2.0" {
        return Some(err(400, 200621, "card json is not schema 2.0"));
    }
    if card["config"]["update_multi"] == false {
        return Some(err(400, 200621, "update_multi must be true"));
    }
    if raw_len > CARD_LIMIT {
        return Some(err(400, 200860, "card content exceeds the size limit"));
    }
    if elements(card).len() > 200 {
        return Some(err(400, 300305, "too many elements"));
    }
    if tables(card) > TABLE_LIMIT {
        return Some(err(
            400,
            230099,
            "Failed to create card content, ext=ErrCode: 11310; ErrMsg: card table number over limit",
        ));
    }
    None
}

/// Every card entity.
#[derive(Default)]
pub(crate) struct CardKit {
    pub cards: HashMap<String, Card>,
}

impl CardKit {
    /// `POST /open-apis/cardkit/v1/cards`.
    pub fn create(&mut self, app_id: &str, body: &Value) -> Response {
        if body["type"] != "card_json" {
            return err(400, 200621, "type must be card_json");
        }
        let data = body["data"].as_str().unwrap_or_default();
        let Ok(card) = serde_json::from_str::<Value>(data) else {
            return err(400, 200621, "card json parse error");
        };
        if let Some(e) = check_card(&card, data.len()) {
            return e;
        }
        let card_id = format!("7{:018}", rand_u64() % 1_000_000_000_000_000_000);
        let streaming = card["config"]["streaming_mode"] == true;
        self.cards.insert(
            card_id.clone(),
            Card {
                card_id: card_id.clone(),
                app_id: app_id.into(),
                card,
                sequence: 0,
                streaming,
                opened_at: Instant::now(),
                sent_as: None,
                ops: Vec::new(),
                timeouts: 0,
                uuids: HashSet::new(),
                recent: VecDeque::new(),
            },
        );
        ok(json!({ "card_id": card_id }))
    }

    /// A message's `{"type":"card","data":{"card_id":…}}` content: the
    /// entity, if it may be sent now.
    pub fn check_send(&self, app_id: &str, content: &Value) -> Result<String, Response> {
        let id = content["data"]["card_id"].as_str().unwrap_or_default();
        match self.cards.get(id) {
            Some(c) if c.app_id == app_id && c.sent_as.is_none() => Ok(id.to_owned()),
            Some(c) if c.app_id == app_id => {
                Err(err(400, 230099, "Failed to create card content, ext=card entity already sent"))
            }
            _ => Err(err(400, 200740, "card entity not found")),
        }
    }

    /// An operation on a card (`content`, `settings`, `replace`): the
    /// sequence, uuid, rate and streaming rules, then `apply`.
    pub fn operate(
        &mut self,
        app_id: &str,
        card_id: &str,
        kind: &'static str,
        body: &Value,
        stream_timeout: Duration,
        apply: impl FnOnce(&mut Card) -> Result<(), Response>,
    ) -> Response {
        let Some(card) = self.cards.get_mut(card_id).filter(|c| c.app_id == app_id) else {
            return err(400, 200740, "card entity not found");
        };
        let sequence = body["sequence"].as_i64().unwrap_or(0);
        let uuid = body["uuid"].as_str().unwrap_or_default().to_owned();
        let now = Instant::now();
        let record = |card: &mut Card, code: i64| {
            card.ops.push(CardOp { at: now, kind, sequence, code });
        };
        if !(1..=i64::from(i32::MAX)).contains(&sequence) {
            record(card, 300301);
            return err(400, 300301, "sequence must be a positive int32");
        }
        if uuid.len() > 64 {
            record(card, 300301);
            return err(400, 300301, "uuid longer than 64 characters");
        }
        if !uuid.is_empty() && card.uuids.contains(&uuid) {
            record(card, 200770);
            return err(400, 200770, "uuid conflict: this operation was already done");
        }
        if sequence <= card.sequence {
            record(card, 300317);
            return err(400, 300317, "sequence number compare failed");
        }
        while card.recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            card.recent.pop_front();
        }
        if card.recent.len() >= OPS_PER_SECOND {
            record(card, 230020);
            return err(429, 230020, "request trigger frequency limit, ext=card rate limit");
        }
        if card.streaming && now.duration_since(card.opened_at) >= stream_timeout {
            card.streaming = false;
            card.timeouts += 1;
            if kind == "content" {
                record(card, 200850);
                return err(400, 200850, "card streaming timeout");
            }
        }
        if kind == "content" && !card.streaming {
            record(card, 300309);
            return err(400, 300309, "streaming mode is closed");
        }
        let before = (card.card.clone(), card.streaming, card.opened_at);
        if let Err(e) = apply(card) {
            (card.card, card.streaming, card.opened_at) = before;
            let code = e.body_json()["code"].as_i64().unwrap_or(-1);
            record(card, code);
            return e;
        }
        let raw = card.card.to_string();
        if let Some(e) = check_card(&card.card, raw.len()) {
            (card.card, card.streaming, card.opened_at) = before;
            record(card, e.body_json()["code"].as_i64().unwrap_or(-1));
            return e;
        }
        card.sequence = sequence;
        if !uuid.is_empty() {
            card.uuids.insert(uuid);
        }
        card.recent.push_back(now);
        record(card, 0);
        ok(json!({}))
    }
}

/// `PUT …/elements/:element_id/content`: the full text so far.
pub fn set_content(card: &mut Card, element_id: &str, body: &Value) -> Result<(), Response> {
    let content = body["content"].as_str().unwrap_or_default();
    if content.is_empty() || content.chars().count() > 100_000 {
        return Err(err(400, 300301, "content must be 1-100000 characters"));
    }
    let Some(el) = card.element_mut(element_id) else {
        return Err(err(400, 300313, "element not found"));
    };
    match el["tag"].as_str() {
        Some("markdown") => el["content"] = json!(content),
        Some("plain_text") => el["text"]["content"] = json!(content),
        _ => return Err(err(400, 300310, "only plain_text and markdown elements stream")),
    }
    Ok(())
}

impl Card {
    fn element_mut(&mut self, element_id: &str) -> Option<&mut Value> {
        self.card["body"]["elements"]
            .as_array_mut()
            .and_then(|els| els.iter_mut().find(|e| e["element_id"] == element_id))
    }
}

/// `PATCH …/settings`: `{"config":{"streaming_mode","summary"}}`.
pub fn set_settings(card: &mut Card, body: &Value) -> Result<(), Response> {
    let Ok(settings) = serde_json::from_str::<Value>(body["settings"].as_str().unwrap_or(""))
    else {
        return Err(err(400, 300301, "settings is not a JSON string"));
    };
    let config = &settings["config"];
    if let Some(on) = config["streaming_mode"].as_bool() {
        if on {
            card.opened_at = Instant::now();
        }
        card.streaming = on;
        card.card["config"]["streaming_mode"] = json!(on);
    }
    if config["summary"].is_object() {
        card.card["config"]["summary"] = config["summary"].clone();
    }
    Ok(())
}

/// `PUT /cards/:card_id`: the whole card.
pub fn replace_card(card: &mut Card, body: &Value) -> Result<(), Response> {
    let data = body["card"]["data"].as_str().unwrap_or_default();
    let Ok(new) = serde_json::from_str::<Value>(data) else {
        return Err(err(400, 200621, "card json parse error"));
    };
    let streaming = new["config"]["streaming_mode"] == true;
    if streaming && !card.streaming {
        card.opened_at = Instant::now();
    }
    card.streaming = streaming;
    card.card = new;
    Ok(())
}

/// `PUT …/elements/:element_id`: one element.
pub fn replace_element(card: &mut Card, element_id: &str, body: &Value) -> Result<(), Response> {
    let Ok(new) = serde_json::from_str::<Value>(body["element"].as_str().unwrap_or("")) else {
        return Err(err(400, 300301, "element is not a JSON string"));
    };
    match card.element_mut(element_id) {
        Some(el) => {
            *el = new;
            Ok(())
        }
        None => Err(err(400, 300313, "element not found")),
    }
}

/// Follow-up bubbles: the rules Feishu enforces.
pub(crate) struct FollowUps {
    pub window: Duration,
}

impl FollowUps {
    /// Whether bubbles may go under `message`: the bot's latest message in
    /// a one-on-one chat, sent less than the window ago.
    pub fn check(
        &self,
        p2p: bool,
        latest: bool,
        sent: Instant,
        follow_ups: &Value,
    ) -> Result<Vec<String>, Response> {
        let items: Vec<String> = follow_ups
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["content"].as_str().map(str::to_owned))
            .collect();
        if items.is_empty() || items.iter().any(String::is_empty) {
            return Err(err(400, 230001, "follow_ups must be a list of {content}"));
        }
        if !p2p {
            return Err(err(400, 230001, "follow-up bubbles are only for one-on-one chats"));
        }
        if !latest {
            return Err(err(400, 230001, "only the bot's latest message can have follow-ups"));
        }
        if sent.elapsed() > self.window {
            return Err(err(400, 230001, "the message is too old for follow-ups"));
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(md: &str) -> Value {
        json!({"schema": "2.0", "config": {"streaming_mode": true, "update_multi": true},
               "body": {"elements": [{"tag": "markdown", "element_id": "md", "content": md}]}})
    }

    fn op(seq: i64, uuid: &str, content: &str) -> Value {
        json!({"sequence": seq, "uuid": uuid, "content": content})
    }

    fn code(r: &Response) -> i64 {
        r.body_json()["code"].as_i64().unwrap()
    }

    #[test]
    fn the_rules_of_a_card_entity() {
        let mut ck = CardKit::default();
        let r = ck.create("cli_a", &json!({"type": "card_json", "data": card("…").to_string()}));
        let id = r.body_json()["data"]["card_id"].as_str().unwrap().to_owned();
        let t = Duration::from_secs(600);
        let put = |ck: &mut CardKit, body: Value| {
            ck.operate("cli_a", &id, "content", &body.clone(), t, |c| set_content(c, "md", &body))
        };
        assert_eq!(code(&put(&mut ck, op(1, "a", "he"))), 0);
        assert_eq!(code(&put(&mut ck, op(1, "b", "hel"))), 300317, "not increasing");
        assert_eq!(code(&put(&mut ck, op(3, "a", "hel"))), 200770, "uuid replay");
        assert_eq!(code(&put(&mut ck, op(3, "c", "hello"))), 0);
        assert_eq!(ck.cards[&id].text(), "hello");
        // Another app cannot touch it.
        let body = op(9, "x", "x");
        let r = ck.operate("cli_b", &id, "content", &body, t, |c| set_content(c, "md", &body));
        assert_eq!(code(&r), 200740);
        // An element that is not there.
        let r = ck.operate("cli_a", &id, "content", &body, t, |c| set_content(c, "zz", &body));
        assert_eq!(code(&r), 300313);
        assert_eq!(ck.cards[&id].sequence, 3, "failed operations leave the sequence");
    }

    #[test]
    fn streaming_closes_by_itself_and_reopens() {
        let mut ck = CardKit::default();
        let r = ck.create("cli_a", &json!({"type": "card_json", "data": card("…").to_string()}));
        let id = r.body_json()["data"]["card_id"].as_str().unwrap().to_owned();
        let t = Duration::from_millis(50);
        std::thread::sleep(Duration::from_millis(60));
        let put = |ck: &mut CardKit, body: Value| {
            ck.operate("cli_a", &id, "content", &body.clone(), t, |c| set_content(c, "md", &body))
        };
        assert_eq!(code(&put(&mut ck, op(1, "a", "x"))), 200850);
        assert_eq!(code(&put(&mut ck, op(2, "b", "x"))), 300309);
        let on = json!({"sequence": 3, "uuid": "c",
                        "settings": json!({"config": {"streaming_mode": true}}).to_string()});
        let r = ck.operate("cli_a", &id, "settings", &on, t, |c| set_settings(c, &on));
        assert_eq!(code(&r), 0);
        assert_eq!(code(&put(&mut ck, op(4, "d", "x"))), 0);
        assert_eq!(ck.cards[&id].timeouts, 1);
    }

    #[test]
    fn ten_operations_a_second_at_most() {
        let mut ck = CardKit::default();
        let r = ck.create("cli_a", &json!({"type": "card_json", "data": card("…").to_string()}));
        let id = r.body_json()["data"]["card_id"].as_str().unwrap().to_owned();
        let t = Duration::from_secs(600);
        let codes: Vec<i64> = (1..=11)
            .map(|s| {
                let body = op(s, &format!("u{s}"), "x");
                code(
                    &ck.operate("cli_a", &id, "content", &body, t, |c| set_content(c, "md", &body)),
                )
            })
            .collect();
        assert_eq!(codes[..10], [0; 10]);
        assert_eq!(codes[10], 230020);
        assert_eq!(ck.cards[&id].peak_ops_per_second(), 10);
    }

    #[test]
    fn size_and_table_limits() {
        let mut ck = CardKit::default();
        let big = card(&"x".repeat(31 * 1024)).to_string();
        assert_eq!(code(&ck.create("cli_a", &json!({"type": "card_json", "data": big}))), 200860);
        let table = "| a | b |\n|---|---|\n| 1 | 2 |\n\n";
        let six = card(&table.repeat(6)).to_string();
        let r = ck.create("cli_a", &json!({"type": "card_json", "data": six}));
        assert_eq!(code(&r), 230099);
        assert!(r.body_json()["msg"].as_str().unwrap().contains("11310"));
        assert_eq!(tables(&card(&table.repeat(5))), 5);
    }
}
