//! The Redis side of questions: storing them (dedup, push and trace in one
//! script), notes on a message's trace (contract `trace`), the pending set
//! behind `ANSWER_TIMEOUT`, and the reads `trace` and `status` make of them.

use super::contract;
use super::store::{Result, Store};

impl Store {
    /// Dedup and LPUSH of several items onto `list` in one script, in order
    /// (every item with the same number of dedup keys). Per item `true`
    /// when newly pushed, `false` when any of its keys was seen before.
    pub fn push_unique(
        &mut self,
        list: &str,
        items: &[InboundItem],
        dedup_ttl: u64,
        track: Option<&Track>,
    ) -> Result<Vec<bool>> {
        self.with(|con, me| {
            let mut call = me.scripts.inbound.prepare_invoke();
            for item in items {
                for key in &item.keys {
                    call.key(key);
                }
            }
            call.key(list);
            match track {
                Some(t) => {
                    call.key(contract::PENDING);
                    for item in items {
                        call.key(&item.trace);
                    }
                    call.arg(format!(
                        "{dedup_ttl} {} {} {}",
                        contract::TRACE_TTL,
                        t.now_ms,
                        t.instance_id
                    ));
                }
                None => {
                    call.arg(dedup_ttl);
                }
            }
            for item in items {
                call.arg(&item.json);
            }
            if track.is_some() {
                for item in items {
                    call.arg(&item.record);
                }
            }
            let pushed: Vec<i64> = call.invoke(con)?;
            if me.replicated {
                super::connect::confirm_replicated(con)?;
            }
            Ok(pushed.into_iter().map(|p| p == 1).collect())
        })
    }

    /// Sets fields of a message's trace (a `+name` field is incremented)
    /// and renews its TTL.
    pub fn trace_note(&mut self, message_id: &str, fields: &[(&str, &str)]) -> Result<()> {
        let key = contract::trace_key(message_id);
        self.with(|con, me| {
            let mut call = me.scripts.trace_note.prepare_invoke();
            call.key(&key).arg(contract::TRACE_TTL);
            for (f, v) in fields {
                call.arg(*f).arg(*v);
            }
            call.invoke::<i64>(con).map(|_| ())
        })
    }

    /// Moves the item of `dead_letter` (exactly as listed) back to the
    /// outbound list; `false` when that dead letter is no longer there.
    pub fn requeue_dead(&mut self, dead_letter: &[u8], item: &str) -> Result<bool> {
        self.with(|con, _| {
            redis::Script::new(contract::REQUEUE_DEAD_SCRIPT)
                .key(contract::DEAD)
                .key(contract::OUTBOUND)
                .arg(dead_letter)
                .arg(item)
                .invoke::<i64>(con)
                .map(|n| n == 1)
        })
    }

    /// `LPUSH list value`.
    pub fn lpush(&mut self, list: &str, value: &str) -> Result<()> {
        self.with(|con, _| redis::cmd("LPUSH").arg(list).arg(value).query::<i64>(con).map(|_| ()))
    }

    /// Progress was shown: the wait for the answer starts again.
    pub fn touch_pending(&mut self, message_id: &str, now_ms: u64) -> Result<()> {
        self.with(|con, _| {
            redis::cmd("ZADD")
                .arg(contract::PENDING)
                .arg("XX")
                .arg(now_ms)
                .arg(message_id)
                .query::<i64>(con)
                .map(|_| ())
        })
    }

    /// A message's trace, field by field (empty when none is kept).
    pub fn read_trace(&mut self, message_id: &str) -> Result<Vec<(String, String)>> {
        let key = contract::trace_key(message_id);
        self.with(|con, _| redis::cmd("HGETALL").arg(&key).query(con))
    }

    /// The question was answered: it leaves the pending set.
    pub fn answered(&mut self, message_id: &str) -> Result<()> {
        self.with(|con, _| {
            redis::cmd("ZREM").arg(contract::PENDING).arg(message_id).query::<i64>(con).map(|_| ())
        })
    }

    /// Claims up to `max` questions stored before `before_ms` and not
    /// answered: they are removed from the pending set by this call.
    pub fn claim_unanswered(&mut self, before_ms: u64, max: usize) -> Result<Vec<String>> {
        self.with(|con, me| {
            me.scripts.unanswered.key(contract::PENDING).arg(before_ms).arg(max).invoke(con)
        })
    }

    /// When the oldest pending question was stored (ms), if any.
    pub fn oldest_pending(&mut self) -> Result<Option<u64>> {
        self.with(|con, _| {
            let first: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(contract::PENDING)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES")
                .query(con)?;
            Ok(first.first().map(|(_, at)| *at as u64))
        })
    }

    /// Since when a question waits for its answer (ms), if it does.
    pub fn pending_since(&mut self, message_id: &str) -> Result<Option<u64>> {
        self.with(|con, _| {
            let at: Option<f64> =
                redis::cmd("ZSCORE").arg(contract::PENDING).arg(message_id).query(con)?;
            Ok(at.map(|a| a as u64))
        })
    }

    /// How many questions are waiting for an answer.
    pub fn pending_count(&mut self) -> Result<u64> {
        self.with(|con, _| redis::cmd("ZCARD").arg(contract::PENDING).query(con))
    }

    /// Counts a channel's unanswered question.
    pub fn count_unanswered(
        &mut self,
        channel_id: &str,
        message_id: &str,
        at_ms: u64,
    ) -> Result<()> {
        let key = contract::unanswered_key(channel_id);
        let at = at_ms.to_string();
        self.with(|con, me| {
            me.scripts
                .trace_note
                .key(&key)
                .arg(contract::UNANSWERED_TTL)
                .arg("+count")
                .arg(1)
                .arg("last_at")
                .arg(&at)
                .arg("last_message_id")
                .arg(message_id)
                .invoke::<i64>(con)
                .map(|_| ())
        })
    }

    /// A channel's unanswered count and when the last one was (ms).
    pub fn unanswered(&mut self, channel_id: &str) -> Result<Option<(u64, u64)>> {
        let key = contract::unanswered_key(channel_id);
        self.with(|con, _| {
            let (count, at): (Option<u64>, Option<u64>) =
                redis::cmd("HMGET").arg(&key).arg("count").arg("last_at").query(con)?;
            Ok(count.map(|c| (c, at.unwrap_or(0))))
        })
    }
}

/// One inbound item to store, with its dedup keys (and its trace key and
/// record, used when the call tracks).
pub struct InboundItem {
    pub keys: Vec<String>,
    pub trace: String,
    pub json: String,
    /// What the trace records of it ([`contract::trace_record`]).
    pub record: String,
}

/// What `push_unique` records of each message for `trace` and
/// `ANSWER_TIMEOUT` (contract `trace`).
pub struct Track {
    pub now_ms: u64,
    pub instance_id: String,
}
