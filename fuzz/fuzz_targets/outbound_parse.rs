//! Outbound items from Redis: accepted items satisfy the contract.
#![no_main]
use asktable_feishu_gateway::bridge::contract::{self, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Any bytes, as Redis may hold them; a rejected item's dead letter is JSON.
    if let Err(reason) = contract::parse_outbound_bytes(data) {
        let dead = contract::dead_letter_json(&reason.to_string(), data, 0);
        assert!(serde_json::from_str::<serde_json::Value>(&dead).is_ok());
    }
    if let Ok(item) = contract::parse_outbound_bytes(data) {
        assert!(!item.id.is_empty() && item.id.chars().count() <= 64);
        assert!(item.message_id.is_some() || item.chat_id.is_some());
        assert!(item.kind == Kind::Final || item.in_reply_to.is_some());
    }
});
