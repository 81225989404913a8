//! feishu-sim: a local stand-in for Feishu's Open Platform, for tests, the
//! demo and benchmarks. It speaks the real protocol on 127.0.0.1, port 0:
//!
//! - `POST /callback/ws/endpoint` hands out one-time WebSocket URLs (with a
//!   `ticket`, `access_key`, `service_id` and `device_id` in the query);
//! - the WebSocket side exchanges pbbp2 frames: answers pings with pongs
//!   carrying a `ClientConfig`, pushes events (optionally split into
//!   fragments) to one random connection of the app, records acks and
//!   redelivers events that were not acknowledged with code 200;
//! - the REST side issues tenant tokens and answers `/bot/v3/info`.
//!
//! Faults are injected through methods: abrupt close, silent connection,
//! garbage frames, wrong secrets, connection limits.

pub mod cardkit;
pub mod console;
mod dispatch;
pub mod events;
pub mod harness;
mod http;
mod im;
pub mod pb;
pub mod proxy;
mod rest;
mod state;
pub mod tls;
mod ws;

pub use http::{Request, Response};
pub use im::{Fault, Reaction, Route, SentMessage};
pub use state::Ack;

use state::{App, Cmd, Conn, Inner, Push, State};

use serde_json::Value;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A random u64 from the standard library's per-process random keys.
pub fn rand_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// A random lowercase hex string of `n` characters.
pub fn rand_hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&format!("{:016x}", rand_u64()));
    }
    s.truncate(n);
    s
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// `ClientConfig.PingInterval` sent in the endpoint reply and in pongs (seconds).
    pub ping_interval: u64,
    pub reconnect_interval: u64,
    pub reconnect_nonce: u64,
    /// An event not acknowledged with 200 is pushed again after this long.
    pub redelivery_after: Duration,
    /// Most deliveries of one event (first push included).
    pub max_deliveries: u32,
    /// Most simultaneous connections per app (Feishu: 50).
    pub conn_limit: usize,
    /// `expire` of tenant tokens (seconds).
    pub token_expire: u64,
    /// How long a connection thread waits for client data before looking
    /// at its outgoing queue again (latency of pushes vs. idle CPU).
    pub poll: Duration,
    /// Serve `https://` and `wss://` (a private CA, see [`Sim::ca_pem`]).
    pub tls: bool,
    /// Listen on every interface and give clients this host name or
    /// address (one a container reaches); `None`: 127.0.0.1 only. Plain
    /// HTTP and WebSocket only.
    pub public_host: Option<String>,
    /// CardKit streaming closes by itself this long after it was last
    /// turned on (Feishu: about 10 minutes); compress it in tests.
    pub stream_timeout: Duration,
    /// How long after sending a message follow-up bubbles may go under it.
    pub follow_up_window: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            ping_interval: 120,
            reconnect_interval: 120,
            reconnect_nonce: 30,
            redelivery_after: Duration::from_secs(15),
            max_deliveries: 5,
            conn_limit: 50,
            token_expire: 7200,
            poll: Duration::from_millis(5),
            tls: false,
            public_host: None,
            stream_timeout: Duration::from_secs(600),
            follow_up_window: Duration::from_secs(600),
        }
    }
}

/// A running simulator. Everything stops when it is dropped.
pub struct Sim {
    inner: Arc<Inner>,
    http: http::Server,
    /// TLS fronts (HTTP, WebSocket) and the CA they chain to, in TLS mode.
    tls: Option<(tls::Certs, tls::Front, tls::Front)>,
}

impl Sim {
    pub fn start(opts: SimOptions) -> Sim {
        let bind = if opts.public_host.is_some() { "0.0.0.0:0" } else { "127.0.0.1:0" };
        let ws_listener = TcpListener::bind(bind).expect("bind ws listener");
        let ws_addr = ws_listener.local_addr().expect("ws addr");
        let certs = opts.tls.then(tls::Certs::generate);
        let ws_front = certs.as_ref().map(|c| tls::Front::start(c, ws_addr));
        let ws_public = match (&ws_front, &opts.public_host) {
            (Some(f), _) => format!("wss://{}", f.addr),
            (None, Some(host)) => format!("ws://{host}:{}", ws_addr.port()),
            (None, None) => format!("ws://{ws_addr}"),
        };
        let inner = Arc::new(Inner {
            opts,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            ws_addr,
            ws_public,
            stop: AtomicBool::new(false),
        });
        let i = inner.clone();
        thread::Builder::new()
            .name("sim-ws-accept".into())
            .spawn(move || ws::accept_ws(i, ws_listener))
            .expect("spawn");
        let i = inner.clone();
        thread::Builder::new()
            .name("sim-dispatch".into())
            .spawn(move || dispatch::dispatch(i))
            .expect("spawn");
        let i = inner.clone();
        let http = http::Server::start(bind, Arc::new(move |req| rest::rest(&i, req)));
        let tls = certs.zip(ws_front).map(|(c, ws)| {
            let front = tls::Front::start(&c, http.addr);
            (c, front, ws)
        });
        Sim { inner, http, tls }
    }

    /// The base URL to give the gateway as `FEISHU_BASE_URL`.
    pub fn base_url(&self) -> String {
        match &self.tls {
            Some((_, front, _)) => format!("https://{}", front.addr),
            None => match &self.inner.opts.public_host {
                Some(host) => format!("http://{host}:{}", self.http.addr.port()),
                None => format!("http://{}", self.http.addr),
            },
        }
    }

    /// The port of the long connection's URL (its TLS front in TLS mode).
    pub fn ws_url_port(&self) -> u16 {
        let public = &self.inner.ws_public;
        public.rsplit(':').next().and_then(|p| p.parse().ok()).expect("ws URL has a port")
    }

    /// In TLS mode, the PEM certificate of the CA a client must trust.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|(c, _, _)| c.ca_pem.as_str())
    }

    /// Registers a bot app. Returns the bot's open_id.
    pub fn add_app(&self, app_id: &str, secret: &str) -> String {
        let bot_open_id = format!("ou_bot_{}", rand_hex(24));
        let app = App {
            secret: secret.into(),
            bot_open_id: bot_open_id.clone(),
            bot_name: format!("Bot {app_id}"),
            console: console::Console::default(),
        };
        self.inner.lock().apps.insert(app_id.into(), app);
        bot_open_id
    }

    /// Changes what the developer console and the tenant admin decided for
    /// an app (scopes, version, events, the chats its bot is in).
    pub fn console(&self, app_id: &str, change: impl FnOnce(&mut console::Console)) {
        if let Some(app) = self.inner.lock().apps.get_mut(app_id) {
            change(&mut app.console);
        }
    }

    /// Changes an app's secret (as an operator would in the console).
    pub fn set_secret(&self, app_id: &str, secret: &str) {
        if let Some(app) = self.inner.lock().apps.get_mut(app_id) {
            app.secret = secret.into();
        }
    }

    pub fn bot_open_id(&self, app_id: &str) -> Option<String> {
        self.inner.lock().apps.get(app_id).map(|a| a.bot_open_id.clone())
    }

    /// Open WebSocket connections of an app.
    pub fn connections(&self, app_id: &str) -> usize {
        self.inner.lock().conns.iter().filter(|c| c.app_id == app_id).count()
    }

    /// WebSocket connections ever accepted for an app.
    pub fn total_connects(&self, app_id: &str) -> usize {
        self.inner.lock().connects.get(app_id).copied().unwrap_or(0)
    }

    pub fn endpoint_calls(&self, app_id: &str) -> usize {
        self.inner.lock().endpoint_calls.get(app_id).copied().unwrap_or(0)
    }

    pub fn pings(&self, app_id: &str) -> usize {
        self.inner.lock().pings.get(app_id).copied().unwrap_or(0)
    }

    /// Frames from clients that did not decode.
    pub fn invalid_frames(&self) -> usize {
        self.inner.lock().invalid_frames
    }

    /// Queues a fault for the next matching IM call.
    pub fn inject(&self, route: Route, fault: Fault) {
        self.inner.lock().im.faults.push_back((route, fault));
    }

    /// Makes every IM call of `app_id` answer only after `delay` (a hung
    /// region when it is longer than the client's timeout); zero undoes it.
    pub fn slow_app(&self, app_id: &str, delay: Duration) {
        let mut st = self.inner.lock();
        if delay.is_zero() {
            st.im.slow_apps.remove(app_id);
        } else {
            st.im.slow_apps.insert(app_id.to_owned(), delay);
        }
    }

    /// Forgets every tenant token, as if they had expired.
    pub fn invalidate_tokens(&self) {
        self.inner.lock().tokens.clear();
    }

    /// Marks a user's message as withdrawn: replies to it fail with 230011.
    pub fn withdraw(&self, message_id: &str) {
        self.inner.lock().im.withdrawn.insert(message_id.into());
    }

    /// Every message the bots made visible, in order; one showing a card
    /// entity has the entity's card as it is now as its `content`.
    pub fn messages(&self) -> Vec<SentMessage> {
        let st = self.inner.lock();
        let mut messages = st.im.messages.clone();
        for m in &mut messages {
            if let Some(card) = m.card_id.as_ref().and_then(|id| st.im.cards.cards.get(id)) {
                m.content = card.card.to_string();
            }
        }
        messages
    }

    /// Every CardKit card entity, in no particular order.
    pub fn cards(&self) -> Vec<cardkit::Card> {
        self.inner.lock().im.cards.cards.values().cloned().collect()
    }

    /// PATCH calls on messages that show a card entity (Feishu ignores them).
    pub fn entity_patches(&self) -> usize {
        self.inner.lock().im.entity_patches
    }

    /// Every reaction the bots added.
    pub fn reactions(&self) -> Vec<Reaction> {
        self.inner.lock().im.reactions.clone()
    }

    /// Waits until at least `n` messages are visible.
    pub fn wait_messages(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.inner.lock().im.messages.len() >= n)
    }

    /// Every secret the simulator handed out: tickets, access keys, tenant tokens.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.inner.lock().issued.clone()
    }

    /// Every REST request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().requests.clone()
    }

    /// Waits until `cond` holds on the simulator's counters, at most `timeout`.
    pub fn wait_until(&self, timeout: Duration, mut cond: impl FnMut(&Sim) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            let guard = self.inner.lock();
            let _ = self.inner.changed.wait_timeout(guard, left.min(Duration::from_millis(50)));
        }
    }

    /// Waits until the app has exactly `n` open connections.
    pub fn wait_connections(&self, app_id: &str, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.connections(app_id) == n)
    }

    /// Queues an event for an app; it goes to one random connection and is
    /// redelivered until acknowledged with 200. Returns the push id.
    pub fn push_event(&self, app_id: &str, payload: &str) -> u64 {
        self.push_event_in_parts(app_id, payload, 1)
    }

    /// Like `push_event`, split into `parts` fragments (sent last first).
    pub fn push_event_in_parts(&self, app_id: &str, payload: &str, parts: usize) -> u64 {
        let mut st = self.inner.lock();
        if let Ok(v) = serde_json::from_str::<Value>(payload) {
            let m = &v["event"]["message"];
            if let (Some(id), Some(chat)) = (m["message_id"].as_str(), m["chat_id"].as_str()) {
                st.im.user_messages.insert(id.into(), chat.into());
                if let Some(t) = m["chat_type"].as_str() {
                    st.im.chat_types.insert(chat.into(), t.into());
                }
            }
            let chat = v["event"]["chat_id"].as_str();
            match (v["header"]["event_type"].as_str(), chat) {
                (Some("im.chat.access_event.bot_p2p_chat_entered_v1"), Some(c)) => {
                    st.im.chat_types.insert(c.into(), "p2p".into());
                }
                (Some("im.chat.member.bot.added_v1"), Some(c)) => {
                    st.im.chat_types.insert(c.into(), "group".into());
                }
                _ => {}
            }
        }
        st.pushes.push(Push {
            app_id: app_id.into(),
            payload: payload.as_bytes().to_vec(),
            parts: parts.clamp(1, payload.len().max(1)),
            deliveries: 0,
            acked: false,
            sent_at: None,
        });
        let id = st.pushes.len() as u64 - 1;
        st.ready.push_back(id);
        drop(st);
        self.inner.changed.notify_all();
        id
    }

    /// Every ack received for a push.
    pub fn acks(&self, push: u64) -> Vec<Ack> {
        self.inner.lock().acks.iter().filter(|a| a.push == push).cloned().collect()
    }

    /// How often a push was sent.
    pub fn deliveries(&self, push: u64) -> u32 {
        self.inner.lock().pushes.get(push as usize).map_or(0, |p| p.deliveries)
    }

    /// When the first fragment of a push's first delivery was written.
    pub fn sent_at(&self, push: u64) -> Option<Instant> {
        self.inner.lock().pushes.get(push as usize).and_then(|p| p.sent_at)
    }

    /// Waits for an ack with code 200.
    pub fn wait_acked(&self, push: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| {
            s.inner.lock().pushes.get(push as usize).is_some_and(|p| p.acked)
        })
    }

    fn for_conns(&self, app_id: &str, f: impl Fn(&Conn)) {
        for c in self.inner.lock().conns.iter().filter(|c| c.app_id == app_id) {
            f(c);
        }
    }

    /// Closes every connection of the app abruptly (TCP shutdown, no close frame).
    pub fn drop_connections(&self, app_id: &str) {
        self.for_conns(app_id, |c| {
            let _ = c.tx.send(Cmd::Abort);
        });
    }

    /// Makes every current connection of the app go silent: nothing is read
    /// or answered any more, the socket stays open (a NAT that lost state).
    pub fn silence_connections(&self, app_id: &str) {
        self.for_conns(app_id, |c| c.silent.store(true, Ordering::SeqCst));
    }

    /// Sends raw bytes as a binary WebSocket message to every connection of the app.
    pub fn send_raw(&self, app_id: &str, bytes: &[u8]) {
        self.for_conns(app_id, |c| {
            let _ = c.tx.send(Cmd::Send(bytes.to_vec()));
        });
    }

    /// Sends a text WebSocket message (never used by Feishu) to every connection.
    pub fn send_text(&self, app_id: &str, text: &str) {
        self.for_conns(app_id, |c| {
            let _ = c.tx.send(Cmd::Text(text.into()));
        });
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        for c in self.inner.lock().conns.iter() {
            let _ = c.tx.send(Cmd::Abort);
        }
        let _ = TcpStream::connect_timeout(&self.inner.ws_addr, Duration::from_millis(200));
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
