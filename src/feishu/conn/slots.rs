//! How many channels of the process connect at once.
//!
//! A start with many channels would otherwise make every endpoint, token
//! and bot-info call and run every TLS handshake at the same moment: a
//! burst at Feishu, and the handshakes' temporary buffers freed between the
//! connections' long-lived TLS state, which fragments the heap for good
//! (glibc, 1000 channels over `wss://`: about 3 MiB more resident with 16
//! at once than with 4). A connect that is slow (an unreachable host, a
//! proxy waiting for its timeout) stops counting after [`SLOW`]: a few
//! unreachable apps cannot hold the others back, and a connect that waits
//! on the network neither calls Feishu nor allocates.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Connects in progress at once, per process.
const AT_ONCE: usize = 4;

/// After this long a connect in progress no longer counts against [`AT_ONCE`].
const SLOW: Duration = Duration::from_secs(2);

/// The process's connects.
pub static CONNECTS: Limit = Limit::new(AT_ONCE, SLOW);

/// At most `at_once` holders younger than `slow`.
pub struct Limit {
    state: Mutex<State>,
    freed: Condvar,
    at_once: usize,
    slow: Duration,
}

struct State {
    next_id: u64,
    /// The holders: id and when each got its slot.
    running: Vec<(u64, Instant)>,
}

/// A slot of a [`Limit`], held while connecting.
pub struct Slot<'a> {
    limit: &'a Limit,
    id: u64,
}

impl Limit {
    pub const fn new(at_once: usize, slow: Duration) -> Limit {
        Limit {
            state: Mutex::new(State { next_id: 0, running: Vec::new() }),
            freed: Condvar::new(),
            at_once,
            slow,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until fewer than `at_once` holders are younger than `slow`.
    pub fn take(&self) -> Slot<'_> {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        loop {
            let now = Instant::now();
            let young = || s.running.iter().map(|(_, at)| *at).filter(|at| now - *at < self.slow);
            if young().count() < self.at_once {
                s.running.push((id, now));
                return Slot { limit: self, id };
            }
            // Full: wait for a slot to be freed or the oldest to turn slow.
            let oldest = young().min().unwrap_or(now);
            let aged = self.slow.saturating_sub(now - oldest);
            s = self.freed.wait_timeout(s, aged).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.limit.lock().running.retain(|(id, _)| *id != self.id);
        self.limit.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;

    /// Takes a slot on another thread; says when it got it.
    fn taker(limit: &'static Limit) -> mpsc::Receiver<Instant> {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _slot = limit.take();
            let _ = tx.send(Instant::now());
            thread::sleep(Duration::from_secs(30));
        });
        rx
    }

    #[test]
    fn a_freed_slot_lets_the_next_one_in() {
        static LIMIT: Limit = Limit::new(2, Duration::from_secs(60));
        let (a, b) = (LIMIT.take(), LIMIT.take());
        let third = taker(&LIMIT);
        assert!(third.recv_timeout(Duration::from_millis(300)).is_err(), "a third slot of two");
        drop(a);
        assert!(
            third.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the freed slot was not taken"
        );
        drop(b);
    }

    #[test]
    fn a_slow_holder_stops_counting() {
        static LIMIT: Limit = Limit::new(1, Duration::from_millis(400));
        let start = Instant::now();
        let _stuck = LIMIT.take();
        let next = taker(&LIMIT);
        let got = next.recv_timeout(Duration::from_secs(10)).expect("never let in");
        assert!(got - start >= Duration::from_millis(400), "let in after {:?}", got - start);
    }
}
