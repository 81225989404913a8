//! One `reply-N` worker: takes items from the board (one chat at a time,
//! see [`super::board`]), streams progress items into one card, delivers
//! final answers (completing the progress card when there is one, else
//! sending a new reply), and finishes every item: removed from the
//! processing list when delivered, dead-lettered when it cannot be, left
//! for the sweep when Redis cannot tell the reply's state.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;
use std::time::{Duration, Instant};

use super::board::{Board, STREAM_EVERY, UPDATE_EVERY};
use super::pop::InFlight;
use super::reply::{self, Reply};
use super::send::{Courier, Undelivered, uuid};
use super::{At, ChannelRef, Channels, Job, Settings, bury, typing};
use crate::bridge::contract::{self, Kind};
use crate::bridge::store::Store;
use crate::clock::now_ms;
use crate::feishu::api::{AppCreds, Destination};
use crate::metrics;
use crate::panics;
use crate::render;

/// How long a final answer waits for Redis to tell the reply's state.
const REDIS_WAIT: Duration = Duration::from_secs(10);

/// A worker's state.
pub struct Worker {
    pub settings: Settings,
    pub store: Store,
    pub in_flight: InFlight,
    pub courier: Courier,
    pub channels: Channels,
    /// The thread's name, for logs.
    pub name: String,
}

impl Worker {
    /// Handles items from the board until it is closed and empty. A panic
    /// while handling one dead-letters that item (it would panic again)
    /// and the worker goes on with a fresh Redis connection.
    pub fn run(&mut self, board: &Board<Job>) {
        while let Some((job, slot)) = board.take() {
            let (raw, id) = (job.raw.clone(), job.item.id.clone());
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.handle(job, board))) {
                panics::caught(&self.name, p.as_ref(), "its item is dead-lettered");
                self.store.reset();
                self.after_panic(&raw, &id, &panics::message(p.as_ref()));
            }
            board.finish(slot);
        }
    }

    /// Dead-letters the item whose handling panicked.
    fn after_panic(&mut self, raw: &[u8], id: &str, why: &str) {
        let reason = format!("internal error while delivering it ({why}); please report this");
        let processing = self.processing();
        if !bury(&mut self.store, &processing, raw, &reason) {
            log::warn!("outbound: could not dead-letter item {id}; the sweep offers it again");
        }
        self.in_flight.release(raw);
    }

    fn processing(&self) -> String {
        contract::processing_key(&self.settings.instance_id)
    }

    /// Removes a finished item from the processing list.
    fn done(&mut self, raw: &[u8]) {
        let list = self.processing();
        let removed = (0..3).any(|attempt| {
            if attempt > 0 {
                thread::sleep(Duration::from_millis(200));
            }
            self.store.lrem(&list, raw).is_ok()
        });
        if !removed {
            log::warn!(
                "outbound: could not remove a delivered item from {list}; it will be offered again (Feishu's uuid keeps it from showing twice)"
            );
        }
        self.in_flight.release(raw);
    }

    fn dead(&mut self, job: &Job, reason: &Undelivered) {
        log::warn!(
            "outbound [{}]: item {} dead-lettered: {reason}",
            job.item.channel_id,
            job.item.id
        );
        if let Some(question) = &job.item.message_id {
            let (at, reason) = (now_ms().to_string(), reason.to_string());
            let fields =
                [("dead_item", job.item.id.as_str()), ("dead_reason", &reason), ("dead_at", &at)];
            let _ = self.store.trace_note(question, &fields);
        }
        let processing = self.processing();
        if !bury(&mut self.store, &processing, &job.raw, &reason.to_string()) {
            log::warn!(
                "outbound: could not dead-letter item {}; it will be tried again",
                job.item.id
            );
        }
        self.in_flight.release(&job.raw);
    }

    /// Leaves an item in the processing list for later (the pop thread's
    /// sweep hands it out again once Redis answers).
    fn postpone(&mut self, job: &Job, reason: &dyn std::fmt::Display) {
        log::warn!("outbound [{}]: item {} postponed: {reason}", job.item.channel_id, job.item.id);
        self.in_flight.release(&job.raw);
    }

    fn handle(&mut self, job: Job, board: &Board<Job>) {
        panics::inject("reply");
        match job.item.kind {
            Kind::Progress => self.progress(job, board),
            Kind::Final | Kind::Notice => self.deliver_final(job),
        }
    }

    /// The channel of an item: the running registry, else the config hash.
    fn channel(&mut self, channel_id: &str) -> Option<ChannelRef> {
        if let Some(c) = self.channels.read().expect("channels lock").get(channel_id) {
            return Some(c.clone());
        }
        let raw = self.store.read_config(channel_id).ok().flatten()?;
        let cfg = contract::parse_channel_config(channel_id, &raw).ok().filter(|c| c.enabled)?;
        let base_url = self
            .settings
            .base_url_override
            .clone()
            .unwrap_or_else(|| cfg.domain.base_url().to_owned());
        Some(ChannelRef {
            app_id: cfg.app_id.clone(),
            creds: AppCreds { base_url, app_id: cfg.app_id, app_secret: cfg.app_secret },
        })
    }

    fn reply_state(&mut self, irt: &str) -> Result<Reply, Undelivered> {
        reply::read(&mut self.store, irt).map_err(Undelivered::Redis)
    }

    fn progress(&mut self, job: Job, board: &Board<Job>) {
        let Some(ch) = self.channel(&job.item.channel_id) else {
            let reason = Undelivered::UnknownChannel(job.item.channel_id.clone());
            return self.dead(&job, &reason);
        };
        let irt = job.item.in_reply_to.clone().expect("progress items have in_reply_to");
        // `Some(every)`: shown, the next update waits that long.
        let result = match self.reply_state(&irt) {
            Ok(Reply::Card(message_id)) => match self.stream_for(&irt, &message_id) {
                Ok(Some(rec)) => self
                    .stream_progress(At { ch: &ch, job: &job, irt: &irt }, rec)
                    .map(|shown| shown.then_some(STREAM_EVERY)),
                Ok(None) => {
                    let card = render::cards(&job.item.text, &self.courier.limits).swap_remove(0);
                    self.courier
                        .call(&ch, &job, |api| {
                            api.update_card(&ch.creds, &message_id, &card.content)
                        })
                        .map(|_| Some(UPDATE_EVERY))
                }
                Err(e) => Err(e),
            },
            // The first card's uuid derives from the reply, not the item, so
            // no retry or later item can create a second card.
            // Unclaimed (Redis unreachable included): no preview.
            Ok(Reply::None)
                if reply::claim(&mut self.store, &irt, contract::REPLY_PENDING)
                    .unwrap_or(false) =>
            {
                let streamed = if self.cardkit_on(&ch) {
                    self.open_stream(At { ch: &ch, job: &job, irt: &irt })
                } else {
                    None
                };
                let sent = match streamed {
                    Some(sent) => sent.map(|id| (id, STREAM_EVERY)),
                    None => {
                        let card =
                            render::cards(&job.item.text, &self.courier.limits).swap_remove(0);
                        self.courier
                            .send_parts(&ch, &job, &[card], &irt, 'p')
                            .map(|ids| (ids.into_iter().next().unwrap_or_default(), UPDATE_EVERY))
                    }
                };
                // Only over our own claim: a final answer may have taken over.
                if let (Ok((card, _)), Some(question)) = (&sent, &job.item.message_id) {
                    let _ = self.store.trace_note(question, &[("progress_card", card)]);
                }
                let _ = match &sent {
                    Ok((id, _)) => reply::record_card(&mut self.store, &irt, id),
                    _ => reply::keep_failed_claim(&mut self.store, &irt),
                };
                // Soak finding 12: a card id a failover forgot made the
                // final answer a second message.
                self.store.confirm_replicated();
                sent.map(|(_, every)| Some(every))
            }
            // Being created by another worker, or already final: a preview
            // that is no longer needed.
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        };
        match result {
            Ok(shown) => {
                if let Some(every) = shown {
                    metrics::inc(metrics::OUTBOUND_ITEMS, &[("outcome", "progress")]);
                    // AskTable is working on it: ANSWER_TIMEOUT starts again.
                    if let Some(question) = &job.item.message_id {
                        let _ = self.store.touch_pending(question, now_ms());
                    }
                    board.shown(&irt, Instant::now(), every);
                }
                self.done(&job.raw);
            }
            // Progress is a preview: a failed update is not worth a dead letter.
            Err(reason) => {
                log::info!(
                    "outbound [{}]: progress update {} not shown: {reason}",
                    job.item.channel_id,
                    job.item.id
                );
                self.done(&job.raw);
            }
        }
    }

    /// Which card a final answer completes: waits (bounded) for a progress
    /// card being created and for Redis, or claims the reply for itself.
    /// `Err` means the item is postponed.
    fn find_streamed(&mut self, irt: &str) -> Result<(Option<String>, bool), Undelivered> {
        let mut saw_pending = false;
        // A progress card being created (possibly by another replica)
        // is waited for; a dead creator's claim expires after the claim TTL.
        let deadline = Instant::now() + Duration::from_secs(contract::REPLY_CLAIM_TTL + 5);
        // Without the reply's state, sending could show a second
        // message next to a progress card: Redis is waited for.
        let redis_deadline = Instant::now() + REDIS_WAIT;
        loop {
            let state = self.reply_state(irt);
            if state.is_err() && Instant::now() < redis_deadline {
                thread::sleep(Duration::from_millis(250));
                continue;
            }
            match state {
                Ok(Reply::Card(id) | Reply::Final(id)) => return Ok((Some(id), saw_pending)),
                Ok(Reply::Pending) if Instant::now() < deadline => {
                    saw_pending = true;
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
                // Nothing streamed: this answer creates the reply (late
                // progress items then see it is final and stand down).
                // A progress card may have claimed it just now: look again.
                Ok(Reply::None) => {
                    match reply::claim(&mut self.store, irt, contract::REPLY_FINAL_CLAIM) {
                        Ok(false) if Instant::now() < deadline => continue,
                        Ok(_) => {}
                        Err(_) if Instant::now() < redis_deadline => continue,
                        Err(e) => return Err(Undelivered::Redis(e)),
                    }
                }
                Err(e) => return Err(e),
                _ => {}
            }
            return Ok((None, saw_pending));
        }
    }

    fn deliver_final(&mut self, job: Job) {
        let Some(ch) = self.channel(&job.item.channel_id) else {
            let reason = Undelivered::UnknownChannel(job.item.channel_id.clone());
            return self.dead(&job, &reason);
        };
        let limits = self.courier.limits;
        // An error or a notice is a reply of its own: it neither completes
        // nor claims the answer's card.
        let own = job.item.is_error || job.item.kind == Kind::Notice;
        let irt = job.item.in_reply_to.clone().filter(|_| !own);
        // Which card to complete, if a progress card exists (or is being made).
        let mut streamed = None;
        if let Some(irt) = &irt {
            let saw_pending;
            (streamed, saw_pending) = match self.find_streamed(irt) {
                Ok(found) => found,
                Err(e) => return self.postpone(&job, &e),
            };
            if streamed.is_none() && saw_pending {
                streamed = self.adopt_progress_card(&ch, &job, irt);
            }
        }
        // A streamed card is a CardKit stream or a message card (PATCH).
        let stream = match (&streamed, &irt) {
            (Some(card_id), Some(irt)) => match self.stream_for(irt, card_id) {
                Ok(rec) => rec,
                // Without it, a PATCH could "update" a card entity, which
                // Feishu ignores: the answer would not show.
                Err(e) => return self.postpone(&job, &e),
            },
            _ => None,
        };
        // An error ends a card streaming the answer it replaces.
        if job.item.is_error
            && let Some(q) = &job.item.in_reply_to
        {
            self.end_with_error(At { ch: &ch, job: &job, irt: q });
        }
        let result = match streamed {
            Some(_) if let (Some(rec), Some(irt)) = (stream, &irt) => {
                self.complete_stream(At { ch: &ch, job: &job, irt }, rec)
            }
            // Complete the streamed card; further parts become new replies.
            Some(card_id) => {
                let body = render::with_links(&job.item.text, &job.item.links);
                let cards = render::cards(&body, &limits);
                let updated = self
                    .courier
                    .call(&ch, &job, |api| api.update_card(&ch.creds, &card_id, &cards[0].content));
                match updated {
                    Ok(()) => self
                        .courier
                        .send_parts(&ch, &job, &cards[1..], &job.item.id, 'u')
                        .map(|_| vec![card_id.clone()]),
                    Err(reason) => {
                        log::info!(
                            "outbound [{}]: card {card_id} not updated ({reason}); sending the answer as a new reply",
                            job.item.channel_id
                        );
                        let parts = render::render(&job.item.text, &job.item.links, &limits);
                        self.courier.send_parts(&ch, &job, &parts, &job.item.id, 'c')
                    }
                }
            }
            // An empty notice (NO_ANSWER_HINT off) only ends the typing reaction.
            None if job.item.kind == Kind::Notice && job.item.text.trim().is_empty() => {
                Ok(Vec::new())
            }
            None => {
                // An error message is plain text; a notice (a welcome) may
                // be formatted like an answer.
                let parts = if job.item.is_error {
                    render::texts(&job.item.text, &limits)
                } else {
                    render::render(&job.item.text, &job.item.links, &limits)
                };
                self.courier.send_parts(&ch, &job, &parts, &job.item.id, 'c')
            }
        };
        let result = result.inspect(|ids| {
            if let (Some(irt), Some(first)) = (&irt, ids.first()) {
                let _ = reply::record_final(&mut self.store, irt, first);
            }
        });
        match result {
            Ok(ids) => {
                let receipt = contract::receipt_json(
                    &job.item.id,
                    &job.item.channel_id,
                    job.item.in_reply_to.as_deref(),
                    contract::Fate::Delivered(&ids),
                    now_ms(),
                );
                // Best effort: the answer is shown either way.
                let key = contract::receipt_key(&job.item.id);
                let _ = self.store.set_ex(&key, &receipt, contract::RECEIPT_TTL);
                self.note_delivered(&job, ids.first().map_or("", String::as_str));
                metrics::inc(metrics::OUTBOUND_ITEMS, &[("outcome", "delivered")]);
                log::info!(
                    "outbound [{} {}]: item {} delivered to {}",
                    job.item.channel_id,
                    ch.app_id,
                    job.item.id,
                    job.item.message_id.as_deref().or(job.item.chat_id.as_deref()).unwrap_or("?"),
                );
                if let Some(message_id) = &job.item.message_id
                    && !self.settings.typing_reaction.is_empty()
                {
                    let lane = job.item.lane_key();
                    typing::untype(&mut self.store, &self.courier, &ch, message_id, lane);
                }
                if let Some(last) = ids.last() {
                    self.follow_ups(&ch, &job, last);
                }
                self.done(&job.raw);
            }
            Err(reason) => self.dead(&job, &reason),
        }
    }

    /// Records a delivery (best effort): for an answer the channel's last
    /// answer, the question's trace, and that it is no longer pending.
    fn note_delivered(&mut self, job: &Job, shown_as: &str) {
        let now = now_ms().to_string();
        if job.item.kind == Kind::Notice {
            if let Some(question) = &job.item.message_id {
                let _ = self.store.trace_note(question, &[("notice_delivered_as", shown_as)]);
            }
            return;
        }
        let last = contract::last_answer_key(&job.item.channel_id);
        let _ = self.store.set_ex(&last, &now, 7 * contract::RECEIPT_TTL);
        if let Some(question) = &job.item.message_id {
            let fields = [
                ("answered_by", job.item.id.as_str()),
                ("answered_at", &now),
                ("delivered_as", shown_as),
            ];
            let _ = self.store.trace_note(question, &fields);
            let _ = self.store.answered(question);
        }
    }

    /// The progress card of a creator that died between creating it and
    /// recording its id (its claim expired): sending with the progress
    /// card's uuid again makes Feishu return that card instead of a new one
    /// (or creates it now, if the creator died before Feishu had it). The
    /// caller then completes it like any streamed card.
    fn adopt_progress_card(&mut self, ch: &ChannelRef, job: &Job, irt: &str) -> Option<String> {
        // A streaming card entity it created: sent (again) with the same uuid.
        if let Ok(Some(rec)) = self.store.stream(irt) {
            let card = rec.cards[0].0.clone();
            let sent = self.resend_card(At { ch, job, irt }, card)?.ok()?;
            log::info!(
                "outbound: completing streaming card {sent} of an interrupted reply to {irt}"
            );
            return Some(sent);
        }
        let card = render::cards(&job.item.text, &self.courier.limits).swap_remove(0);
        let message_id = job.item.message_id.as_deref()?;
        let dest = Destination::Reply { message_id, in_thread: job.item.reply_in_thread };
        // No fallbacks here: whatever does not come back as the card is
        // left to the usual path.
        let sent = self.courier.call(ch, job, |api| {
            api.send(&ch.creds, dest, card.msg_type, &card.content, &uuid(irt, 'p', 0))
        });
        let id = sent.ok()?;
        log::info!("outbound: completing progress card {id} of an interrupted reply to {irt}");
        Some(id)
    }
}
