//! One channel's Feishu long connection, run on its own thread: endpoint
//! call, WebSocket, read loop with pings, liveness, fragment reassembly,
//! store-then-ack of events, and reconnecting forever with backoff.
//!
//! The thread never blocks for long: the socket has a short read timeout,
//! so every tick it can send a ping that is due, notice a dead peer, and see
//! the supervisor's stop request (the stop channel's sender is dropped).
//! Storing goes through the [`InboundStore`] trait so that this module does
//! not know Redis.

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use serde_json::Value;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{HandshakeError, Message as WsMessage, WebSocket};

use super::api::{Api, AppCreds};
use super::endpoint::{self, ClientConfig, ConnectError};
use super::event::{self, Outcome};
use super::frame::{Frame, METHOD_CONTROL, METHOD_DATA};
use super::reassembly::{Limits, Reassembler};
use crate::channel::{Routing, Secret};
use crate::clock::{Backoff, jitter, now_ms};
use crate::metrics;

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Where stored questions go (Redis in production).
pub trait InboundStore {
    /// Stores messages, each at most once, in one step. Per message
    /// `true`: newly stored; `false`: a duplicate of one stored before.
    /// `Err`: nothing was stored.
    fn store(
        &mut self,
        messages: &[&event::Message],
        routing: &Routing,
    ) -> Result<Vec<bool>, String>;

    /// Queues the "only text is supported" reply for a non-text message
    /// (once per message). `Err`: nothing was queued.
    fn store_hint(&mut self, message: &event::NonText) -> Result<(), String>;
}

/// An error as shown in the status key's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub code: String,
    pub message: String,
}

impl LastError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> LastError {
        LastError { code: code.into(), message: message.into() }
    }
}

impl From<&ConnectError> for LastError {
    fn from(e: &ConnectError) -> LastError {
        LastError::new(e.code(), e.to_string())
    }
}

/// What a session tells its supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Opening a connection.
    Connecting,
    /// The long connection is open and answering.
    Connected,
    /// Lost or failed for a reason that retrying may fix.
    Disconnected(LastError),
    /// Failed for a reason only the operator can fix; retrying slowly.
    Error(LastError),
    /// An event arrived (time in ms since the epoch).
    EventSeen(u64),
}

/// Timing knobs of a session. Defaults suit production.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Socket read timeout: how often the loop wakes up when idle.
    pub tick: Duration,
    /// Connect, TLS and WebSocket handshake limit.
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles per failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Delay between attempts while the operator must fix something.
    pub operator_retry: Duration,
    /// How long to keep trying to store an event before refusing it.
    pub store_budget: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            tick: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            operator_retry: Duration::from_secs(60),
            store_budget: Duration::from_millis(2000),
        }
    }
}

/// Everything one channel's connection needs.
pub struct Session {
    pub channel_id: String,
    pub creds: AppCreds,
    pub encrypt_key: Secret,
    pub verification_token: Secret,
    /// Updated in place by the supervisor.
    pub routing: Arc<RwLock<Routing>>,
    pub max_message_age: Duration,
    pub tuning: Tuning,
    /// Whether `ws://` endpoints are acceptable (only through `FEISHU_BASE_URL`).
    pub transport: Transport,
}

/// Which WebSocket URLs a session accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `wss://` only: the normal case.
    TlsOnly,
    /// `ws://` too: set when the operator points `FEISHU_BASE_URL` at a
    /// private deployment or a simulator.
    AllowPlain,
}

/// Why a connected session ended.
enum End {
    Stopped,
    Lost(LastError),
}

/// Runs the channel until `stop` fires (its sender dropped or a message sent).
pub fn run(
    session: &Session,
    api: &Api,
    store: &mut dyn InboundStore,
    stop: &Receiver<()>,
    report: &dyn Fn(Update),
) {
    let tag = format!("[{} {}]", session.channel_id, session.creds.app_id);
    let mut backoff = Backoff::new(session.tuning.backoff_min, session.tuning.backoff_max);
    let mut bot_open_id: Option<String> = None;
    report(Update::Connecting);
    loop {
        if stopped(stop) {
            return;
        }
        let started = Instant::now();
        let delay = match connect_on_helper(session, api, &tag, &mut bot_open_id) {
            Ok(opened) => {
                report(Update::Connected);
                let mut conn = Conn {
                    session,
                    store,
                    stop,
                    report,
                    tag: &tag,
                    bot_open_id: bot_open_id.as_deref(),
                    seen_reported: None,
                };
                match conn.read_loop(opened) {
                    End::Stopped => return,
                    End::Lost(err) => {
                        metrics::inc(
                            "feishu_gateway_reconnects_total",
                            &[("channel", &session.channel_id)],
                        );
                        log::warn!("{tag} long connection lost: {}; reconnecting", err.message);
                        report(Update::Disconnected(err));
                    }
                }
                if started.elapsed() >= Duration::from_secs(10) {
                    backoff.reset();
                }
                jitter(backoff.next_delay())
            }
            Err(e) if e.needs_operator() => {
                log::error!("{tag} {e}; retrying in {}s", session.tuning.operator_retry.as_secs());
                report(Update::Error(LastError::from(&e)));
                backoff.next_delay();
                session.tuning.operator_retry
            }
            Err(e) => {
                let delay = jitter(backoff.next_delay());
                log::warn!("{tag} cannot connect: {e}; retrying in {:.1}s", delay.as_secs_f64());
                report(Update::Disconnected(LastError::from(&e)));
                delay
            }
        };
        match stop.recv_timeout(delay) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

fn stopped(stop: &Receiver<()>) -> bool {
    !matches!(stop.try_recv(), Err(TryRecvError::Empty))
}

/// An open long connection.
struct Opened {
    socket: Socket,
    config: ClientConfig,
    /// The URL's `service_id`, copied into every ping.
    service: i32,
}

/// Runs [`connect`] on a short-lived helper thread. The HTTP and TLS calls
/// need deep stacks; the pages they touch would stay resident for the life
/// of the long-lived connection thread, so they are kept off it.
fn connect_on_helper(
    session: &Session,
    api: &Api,
    tag: &str,
    bot_open_id: &mut Option<String>,
) -> Result<Opened, ConnectError> {
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("feishu-connect".into())
            .spawn_scoped(scope, || connect(session, api, tag, bot_open_id));
        match helper {
            Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(e) => Err(ConnectError::Network(format!("cannot start a thread: {e}"))),
        }
    })
}

/// Endpoint call, bot identity (once), WebSocket handshake.
fn connect(
    session: &Session,
    api: &Api,
    tag: &str,
    bot_open_id: &mut Option<String>,
) -> Result<Opened, ConnectError> {
    let creds = &session.creds;
    let ep =
        endpoint::fetch(api.http(), &creds.base_url, &creds.app_id, creds.app_secret.expose())?;
    if bot_open_id.is_none() {
        match api.bot_info(creds) {
            Ok(bot) => {
                log::info!("{tag} bot \"{}\" has open_id {}", bot.name, bot.open_id);
                *bot_open_id = Some(bot.open_id);
            }
            Err(e) => log::warn!(
                "{tag} cannot read the bot's identity ({e}); group @-mentions are matched loosely until it can"
            ),
        }
    }
    let socket = open_socket(&ep.url, session.tuning, session.transport)?;
    log::info!(
        "{tag} long connection open to {} (conn_id {}, ping every {}s)",
        endpoint::safe_url(&ep.url),
        endpoint::device_id(&ep.url),
        ep.config.ping_interval.as_secs()
    );
    Ok(Opened { socket, config: ep.config, service: endpoint::service_id(&ep.url) })
}

fn io_to_connect(e: io::Error) -> ConnectError {
    ConnectError::network(e.to_string())
}

fn open_socket(url: &str, tuning: Tuning, transport: Transport) -> Result<Socket, ConnectError> {
    let uri: tungstenite::http::Uri = url
        .parse()
        .map_err(|_| ConnectError::Protocol("endpoint returned an unparsable URL".into()))?;
    let host =
        uri.host().ok_or_else(|| ConnectError::Protocol("endpoint URL has no host".into()))?;
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") if transport == Transport::AllowPlain => false,
        Some("ws") => {
            return Err(ConnectError::Protocol(
                "endpoint offered an unencrypted ws:// URL; refused (allowed only with FEISHU_BASE_URL)".into(),
            ));
        }
        _ => return Err(ConnectError::Protocol("endpoint URL is not ws:// or wss://".into())),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    let mut tcp = None;
    for addr in (host, port).to_socket_addrs().map_err(io_to_connect)? {
        match TcpStream::connect_timeout(&addr, tuning.connect_timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or_else(|| io_to_connect(last))?;
    tcp.set_read_timeout(Some(tuning.connect_timeout)).map_err(io_to_connect)?;
    tcp.set_write_timeout(Some(tuning.connect_timeout)).map_err(io_to_connect)?;
    tcp.set_nodelay(true).map_err(io_to_connect)?;
    // Small buffers that grow on demand: an idle connection should cost little memory.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20));
    let (mut socket, _) = tungstenite::client_tls_with_config(url, tcp, Some(config), None)
        .map_err(|e| match e {
            HandshakeError::Failure(tungstenite::Error::Http(resp)) => {
                let header = |k: &str| {
                    resp.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_owned)
                };
                ConnectError::Handshake {
                    http: resp.status().as_u16(),
                    status: header("handshake-status").and_then(|v| v.trim().parse().ok()),
                    auth_code: header("handshake-autherrcode").and_then(|v| v.trim().parse().ok()),
                    msg: header("handshake-msg").unwrap_or_default(),
                }
            }
            HandshakeError::Failure(tungstenite::Error::Io(e)) => io_to_connect(e),
            HandshakeError::Failure(tungstenite::Error::Tls(e)) => {
                ConnectError::network(format!("TLS: {e}"))
            }
            HandshakeError::Failure(other) => {
                ConnectError::Protocol(format!("WebSocket handshake: {other}"))
            }
            HandshakeError::Interrupted(_) => {
                ConnectError::Network("WebSocket handshake timed out".into())
            }
        })?;
    set_read_timeout(&mut socket, tuning.tick).map_err(io_to_connect)?;
    Ok(socket)
}

fn set_read_timeout(socket: &mut Socket, d: Duration) -> io::Result<()> {
    match socket.get_mut() {
        MaybeTlsStream::Plain(s) => s.set_read_timeout(Some(d)),
        MaybeTlsStream::NativeTls(s) => s.get_mut().set_read_timeout(Some(d)),
        _ => Ok(()),
    }
}

fn set_nonblocking(socket: &mut Socket, on: bool) -> io::Result<()> {
    match socket.get_mut() {
        MaybeTlsStream::Plain(s) => s.set_nonblocking(on),
        MaybeTlsStream::NativeTls(s) => s.get_mut().set_nonblocking(on),
        _ => Ok(()),
    }
}

/// How long after a ping an answer (pong or any frame) must arrive.
fn pong_timeout(ping_interval: Duration) -> Duration {
    (ping_interval / 2).clamp(Duration::from_secs(2), Duration::from_secs(30))
}

/// Most events stored in one Redis round trip.
const MAX_BATCH: usize = 256;

/// A complete event waiting for its ack.
struct Pending {
    /// The frame that completed the event; echoed back as the ack.
    frame: Frame,
    received: Instant,
    work: Work,
}

/// What an event needs before it can be acknowledged.
enum Work {
    /// A question to store.
    Question(Box<event::Message>),
    /// A non-text message whose hint reply must be queued.
    Hint(event::NonText),
    /// Nothing: acknowledge with 200. The outcome label for metrics.
    Skip(&'static str),
}

struct Conn<'a> {
    session: &'a Session,
    store: &'a mut dyn InboundStore,
    stop: &'a Receiver<()>,
    report: &'a dyn Fn(Update),
    tag: &'a str,
    bot_open_id: Option<&'a str>,
    /// When `EventSeen` was last reported (at most once a second).
    seen_reported: Option<Instant>,
}

impl Conn<'_> {
    fn read_loop(&mut self, Opened { mut socket, mut config, service }: Opened) -> End {
        let mut reassembler = Reassembler::new(Limits::default());
        let ping = WsMessage::Binary(Frame::ping(service).encode().into());
        let mut next_ping = Instant::now();
        let mut awaiting: Option<Instant> = None;
        let mut pending: Vec<Pending> = Vec::new();
        // Events that arrive back to back are stored in one round trip: while
        // some are pending, reads only take what is already there.
        let mut draining = false;
        let mut flush_now = false;
        loop {
            if stopped(self.stop) {
                let _ = socket.close(None);
                let _ = socket.flush();
                log::info!("{} long connection closed", self.tag);
                return End::Stopped;
            }
            let now = Instant::now();
            if now >= next_ping {
                if let Err(e) = socket.send(ping.clone()) {
                    return End::Lost(LastError::new(
                        "connection_lost",
                        format!("ping failed: {e}"),
                    ));
                }
                awaiting.get_or_insert(now);
                next_ping = now + config.ping_interval;
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
            match socket.read() {
                Ok(msg) => {
                    awaiting = None;
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
                    let limit = pong_timeout(config.ping_interval);
                    if awaiting.is_some_and(|since| since.elapsed() > limit) {
                        return End::Lost(LastError::new(
                            "dead_connection",
                            format!("no answer from Feishu within {}s of a ping", limit.as_secs()),
                        ));
                    }
                    reassembler.expire(Instant::now());
                }
                Err(e) => return End::Lost(LastError::new("connection_lost", e.to_string())),
            }
        }
    }

    /// Handles one binary WebSocket message; returns a complete event.
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
        match event::parse(payload, &ctx) {
            Ok(Outcome::Message(msg)) => Work::Question(msg),
            Ok(Outcome::NonText(m)) => {
                log::info!(
                    "{tag} {} message {} answered with the text-only hint",
                    m.msg_type,
                    m.message_id
                );
                Work::Hint(m)
            }
            Ok(Outcome::Skipped { event_id, reason: event::Skip::TokenMismatch }) => {
                log::warn!(
                    "{tag} event {event_id} dropped: its verification token differs from the channel's verification_token"
                );
                Work::Skip("filtered")
            }
            Ok(Outcome::Skipped { event_id, reason }) => {
                log::debug!("{tag} event {event_id} skipped: {}", reason.as_str());
                Work::Skip(if reason == event::Skip::Stale { "stale" } else { "filtered" })
            }
            Err(e) => {
                log::warn!("{tag} {e}; acknowledged and dropped");
                Work::Skip("invalid")
            }
        }
    }

    /// Stores the pending messages in one step, then acks every pending
    /// frame in arrival order: 200, or 500 for messages that could not be
    /// stored (Feishu delivers those again).
    fn flush(&mut self, socket: &mut Socket, pending: &mut Vec<Pending>) -> Result<(), End> {
        set_nonblocking(socket, false)
            .map_err(|e| End::Lost(LastError::new("connection_lost", e.to_string())))?;
        let messages: Vec<&event::Message> = pending
            .iter()
            .filter_map(|p| match &p.work {
                Work::Question(m) => Some(m.as_ref()),
                _ => None,
            })
            .collect();
        let stored = if messages.is_empty() { Ok(Vec::new()) } else { self.store(&messages) };
        if let Ok(fresh) = &stored {
            for (msg, fresh) in messages.iter().zip(fresh) {
                log::info!(
                    "{} message {} from {} in {} {} (event {})",
                    self.tag,
                    msg.message_id,
                    msg.sender.open_id.as_deref().unwrap_or("?"),
                    msg.chat_type,
                    if *fresh { "stored" } else { "was already stored" },
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
        let mut fresh = stored.as_ref().ok().map(|f| f.iter());
        let channel = self.session.channel_id.as_str();
        for p in pending.drain(..) {
            let (code, outcome) = match &p.work {
                Work::Question(_) => match fresh.as_mut().and_then(Iterator::next) {
                    Some(true) => (200, "stored"),
                    Some(false) => (200, "duplicate"),
                    None => (500, "not_stored"),
                },
                Work::Hint(m) => match self.store.store_hint(m) {
                    Ok(()) => (200, "unsupported"),
                    Err(e) => {
                        log::warn!(
                            "{} hint for {} not queued ({e}); Feishu will deliver it again",
                            self.tag,
                            m.message_id
                        );
                        (500, "not_stored")
                    }
                },
                Work::Skip(outcome) => (200, *outcome),
            };
            metrics::inc(
                "feishu_gateway_inbound_events_total",
                &[("channel", channel), ("outcome", outcome)],
            );
            metrics::inc(
                "feishu_gateway_acks_total",
                &[("code", if code == 200 { "200" } else { "500" })],
            );
            let mut frame = p.frame;
            frame.headers.push(("biz_rt".into(), p.received.elapsed().as_millis().to_string()));
            frame.payload = Some(format!("{{\"code\":{code}}}").into_bytes());
            socket.send(WsMessage::Binary(frame.encode().into())).map_err(|e| {
                End::Lost(LastError::new("connection_lost", format!("ack failed: {e}")))
            })?;
        }
        Ok(())
    }

    /// Stores with retries inside Feishu's 3 s ack budget.
    fn store(&mut self, messages: &[&event::Message]) -> Result<Vec<bool>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_websocket_needs_the_override() {
        let err =
            open_socket("ws://127.0.0.1:9/ws/v2?ticket=t", Tuning::default(), Transport::TlsOnly)
                .err();
        assert!(
            matches!(err, Some(ConnectError::Protocol(ref m)) if m.contains("unencrypted")),
            "{err:?}"
        );
        let err =
            open_socket("http://127.0.0.1:9/", Tuning::default(), Transport::AllowPlain).err();
        assert!(matches!(err, Some(ConnectError::Protocol(_))), "{err:?}");
    }

    #[test]
    fn pong_timeout_is_bounded() {
        assert_eq!(pong_timeout(Duration::from_secs(1)), Duration::from_secs(2));
        assert_eq!(pong_timeout(Duration::from_secs(20)), Duration::from_secs(10));
        assert_eq!(pong_timeout(Duration::from_secs(120)), Duration::from_secs(30));
    }
}
