//! Event payloads (after reassembly) → the parser's verdict, never a panic.
#![no_main]
use asktable_feishu_gateway::channel::GroupPolicy;
use asktable_feishu_gateway::feishu::event::{self, Context, Outcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (bot, policy, key) in
        [(Some("ou_bot"), GroupPolicy::Mention, ""), (None, GroupPolicy::All, "k")]
    {
        let ctx = Context {
            bot_open_id: bot,
            group_policy: policy,
            max_age_ms: 7_200_000,
            now_ms: 1_764_000_000_000,
            encrypt_key: key,
            verification_token: "",
        };
        if let Ok(Outcome::Message(m)) = event::parse(data, &ctx) {
            assert!(!m.question.is_empty());
            assert_eq!(m.question.trim(), m.question);
        }
    }
});
