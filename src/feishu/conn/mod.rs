//! One channel's Feishu long connection, run on its own thread: endpoint
//! call, WebSocket, read loop with pings, liveness, fragment reassembly,
//! store-then-ack of events, and reconnecting forever with backoff.
//!
//! The thread blocks in a socket read until its next real deadline (a ping
//! due, the end of the wait for a pong, a fragment expiring): an idle
//! connection wakes about once per ping interval. The supervisor stops it
//! by dropping its [`StopHandle`], which wakes that read ([`stop`]).
//! Storing goes through the [`InboundStore`] trait so that this module does
//! not know Redis.

mod ack;
mod liveness;
mod proxy;
mod session;
mod slots;
mod stop;
mod transport;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::api::{Api, AppCreds};
use super::endpoint::{self, ClientConfig, ConnectError};
use super::event;
use crate::channel::{Routing, Secret};
use crate::clock::{Backoff, jitter};
use crate::metrics;
use session::Conn;
pub use stop::{Stop, StopHandle, pair as stop_pair};
use transport::{Socket, open_socket};

/// Where stored questions go (Redis in production).
pub trait InboundStore {
    /// Stores messages, each at most once, in one step: one [`Stored`] per
    /// message, in order. `Err`: nothing was stored.
    fn store(
        &mut self,
        messages: &[&event::Message],
        routing: &Routing,
    ) -> Result<Vec<Stored>, StoreError>;

    /// Queues the "only text is supported" reply for a non-text message
    /// (once per message). `Err`: nothing was queued.
    fn store_hint(&mut self, message: &event::NonText) -> Result<(), StoreError>;

    /// Queues the channel's welcome message for a chat the bot entered,
    /// once per chat across replicas and restarts. `Err`: nothing was queued.
    fn store_welcome(&mut self, chat: &event::ChatEntered, text: &str) -> Result<(), StoreError>;

    /// Records, best effort, that a message was deliberately not stored
    /// (`why`: `event::Skip::as_str`), for `trace`.
    fn note_skipped(&mut self, _message_id: &str, _why: &str) {}
}

/// What storing one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Newly stored.
    New,
    /// A duplicate of one stored before (a redelivery): not stored again.
    Duplicate,
}

/// Why an [`InboundStore`] could not store: the store's own error (for
/// Redis, `bridge::store::RedisError`), whose `Display` holds no secret.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// An error as shown in the status key's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub code: String,
    pub message: String,
}

/// Longest error message kept (it goes into the status key and the log;
/// Feishu's own messages are copied into it).
const MAX_ERROR_MESSAGE: usize = 512;

impl LastError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> LastError {
        let mut message: String = message.into();
        if message.len() > MAX_ERROR_MESSAGE {
            let mut cut = MAX_ERROR_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        LastError { code: code.into(), message }
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
    /// Longest socket read wait (the loop wakes earlier when a ping or a
    /// deadline is due).
    pub max_wait: Duration,
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
            max_wait: Duration::from_secs(300),
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
pub(crate) enum End {
    Stopped,
    Lost(LastError),
}

/// Runs the channel until its [`StopHandle`] is dropped.
pub fn run(
    session: &Session,
    api: &Api,
    store: &mut dyn InboundStore,
    stop: &Stop,
    report: &dyn Fn(Update),
) {
    let tag = format!("[{} {}]", session.channel_id, session.creds.app_id);
    let mut backoff = Backoff::new(session.tuning.backoff_min, session.tuning.backoff_max);
    let mut bot_open_id: Option<String> = None;
    report(Update::Connecting);
    loop {
        if stop.is_stopped() {
            return;
        }
        let started = Instant::now();
        let delay = match on_helper(|| connect(session, api, &tag, &mut bot_open_id)) {
            Ok(opened) => {
                report(Update::Connected);
                let mut conn = Conn {
                    session,
                    store: &mut *store,
                    stop,
                    report,
                    tag: &tag,
                    bot_open_id: bot_open_id.as_deref(),
                    seen_reported: None,
                    refusing: false,
                };
                match conn.read_loop(opened) {
                    End::Stopped => return,
                    End::Lost(err) => lost(session, &tag, err, report),
                }
                if started.elapsed() >= Duration::from_secs(10) {
                    backoff.reset();
                }
                jitter(backoff.next_delay())
            }
            Err(e) => not_connected(session, &tag, &e, &mut backoff, report),
        };
        if stop.wait(delay) {
            return;
        }
    }
}

// The long-lived thread's stack: the read loop, the helper and the error
// paths have frames of their own (not inlined into `run`), so the stack an
// idle connection keeps touched stays a few pages deep.

/// Reports a lost connection (the thread reconnects after a delay).
#[inline(never)]
#[cold]
fn lost(session: &Session, tag: &str, err: LastError, report: &dyn Fn(Update)) {
    metrics::inc(metrics::RECONNECTS, &[("channel", &session.channel_id)]);
    log::warn!("{tag} long connection lost: {}; reconnecting", err.message);
    report(Update::Disconnected(err));
}

/// Reports a failed connect; returns the delay before the next attempt.
#[inline(never)]
#[cold]
fn not_connected(
    session: &Session,
    tag: &str,
    e: &ConnectError,
    backoff: &mut Backoff,
    report: &dyn Fn(Update),
) -> Duration {
    if e.needs_operator() {
        log::error!("{tag} {e}; retrying in {}s", session.tuning.operator_retry.as_secs());
        report(Update::Error(LastError::from(e)));
        backoff.next_delay();
        return session.tuning.operator_retry;
    }
    let delay = jitter(backoff.next_delay());
    log::warn!("{tag} cannot connect: {e}; retrying in {:.1}s", delay.as_secs_f64());
    report(Update::Disconnected(LastError::from(e)));
    delay
}

/// An open long connection.
pub(crate) struct Opened {
    socket: Socket,
    config: ClientConfig,
    /// The URL's `service_id`, copied into every ping.
    service: i32,
}

/// Runs `connect` (see [`connect`]) on a short-lived helper thread. The
/// HTTP and TLS calls need deep stacks; the pages they touch would stay
/// resident for the life of the long-lived connection thread, so they are
/// kept off it.
///
/// Only a few run at a time in the process ([`slots`]).
#[inline(never)]
fn on_helper(
    connect: impl FnOnce() -> Result<Opened, ConnectError> + Send,
) -> Result<Opened, ConnectError> {
    let _slot = slots::CONNECTS.take();
    std::thread::scope(|scope| {
        let helper =
            std::thread::Builder::new().name("feishu-connect".into()).spawn_scoped(scope, connect);
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
