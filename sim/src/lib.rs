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

pub mod events;
pub mod harness;
mod http;
mod im;
pub mod pb;
pub mod tls;

pub use http::{Request, Response};
pub use im::{Fault, Reaction, Route, SentMessage};

use serde_json::{Value, json};
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::handshake::server::{ErrorResponse, Request as WsRequest, Response as WsResponse};

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
        }
    }
}

#[derive(Debug, Clone)]
struct App {
    secret: String,
    bot_open_id: String,
    bot_name: String,
}

enum Cmd {
    Send(Vec<u8>),
    /// A fragment of a push; the first write stamps the push's `sent_at`.
    Event(u64, Vec<u8>),
    Text(String),
    Abort,
}

struct Conn {
    id: u64,
    app_id: String,
    tx: mpsc::Sender<Cmd>,
    silent: Arc<AtomicBool>,
}

struct Push {
    app_id: String,
    payload: Vec<u8>,
    parts: usize,
    deliveries: u32,
    acked: bool,
    sent_at: Option<Instant>,
}

/// One acknowledgement received from a client.
#[derive(Debug, Clone)]
pub struct Ack {
    pub push: u64,
    pub code: i64,
    pub headers: Vec<(String, String)>,
    pub conn: u64,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    apps: HashMap<String, App>,
    tickets: HashMap<String, String>,
    tokens: HashMap<String, String>,
    conns: Vec<Conn>,
    next_conn: u64,
    pushes: Vec<Push>,
    /// Pushes waiting for a connection.
    ready: std::collections::VecDeque<u64>,
    /// Sent pushes to check for an ack, in due order.
    waiting: std::collections::VecDeque<(Instant, u64)>,
    frame_to_push: HashMap<String, u64>,
    acks: Vec<Ack>,
    pings: HashMap<String, usize>,
    endpoint_calls: HashMap<String, usize>,
    connects: HashMap<String, usize>,
    invalid_frames: usize,
    requests: Vec<Request>,
    issued: Vec<String>,
    im: im::Im,
}

struct Inner {
    opts: SimOptions,
    state: Mutex<State>,
    changed: Condvar,
    ws_addr: SocketAddr,
    /// Where clients are told to open the WebSocket: `ws://` on `ws_addr`,
    /// or `wss://` on a TLS front.
    ws_public: String,
    stop: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client_config(&self) -> Value {
        json!({
            "ReconnectCount": -1,
            "ReconnectInterval": self.opts.reconnect_interval,
            "ReconnectNonce": self.opts.reconnect_nonce,
            "PingInterval": self.opts.ping_interval,
        })
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
        let ws_listener = TcpListener::bind("127.0.0.1:0").expect("bind ws listener");
        let ws_addr = ws_listener.local_addr().expect("ws addr");
        let certs = opts.tls.then(tls::Certs::generate);
        let ws_front = certs.as_ref().map(|c| tls::Front::start(c, ws_addr));
        let ws_public = match &ws_front {
            Some(f) => format!("wss://{}", f.addr),
            None => format!("ws://{ws_addr}"),
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
            .spawn(move || accept_ws(i, ws_listener))
            .expect("spawn");
        let i = inner.clone();
        thread::Builder::new()
            .name("sim-dispatch".into())
            .spawn(move || dispatch(i))
            .expect("spawn");
        let i = inner.clone();
        let http = http::Server::start(Arc::new(move |req| rest(&i, req)));
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
            None => format!("http://{}", self.http.addr),
        }
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
        };
        self.inner.lock().apps.insert(app_id.into(), app);
        bot_open_id
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

    /// Forgets every tenant token, as if they had expired.
    pub fn invalidate_tokens(&self) {
        self.inner.lock().tokens.clear();
    }

    /// Marks a user's message as withdrawn: replies to it fail with 230011.
    pub fn withdraw(&self, message_id: &str) {
        self.inner.lock().im.withdrawn.insert(message_id.into());
    }

    /// Every message the bots made visible, in order.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.inner.lock().im.messages.clone()
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

fn rest(inner: &Inner, req: Request) -> Response {
    inner.lock().requests.push(req.clone());
    inner.changed.notify_all();
    let body = req.json();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/callback/ws/endpoint") => {
            let (app_id, secret) = (s(&body, "AppID"), s(&body, "AppSecret"));
            let mut st = inner.lock();
            *st.endpoint_calls.entry(app_id.clone()).or_default() += 1;
            match st.apps.get(&app_id) {
                None => {
                    Response::json(200, json!({"code": 1000040346, "msg": "app_id is invalid"}))
                }
                Some(app) if app.secret != secret => Response::json(
                    200,
                    json!({"code": 1000040345, "msg": "app_id or app_secret is invalid"}),
                ),
                Some(_) => {
                    let (ticket, access_key) = (rand_hex(32), rand_hex(32));
                    st.tickets.insert(ticket.clone(), app_id);
                    st.issued.extend([ticket.clone(), access_key.clone()]);
                    let url = format!(
                        "{}/ws/v2?fpid=493&aid=552564&device_id={}&access_key={access_key}&service_id=33554678&ticket={ticket}",
                        inner.ws_public,
                        rand_u64() % 10_000_000_000,
                    );
                    Response::json(
                        200,
                        json!({"code": 0, "msg": "", "data": {"URL": url, "ClientConfig": inner.client_config()}}),
                    )
                }
            }
        }
        ("POST", "/open-apis/auth/v3/tenant_access_token/internal") => {
            let (app_id, secret) = (s(&body, "app_id"), s(&body, "app_secret"));
            let mut st = inner.lock();
            match st.apps.get(&app_id) {
                Some(app) if app.secret == secret => {
                    let token = format!("t-{}", rand_hex(40));
                    st.tokens.insert(token.clone(), app_id);
                    st.issued.push(token.clone());
                    Response::json(
                        200,
                        json!({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": inner.opts.token_expire}),
                    )
                }
                _ => Response::json(200, json!({"code": 10014, "msg": "app secret invalid"})),
            }
        }
        ("GET", "/open-apis/bot/v3/info") => {
            let st = inner.lock();
            match bearer_app(&st, &req) {
                Some(app) => Response::json(
                    200,
                    json!({"code": 0, "msg": "ok", "bot": {"activate_status": 2, "app_name": app.bot_name,
                           "avatar_url": "", "ip_white_list": [], "open_id": app.bot_open_id}}),
                ),
                None => invalid_token(),
            }
        }
        (method, path) if path.starts_with("/open-apis/im/v1/messages") => {
            let rest = path.trim_start_matches("/open-apis/im/v1/messages").trim_start_matches('/');
            let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
            let (route, id, sub) = match (method, segs.as_slice()) {
                ("POST", []) => (Route::Send, "", ""),
                ("POST", [id, "reply"]) => (Route::Reply, *id, ""),
                ("PATCH", [id]) => (Route::Update, *id, ""),
                ("POST", [id, "reactions"]) => (Route::AddReaction, *id, ""),
                ("DELETE", [id, "reactions", rid]) => (Route::DeleteReaction, *id, *rid),
                _ => return Response::json(404, json!({"code": 404, "msg": "not found"})),
            };
            let mut st = inner.lock();
            let Some(app_id) = bearer_app_id(&st, &req) else { return invalid_token() };
            let mut delay = Duration::ZERO;
            match st.im.take_fault(route) {
                Some(Fault::Error { http, code, msg, reset }) => {
                    let mut r = Response::json(http, json!({"code": code, "msg": msg}));
                    if let Some(secs) = reset {
                        r.headers.push(("x-ogw-ratelimit-reset".into(), secs.to_string()));
                        r.headers.push(("x-ogw-ratelimit-limit".into(), "50".into()));
                    }
                    return r;
                }
                Some(Fault::Delay(d)) => delay = d,
                None => {}
            }
            let mut r = st.im.handle(&app_id, route, &req, id, sub);
            drop(st);
            inner.changed.notify_all();
            r.delay = delay;
            r
        }
        _ => Response::json(404, json!({"code": 404, "msg": "not found"})),
    }
}

fn bearer_app_id(st: &State, req: &Request) -> Option<String> {
    let token = req.header("authorization")?.strip_prefix("Bearer ")?;
    st.tokens.get(token).cloned()
}

fn bearer_app<'a>(st: &'a State, req: &Request) -> Option<&'a App> {
    let token = req.header("authorization")?.strip_prefix("Bearer ")?;
    st.apps.get(st.tokens.get(token)?)
}

fn invalid_token() -> Response {
    Response::json(400, json!({"code": 99991663, "msg": "Invalid access token for authorization"}))
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

#[allow(clippy::result_large_err)] // tungstenite's callback signature fixes the error type
fn refuse(status: u16, handshake_status: i64, auth_code: Option<i64>, msg: &str) -> ErrorResponse {
    let mut b = tungstenite::http::Response::builder()
        .status(status)
        .header("Handshake-Status", handshake_status.to_string())
        .header("Handshake-Msg", msg);
    if let Some(code) = auth_code {
        b = b.header("Handshake-Autherrcode", code.to_string());
    }
    b.body(Some(msg.to_owned())).expect("valid response")
}

fn accept_ws(inner: Arc<Inner>, listener: TcpListener) {
    for stream in listener.incoming() {
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let i = inner.clone();
        let _ = thread::Builder::new().name("sim-ws".into()).spawn(move || serve_ws(i, stream));
    }
}

#[allow(clippy::result_large_err)] // tungstenite's callback signature fixes the error type
fn serve_ws(inner: Arc<Inner>, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    let raw = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut app_id = String::new();
    let callback = |req: &WsRequest, resp: WsResponse| -> Result<WsResponse, ErrorResponse> {
        let query = req.uri().query().unwrap_or_default();
        let ticket = query_param(query, "ticket").unwrap_or_default();
        let mut st = inner.lock();
        let Some(app) = st.tickets.remove(&ticket) else {
            return Err(refuse(401, 514, Some(1_000_040_344), "invalid ticket"));
        };
        if st.conns.iter().filter(|c| c.app_id == app).count() >= inner.opts.conn_limit {
            return Err(refuse(
                400,
                514,
                Some(1_000_040_350),
                "the number of connections exceeded the limit",
            ));
        }
        app_id = app;
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else { return };
    let _ = raw.set_read_timeout(Some(inner.opts.poll));
    let (tx, rx) = mpsc::channel();
    let silent = Arc::new(AtomicBool::new(false));
    let id = {
        let mut st = inner.lock();
        st.next_conn += 1;
        let id = st.next_conn;
        st.conns.push(Conn { id, app_id: app_id.clone(), tx, silent: silent.clone() });
        *st.connects.entry(app_id.clone()).or_default() += 1;
        id
    };
    inner.changed.notify_all();
    // Outgoing frames wait here; at most a batch is written before the
    // client's acks are read again, so neither side can block the other.
    let mut queue: std::collections::VecDeque<Cmd> = std::collections::VecDeque::new();
    'conn: loop {
        queue.extend(rx.try_iter());
        if !queue.is_empty() {
            let _ = raw.set_nonblocking(false);
        }
        for _ in 0..64 {
            let Some(cmd) = queue.pop_front() else { break };
            if silent.load(Ordering::SeqCst) && !matches!(cmd, Cmd::Abort) {
                continue;
            }
            let sent = match cmd {
                Cmd::Send(b) => ws.send(Message::Binary(b.into())),
                Cmd::Event(push, b) => {
                    let at = Instant::now();
                    let r = ws.send(Message::Binary(b.into()));
                    if r.is_ok()
                        && let Some(p) = inner.lock().pushes.get_mut(push as usize)
                    {
                        p.sent_at.get_or_insert(at);
                    }
                    r
                }
                Cmd::Text(t) => ws.send(Message::Text(t.into())),
                Cmd::Abort => {
                    let _ = raw.shutdown(Shutdown::Both);
                    break 'conn;
                }
            };
            if sent.is_err() {
                break 'conn;
            }
        }
        if inner.stop.load(Ordering::SeqCst) {
            break;
        }
        if silent.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        // With frames still queued, only take what the client already sent:
        // non-blocking reads (a tiny read timeout would round up to a jiffy).
        let _ = raw.set_nonblocking(!queue.is_empty());
        loop {
            match ws.read() {
                Ok(Message::Binary(b)) => on_client_frame(&inner, &app_id, id, &mut ws, &b),
                Ok(Message::Close(_)) => {
                    let _ = ws.flush();
                    break 'conn;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(_) => break 'conn,
            }
        }
    }
    inner.lock().conns.retain(|c| c.id != id);
    inner.changed.notify_all();
}

fn on_client_frame(
    inner: &Inner,
    app_id: &str,
    conn: u64,
    ws: &mut tungstenite::WebSocket<TcpStream>,
    b: &[u8],
) {
    let Some(frame) = pb::Frame::from_bytes(b) else {
        inner.lock().invalid_frames += 1;
        return;
    };
    match (frame.method, frame.header("type")) {
        (0, Some("ping")) => {
            *inner.lock().pings.entry(app_id.into()).or_default() += 1;
            let pong = pb::Frame {
                seq_id: 0,
                log_id: 0,
                service: frame.service,
                method: 0,
                headers: vec![("type".into(), "pong".into())],
                payload: inner.client_config().to_string().into_bytes(),
            };
            let _ = ws.send(Message::Binary(pong.to_bytes().into()));
        }
        (1, _) => {
            let code = serde_json::from_slice::<Value>(&frame.payload)
                .ok()
                .and_then(|v| v.get("code").and_then(Value::as_i64))
                .unwrap_or(-1);
            let mut st = inner.lock();
            let Some(&push) = frame.header("message_id").and_then(|m| st.frame_to_push.get(m))
            else {
                st.invalid_frames += 1;
                return;
            };
            if code == 200 {
                st.pushes[push as usize].acked = true;
            }
            st.acks.push(Ack {
                push,
                code,
                headers: frame.headers.clone(),
                conn,
                at: Instant::now(),
            });
        }
        _ => inner.lock().invalid_frames += 1,
    }
    inner.changed.notify_all();
}

/// Sends due pushes to one random connection of their app, and queues
/// unacknowledged ones again after `redelivery_after`.
fn dispatch(inner: Arc<Inner>) {
    while !inner.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let mut guard = inner.lock();
        let st = &mut *guard;
        while let Some(&(due, id)) = st.waiting.front() {
            if due > now {
                break;
            }
            st.waiting.pop_front();
            let p = &st.pushes[id as usize];
            if !p.acked && p.deliveries < inner.opts.max_deliveries {
                st.ready.push_back(id);
            }
        }
        let mut blocked = Vec::new();
        while let Some(id) = st.ready.pop_front() {
            let push = &mut st.pushes[id as usize];
            if push.acked {
                continue;
            }
            let conns: Vec<&Conn> = st.conns.iter().filter(|c| c.app_id == push.app_id).collect();
            if conns.is_empty() {
                blocked.push(id);
                continue;
            }
            let conn = conns[(rand_u64() % conns.len() as u64) as usize];
            push.deliveries += 1;
            let frame_id = format!("{id}_{}_{}", push.deliveries, rand_hex(8));
            let chunk = push.payload.len().div_ceil(push.parts).max(1);
            let pieces: Vec<&[u8]> = push.payload.chunks(chunk).collect();
            for (seq, piece) in pieces.iter().enumerate().rev() {
                let frame = pb::Frame {
                    seq_id: id,
                    log_id: rand_u64() >> 1,
                    service: 33554678,
                    method: 1,
                    headers: vec![
                        ("type".into(), "event".into()),
                        ("message_id".into(), frame_id.clone()),
                        ("sum".into(), pieces.len().to_string()),
                        ("seq".into(), seq.to_string()),
                        ("trace_id".into(), rand_hex(16)),
                        ("timestamp".into(), now_ms().to_string()),
                    ],
                    payload: piece.to_vec(),
                };
                let _ = conn.tx.send(Cmd::Event(id, frame.to_bytes()));
            }
            st.frame_to_push.insert(frame_id, id);
            st.waiting.push_back((now + inner.opts.redelivery_after, id));
        }
        st.ready.extend(blocked);
        let next = st.waiting.front().map(|(due, _)| *due);
        let wait = next.map_or(Duration::from_millis(20), |t| t.saturating_duration_since(now));
        let _ = inner
            .changed
            .wait_timeout(guard, wait.clamp(Duration::from_millis(1), Duration::from_millis(20)));
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
