//! Channel config entries from Redis: never a panic; errors never echo the secret.
#![no_main]
use asktable_feishu_gateway::bridge::contract;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match contract::parse_channel_config("ch_fuzz", data) {
        Ok(c) => assert!(!c.app_id.is_empty() && !c.app_secret.is_empty()),
        Err(e) => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data)
                && let Some(secret) = v.get("app_secret").and_then(|s| s.as_str())
                && secret.len() >= 8
            {
                assert!(!e.to_string().contains(secret), "secret echoed in {e}");
            }
        }
    }
});
