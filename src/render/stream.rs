//! The JSON of CardKit streaming cards (shared/feishu-protocol.md §13): a
//! card entity with one markdown element that text streams into, its
//! settings (streaming on/off, the chat list's summary), the message
//! content that shows an entity, and the summary of an answer. No I/O.

use serde_json::{Value, json};

use super::Part;

/// The markdown element text streams into.
pub const ELEMENT: &str = "answer";
/// The chat list's summary while an answer is streaming.
pub const STREAMING_SUMMARY: &str = "正在回答… Answering…";
/// What a stale card says when its answer had to be sent as a new reply.
pub const CONTINUED_BELOW: &str =
    "⬇️ 完整回答见下一条消息。The full answer is in the next message.";
/// Summaries are cut to this many characters.
const SUMMARY_CHARS: usize = 60;

/// A card entity showing `md`: streaming (typing out at 50 ms a character
/// step) or finished, with `summary` in the chat list.
pub fn stream_card(md: &str, streaming: bool, summary: &str) -> String {
    json!({
        "schema": "2.0",
        "config": {
            "update_multi": true,
            "streaming_mode": streaming,
            "summary": { "content": summary },
            "streaming_config": {
                "print_frequency_ms": { "default": 50, "android": 50, "ios": 50, "pc": 50 },
                "print_step": { "default": 1, "android": 1, "ios": 1, "pc": 1 },
                "print_strategy": "fast",
            },
        },
        "body": { "elements": [ { "tag": "markdown", "element_id": ELEMENT, "content": md } ] },
    })
    .to_string()
}

/// The `settings` string turning streaming on or off, with a new summary.
pub fn settings(streaming: bool, summary: Option<&str>) -> String {
    let mut config = json!({ "streaming_mode": streaming });
    if let Some(s) = summary {
        config["summary"] = json!({ "content": s });
    }
    json!({ "config": config }).to_string()
}

/// A message's `content` showing a card entity.
pub fn entity_ref(card_id: &str) -> String {
    json!({ "type": "card", "data": { "card_id": card_id } }).to_string()
}

/// Whether a message's `content` shows a card entity.
pub fn is_entity_ref(content: &str) -> bool {
    serde_json::from_str::<Value>(content).is_ok_and(|v| v["type"] == "card")
}

/// The Markdown inside a card part (empty for anything else).
pub fn markdown(part: &Part) -> String {
    serde_json::from_str::<Value>(&part.content)
        .ok()
        .and_then(|v| v["body"]["elements"][0]["content"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The chat list's summary of an answer: its first line as plain text.
pub fn summary(md: &str) -> String {
    let line = md.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("```"));
    let plain: String = line
        .unwrap_or_default()
        .trim_start_matches(['#', '>', '-', '*', ' '])
        .chars()
        .filter(|c| !matches!(c, '*' | '`' | '|' | '_'))
        .collect();
    let plain = plain.trim();
    match plain.char_indices().nth(SUMMARY_CHARS) {
        Some((i, _)) => format!("{}…", &plain[..i]),
        None => plain.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streaming_card_and_its_settings() {
        let v: Value = serde_json::from_str(&stream_card("**42**", true, "s")).unwrap();
        assert_eq!(v["schema"], "2.0");
        assert_eq!(v["config"]["update_multi"], true);
        assert_eq!(v["config"]["streaming_mode"], true);
        assert_eq!(v["config"]["summary"]["content"], "s");
        assert_eq!(v["body"]["elements"][0]["element_id"], ELEMENT);
        assert_eq!(v["body"]["elements"][0]["content"], "**42**");
        let off: Value = serde_json::from_str(&settings(false, Some("done"))).unwrap();
        assert_eq!(
            off,
            json!({"config": {"streaming_mode": false, "summary": {"content": "done"}}})
        );
        let on: Value = serde_json::from_str(&settings(true, None)).unwrap();
        assert_eq!(on, json!({"config": {"streaming_mode": true}}));
        assert!(is_entity_ref(&entity_ref("7123")));
        assert!(!is_entity_ref(&super::super::card_json("x")));
        let part = Part { msg_type: "interactive", content: super::super::card_json("a|b") };
        assert_eq!(markdown(&part), "a|b");
        assert_eq!(markdown(&Part { msg_type: "text", content: "{}".into() }), "");
    }

    #[test]
    fn summaries_are_a_plain_first_line() {
        assert_eq!(summary("## **华东区** 销售额\n\n| a |"), "华东区 销售额");
        assert_eq!(summary("```sql\nselect 1\n```\n结果"), "select 1");
        assert_eq!(summary(""), "");
        let long = "字".repeat(100);
        assert_eq!(summary(&long).chars().count(), SUMMARY_CHARS + 1);
    }
}
