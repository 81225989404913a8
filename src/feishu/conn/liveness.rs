//! When a long connection pings and when it counts as dead. Pure: every
//! method takes `now`, so the rules are tested with fixed `Instant`s.
//!
//! Feishu's client pings every `PingInterval` (from the endpoint's
//! `ClientConfig`, updated by pongs); after a ping, the peer must send some
//! frame within [`pong_timeout`]. The session judges that only when the
//! socket has nothing to read, so time spent storing events never counts
//! against Feishu (ARCHITECTURE.md, "Liveness").

use std::time::{Duration, Instant};

/// How long after a ping an answer (pong or any frame) must arrive: half
/// the ping interval, clamped to 2–30 s.
pub fn pong_timeout(ping_interval: Duration) -> Duration {
    (ping_interval / 2).clamp(Duration::from_secs(2), Duration::from_secs(30))
}

/// One connection's ping schedule and unanswered ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// When the next ping is due (the first one at once).
    next_ping: Instant,
    /// When the oldest ping still unanswered by any frame was sent.
    awaiting: Option<Instant>,
}

impl Liveness {
    pub fn new(now: Instant) -> Liveness {
        Liveness { next_ping: now, awaiting: None }
    }

    /// Whether a ping should be sent now.
    pub fn ping_due(&self, now: Instant) -> bool {
        now >= self.next_ping
    }

    /// A ping was sent at `now`; the next is due one `interval` later.
    pub fn pinged(&mut self, now: Instant, interval: Duration) {
        self.awaiting.get_or_insert(now);
        self.next_ping = now + interval;
    }

    /// A frame arrived: the peer is alive.
    pub fn frame_arrived(&mut self) {
        self.awaiting = None;
    }

    /// The next moment something is due: a ping, or the end of the wait
    /// for an answer to one (just past it, so that [`Liveness::dead`] holds).
    pub fn next_deadline(&self, interval: Duration) -> Instant {
        let answer_by =
            self.awaiting.map(|since| since + pong_timeout(interval) + Duration::from_millis(1));
        answer_by.map_or(self.next_ping, |t| t.min(self.next_ping))
    }

    /// `Some(limit)` when no frame came within `limit` of an unanswered ping.
    pub fn dead(&self, now: Instant, interval: Duration) -> Option<Duration> {
        let limit = pong_timeout(interval);
        self.awaiting.filter(|since| now.saturating_duration_since(*since) > limit).map(|_| limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn pong_timeout_is_bounded() {
        assert_eq!(pong_timeout(S(1)), S(2));
        assert_eq!(pong_timeout(S(20)), S(10));
        assert_eq!(pong_timeout(S(120)), S(30));
    }

    #[test]
    fn the_first_ping_is_at_once_then_one_per_interval() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert!(l.ping_due(t0));
        l.pinged(t0, S(120));
        assert!(!l.ping_due(t0 + S(119)));
        assert!(l.ping_due(t0 + S(120)));
        // A pong's ClientConfig changes the interval from the next ping on.
        l.frame_arrived();
        l.pinged(t0 + S(120), S(10));
        assert!(!l.ping_due(t0 + S(129)));
        assert!(l.ping_due(t0 + S(130)));
    }

    #[test]
    fn dead_when_no_frame_follows_a_ping_in_time() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.dead(t0 + S(600), S(120)), None, "no ping, nothing to answer");
        l.pinged(t0, S(120));
        assert_eq!(l.dead(t0 + S(30), S(120)), None, "exactly the limit is still alive");
        assert_eq!(l.dead(t0 + S(31), S(120)), Some(S(30)));
    }

    #[test]
    fn the_next_deadline_is_the_ping_or_the_end_of_the_wait_for_an_answer() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.next_deadline(S(120)), t0, "the first ping is due at once");
        l.pinged(t0, S(120));
        let answer_by = l.next_deadline(S(120));
        assert_eq!(answer_by, t0 + S(30) + Duration::from_millis(1));
        assert_eq!(l.dead(answer_by, S(120)), Some(S(30)), "woken then, it is judged dead");
        l.frame_arrived();
        assert_eq!(l.next_deadline(S(120)), t0 + S(120), "answered: only the next ping");
        l.pinged(t0 + S(120), S(2));
        assert_eq!(l.next_deadline(S(2)), t0 + S(122), "a ping due before the answer's limit");
    }

    #[test]
    fn frames_keep_it_alive_and_unanswered_pings_keep_the_oldest_time() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        l.pinged(t0, S(4));
        l.frame_arrived();
        assert_eq!(l.dead(t0 + S(100), S(4)), None);
        l.pinged(t0 + S(4), S(4));
        l.pinged(t0 + S(8), S(4)); // still unanswered: the wait counts from the first
        assert_eq!(l.dead(t0 + S(6), S(4)), None);
        assert_eq!(l.dead(t0 + S(7), S(4)), Some(S(2)));
    }
}
