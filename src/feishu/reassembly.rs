//! Reassembly of events that Feishu splits over several data frames.
//!
//! Fragments share the header `message_id`; `sum` is the number of parts and
//! `seq` the 0-based index. Incomplete messages expire after a TTL (reset by
//! every fragment, as in the official SDKs) and the cache is bounded in
//! entries and bytes, so a peer that never finishes cannot grow memory. The
//! clock is a parameter: no I/O, no hidden time.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Limits of the reassembly cache.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// An incomplete message is dropped this long after its last fragment.
    pub ttl: Duration,
    /// Most incomplete messages held at once.
    pub max_messages: usize,
    /// Most bytes held across all incomplete messages.
    pub max_bytes: usize,
    /// Largest `sum` accepted.
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ttl: Duration::from_secs(10),
            max_messages: 64,
            max_bytes: 16 << 20,
            max_parts: 256,
        }
    }
}

/// Why a fragment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassemblyError {
    /// `sum`/`seq` are not integers with `0 <= seq < sum <= max_parts`.
    BadIndex { sum: String, seq: String },
    /// A later fragment disagrees with the first on `sum`.
    SumChanged { was: usize, now: usize },
    /// Holding this fragment would exceed the byte budget.
    TooLarge,
}

impl fmt::Display for ReassemblyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReassemblyError::BadIndex { sum, seq } => {
                write!(f, "bad fragment index seq={seq:?} sum={sum:?}")
            }
            ReassemblyError::SumChanged { was, now } => {
                write!(f, "fragment sum changed from {was} to {now}")
            }
            ReassemblyError::TooLarge => {
                write!(f, "fragmented event exceeds the reassembly budget")
            }
        }
    }
}

impl std::error::Error for ReassemblyError {}

struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    bytes: usize,
    touched: Instant,
}

/// The cache of incomplete messages of one connection.
pub struct Reassembler {
    limits: Limits,
    partial: HashMap<String, Partial>,
    bytes: usize,
}

impl Reassembler {
    pub fn new(limits: Limits) -> Reassembler {
        Reassembler { limits, partial: HashMap::new(), bytes: 0 }
    }

    /// Number of incomplete messages held.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Adds one fragment. Returns the whole payload when this fragment
    /// completes its message, `None` while parts are missing.
    pub fn push(
        &mut self,
        message_id: &str,
        sum: &str,
        seq: &str,
        payload: Vec<u8>,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, ReassemblyError> {
        let bad = || ReassemblyError::BadIndex { sum: sum.into(), seq: seq.into() };
        // A missing or empty `sum` means "not split", as in the Go SDK.
        let total: usize = if sum.is_empty() { 1 } else { sum.parse().map_err(|_| bad())? };
        let index: usize = if seq.is_empty() { 0 } else { seq.parse().map_err(|_| bad())? };
        if total == 0 || index >= total || total > self.limits.max_parts {
            return Err(bad());
        }
        if total == 1 {
            return Ok(Some(payload));
        }
        self.expire(now);
        if self.bytes + payload.len() > self.limits.max_bytes {
            return Err(ReassemblyError::TooLarge);
        }
        if !self.partial.contains_key(message_id) && self.partial.len() >= self.limits.max_messages
        {
            self.evict_oldest();
        }
        let entry = self.partial.entry(message_id.to_owned()).or_insert_with(|| Partial {
            parts: vec![None; total],
            bytes: 0,
            touched: now,
        });
        if entry.parts.len() != total {
            return Err(ReassemblyError::SumChanged { was: entry.parts.len(), now: total });
        }
        entry.touched = now;
        let len = payload.len();
        if let Some(old) = entry.parts[index].replace(payload) {
            entry.bytes -= old.len();
            self.bytes -= old.len();
        }
        entry.bytes += len;
        self.bytes += len;
        if entry.parts.iter().any(Option::is_none) {
            return Ok(None);
        }
        let done = self.partial.remove(message_id).expect("entry exists");
        self.bytes -= done.bytes;
        Ok(Some(done.parts.into_iter().flatten().flatten().collect()))
    }

    /// When the oldest incomplete message expires, if any.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.partial.values().map(|p| p.touched + self.limits.ttl).min()
    }

    /// Drops incomplete messages whose last fragment is older than the TTL.
    pub fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.limits.ttl;
        let before = self.partial.len();
        let mut freed = 0;
        self.partial.retain(|_, p| {
            let keep = now.saturating_duration_since(p.touched) < ttl;
            if !keep {
                freed += p.bytes;
            }
            keep
        });
        self.bytes -= freed;
        before - self.partial.len()
    }

    fn evict_oldest(&mut self) {
        if let Some(key) =
            self.partial.iter().min_by_key(|(_, p)| p.touched).map(|(k, _)| k.clone())
        {
            let p = self.partial.remove(&key).expect("key exists");
            self.bytes -= p.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Reassembler {
        Reassembler::new(Limits {
            ttl: Duration::from_secs(5),
            max_messages: 2,
            max_bytes: 100,
            max_parts: 8,
        })
    }

    #[test]
    fn single_part_passes_through() {
        let now = Instant::now();
        assert_eq!(r().push("m", "1", "0", b"abc".to_vec(), now), Ok(Some(b"abc".to_vec())));
        assert_eq!(r().push("m", "", "", b"abc".to_vec(), now), Ok(Some(b"abc".to_vec())));
    }

    #[test]
    fn parts_in_any_order_are_joined_in_seq_order() {
        let now = Instant::now();
        let mut r = r();
        assert_eq!(r.push("m", "3", "2", b"c".to_vec(), now), Ok(None));
        assert_eq!(r.push("m", "3", "0", b"a".to_vec(), now), Ok(None));
        assert_eq!(r.pending(), 1);
        assert_eq!(r.push("m", "3", "1", b"b".to_vec(), now), Ok(Some(b"abc".to_vec())));
        assert_eq!(r.pending(), 0);
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn bad_indexes_are_refused() {
        let now = Instant::now();
        let mut r = r();
        for (sum, seq) in [("0", "0"), ("2", "2"), ("x", "0"), ("2", "-1"), ("9", "0")] {
            assert!(matches!(
                r.push("m", sum, seq, vec![], now),
                Err(ReassemblyError::BadIndex { .. })
            ));
        }
        r.push("m", "2", "0", vec![1], now).unwrap();
        assert_eq!(
            r.push("m", "3", "1", vec![1], now),
            Err(ReassemblyError::SumChanged { was: 2, now: 3 })
        );
    }

    #[test]
    fn stale_parts_expire_and_budget_is_kept() {
        let t0 = Instant::now();
        let mut r = r();
        assert_eq!(r.next_expiry(), None);
        r.push("a", "2", "0", vec![0; 60], t0).unwrap();
        assert_eq!(r.next_expiry(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(r.push("b", "2", "0", vec![0; 60], t0), Err(ReassemblyError::TooLarge));
        // After the TTL the first message is gone and its bytes are free again.
        let later = t0 + Duration::from_secs(6);
        assert_eq!(r.push("b", "2", "0", vec![0; 60], later), Ok(None));
        assert_eq!(r.pending(), 1);
        assert_eq!(r.push("a", "2", "1", vec![1], later), Ok(None));
    }

    #[test]
    fn oldest_message_is_evicted_at_the_entry_limit() {
        let t0 = Instant::now();
        let mut r = r();
        r.push("a", "2", "0", vec![1], t0).unwrap();
        r.push("b", "2", "0", vec![2], t0 + Duration::from_millis(1)).unwrap();
        r.push("c", "2", "0", vec![3], t0 + Duration::from_millis(2)).unwrap();
        assert_eq!(r.pending(), 2);
        // "a" was evicted: its second part starts a new incomplete message.
        assert_eq!(r.push("a", "2", "1", vec![1], t0), Ok(None));
        assert_eq!(r.push("c", "2", "1", vec![4], t0), Ok(Some(vec![3, 4])));
    }
}
