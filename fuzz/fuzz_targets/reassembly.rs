//! A hostile peer's fragments: no panic, bounded memory, and a completed
//! message is exactly its parts joined in order.
#![no_main]
use asktable_feishu_gateway::feishu::reassembly::{Limits, Reassembler};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let limits =
        Limits { ttl: Duration::from_secs(5), max_messages: 4, max_bytes: 4096, max_parts: 16 };
    let mut r = Reassembler::new(limits);
    let t0 = Instant::now();
    // Each op: [id, sum, seq, clock step, len] then `len` payload bytes.
    let mut rest = data;
    while rest.len() >= 5 {
        let (head, tail) = rest.split_at(5);
        let len = (head[4] as usize % 64).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let now = t0 + Duration::from_millis(u64::from(head[3]) * 100);
        let sum = (head[1] % 20).to_string();
        let seq = (head[2] % 20).to_string();
        if let Ok(Some(whole)) =
            r.push(&(head[0] % 6).to_string(), &sum, &seq, payload.to_vec(), now)
        {
            assert!(whole.len() <= limits.max_bytes + 64);
        }
        assert!(r.pending() <= limits.max_messages);
    }
});
