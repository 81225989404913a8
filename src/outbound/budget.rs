//! Request budgets shared by every outbound thread: calls on one key are
//! spaced at least `1/rate` apart, so no one-second window holds more than
//! `rate` calls (Feishu counts 5/s per chat and 50/s per app for IM calls).

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Feishu's per-app budget for IM calls (50/s) and per-chat budget (5/s).
pub const APP_RATE: f64 = 50.0;
pub const CHAT_RATE: f64 = 5.0;

/// The next free slot per key.
#[derive(Default)]
pub struct Budget {
    next: Mutex<HashMap<String, Instant>>,
}

impl Budget {
    /// Reserves one call on `key` at `rate`/s; returns how long to wait
    /// before making it.
    pub fn reserve(&self, key: &str, rate: f64, now: Instant) -> Duration {
        // 5 % slack so that network jitter cannot squeeze one call too many
        // into Feishu's one-second window.
        let interval = Duration::from_secs_f64(1.05 / rate);
        let mut next = self.next.lock().expect("budget lock");
        if next.len() > 10_000 {
            next.retain(|_, t| *t > now);
        }
        let at = next.get(key).copied().unwrap_or(now).max(now);
        next.insert(key.to_owned(), at + interval);
        at - now
    }

    /// Waits until both the app and the chat may make one more call.
    pub fn wait(&self, app_id: &str, chat: &str) {
        let now = Instant::now();
        let a = self.reserve(&format!("app:{app_id}"), APP_RATE, now);
        let c = self.reserve(&format!("chat:{app_id}:{chat}"), CHAT_RATE, now);
        let d = a.max(c);
        if !d.is_zero() {
            thread::sleep(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_spaces_calls_per_key() {
        let b = Budget::default();
        let t0 = Instant::now();
        assert_eq!(b.reserve("chat", 5.0, t0), Duration::ZERO);
        assert_eq!(b.reserve("chat", 5.0, t0), Duration::from_millis(210));
        assert_eq!(b.reserve("chat", 5.0, t0), Duration::from_millis(420));
        assert_eq!(b.reserve("other", 5.0, t0), Duration::ZERO);
        // Idle time is not saved up for a burst later.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(b.reserve("chat", 5.0, later), Duration::ZERO);
        assert_eq!(b.reserve("chat", 5.0, later), Duration::from_millis(210));
    }

    #[test]
    fn app_and_chat_keys_are_apart() {
        let b = Budget::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            b.reserve("app:cli_a", APP_RATE, t0);
        }
        // The sixth call of the app waits 5 × 21 ms; a chat of it waits nothing.
        assert_eq!(b.reserve("app:cli_a", APP_RATE, t0), Duration::from_millis(105));
        assert_eq!(b.reserve("chat:cli_a:oc_1", CHAT_RATE, t0), Duration::ZERO);
    }
}
