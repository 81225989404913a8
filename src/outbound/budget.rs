//! Request budgets shared by every outbound thread: a sliding window per
//! key, so no one-second window holds more than `rate` calls while a short
//! burst (an answer's card and its first text) goes at once (Feishu counts
//! 5/s per chat and 50/s per app for IM calls; CardKit 10/s per card and
//! 50/s per app).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Feishu's per-app budget for IM calls (50/s) and per-chat budget (5/s).
pub const APP_RATE: f64 = 50.0;
pub const CHAT_RATE: f64 = 5.0;
/// CardKit's budget per card (10 operations a second).
pub const CARD_RATE: f64 = 10.0;

/// Which budget besides the app's a call counts against.
#[derive(Debug, Clone, Copy)]
pub enum Pace<'a> {
    /// An IM call to a chat (5/s per chat).
    Chat(&'a str),
    /// A CardKit operation on a card (10/s per card).
    Card(&'a str),
    /// The app's budget only (creating a card entity).
    App,
}

/// How long Feishu's "per second" is taken to be: 5 % slack, so that
/// network jitter cannot squeeze one call too many into its window.
const WINDOW: Duration = Duration::from_millis(1050);

/// The booked calls per key: at most `rate` of them in any [`WINDOW`].
#[derive(Default)]
pub struct Budget {
    booked: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Budget {
    /// Reserves one call on `key` at `rate`/s; returns how long to wait
    /// before making it.
    #[cfg(test)]
    fn reserve(&self, key: &str, rate: f64, now: Instant) -> Duration {
        self.reserve_all(&[(key, rate)], now)
    }

    /// Reserves one call counted against every `(key, rate)` at once: the
    /// first moment all of them allow it, booked in all (so a call held
    /// back by one key is not counted early by another). A burst up to the
    /// rate goes at once; no window of [`WINDOW`] holds more than `rate`.
    pub fn reserve_all(&self, keys: &[(&str, f64)], now: Instant) -> Duration {
        let mut booked = self.booked.lock().expect("budget lock");
        if booked.len() > 10_000 {
            booked.retain(|_, q| q.back().is_some_and(|t| *t + WINDOW > now));
        }
        for (key, _) in keys {
            if let Some(q) = booked.get_mut(*key) {
                while q.front().is_some_and(|t| *t + WINDOW <= now) {
                    q.pop_front();
                }
            }
        }
        let empty = VecDeque::new();
        let queues: Vec<(&VecDeque<Instant>, usize)> = keys
            .iter()
            .map(|(key, rate)| (booked.get(*key).unwrap_or(&empty), rate.max(1.0) as usize))
            .collect();
        // The earliest moment is now or when a booked call leaves a window.
        let mut candidates: Vec<Instant> = queues
            .iter()
            .flat_map(|(q, _)| q.iter().map(|t| *t + WINDOW))
            .filter(|t| *t > now)
            .collect();
        candidates.push(now);
        candidates.sort();
        let at = candidates
            .into_iter()
            .find(|t| queues.iter().all(|(q, n)| fits(q, *t, *n)))
            .expect("the last booked call's window end always fits");
        for (key, _) in keys {
            let q = booked.entry((*key).to_owned()).or_default();
            let pos = q.partition_point(|t| *t <= at);
            q.insert(pos, at);
        }
        at - now
    }

    /// Waits until both the app and the chat may make one more call.
    pub fn wait(&self, app_id: &str, chat: &str) {
        self.wait_for(app_id, Pace::Chat(chat));
    }

    /// Waits until the app and what `pace` names may make one more call.
    pub fn wait_for(&self, app_id: &str, pace: Pace) {
        let d = self.book(app_id, pace, Instant::now());
        if !d.is_zero() {
            thread::sleep(d);
        }
    }

    /// Reserves one call of the app counted against `pace`; how long to wait.
    fn book(&self, app_id: &str, pace: Pace, now: Instant) -> Duration {
        let app = format!("app:{app_id}");
        let other = match pace {
            Pace::Chat(chat) => Some((format!("chat:{app_id}:{chat}"), CHAT_RATE)),
            Pace::Card(card) => Some((format!("card:{app_id}:{card}"), CARD_RATE)),
            Pace::App => None,
        };
        let mut keys = vec![(app.as_str(), APP_RATE)];
        if let Some((k, r)) = &other {
            keys.push((k.as_str(), *r));
        }
        self.reserve_all(&keys, now)
    }
}

/// Whether one more call at `t` keeps every window around it at `n` calls
/// or fewer (`q` sorted). The fullest window holding `t` can be taken to
/// start at a call in it, or at `t`: those are the starts checked.
fn fits(q: &VecDeque<Instant>, t: Instant, n: usize) -> bool {
    let near: Vec<Instant> =
        q.iter().copied().filter(|e| *e + WINDOW > t && *e < t + WINDOW).collect();
    let mut starts = near.iter().copied().filter(|e| *e <= t).chain(std::iter::once(t));
    starts.all(|s| {
        let (from, to) =
            (near.partition_point(|e| *e < s), near.partition_point(|e| *e < s + WINDOW));
        to - from < n
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_burst_up_to_the_rate_goes_at_once_then_the_window_holds() {
        let b = Budget::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(b.reserve("chat", 5.0, t0), Duration::ZERO);
        }
        // The sixth waits until the first leaves the window, and so on.
        assert_eq!(b.reserve("chat", 5.0, t0), MS(1050));
        assert_eq!(b.reserve("chat", 5.0, t0 + MS(100)), MS(950));
        assert_eq!(b.reserve("other", 5.0, t0), Duration::ZERO);
        // Idle time is not saved up beyond one window's worth.
        let later = t0 + Duration::from_secs(5);
        for _ in 0..5 {
            assert_eq!(b.reserve("chat", 5.0, later), Duration::ZERO);
        }
        assert_eq!(b.reserve("chat", 5.0, later), MS(1050));
    }

    #[test]
    fn no_window_ever_holds_more_than_the_rate() {
        let b = Budget::default();
        let t0 = Instant::now();
        let mut all = Vec::new();
        let mut per_chat: HashMap<usize, Vec<Instant>> = HashMap::new();
        for i in 0..400u64 {
            // Callers every 2 ms over 20 chats, each going when it is told;
            // some are held back by their chat, some by the app.
            let now = t0 + MS(i * 2);
            let c = (i * 7 % 20) as usize;
            let chat = format!("c{c}");
            let at = now + b.reserve_all(&[("app", 50.0), (&chat, 5.0)], now);
            all.push(at);
            per_chat.entry(c).or_default().push(at);
        }
        let most = |times: &mut Vec<Instant>| {
            times.sort();
            (0..times.len())
                .map(|i| times[i..].iter().take_while(|u| **u < times[i] + WINDOW).count())
                .max()
                .unwrap_or(0)
        };
        assert_eq!(most(&mut all), 50, "the app's 50 a second, used in full");
        for times in per_chat.values_mut() {
            assert!(most(times) <= 5);
        }
    }

    #[test]
    fn a_call_held_by_one_key_is_booked_in_all_at_the_time_it_goes() {
        let b = Budget::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            b.book("cli_a", Pace::Chat("oc_1"), t0);
        }
        assert_eq!(b.book("cli_a", Pace::Chat("oc_1"), t0), MS(1050));
        // Found by the streaming benchmark: CardKit operations waited on
        // the chat's 5/s (and on spacing), so a card's first text showed
        // 50 ms late. A card counts against itself and the app.
        assert_eq!(b.book("cli_a", Pace::Card("7001"), t0), Duration::ZERO);
        assert_eq!(b.book("cli_a", Pace::App, t0), Duration::ZERO);
        for _ in 0..9 {
            b.book("cli_b", Pace::Card("7002"), t0);
        }
        assert_eq!(b.book("cli_b", Pace::Card("7002"), t0), Duration::ZERO, "ten a second");
        assert_eq!(b.book("cli_b", Pace::Card("7002"), t0), MS(1050));
    }
}
