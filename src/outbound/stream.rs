//! Streaming an answer into CardKit cards (PROTOCOL.md §3, "Streaming into
//! CardKit cards"; shared/feishu-protocol.md §13).
//!
//! The first progress item creates a card entity in streaming mode and
//! sends it as the reply; later items stream the full text so far into its
//! markdown element; the final item writes the final text and closes
//! streaming with a summary. Every operation takes the next sequence from
//! the reply's stream hash in Redis (strictly increasing across replicas)
//! and a uuid derived from it, reused by every retry of that operation.
//!
//! - **Ten minutes**: streaming is turned on again once it has been on for
//!   `CARDKIT_REOPEN_AFTER` (Feishu closes it after about 600 s), and a
//!   write refused as closed (`200850`, `300309`) reopens and writes again.
//! - **Long answers**: when the text no longer fits one card (30 KB, the
//!   table limit; the render's rules), the card is completed with its part
//!   and the next part streams into a new card replying to the question.
//! - **The final answer is always visible**: if writing it into the card
//!   fails, it is sent as a normal reply and the card says so.
//! - **No CardKit** (no `cardkit:card:write`, an API that is not there):
//!   remembered per app for an hour (`check` shows it; `cardkit_off`),
//!   progress then updates a message card as before.

use super::At;
use super::budget::Pace;
use super::cardkit_off::unavailable;
use super::send::Undelivered;
use super::worker::Worker;
use crate::bridge::contract::{self, short_hash};
use crate::bridge::streams::StreamRec;
use crate::clock::now_ms;
use crate::feishu::api::ApiError;
use crate::feishu::cardkit::CardFailure;
use crate::render::{self, Limits, Part, stream};

/// What a card streamed earlier shows when the final answer is shorter
/// than the cards it streamed into.
const NOTHING_LEFT: &str = "⋯";

/// The uuid of one card operation: its kind and sequence, and a hash of
/// the card and what it writes. A retry of the operation has the same; an
/// operation that got a sequence already used (a counter a failover rolled
/// back) does not, so Feishu cannot take it for a replay (`200770`).
fn op_uuid(kind: char, seq: i64, card: &str, payload: &str) -> String {
    format!("{kind}{seq}-{}", short_hash(&format!("{card}\n{payload}")))
}

/// How a failed write ends.
fn refused(e: &Undelivered) -> Option<&ApiError> {
    match e {
        Undelivered::Refused(_, e) => Some(e),
        _ => None,
    }
}

impl Worker {
    /// The reply's stream, when its first card is `message_id`.
    pub(super) fn stream_for(
        &mut self,
        irt: &str,
        message_id: &str,
    ) -> Result<Option<StreamRec>, Undelivered> {
        let rec = self.store.stream(irt).map_err(Undelivered::Redis)?;
        Ok(rec.filter(|r| r.first_message() == Some(message_id)))
    }

    /// The parts of an answer as the stream's cards show them.
    fn stream_parts(&self, md: &str, tables: Option<usize>) -> Vec<Part> {
        let limits = Limits {
            tables_per_card: tables.unwrap_or(self.courier.limits.tables_per_card),
            ..self.courier.limits
        };
        render::cards(md, &limits)
    }

    /// Creates card `i` of a reply (or reuses the one a crashed worker
    /// created) and sends it, with the uuid of part `i` of the reply, so
    /// that no retry shows it twice. Returns the message id; `None` when
    /// CardKit refused to create it (the caller falls back).
    fn new_card(
        &mut self,
        at: At<'_>,
        i: usize,
        md: &str,
        existing: Option<String>,
    ) -> Option<Result<(String, String), Undelivered>> {
        let At { ch, job, irt } = at;
        let reused = existing.is_some();
        let card_id = match existing {
            Some(id) => id,
            None => {
                let json = stream::stream_card(md, true, stream::STREAMING_SUMMARY);
                let created = self
                    .courier
                    .call_paced(ch, job, Pace::App, |api| api.create_card(&ch.creds, &json));
                match created {
                    Ok(id) => id,
                    Err(e) => {
                        if refused(&e).is_some_and(unavailable) {
                            self.cardkit_refused(ch, &e);
                        } else {
                            log::info!(
                                "outbound [{}]: no CardKit card for {irt} ({e}); updating a message card instead",
                                job.item.channel_id
                            );
                        }
                        return None;
                    }
                }
            }
        };
        let now = now_ms().to_string();
        // A reused card keeps the time its streaming was turned on.
        if !reused {
            let field = contract::stream_card_field(i);
            let opened = [(field.as_str(), card_id.as_str()), (contract::STREAM_OPENED, &now)];
            if let Err(e) = self.store.stream_set(irt, &opened) {
                return Some(Err(Undelivered::Redis(e)));
            }
        }
        // Part i of the reply's cards has the uuid of part i of the reply
        // (`p0` is the message-card path's too): no retry shows it twice.
        let part = Part { msg_type: "interactive", content: stream::entity_ref(&card_id) };
        let sent = self.courier.send_parts_from(ch, job, &[part], irt, 'p', i);
        let message_id = match sent {
            Ok(ids) => ids.into_iter().next().unwrap_or_default(),
            Err(e) => return Some(Err(e)),
        };
        let msg_field = contract::stream_msg_field(i);
        let part_no = i.to_string();
        let mut fields = vec![(msg_field.as_str(), message_id.as_str())];
        // The first card may be sent again (a crashed worker's, adopted):
        // the stream's current part is not set back.
        if i > 0 {
            fields.extend([
                (contract::STREAM_PART, part_no.as_str()),
                (contract::STREAM_OPENED, &now),
            ]);
        }
        if let Err(e) = self.store.stream_set(irt, &fields) {
            return Some(Err(Undelivered::Redis(e)));
        }
        Some(Ok((card_id, message_id)))
    }

    /// Sends the first card a crashed worker created (the same uuid: the
    /// message it may already have sent comes back).
    pub(super) fn resend_card(
        &mut self,
        at: At<'_>,
        card_id: String,
    ) -> Option<Result<String, Undelivered>> {
        let sent = self.new_card(at, 0, "", Some(card_id))?;
        Some(sent.map(|(_, message_id)| message_id))
    }

    /// The first progress item of a reply: its first streaming card.
    /// `None`: CardKit is not usable, the caller sends a message card.
    pub(super) fn open_stream(&mut self, at: At<'_>) -> Option<Result<String, Undelivered>> {
        let At { job, irt, .. } = at;
        let existing = match self.store.stream(irt) {
            Ok(rec) => rec.map(|r| r.cards[0].0.clone()),
            Err(e) => return Some(Err(Undelivered::Redis(e))),
        };
        let parts = self.stream_parts(&job.item.text, None);
        let md = stream::markdown(&parts[0]);
        let sent = self.new_card(at, 0, &md, existing)?;
        Some(sent.map(|(_, message_id)| message_id))
    }

    /// A later progress item: the text so far into the stream's card,
    /// completing full cards and starting the next as the text grows.
    /// `Ok(false)`: a final answer is completing the stream (stand down).
    pub(super) fn stream_progress(
        &mut self,
        at: At<'_>,
        mut rec: StreamRec,
    ) -> Result<bool, Undelivered> {
        let job = at.job;
        if rec.closing {
            return Ok(false);
        }
        let parts = self.stream_parts(&job.item.text, rec.tables);
        while rec.part + 1 < parts.len() {
            let md = stream::markdown(&parts[rec.part]);
            if !self.complete_card(at, &mut rec, &md, false)? {
                return Ok(false);
            }
            let next = rec.part + 1;
            let md = stream::markdown(&parts[next]);
            match self.new_card(at, next, &md, rec.next_card.take()) {
                Some(Ok((card, msg))) => {
                    rec.cards.push((card, Some(msg)));
                    rec.hashes.push(None);
                    rec.part = next;
                    rec.opened_ms = now_ms();
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(false),
            }
        }
        let md = stream::markdown(&parts[rec.part]);
        self.write_text(at, &mut rec, &md, false)
    }

    /// Turns a card's streaming on or off (with a new summary), paced per
    /// card. `Ok(false)`: a progress update stood down (a final answer is
    /// completing the stream).
    fn set_streaming(
        &mut self,
        at: At<'_>,
        card: &str,
        on: bool,
        summary: Option<&str>,
        is_final: bool,
    ) -> Result<bool, Undelivered> {
        let At { ch, job, irt } = at;
        let Some(seq) = self.store.stream_seq(irt, is_final).map_err(Undelivered::Redis)? else {
            return Ok(false);
        };
        let settings = stream::settings(on, summary);
        let id = op_uuid(if on { 'o' } else { 's' }, seq, card, &settings);
        self.courier.call_paced(ch, job, Pace::Card(card), |api| {
            api.card_settings(&ch.creds, card, &settings, seq, &id)
        })?;
        Ok(true)
    }

    /// Whether the current card's streaming is due to be turned on again.
    fn stream_due(&self, rec: &StreamRec) -> bool {
        now_ms().saturating_sub(rec.opened_ms) >= self.settings.stream_reopen.as_millis() as u64
    }

    /// Turns streaming on again (the ten-minute clock starts again).
    fn reopen(
        &mut self,
        at: At<'_>,
        rec: &mut StreamRec,
        is_final: bool,
    ) -> Result<bool, Undelivered> {
        let card = rec.card().to_owned();
        if !self.set_streaming(at, &card, true, None, is_final)? {
            return Ok(false);
        }
        rec.opened_ms = now_ms();
        let now = rec.opened_ms.to_string();
        let opened = [(contract::STREAM_OPENED, now.as_str())];
        self.store.stream_set(at.irt, &opened).map_err(Undelivered::Redis)?;
        Ok(true)
    }

    /// Writes the full text of the current card. `Ok(false)`: stood down.
    fn write_text(
        &mut self,
        at: At<'_>,
        rec: &mut StreamRec,
        md: &str,
        is_final: bool,
    ) -> Result<bool, Undelivered> {
        let At { ch, job, irt } = at;
        if self.stream_due(rec) && !self.reopen(at, rec, is_final)? {
            return Ok(false);
        }
        let mut step = 1;
        for attempt in 0..3 {
            let seq = self.store.stream_seq_by(irt, is_final, step).map_err(Undelivered::Redis)?;
            let Some(seq) = seq else { return Ok(false) };
            let card = rec.card().to_owned();
            let id = op_uuid('t', seq, &card, md);
            let written = self.courier.call_paced(ch, job, Pace::Card(&card), |api| {
                api.stream_text(&ch.creds, &card, stream::ELEMENT, md, seq, &id)
            });
            let Err(e) = written else { return Ok(true) };
            match refused(&e).map(ApiError::card_failure) {
                Some(CardFailure::Closed) if attempt < 2 => {
                    log::info!(
                        "outbound [{}]: streaming of card {card} was closed ({e}); turning it on again",
                        job.item.channel_id
                    );
                    if !self.reopen(at, rec, is_final)? {
                        return Ok(false);
                    }
                }
                Some(CardFailure::Sequence) if attempt < 2 => {
                    // Feishu has a higher sequence than Redis gave: another
                    // replica's operation, or a counter a failover rolled
                    // back. Never +1: jump well past it.
                    log::warn!(
                        "outbound [{}]: card {card} refused sequence {seq} ({e}); taking a new one",
                        job.item.channel_id
                    );
                    step = 1000;
                }
                Some(CardFailure::Tables) => {
                    let fewer = rec.tables.unwrap_or(self.courier.limits.tables_per_card) / 2;
                    let n = fewer.to_string();
                    let _ = self.store.stream_set(irt, &[(contract::STREAM_TABLES, &n)]);
                    rec.tables = Some(fewer);
                    return Err(e);
                }
                _ => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Writes a card's final text and closes its streaming with a summary;
    /// records the hash of what it shows. `Ok(false)`: stood down.
    fn complete_card(
        &mut self,
        at: At<'_>,
        rec: &mut StreamRec,
        md: &str,
        is_final: bool,
    ) -> Result<bool, Undelivered> {
        if !self.write_text(at, rec, md, is_final)? {
            return Ok(false);
        }
        let card = rec.card().to_owned();
        match self.set_streaming(at, &card, false, Some(&stream::summary(md)), is_final) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            // The text is in the card either way; only the chat list's
            // summary would still say it is being written.
            Err(e) => {
                log::info!("outbound [{}]: card {card} not closed ({e})", at.job.item.channel_id)
            }
        }
        let field = contract::stream_hash_field(rec.part);
        let _ = self.store.stream_set(at.irt, &[(&field, &short_hash(md))]);
        Ok(true)
    }

    /// Replaces card `i` whole with finished text.
    fn replace(&mut self, at: At<'_>, card: &str, md: &str) -> Result<(), Undelivered> {
        let At { ch, job, irt } = at;
        let seq = self.store.stream_seq(irt, true).map_err(Undelivered::Redis)?.unwrap_or(1);
        let json = stream::stream_card(md, false, &stream::summary(md));
        let id = op_uuid('r', seq, card, &json);
        self.courier.call_paced(ch, job, Pace::Card(card), |api| {
            api.replace_card(&ch.creds, card, &json, seq, &id)
        })
    }

    /// An error answer ends the stream it replaces: the card keeps its text
    /// so far and stops showing "being written" (best effort; the error
    /// itself is a reply of its own).
    pub(super) fn end_with_error(&mut self, at: At<'_>) {
        let Ok(Some(rec)) = self.store.stream(at.irt) else { return };
        let summary = stream::summary(&at.job.item.text);
        if let Err(e) = self.set_streaming(at, rec.card(), false, Some(&summary), true) {
            log::info!(
                "outbound [{}]: card {} not closed after an error ({e})",
                at.job.item.channel_id,
                rec.card()
            );
        }
    }

    /// The final answer into the stream's cards: every card shows its part
    /// of the final text (earlier cards are replaced only if their text
    /// changed), parts beyond the cards follow as new replies. If the
    /// current card cannot be written, the answer is sent as a new reply
    /// and the card points to it. Returns the messages the answer is.
    pub(super) fn complete_stream(
        &mut self,
        at: At<'_>,
        mut rec: StreamRec,
    ) -> Result<Vec<String>, Undelivered> {
        let At { ch, job, irt } = at;
        let body = render::with_links(&job.item.text, &job.item.links);
        let mut written = self.write_final(at, &mut rec, &body);
        if let Err(e) = &written
            && refused(e).map(ApiError::card_failure) == Some(CardFailure::Tables)
        {
            rec.tables = Some(0);
            written = self.write_final(at, &mut rec, &body);
        }
        match written {
            Ok(ids) => Ok(ids),
            Err(e) => {
                log::warn!(
                    "outbound [{}]: the final answer to {irt} could not be written into card {} ({e}); sending it as a new reply",
                    job.item.channel_id,
                    rec.card()
                );
                let parts = render::render(&job.item.text, &job.item.links, &self.courier.limits);
                let ids = self.courier.send_parts(ch, job, &parts, &job.item.id, 'c')?;
                let card = rec.card().to_owned();
                if let Err(e) = self.replace(at, &card, stream::CONTINUED_BELOW) {
                    log::info!("outbound: stale card {card} not updated ({e})");
                }
                Ok(ids)
            }
        }
    }

    fn write_final(
        &mut self,
        at: At<'_>,
        rec: &mut StreamRec,
        body: &str,
    ) -> Result<Vec<String>, Undelivered> {
        let At { ch, job, .. } = at;
        let parts = self.stream_parts(body, rec.tables);
        let current = rec.part;
        let want_of =
            |i: usize| parts.get(i).map_or_else(|| NOTHING_LEFT.to_owned(), stream::markdown);
        for i in 0..current {
            let want = want_of(i);
            if rec.hashes[i].as_deref() != Some(short_hash(&want).as_str()) {
                let card = rec.cards[i].0.clone();
                self.replace(at, &card, &want)?;
            }
        }
        let want = want_of(current);
        if self.stream_due(rec) {
            // Closed or about to close: one replace, nothing to reopen.
            let card = rec.card().to_owned();
            self.replace(at, &card, &want)?;
        } else {
            // A final answer's sequence is never refused: `true` always.
            self.complete_card(at, rec, &want, true)?;
        }
        let mut ids: Vec<String> = rec.first_message().map(str::to_owned).into_iter().collect();
        if parts.len() > current + 1 {
            ids.extend(self.courier.send_parts(
                ch,
                job,
                &parts[current + 1..],
                &job.item.id,
                'u',
            )?);
        }
        Ok(ids)
    }
}
