//! Any Markdown: every part fits Feishu's limits and code fences stay balanced.
#![no_main]
use asktable_feishu_gateway::render::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(md) = std::str::from_utf8(data) else { return };
    let limits =
        Limits { card_markdown_bytes: 600, card_bytes: 1400, text_bytes: 500, tables_per_card: 2 };
    for p in render::render(md, &[], &limits) {
        let v: serde_json::Value = serde_json::from_str(&p.content).expect("content is JSON");
        if p.msg_type == "interactive" {
            let text = v["body"]["elements"][0]["content"].as_str().expect("markdown");
            // Only a table row too long for any card is sent whole (by design).
            let uncuttable = text.lines().any(|l| l.trim_start().starts_with('|') && l.len() > 64);
            assert!(
                p.content.len() <= limits.card_bytes || uncuttable,
                "card of {} bytes: {text:?}",
                p.content.len()
            );
            assert!(render::fences_balanced(text), "unbalanced fences in {text:?}");
        } else {
            assert!(v["text"].as_str().expect("text").len() <= limits.text_bytes.max(4));
        }
    }
});
