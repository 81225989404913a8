//! `ANSWER_TIMEOUT`: questions stored and not answered in time. The pop
//! thread looks now and then; each due question is claimed (only one
//! replica acts on it), logged once, counted in `/metrics` and in the
//! channel's unanswered count for `status`, and answered with a notice
//! (`NO_ANSWER_HINT`) that the workers deliver like any reply, removing
//! the typing reaction. A late answer is still delivered normally.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::bridge::contract;
use crate::bridge::store::{self, Store};
use crate::clock::now_ms;
use crate::metrics;

/// Most questions claimed per look.
const BATCH: usize = 50;

/// The pop thread's view of unanswered questions.
pub struct Unanswered {
    timeout: Duration,
    hint: String,
    next: Instant,
}

impl Unanswered {
    pub fn new(timeout: Duration, hint: String) -> Unanswered {
        Unanswered { timeout, hint, next: Instant::now() }
    }

    /// How often to look: a quarter of the timeout, 1 to 30 s.
    fn every(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// Handles the questions that are due, if it is time to look.
    pub fn look(&mut self, store: &mut Store) -> store::Result<()> {
        if Instant::now() < self.next {
            return Ok(());
        }
        self.next = Instant::now() + self.every();
        let before = now_ms().saturating_sub(self.timeout.as_millis() as u64);
        loop {
            let due = store.claim_unanswered(before, BATCH)?;
            for message_id in &due {
                self.tell(store, message_id);
            }
            if due.len() < BATCH {
                return Ok(());
            }
        }
    }

    /// One question claimed: log, count, and queue the notice.
    fn tell(&self, store: &mut Store, message_id: &str) {
        let trace: HashMap<String, String> =
            store.read_trace(message_id).unwrap_or_default().into_iter().collect();
        let field = |k: &str| trace.get(k).map(String::as_str).unwrap_or_default();
        let channel = field("channel");
        let minutes = self.timeout.as_secs().div_ceil(60);
        log::warn!(
            "[{}] question {message_id} got no answer within {minutes} min (ANSWER_TIMEOUT): is AskTable Server reading {} and answering? {}",
            if channel.is_empty() { "?" } else { channel },
            contract::INBOUND,
            if self.hint.is_empty() { "NO_ANSWER_HINT is off" } else { "the user is told" }
        );
        metrics::inc(
            metrics::UNANSWERED,
            &[("channel", if channel.is_empty() { "?" } else { channel })],
        );
        let now = now_ms();
        if channel.is_empty() {
            return; // No trace left: nothing to reply to.
        }
        let _ = store.count_unanswered(channel, message_id, now);
        let _ = store.trace_note(message_id, &[("unanswered_at", &now.to_string())]);
        let item = contract::notice_item(
            channel,
            field("inbound_id"),
            message_id,
            field("chat"),
            field("thread") == "1",
            &self.hint,
            now,
        );
        if let Err(e) = store.lpush(contract::OUTBOUND, &item) {
            log::warn!("[{channel}] no-answer notice for {message_id} not queued: {e}");
        }
    }
}
