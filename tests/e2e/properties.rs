//! Properties of the pure parts: the frame codec, fragment reassembly,
//! Markdown splitting, and the parsers of untrusted input (never panic).

use asktable_feishu_gateway::bridge::contract;
use asktable_feishu_gateway::channel::GroupPolicy;
use asktable_feishu_gateway::feishu::event;
use asktable_feishu_gateway::feishu::frame::Frame;
use asktable_feishu_gateway::feishu::reassembly::{Limits, Reassembler};
use asktable_feishu_gateway::render::{self, Limits as RenderLimits};
use proptest::prelude::*;
use std::time::Instant;

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<i32>(),
        any::<i32>(),
        proptest::collection::vec((".{0,12}", ".{0,24}"), 0..6),
        proptest::option::of(".{0,8}"),
        proptest::option::of(".{0,8}"),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        proptest::option::of(".{0,8}"),
    )
        .prop_map(|(seq_id, log_id, service, method, headers, enc, ty, payload, new)| Frame {
            seq_id,
            log_id,
            service,
            method,
            headers,
            payload_encoding: enc,
            payload_type: ty,
            payload,
            log_id_new: new,
        })
}

/// Markdown made of paragraphs, code blocks and tables, in any order.
fn markdown() -> impl Strategy<Value = String> {
    let para = "[a-z华东区 ]{1,200}"
        .prop_map(|s| s.trim().to_owned())
        .prop_filter("non-empty", |s| !s.is_empty());
    let code = proptest::collection::vec("[a-z =;()]{0,80}", 1..60)
        .prop_map(|lines| format!("```sql\n{}\n```", lines.join("\n")));
    let table = proptest::collection::vec("[0-9]{1,6}", 1..80).prop_map(|cells| {
        let rows: Vec<String> =
            cells.iter().enumerate().map(|(i, c)| format!("| r{i} | {c} |")).collect();
        format!("| 行 | 值 |\n|---|---|\n{}", rows.join("\n"))
    });
    proptest::collection::vec(prop_oneof![para, code, table], 1..12)
        .prop_map(|blocks| blocks.join("\n\n"))
}

fn is_fence(l: &str) -> bool {
    l.trim_start().starts_with("```")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frames_round_trip(f in frame()) {
        prop_assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
    }

    #[test]
    fn frame_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Frame::decode(&bytes);
    }

    #[test]
    fn fragments_reassemble_in_any_order(payload in proptest::collection::vec(any::<u8>(), 1..2000), parts in 1usize..12, seed in any::<u64>()) {
        let parts = parts.min(payload.len());
        let chunk = payload.len().div_ceil(parts);
        let mut pieces: Vec<(usize, Vec<u8>)> = payload.chunks(chunk).map(<[u8]>::to_vec).enumerate().collect();
        // Shuffle deterministically from the seed.
        let mut s = seed;
        for i in (1..pieces.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            pieces.swap(i, (s >> 33) as usize % (i + 1));
        }
        let sum = pieces.len().to_string();
        let mut r = Reassembler::new(Limits::default());
        let now = Instant::now();
        let mut done = None;
        for (seq, piece) in pieces {
            if let Some(whole) = r.push("m", &sum, &seq.to_string(), piece, now).unwrap() {
                prop_assert!(done.is_none());
                done = Some(whole);
            }
        }
        prop_assert_eq!(done, Some(payload));
        prop_assert_eq!(r.pending(), 0);
    }

    #[test]
    fn rendered_parts_respect_limits_and_keep_every_line(md in markdown(), card_budget in 700usize..4000) {
        let limits = RenderLimits { card_markdown_bytes: card_budget, card_bytes: card_budget * 2, text_bytes: card_budget, tables_per_card: 5 };
        let parts = render::cards(&md, &limits);
        let mut seen: Vec<String> = Vec::new();
        for p in &parts {
            prop_assert!(p.content.len() <= limits.card_bytes, "{} > {}", p.content.len(), limits.card_bytes);
            let v: serde_json::Value = serde_json::from_str(&p.content).unwrap();
            let text = v["body"]["elements"][0]["content"].as_str().unwrap().to_owned();
            prop_assert!(render::fences_balanced(&text), "unbalanced fences in {}", text);
            seen.extend(text.lines().map(str::to_owned));
        }
        // No line is lost or reordered (every generated line fits a part;
        // cutting longer lines is covered by the unit tests): paragraphs, code lines and table rows
        // appear in their original order (fences, blank lines and repeated
        // table headers aside; extra tables may be re-laid as monospace rows).
        let wanted: Vec<&str> = md.lines().filter(|l| !l.trim().is_empty() && !is_fence(l) && !l.starts_with("| 行") && !l.starts_with("|---")).collect();
        let mut at = 0;
        for w in &wanted {
            let key: String = w.trim().trim_matches('|').split('|').map(str::trim).collect::<Vec<_>>().join(" ");
            let found = seen[at..].iter().position(|l| {
                let cells: String = l.trim().trim_matches('|').split('|').map(str::trim).collect::<Vec<_>>().join(" ");
                l.trim() == w.trim() || cells == key || l.split_whitespace().collect::<Vec<_>>().join(" ") == key
            });
            prop_assert!(found.is_some(), "line {:?} lost or out of order", w);
            at += found.unwrap() + 1;
        }
    }

    #[test]
    fn plain_text_splitting_loses_nothing(text in "[a-z数据 \n]{0,5000}", budget in 16usize..2000) {
        let parts = render::texts(&text, &RenderLimits { text_bytes: budget, ..RenderLimits::default() });
        let joined: String = parts.iter().map(|p| {
            let v: serde_json::Value = serde_json::from_str(&p.content).unwrap();
            v["text"].as_str().unwrap().to_owned()
        }).collect::<Vec<_>>().join("");
        let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        prop_assert_eq!(squash(&joined), squash(&text));
        for p in &parts {
            let v: serde_json::Value = serde_json::from_str(&p.content).unwrap();
            prop_assert!(v["text"].as_str().unwrap().len() <= budget.max(4));
        }
    }

    #[test]
    fn parsers_of_untrusted_input_never_panic(raw in ".{0,400}", bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let ctx = event::Context { bot_open_id: Some("ou_b"), group_policy: GroupPolicy::Mention, max_age_ms: 0, now_ms: 0, encrypt_key: "k", verification_token: "" };
        let _ = event::parse(raw.as_bytes(), &ctx);
        let _ = event::parse(&bytes, &ctx);
        let _ = contract::parse_outbound(&raw);
        let _ = contract::parse_outbound_bytes(&bytes);
        let dead = contract::dead_letter_json("r", &bytes, 0);
        prop_assert!(serde_json::from_str::<serde_json::Value>(&dead).is_ok());
        let _ = contract::parse_channel_config("c", raw.as_bytes());
        let _ = contract::parse_channel_config("c", &bytes);
        let _ = render::render(&raw, &[], &RenderLimits::default());
    }

    #[test]
    fn event_parse_never_panics_on_event_shaped_json(
        text in ".{0,100}", chat in "(p2p|group|topic_group|x)", msg_type in "(text|post|image|x)",
        key in "@_user_[0-9]{1,2}", ct in "[0-9]{0,14}", content_raw in ".{0,60}",
    ) {
        let content = if msg_type == "text" { serde_json::json!({"text": text}).to_string() } else { content_raw };
        let v = serde_json::json!({"schema": "2.0", "header": {"event_id": "e", "event_type": "im.message.receive_v1"},
            "event": {"sender": {"sender_id": {"open_id": "ou_1"}, "sender_type": "user"},
            "message": {"message_id": "om", "create_time": ct, "chat_id": "oc", "chat_type": chat, "message_type": msg_type,
            "content": content, "mentions": [{"key": key, "id": {"open_id": "ou_b"}, "name": text}]}}});
        let ctx = event::Context { bot_open_id: Some("ou_b"), group_policy: GroupPolicy::All, max_age_ms: 1000, now_ms: 5, encrypt_key: "", verification_token: "" };
        let _ = event::parse(v.to_string().as_bytes(), &ctx);
    }
}
