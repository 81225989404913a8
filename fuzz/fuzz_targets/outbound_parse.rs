//! Outbound items from Redis: accepted items satisfy the contract.
#![no_main]
use asktable_feishu_gateway::bridge::contract::{self, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(item) = contract::parse_outbound(raw) {
        assert!(!item.id.is_empty() && item.id.chars().count() <= 64);
        assert!(item.message_id.is_some() || item.chat_id.is_some());
        assert!(item.kind == Kind::Final || item.in_reply_to.is_some());
    }
});
