//! Progress coalescing: at most one card update per reply per
//! [`UPDATE_EVERY`]. A progress item that comes too soon is held until its
//! slot; a newer item for the same reply supersedes the held one. Pure
//! bookkeeping (no I/O, no threads), generic over the held item so that its
//! rules are tested with literals; the worker owns one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Progress updates per reply.
pub const UPDATE_EVERY: Duration = Duration::from_secs(1);
/// How long a reply's last update time is remembered.
const REMEMBER: Duration = Duration::from_secs(60);

/// Held progress items and when each reply was last updated, by reply key
/// (`in_reply_to`).
#[derive(Debug)]
pub struct Coalescer<T> {
    /// Items waiting for their update slot, with the slot's time.
    held: HashMap<String, (T, Instant)>,
    /// When each reply's card was last shown an update.
    last_update: HashMap<String, Instant>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer { held: HashMap::new(), last_update: HashMap::new() }
    }
}

impl<T> Coalescer<T> {
    /// The earliest slot of a held item, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.values().map(|(_, due)| *due).min()
    }

    /// Takes out the item held for `key` (a newer item supersedes it).
    pub fn supersede(&mut self, key: &str) -> Option<T> {
        self.held.remove(key).map(|(item, _)| item)
    }

    /// A progress item for `key`: returned when it may be shown now, else
    /// held until its slot (and `None` returned).
    pub fn offer(&mut self, key: String, item: T, now: Instant) -> Option<T> {
        match self.last_update.get(&key) {
            Some(t) if now.saturating_duration_since(*t) < UPDATE_EVERY => {
                let due = *t + UPDATE_EVERY;
                self.held.insert(key, (item, due));
                None
            }
            _ => Some(item),
        }
    }

    /// Records that `key`'s card was updated at `now`.
    pub fn shown(&mut self, key: String, now: Instant) {
        self.last_update.insert(key, now);
    }

    /// Takes out every held item whose slot has come.
    pub fn due(&mut self, now: Instant) -> Vec<T> {
        let keys: Vec<String> =
            self.held.iter().filter(|(_, (_, d))| *d <= now).map(|(k, _)| k.clone()).collect();
        keys.into_iter().filter_map(|k| self.supersede(&k)).collect()
    }

    /// Takes out every held item (at shutdown).
    pub fn drain(&mut self) -> Vec<T> {
        self.held.drain().map(|(_, (item, _))| item).collect()
    }

    /// Forgets update times older than a minute.
    pub fn forget_old(&mut self, now: Instant) {
        self.last_update.retain(|_, t| now.saturating_duration_since(*t) < REMEMBER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_first_update_shows_at_once_the_next_waits_for_its_slot() {
        let t0 = Instant::now();
        let mut c = Coalescer::default();
        assert_eq!(c.offer("r1".into(), "a", t0), Some("a"));
        c.shown("r1".into(), t0);
        assert_eq!(c.offer("r1".into(), "b", t0 + MS(300)), None);
        assert_eq!(c.next_due(), Some(t0 + UPDATE_EVERY));
        assert!(c.due(t0 + MS(999)).is_empty());
        assert_eq!(c.due(t0 + MS(1000)), vec!["b"]);
        assert_eq!(c.next_due(), None);
        // Another reply is not held back by r1.
        assert_eq!(c.offer("r2".into(), "x", t0 + MS(300)), Some("x"));
        // After the slot, r1 shows at once again.
        assert_eq!(c.offer("r1".into(), "c", t0 + MS(1000)), Some("c"));
    }

    #[test]
    fn a_newer_item_supersedes_the_held_one() {
        let t0 = Instant::now();
        let mut c = Coalescer::default();
        c.shown("r1".into(), t0);
        assert_eq!(c.offer("r1".into(), "b", t0 + MS(100)), None);
        assert_eq!(c.supersede("r1"), Some("b"));
        assert_eq!(c.supersede("r1"), None);
        assert_eq!(c.offer("r1".into(), "c", t0 + MS(200)), None);
        assert_eq!(c.drain(), vec!["c"]);
        assert!(c.due(t0 + MS(5000)).is_empty());
    }

    #[test]
    fn update_times_are_forgotten_after_a_minute() {
        let t0 = Instant::now();
        let mut c = Coalescer::default();
        c.shown("r1".into(), t0);
        c.forget_old(t0 + Duration::from_secs(59));
        assert_eq!(c.offer("r1".into(), 1, t0 + Duration::from_secs(59)), Some(1));
        c.forget_old(t0 + Duration::from_secs(60));
        assert!(c.last_update.is_empty());
    }
}
