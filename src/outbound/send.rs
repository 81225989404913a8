//! Sending to Feishu: one call with the request budget and transient
//! retries inside the item's retry window, and a reply's parts in order
//! with their fallbacks (the chat when the message is gone, no thread when
//! the group has none, plain text when a card is refused). Every send
//! carries a deterministic idempotency uuid, so a replay never posts twice.
//!
//! Every way a delivery can fail is one [`Undelivered`]; its `Display` is
//! the dead-letter reason.

use std::fmt;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::budget::{Budget, Pace};
use super::{ChannelRef, Job};
use crate::bridge::contract::{self, Kind};
use crate::bridge::store::RedisError;
use crate::clock::Backoff;
use crate::feishu::api::{Api, ApiError, Destination, Failure};
use crate::metrics;
use crate::render::{self, Limits, Part, stream};

/// How long a progress item is retried: less than the claim TTL, so that
/// its claim is still held when it records the card (a preview that late
/// is not worth more).
pub const PROGRESS_RETRY: Duration = Duration::from_secs(20);

/// A deterministic Feishu idempotency key (≤ 50 chars) for part `n` of an
/// item, in a `variant` (`c` rendered, `t` text fallback, `p` progress card,
/// `u` parts after a completed card).
pub fn uuid(id: &str, variant: char, n: usize) -> String {
    format!("{}-{variant}{n}", contract::short_hash(id))
}

/// Why an item could not be delivered.
#[derive(Debug)]
pub enum Undelivered {
    /// Feishu refused the call for a reason retrying does not fix.
    Refused(Failure, ApiError),
    /// Feishu kept failing transiently for the whole retry window.
    GaveUp { window: Duration, last: ApiError },
    /// The message replied to is gone and the item names no chat.
    NoTarget,
    /// The item's channel is neither running nor configured.
    UnknownChannel(String),
    /// Redis did not say what the reply's state is.
    Redis(RedisError),
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undelivered::Refused(_, e) => write!(f, "feishu: {e}"),
            Undelivered::GaveUp { window, last } => {
                write!(f, "still failing after the retry window of {}s: {last}", window.as_secs())
            }
            Undelivered::NoTarget => {
                f.write_str("the message was withdrawn and the item has no chat_id")
            }
            Undelivered::UnknownChannel(id) => write!(f, "unknown channel {id}"),
            Undelivered::Redis(e) => write!(f, "redis: {e}"),
        }
    }
}

impl std::error::Error for Undelivered {}

/// What a worker sends with: the REST client, the shared budget, the size
/// limits and the retry window.
pub struct Courier {
    pub api: Arc<Api>,
    pub budget: Arc<Budget>,
    pub limits: Limits,
    pub retry_window: Duration,
}

impl Courier {
    /// Runs a Feishu call with the budget and transient retries until the
    /// job's retry window ends; any other failure is returned at once.
    pub fn call<T>(
        &self,
        ch: &ChannelRef,
        job: &Job,
        f: impl FnMut(&Api) -> Result<T, ApiError>,
    ) -> Result<T, Undelivered> {
        self.call_paced(ch, job, Pace::Chat(job.item.lane_key()), f)
    }

    /// Like [`call`](Self::call), counted against `pace` (a CardKit
    /// operation counts against its card, not the chat).
    pub fn call_paced<T>(
        &self,
        ch: &ChannelRef,
        job: &Job,
        pace: Pace,
        mut f: impl FnMut(&Api) -> Result<T, ApiError>,
    ) -> Result<T, Undelivered> {
        let window = match job.item.kind {
            Kind::Progress => self.retry_window.min(PROGRESS_RETRY),
            Kind::Final | Kind::Notice => self.retry_window,
        };
        let deadline = job.since + window;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            self.budget.wait_for(&ch.app_id, pace);
            let e = match f(&self.api) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            metrics::inc(metrics::FEISHU_ERRORS, &[("code", &e.code().to_string())]);
            match e.failure() {
                Failure::Transient(wait) => {
                    let wait = wait.unwrap_or(backoff.current()).min(Duration::from_secs(60));
                    if Instant::now() + wait >= deadline {
                        return Err(Undelivered::GaveUp { window: self.retry_window, last: e });
                    }
                    metrics::inc(metrics::OUTBOUND_RETRIES, &[]);
                    log::info!(
                        "outbound [{}]: item {} retrying in {:.1}s: {e}",
                        job.item.channel_id,
                        job.item.id,
                        wait.as_secs_f64()
                    );
                    thread::sleep(wait);
                    backoff.next_delay();
                }
                other => return Err(Undelivered::Refused(other, e)),
            }
        }
    }

    /// Sends parts in order with uuids derived from `base`; returns their
    /// Feishu message ids. Falls back to the chat when the message is gone,
    /// to no thread when the group has none, to plain text when a card is
    /// refused.
    pub fn send_parts(
        &self,
        ch: &ChannelRef,
        job: &Job,
        parts: &[Part],
        base: &str,
        variant: char,
    ) -> Result<Vec<String>, Undelivered> {
        self.send_parts_from(ch, job, parts, base, variant, 0)
    }

    /// Like [`send_parts`](Self::send_parts), numbering the parts' uuids
    /// from `first`.
    pub fn send_parts_from(
        &self,
        ch: &ChannelRef,
        job: &Job,
        parts: &[Part],
        base: &str,
        variant: char,
        first: usize,
    ) -> Result<Vec<String>, Undelivered> {
        let item = &job.item;
        let mut ids = Vec::new();
        let mut in_thread = item.reply_in_thread;
        let mut to_chat = item.message_id.is_none();
        let mut i = 0;
        let mut parts: Vec<Part> = parts.to_vec();
        let mut variant = variant;
        while i < parts.len() {
            let part = parts[i].clone();
            let id = uuid(base, variant, first + i);
            let dest = match (&item.message_id, &item.chat_id) {
                (Some(m), _) if !to_chat => Destination::Reply { message_id: m, in_thread },
                (_, Some(c)) => Destination::Chat { chat_id: c },
                _ => return Err(Undelivered::NoTarget),
            };
            let sent = self
                .call(ch, job, |api| api.send(&ch.creds, dest, part.msg_type, &part.content, &id));
            match sent {
                Ok(message_id) => {
                    ids.push(message_id);
                    i += 1;
                }
                Err(Undelivered::Refused(Failure::TargetGone, e)) if !to_chat => {
                    log::info!(
                        "outbound [{}]: cannot reply to {:?} ({e}); sending to the chat",
                        item.channel_id,
                        item.message_id
                    );
                    to_chat = true;
                }
                Err(Undelivered::Refused(Failure::NoThreads, _)) if in_thread => in_thread = false,
                // A card entity has no text to fall back to: the caller does.
                Err(Undelivered::Refused(Failure::CardRejected | Failure::TooLarge, e))
                    if part.msg_type == "interactive" && !stream::is_entity_ref(&part.content) =>
                {
                    log::warn!(
                        "outbound [{}]: Feishu refused a card for item {} ({e}); sending text instead",
                        item.channel_id,
                        item.id
                    );
                    let rest: String =
                        parts[i..].iter().map(stream::markdown).collect::<Vec<_>>().join("\n\n");
                    let mut text = render::texts(&rest, &self.limits);
                    parts.truncate(i);
                    parts.append(&mut text);
                    variant = 't';
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_short_and_stable() {
        let a = uuid("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", 'c', 0);
        assert_eq!(a, uuid("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", 'c', 0));
        assert_ne!(a, uuid("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", 'c', 1));
        assert_ne!(a, uuid("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", 't', 0));
        assert!(uuid(&"x".repeat(64), 'c', 999).len() <= 50);
    }

    #[test]
    fn dead_letter_reasons_read_as_before() {
        let e = ApiError::Feishu {
            status: 400,
            code: 230002,
            msg: "bot not in chat".into(),
            rate_limit_reset: None,
        };
        assert_eq!(
            Undelivered::Refused(Failure::Permanent, e.clone()).to_string(),
            "feishu: feishu api: HTTP 400, code 230002: bot not in chat"
        );
        assert_eq!(
            Undelivered::GaveUp { window: Duration::from_secs(300), last: e }.to_string(),
            "still failing after the retry window of 300s: feishu api: HTTP 400, code 230002: bot not in chat"
        );
        assert_eq!(
            Undelivered::NoTarget.to_string(),
            "the message was withdrawn and the item has no chat_id"
        );
        assert_eq!(Undelivered::UnknownChannel("ch_9".into()).to_string(), "unknown channel ch_9");
    }
}
