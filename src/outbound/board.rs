//! The board between the pop thread and the reply workers: one queue per
//! chat, taken by whichever worker is free, so that one slow chat or one
//! slow app cannot hold up another's answers.
//!
//! The rules, all here:
//! - **Order per chat**: a chat's items are handled one at a time, in the
//!   order they were taken from Redis.
//! - **Isolation**: a chat whose Feishu calls hang holds one worker; an app
//!   holds at most [`Limits::per_app`] workers at once; the pop thread never
//!   waits on one chat, only on the whole board being full
//!   ([`Limits::total`] items).
//! - **Coalescing**: a newer item for a reply supersedes its queued progress
//!   items (they are handed back to be removed), and a progress item waits
//!   until its reply's card was last updated [`UPDATE_EVERY`] ago
//!   ([`STREAM_EVERY`] for a CardKit card).
//! - **Shutdown**: after [`Board::close`], everything queued is handed out
//!   at once (no waiting for update slots) and `take` then returns `None`.
//!
//! Generic over the item so that the rules are tested with literals.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Progress updates per reply on a message card (PATCH).
pub const UPDATE_EVERY: Duration = Duration::from_secs(1);
/// Progress updates per reply streaming into a CardKit card: about five
/// operations a second (Feishu allows ten per card).
pub const STREAM_EVERY: Duration = Duration::from_millis(200);
/// How long a reply's last update time is remembered.
const REMEMBER: Duration = Duration::from_secs(60);

/// The board's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Items queued on the board (not yet taken), all chats together.
    pub total: usize,
    /// Workers one app may hold at once.
    pub per_app: usize,
}

/// An item with what the board needs to know of it.
#[derive(Debug)]
pub struct Entry<T> {
    pub item: T,
    /// The app (channel) it is for: the unit of [`Limits::per_app`].
    pub app: String,
    /// The chat it goes to: the unit of ordering.
    pub chat: String,
    /// The reply it belongs to (`in_reply_to`), if any.
    pub reply: Option<String>,
    /// A progress item (superseded by newer items of the same reply).
    pub progress: bool,
}

/// An item a worker took; give it back to [`Board::finish`].
#[derive(Debug)]
pub struct Slot {
    key: (String, String),
}

type Key = (String, String);

struct Queue<T> {
    entries: VecDeque<Entry<T>>,
    busy: bool,
}

struct State<T> {
    chats: HashMap<Key, Queue<T>>,
    /// Chats with queued items and no worker, in the order they became so.
    ready: VecDeque<Key>,
    busy_per_app: HashMap<String, usize>,
    queued: usize,
    last_update: HashMap<String, Instant>,
    closed: bool,
}

/// Queues per chat, shared by the pop thread and the workers.
pub struct Board<T> {
    limits: Limits,
    state: Mutex<State<T>>,
    changed: Condvar,
}

impl<T> Board<T> {
    pub fn new(limits: Limits) -> Board<T> {
        Board {
            limits: Limits { total: limits.total.max(1), per_app: limits.per_app.max(1) },
            state: Mutex::new(State {
                chats: HashMap::new(),
                ready: VecDeque::new(),
                busy_per_app: HashMap::new(),
                queued: 0,
                last_update: HashMap::new(),
                closed: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether another item may be queued.
    pub fn has_room(&self) -> bool {
        self.lock().queued < self.limits.total
    }

    /// Items queued and not taken.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }

    /// Queues an item behind its chat's others. Returns the queued
    /// progress items it supersedes (the caller finishes them).
    pub fn push(&self, entry: Entry<T>) -> Vec<T> {
        let mut s = self.lock();
        let key = (entry.app.clone(), entry.chat.clone());
        let q = s
            .chats
            .entry(key.clone())
            .or_insert_with(|| Queue { entries: VecDeque::new(), busy: false });
        // Before superseding: a ready chat whose only item is replaced is
        // still listed in `ready` (soak finding 11: listed twice, a worker
        // then took from an empty queue and every worker panicked).
        let was_idle = q.entries.is_empty() && !q.busy;
        let mut superseded = Vec::new();
        if let Some(reply) = &entry.reply {
            let (old, keep): (VecDeque<_>, VecDeque<_>) =
                q.entries.drain(..).partition(|e| e.progress && e.reply.as_ref() == Some(reply));
            q.entries = keep;
            superseded.extend(old.into_iter().map(|e| e.item));
        }
        q.entries.push_back(entry);
        if was_idle {
            s.ready.push_back(key);
        }
        s.queued = s.queued + 1 - superseded.len();
        drop(s);
        self.changed.notify_all();
        superseded
    }

    /// Waits for an item a worker may handle now. `None` once the board is
    /// closed and empty.
    pub fn take(&self) -> Option<(T, Slot)> {
        let mut s = self.lock();
        loop {
            match s.next(Instant::now(), self.limits) {
                Ok(taken) => return Some(taken),
                Err(_) if s.closed && s.queued == 0 => return None,
                Err(Some(due)) => {
                    let wait = due.saturating_duration_since(Instant::now());
                    s = self.changed.wait_timeout(s, wait).unwrap_or_else(|p| p.into_inner()).0;
                }
                Err(None) => s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    /// A worker is done with the item it took from this chat.
    pub fn finish(&self, slot: Slot) {
        let mut s = self.lock();
        if let Some(n) = s.busy_per_app.get_mut(&slot.key.0) {
            *n -= 1;
            if *n == 0 {
                s.busy_per_app.remove(&slot.key.0);
            }
        }
        let more = match s.chats.get_mut(&slot.key) {
            Some(q) => {
                q.busy = false;
                !q.entries.is_empty()
            }
            None => false,
        };
        if more {
            s.ready.push_back(slot.key);
        } else {
            s.chats.remove(&slot.key);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// Records that `reply`'s card was updated at `now`: its next progress
    /// item waits until `every` later.
    pub fn shown(&self, reply: &str, now: Instant, every: Duration) {
        let mut s = self.lock();
        s.last_update.retain(|_, due| now.saturating_duration_since(*due) < REMEMBER);
        s.last_update.insert(reply.to_owned(), now + every);
    }

    /// No more items will come: hand out what is queued, then end `take`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

impl<T> State<T> {
    /// The first ready chat whose head may go now, taken out. Else when to
    /// look again (`None`: when something changes).
    fn next(&mut self, now: Instant, limits: Limits) -> Result<(T, Slot), Option<Instant>> {
        let mut wake: Option<Instant> = None;
        let found = self.ready.iter().position(|key| {
            if self.busy_per_app.get(&key.0).copied().unwrap_or(0) >= limits.per_app {
                return false;
            }
            let head = &self.chats[key].entries[0];
            let due = match (&head.reply, head.progress, self.closed) {
                (Some(r), true, false) => self.last_update.get(r).copied(),
                _ => None,
            };
            match due {
                Some(due) if due > now => {
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                    false
                }
                _ => true,
            }
        });
        let Some(i) = found else { return Err(wake) };
        let key = self.ready.remove(i).expect("position is in range");
        let q = self.chats.get_mut(&key).expect("ready chats are queued");
        let entry = q.entries.pop_front().expect("ready chats are not empty");
        q.busy = true;
        self.queued -= 1;
        *self.busy_per_app.entry(key.0.clone()).or_default() += 1;
        Ok((entry.item, Slot { key }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn entry(item: &'static str, app: &str, chat: &str) -> Entry<&'static str> {
        Entry { item, app: app.into(), chat: chat.into(), reply: None, progress: false }
    }

    fn progress(item: &'static str, chat: &str, reply: &str) -> Entry<&'static str> {
        Entry { reply: Some(reply.into()), progress: true, ..entry(item, "app", chat) }
    }

    fn board() -> Board<&'static str> {
        Board::new(Limits { total: 100, per_app: 2 })
    }

    fn next(
        b: &Board<&'static str>,
        now: Instant,
    ) -> Result<(&'static str, Slot), Option<Instant>> {
        b.lock().next(now, b.limits)
    }

    /// Soak finding 11: a progress item superseding the only item of a
    /// ready chat listed the chat twice in `ready`.
    #[test]
    fn superseding_the_only_item_of_a_ready_chat_lists_it_once() {
        let b = board();
        let old = Instant::now() - Duration::from_secs(10);
        b.push(progress("p1", "A", "r"));
        assert_eq!(b.push(progress("p2", "A", "r")), vec!["p1"]);
        assert_eq!(b.lock().ready.len(), 1);
        let (item, slot) = next(&b, old + Duration::from_secs(20)).unwrap();
        assert_eq!(item, "p2");
        assert!(next(&b, Instant::now()).is_err(), "nothing else is ready");
        b.finish(slot);
        assert!(b.lock().chats.is_empty() && b.lock().ready.is_empty());
    }

    #[test]
    fn a_busy_chat_holds_back_only_itself() {
        let b = board();
        b.push(entry("a1", "app", "A"));
        b.push(entry("a2", "app", "A"));
        b.push(entry("b1", "app", "B"));
        let now = Instant::now();
        let (a1, slot_a) = next(&b, now).unwrap();
        assert_eq!(a1, "a1");
        // A's next item waits for a1; B's goes to another worker.
        let (b1, slot_b) = next(&b, now).unwrap();
        assert_eq!(b1, "b1");
        assert_eq!(next(&b, now).unwrap_err(), None);
        b.finish(slot_a);
        assert_eq!(next(&b, now).unwrap().0, "a2");
        b.finish(slot_b);
        assert_eq!(b.queued(), 0);
    }

    #[test]
    fn one_app_holds_at_most_per_app_workers() {
        let b = board();
        for (item, chat) in [("s1", "1"), ("s2", "2"), ("s3", "3")] {
            b.push(entry(item, "slow", chat));
        }
        b.push(entry("f1", "fast", "9"));
        let now = Instant::now();
        let taken: Vec<_> = (0..3).map(|_| next(&b, now).unwrap()).collect();
        let items: Vec<&str> = taken.iter().map(|t| t.0).collect();
        // The third chat of the slow app waits; the other app's item goes.
        assert_eq!(items, ["s1", "s2", "f1"]);
        assert!(next(&b, now).is_err());
        let mut taken = taken.into_iter();
        b.finish(taken.next().unwrap().1);
        assert_eq!(next(&b, now).unwrap().0, "s3");
    }

    #[test]
    fn progress_waits_for_its_slot_and_is_superseded_by_newer_items() {
        let b = board();
        let t0 = Instant::now();
        b.shown("r1", t0, UPDATE_EVERY);
        b.push(progress("p1", "A", "r1"));
        assert_eq!(next(&b, t0 + MS(300)).unwrap_err(), Some(t0 + UPDATE_EVERY));
        // Another reply is not held back by r1.
        b.push(progress("q1", "B", "r2"));
        assert_eq!(next(&b, t0 + MS(300)).unwrap().0, "q1");
        // A newer progress item replaces the waiting one...
        assert_eq!(b.push(progress("p2", "A", "r1")), vec!["p1"]);
        assert_eq!(b.queued(), 1);
        assert!(next(&b, t0 + MS(999)).is_err());
        assert_eq!(next(&b, t0 + MS(1000)).unwrap().0, "p2");
    }

    #[test]
    fn a_final_answer_supersedes_queued_progress_and_does_not_wait() {
        let b = board();
        let t0 = Instant::now();
        b.shown("r1", t0, UPDATE_EVERY);
        b.push(progress("p1", "A", "r1"));
        b.push(entry("other", "app", "A"));
        let fin = Entry { reply: Some("r1".into()), ..entry("final", "app", "A") };
        assert_eq!(b.push(fin), vec!["p1"]);
        assert_eq!(next(&b, t0).unwrap().0, "other");
    }

    #[test]
    fn closing_hands_out_everything_then_ends() {
        let b = Arc::new(board());
        b.shown("r1", Instant::now(), UPDATE_EVERY);
        b.push(progress("p1", "A", "r1"));
        b.close();
        let (p1, slot) = b.take().unwrap();
        assert_eq!(p1, "p1");
        b.finish(slot);
        assert!(b.take().is_none());
    }

    #[test]
    fn take_blocks_until_an_item_comes() {
        let b = Arc::new(board());
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || b2.take().map(|t| t.0));
        std::thread::sleep(MS(50));
        b.push(entry("x", "app", "A"));
        assert_eq!(waiter.join().unwrap(), Some("x"));
    }

    #[test]
    fn the_board_has_room_for_total_items() {
        let b = Board::new(Limits { total: 2, per_app: 1 });
        b.push(entry("1", "app", "A"));
        assert!(b.has_room());
        b.push(entry("2", "app", "A"));
        assert!(!b.has_room());
    }
}
