//! The read loop of one open long connection: frames in, pings out,
//! liveness, fragment reassembly, events parsed, stored in batches and
//! acknowledged in arrival order. It owns the socket; the decisions are in
//! [`super::liveness`] and [`super::ack`].

use serde_json::Value;
use std::io;
use std::time::{Duration, Instant};
use tungstenite::Message as WsMessage;

use super::super::endpoint::ClientConfig;
use super::super::event::{self, EventError, Outcome};
use super::super::frame::{Frame, METHOD_CONTROL, METHOD_DATA};
use super::super::reassembly::{Limits, Reassembler};
use super::ack::{self, Pending, Work};
use super::liveness::Liveness;
use super::stop::Stop;
use super::transport::{Socket, set_nonblocking, set_read_timeout, tcp_of};
use super::{End, InboundStore, LastError, Opened, Session, StoreError, Stored, Update};
use crate::clock::{Backoff, now_ms};
use crate::metrics;

/// Most events stored in one Redis round trip.
const MAX_BATCH: usize = 256;

/// One open connection's loop and what it needs.
pub struct Conn<'a> {
    pub session: &'a Session,
    pub store: &'a mut dyn InboundStore,
    /// Set when the supervisor stops the channel (it wakes a blocked read).
    pub stop: &'a Stop,
    pub report: &'a dyn Fn(Update),
    /// `[channel app]`, the prefix of every log line.
    pub tag: &'a str,
    /// The bot's own open_id, for matching group @-mentions.
    pub bot_open_id: Option<&'a str>,
    /// When `EventSeen` was last reported (at most once a second).
    pub seen_reported: Option<Instant>,
    /// Events are being refused because they cannot be decrypted (the
    /// channel's state says `error` until one decrypts again).
    pub refusing: bool,
}

impl Conn<'_> {
    /// Runs until the connection is lost or the channel is stopped. Not
    /// inlined: its frame stays below `run`'s, not added to it.
    #[inline(never)]
    pub fn read_loop(&mut self, Opened { mut socket, mut config, service }: Opened) -> End {
        let _watch = self.stop.watch(tcp_of(&socket));
        let mut reassembler = Reassembler::new(Limits::default());
        let ping = WsMessage::Binary(Frame::ping(service).encode().into());
        let mut liveness = Liveness::new(Instant::now());
        let mut wait =
            ReadWait { set: self.session.tuning.max_wait, max: self.session.tuning.max_wait };
        let mut pending: Vec<Pending> = Vec::new();
        // Events that arrive back to back are stored in one round trip: while
        // some are pending, reads only take what is already there.
        let mut draining = false;
        let mut flush_now = false;
        loop {
            if self.stop.is_stopped() {
                return self.close(&mut socket);
            }
            let now = Instant::now();
            if liveness.ping_due(now) {
                if let Err(e) = socket.send(ping.clone()) {
                    return End::Lost(LastError::new(
                        "connection_lost",
                        format!("ping failed: {e}"),
                    ));
                }
                liveness.pinged(now, config.ping_interval);
            }
            if flush_now || pending.len() >= MAX_BATCH {
                flush_now = false;
                draining = false;
                if let Err(end) = self.flush(&mut socket, &mut pending) {
                    return end;
                }
            }
            // Non-blocking while draining: a tiny read timeout would round
            // up to a kernel tick (4 ms). `flush` makes writes block again.
            if !pending.is_empty() && !draining {
                draining = true;
                if let Err(e) = set_nonblocking(&mut socket, true) {
                    return End::Lost(LastError::new("connection_lost", e.to_string()));
                }
            }
            if !draining {
                // Blocking until the next deadline, and no longer.
                let due = liveness.next_deadline(config.ping_interval);
                let due = reassembler.next_expiry().map_or(due, |t| t.min(due));
                if let Some(d) = wait.update(due.saturating_duration_since(Instant::now()))
                    && let Err(e) = set_read_timeout(&mut socket, d)
                {
                    return End::Lost(LastError::new("connection_lost", e.to_string()));
                }
            }
            match socket.read() {
                Ok(msg) => {
                    liveness.frame_arrived();
                    metrics::frame_seen(&self.session.channel_id);
                    if let WsMessage::Binary(bytes) = msg {
                        pending.extend(self.on_frame(&bytes, &mut config, &mut reassembler));
                    } else if let WsMessage::Close(frame) = msg {
                        let why = frame
                            .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                            .unwrap_or_default();
                        return End::Lost(LastError::new(
                            "connection_lost",
                            format!("closed by Feishu {why}"),
                        ));
                    }
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    if !pending.is_empty() {
                        flush_now = true;
                        continue;
                    }
                    // Judged only when nothing is waiting to be read, so time
                    // spent storing events never counts against Feishu.
                    if let Some(limit) = liveness.dead(Instant::now(), config.ping_interval) {
                        return End::Lost(LastError::new(
                            "dead_connection",
                            format!("no answer from Feishu within {}s of a ping", limit.as_secs()),
                        ));
                    }
                    reassembler.expire(Instant::now());
                }
                // A stop shuts the socket's read side: the read ends at once.
                Err(_) if self.stop.is_stopped() => return self.close(&mut socket),
                Err(e) => return End::Lost(LastError::new("connection_lost", e.to_string())),
            }
        }
    }

    /// Says goodbye to Feishu (the write side is still open after a stop).
    #[inline(never)]
    fn close(&self, socket: &mut Socket) -> End {
        let _ = set_nonblocking(socket, false);
        let _ = socket.close(None);
        let _ = socket.flush();
        log::info!("{} long connection closed", self.tag);
        End::Stopped
    }

    /// Handles one binary WebSocket message; returns a complete event.
    #[inline(never)]
    fn on_frame(
        &mut self,
        bytes: &[u8],
        config: &mut ClientConfig,
        reassembler: &mut Reassembler,
    ) -> Option<Pending> {
        let received = Instant::now();
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                log::warn!("{} undecodable frame ({} bytes) ignored: {e}", self.tag, bytes.len());
                return None;
            }
        };
        let kind = frame.header("type").unwrap_or_default();
        match (frame.method, kind) {
            (METHOD_CONTROL, "pong") => {
                if let Some(p) = frame.payload.as_deref().filter(|p| !p.is_empty()) {
                    match serde_json::from_slice::<Value>(p) {
                        Ok(v) => config.apply(&v),
                        Err(e) => {
                            log::debug!("{} pong with a payload that is not JSON: {e}", self.tag)
                        }
                    }
                }
                None
            }
            (METHOD_CONTROL, _) => None,
            (METHOD_DATA, "event") => {
                let id = frame.header("message_id").unwrap_or_default().to_owned();
                let (sum, seq) =
                    (frame.header("sum").unwrap_or(""), frame.header("seq").unwrap_or(""));
                let payload = frame.payload.clone().unwrap_or_default();
                match reassembler.push(&id, sum, seq, payload, received) {
                    Ok(Some(whole)) => {
                        Some(Pending { work: self.on_event(&whole), frame, received })
                    }
                    Ok(None) => None,
                    Err(e) => {
                        log::warn!("{} fragment of push {id} dropped: {e}", self.tag);
                        None
                    }
                }
            }
            (METHOD_DATA, other) => {
                log::debug!("{} data frame of type {other:?} ignored", self.tag);
                None
            }
            (method, _) => {
                log::warn!("{} frame with unknown method {method} ignored", self.tag);
                None
            }
        }
    }

    /// Decides what to do with one complete event.
    fn on_event(&mut self, payload: &[u8]) -> Work {
        if self.seen_reported.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.seen_reported = Some(Instant::now());
            (self.report)(Update::EventSeen(now_ms()));
        }
        let routing = self.session.routing.read().expect("routing lock");
        let ctx = event::Context {
            bot_open_id: self.bot_open_id,
            group_policy: routing.group_policy,
            max_age_ms: self.session.max_message_age.as_millis() as u64,
            now_ms: now_ms(),
            encrypt_key: self.session.encrypt_key.expose(),
            verification_token: self.session.verification_token.expose(),
        };
        let tag = self.tag;
        let parsed = event::parse(payload, &ctx);
        let welcome = routing.welcome.clone().filter(|w| !w.trim().is_empty());
        drop(routing);
        let key_trouble = matches!(parsed, Err(EventError::NoEncryptKey | EventError::Decrypt(_)));
        if self.refusing && !key_trouble {
            self.refusing = false;
            log::info!("{tag} events decrypt again; connected");
            (self.report)(Update::Connected);
        }
        match parsed {
            Ok(Outcome::Message(msg)) => Work::Question(msg),
            Ok(Outcome::Entered(c)) => match welcome {
                Some(text) => {
                    log::info!(
                        "{tag} bot entered chat {} ({}): welcome queued if it is the first time",
                        c.chat_id,
                        if c.p2p { "one-on-one" } else { "group" }
                    );
                    Work::Welcome(c, text)
                }
                None => Work::Skip("other_event"),
            },
            Ok(Outcome::NonText(m)) => {
                log::info!(
                    "{tag} {} message {} answered with the text-only hint",
                    m.msg_type,
                    m.message_id
                );
                Work::Hint(m)
            }
            Ok(Outcome::Skipped { event_id, message_id, reason }) => {
                match reason {
                    event::Skip::TokenMismatch => log::warn!(
                        "{tag} event {event_id} dropped: its verification token differs from the channel's verification_token"
                    ),
                    event::Skip::Stale => log::info!(
                        "{tag} event {event_id} skipped: its message is older than MAX_MESSAGE_AGE ({}s)",
                        self.session.max_message_age.as_secs()
                    ),
                    _ => log::debug!("{tag} event {event_id} skipped: {}", reason.as_str()),
                }
                if !message_id.is_empty() {
                    // For `trace`: best effort, the ack does not wait on it.
                    self.store.note_skipped(&message_id, reason.as_str());
                }
                Work::Skip(if reason == event::Skip::Stale { "stale" } else { "filtered" })
            }
            Err(e @ (EventError::NoEncryptKey | EventError::Decrypt(_))) => {
                log::warn!("{tag} {e}; refused (500), Feishu will deliver it again");
                if !self.refusing {
                    self.refusing = true;
                    (self.report)(Update::Error(LastError::new("encrypt_key", e.to_string())));
                }
                Work::Refuse("undecryptable")
            }
            Err(e) => {
                // It will not parse the next time either: Feishu's own
                // schedule bounds the redeliveries; counted as "malformed".
                log::warn!(
                    "{tag} {e}; refused (500): Feishu redelivers it a few times, then gives up"
                );
                Work::Refuse("malformed")
            }
        }
    }

    /// Stores the pending messages in one step, then acks every pending
    /// frame in arrival order: 200, or 500 for messages that could not be
    /// stored (Feishu delivers those again).
    #[inline(never)]
    fn flush(&mut self, socket: &mut Socket, pending: &mut Vec<Pending>) -> Result<(), End> {
        set_nonblocking(socket, false)
            .map_err(|e| End::Lost(LastError::new("connection_lost", e.to_string())))?;
        let messages = ack::questions(pending);
        let stored = if messages.is_empty() { Ok(Vec::new()) } else { self.store(&messages) };
        if let Ok(fresh) = &stored {
            for (msg, fresh) in messages.iter().zip(fresh) {
                log::info!(
                    "{} message {} from {} in {} {} (event {})",
                    self.tag,
                    msg.message_id,
                    msg.sender.open_id.as_deref().unwrap_or("?"),
                    msg.chat_type,
                    if *fresh == Stored::New { "stored" } else { "was already stored" },
                    msg.event_id
                );
            }
        }
        if let Err(e) = &stored {
            log::warn!(
                "{} {} message(s) not stored ({e}); not acknowledged, Feishu will deliver them again",
                self.tag,
                messages.len()
            );
        }
        let (store, tag) = (&mut *self.store, self.tag);
        let acks = ack::plan(pending.iter().map(|p| &p.work), stored.as_deref().ok(), |w| {
            let (queued, what) = match w {
                Work::Hint(m) => (store.store_hint(m), format!("hint for {}", m.message_id)),
                Work::Welcome(c, text) => {
                    (store.store_welcome(c, text), format!("welcome to {}", c.chat_id))
                }
                _ => return true,
            };
            match queued {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("{tag} {what} not queued ({e}); Feishu will deliver it again");
                    false
                }
            }
        });
        let channel = self.session.channel_id.as_str();
        for (p, (code, outcome)) in pending.drain(..).zip(acks) {
            metrics::inc(metrics::INBOUND_EVENTS, &[("channel", channel), ("outcome", outcome)]);
            metrics::ack_sent(code);
            let frame = ack::ack_frame(p.frame, code, p.received.elapsed());
            socket.send(WsMessage::Binary(frame.encode().into())).map_err(|e| {
                End::Lost(LastError::new("connection_lost", format!("ack failed: {e}")))
            })?;
        }
        Ok(())
    }

    /// Stores with retries inside Feishu's 3 s ack budget.
    fn store(&mut self, messages: &[&event::Message]) -> Result<Vec<Stored>, StoreError> {
        let deadline = Instant::now() + self.session.tuning.store_budget;
        let mut wait = Backoff::new(Duration::from_millis(50), Duration::from_millis(400));
        let routing = self.session.routing.read().expect("routing lock").clone();
        loop {
            match self.store.store(messages, &routing) {
                Ok(fresh) => return Ok(fresh),
                Err(e) if Instant::now() + wait.current() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(wait.next_delay()),
            }
        }
    }
}

/// The socket's read timeout, changed only when it matters: when the
/// current one would oversleep the next deadline by more than [`LATE`], or
/// wake up long before it. Most reads then cost no `setsockopt`.
struct ReadWait {
    set: Duration,
    max: Duration,
}

/// How late a deadline may be noticed: the slack of a ping or a pong wait.
const LATE: Duration = Duration::from_millis(100);

impl ReadWait {
    /// The timeout to set now for a deadline `left` from now, if any.
    fn update(&mut self, left: Duration) -> Option<Duration> {
        let want = left.clamp(Duration::from_millis(1), self.max);
        if self.set > want + LATE || self.set < want / 2 {
            self.set = want;
            return Some(want);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_timeout_changes_only_when_a_deadline_would_be_missed_or_far() {
        let s = Duration::from_secs;
        let mut w = ReadWait { set: s(300), max: s(300) };
        assert_eq!(w.update(s(120)), Some(s(120)), "would oversleep the ping");
        assert_eq!(w.update(s(120) - Duration::from_millis(50)), None, "50 ms late at most");
        assert_eq!(w.update(s(119)), Some(s(119)), "a second late: set again");
        assert_eq!(w.update(s(30)), Some(s(30)), "waiting for a pong");
        assert_eq!(w.update(s(120)), Some(s(120)), "answered: no early wake-ups");
        assert_eq!(w.update(Duration::ZERO), Some(Duration::from_millis(1)), "never zero");
        assert_eq!(w.update(s(3600)), Some(s(300)), "never past the longest wait");
    }
}
