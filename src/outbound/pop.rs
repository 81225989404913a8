//! The `outbound-pop` thread: `BLMOVE` from the outbound list into this
//! instance's processing list, recovery of unfinished items (this
//! instance's previous run, instances whose heartbeat expired), the sweep
//! of items no worker holds, and dispatch to the board (queues by chat).
//!
//! [`InFlight`] is the bookkeeping that makes the sweep safe; its rule is
//! the pure [`orphans`].

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::board::{Board, Entry};
use super::unanswered::Unanswered;
use super::{Job, Settings};
use crate::bridge::contract::{self, Kind};
use crate::bridge::store::{self, Store};
use crate::clock::Backoff;
use crate::panics;

/// Items of this instance's processing list that a worker holds (taken
/// from Redis and not finished yet), counted by their raw JSON. What is in
/// the list but not here was taken without reaching a worker: a `BLMOVE`
/// whose reply was lost when Redis restarted, or an item whose removal
/// failed. The pop thread sweeps those up.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashMap<Vec<u8>, usize>>>);

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<u8>, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A worker holds one more copy of `raw`.
    pub fn add(&self, raw: &[u8]) {
        *self.lock().entry(raw.to_owned()).or_default() += 1;
    }

    /// A worker finished one copy of `raw`.
    pub fn release(&self, raw: &[u8]) {
        let mut map = self.lock();
        if let Some(n) = map.get_mut(raw) {
            *n -= 1;
            if *n == 0 {
                map.remove(raw);
            }
        }
    }

    /// The items `list` returns that no worker holds. The lock is held
    /// across the read, so that an item a worker finishes meanwhile is
    /// either gone from the list or still counted.
    pub fn orphans_in(
        &self,
        list: impl FnOnce() -> store::Result<Vec<Vec<u8>>>,
    ) -> store::Result<Vec<Vec<u8>>> {
        let held = self.lock();
        Ok(orphans(&held, list()?))
    }
}

/// The multiset difference `listed − held`: every listed copy beyond the
/// number of copies workers hold, in list order.
pub fn orphans(held: &HashMap<Vec<u8>, usize>, listed: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut held = held.clone();
    listed
        .into_iter()
        .filter(|raw| match held.get_mut(raw) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect()
}

/// How long the pop thread pauses while the board is full.
const BOARD_FULL_WAIT: Duration = Duration::from_millis(100);

/// The pop thread's state.
pub struct Pop {
    pub settings: Settings,
    pub store: Store,
    pub board: Arc<Board<Job>>,
    pub in_flight: InFlight,
    /// Whether the last Redis call worked (`None` before the first).
    redis_ok: Option<bool>,
    /// This instance's leftovers of a previous run were re-queued.
    own_recovered: bool,
    /// Set when Redis was unreachable: a reply may have been lost.
    sweep_due: bool,
    /// `ANSWER_TIMEOUT`, when on.
    unanswered: Option<Unanswered>,
}

impl Pop {
    pub fn new(
        settings: Settings,
        store: Store,
        board: Arc<Board<Job>>,
        in_flight: InFlight,
    ) -> Pop {
        Pop {
            store,
            board,
            in_flight,
            redis_ok: None,
            own_recovered: false,
            sweep_due: false,
            unanswered: settings
                .answer_timeout
                .map(|t| Unanswered::new(t, settings.no_answer_hint.clone())),
            settings,
        }
    }

    /// Runs until `stop` fires. Run again after a panic, it picks up where
    /// it was (an item it was handing out is found by the sweep).
    pub fn run(&mut self, stop: &Receiver<()>) {
        let processing = contract::processing_key(&self.settings.instance_id);
        let mut next_recovery = Instant::now();
        let mut wait = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        self.sweep_due = self.own_recovered;
        loop {
            if !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
                return;
            }
            if Instant::now() >= next_recovery || (self.sweep_due && self.redis_ok == Some(true)) {
                next_recovery = Instant::now() + self.settings.recover_every;
                if self.recover(&processing).and_then(|()| self.sweep(&processing)).is_err() {
                    next_recovery = Instant::now();
                }
            }
            // Nothing new is taken before the previous run's leftovers are back.
            if !self.own_recovered {
                if !matches!(stop.recv_timeout(wait.next_delay()), Err(RecvTimeoutError::Timeout)) {
                    return;
                }
                continue;
            }
            if let Some(u) = &mut self.unanswered
                && let Err(e) = u.look(&mut self.store)
            {
                log::debug!("outbound: unanswered questions not checked: {e}");
            }
            // A full board (every chat's items together) waits; one chat never does.
            if !self.board.has_room() {
                if !matches!(stop.recv_timeout(BOARD_FULL_WAIT), Err(RecvTimeoutError::Timeout)) {
                    return;
                }
                continue;
            }
            match self.store.blmove(contract::OUTBOUND, &processing, Duration::from_secs(1)) {
                Ok(Some(raw)) => {
                    self.note(Ok(()));
                    wait.reset();
                    self.dispatch(raw, &processing);
                }
                Ok(None) => self.note(Ok(())),
                Err(e) => {
                    self.note(Err(e));
                    if !matches!(
                        stop.recv_timeout(wait.next_delay()),
                        Err(RecvTimeoutError::Timeout)
                    ) {
                        return;
                    }
                }
            }
        }
    }

    /// Logs Redis reachability once per change.
    fn note(&mut self, r: store::Result<()>) {
        let ok = r.is_ok();
        if self.redis_ok != Some(ok) {
            match r {
                Ok(()) if self.redis_ok.is_some() => log::info!("outbound: Redis reachable again"),
                Ok(()) => {}
                Err(e) => {
                    log::warn!("outbound: cannot read {} ({e}); retrying", contract::OUTBOUND)
                }
            }
            self.redis_ok = Some(ok);
        }
        self.sweep_due |= !ok;
    }

    /// Hands items of this instance's processing list that no worker holds
    /// to the workers (see [`InFlight`]).
    fn sweep(&mut self, own: &str) -> store::Result<()> {
        let store = &mut self.store;
        let orphans = self.in_flight.orphans_in(|| store.lrange(own, 0, -1))?;
        self.sweep_due = false;
        if !orphans.is_empty() {
            log::info!(
                "outbound: {} item(s) in {own} had not reached a worker (a reply lost while Redis was unreachable); handling them now",
                orphans.len()
            );
        }
        for raw in orphans {
            self.dispatch(raw, own);
        }
        Ok(())
    }

    /// Re-queues this instance's leftovers from a previous run (once, at
    /// start) and the lists of instances whose heartbeat has expired.
    fn recover(&mut self, own: &str) -> store::Result<()> {
        if !self.own_recovered {
            let n = self.store.requeue(own)?;
            if n > 0 {
                log::info!(
                    "outbound: re-queued {n} unfinished item(s) from this instance's previous run"
                );
            }
            self.own_recovered = true;
        }
        for list in self.store.processing_lists()? {
            let instance =
                list.strip_prefix(&contract::processing_prefix()).unwrap_or_default().to_owned();
            if list == own || self.store.exists(&contract::heartbeat_key(&instance))? {
                continue;
            }
            let n = self.store.requeue(&list)?;
            if n > 0 {
                log::info!(
                    "outbound: re-queued {n} unfinished item(s) of stopped instance {instance}"
                );
            }
        }
        Ok(())
    }

    /// Parses an item and queues it on the board, or dead-letters it.
    fn dispatch(&mut self, raw: Vec<u8>, processing: &str) {
        panics::inject("outbound-pop");
        match contract::parse_outbound_bytes(&raw) {
            Ok(item) => {
                self.in_flight.add(&raw);
                let entry = Entry {
                    app: item.channel_id.clone(),
                    chat: item.lane_key().to_owned(),
                    reply: item.in_reply_to.clone(),
                    progress: item.kind == Kind::Progress,
                    item: Job { raw, item, since: Instant::now() },
                };
                // Superseded progress items are previews nobody needs now.
                // One not removed is left for the sweep.
                for old in self.board.push(entry) {
                    let removed = self.store.lrem(processing, &old.raw).is_ok();
                    self.in_flight.release(&old.raw);
                    self.sweep_due |= !removed;
                }
            }
            Err(reason) => {
                log::warn!("outbound: item dead-lettered: {reason}");
                if !super::bury(&mut self.store, processing, &raw, &reason.to_string()) {
                    log::warn!("outbound: could not dead-letter an item; it stays in {processing}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(pairs: &[(&str, usize)]) -> HashMap<Vec<u8>, usize> {
        pairs.iter().map(|(k, n)| (k.as_bytes().to_vec(), *n)).collect()
    }

    fn list(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn items_no_worker_holds_are_orphans() {
        assert_eq!(orphans(&held(&[]), list(&["a", "b"])), list(&["a", "b"]));
        assert_eq!(orphans(&held(&[("a", 1)]), list(&["a", "b"])), list(&["b"]));
        assert!(orphans(&held(&[("a", 1), ("b", 1)]), list(&["b", "a"])).is_empty());
    }

    #[test]
    fn identical_items_are_counted_copy_by_copy() {
        // The same raw JSON twice in the list, one copy held: one orphan.
        assert_eq!(orphans(&held(&[("a", 1)]), list(&["a", "a"])), list(&["a"]));
        assert!(orphans(&held(&[("a", 2)]), list(&["a", "a"])).is_empty());
        // Held but no longer listed (finished meanwhile): nothing to do.
        assert!(orphans(&held(&[("a", 3)]), list(&["a"])).is_empty());
    }

    #[test]
    fn in_flight_counts_add_and_release() {
        let f = InFlight::default();
        f.add(b"a");
        f.add(b"a");
        f.release(b"a");
        assert_eq!(f.orphans_in(|| Ok(list(&["a", "a"]))).unwrap(), list(&["a"]));
        f.release(b"a");
        f.release(b"a"); // one release too many is harmless
        assert_eq!(f.orphans_in(|| Ok(list(&["a"]))).unwrap(), list(&["a"]));
    }
}
