//! The simulator's shared state: apps, tickets, tokens, open connections,
//! pushes with their deliveries and acks, counters the tests read, and the
//! IM side's messages. One mutex and one condvar guard it all.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::http::Request;
use crate::{SimOptions, im};

#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) secret: String,
    pub(crate) bot_open_id: String,
    pub(crate) bot_name: String,
    pub(crate) console: crate::console::Console,
}

pub(crate) enum Cmd {
    Send(Vec<u8>),
    /// A fragment of a push; the first write stamps the push's `sent_at`.
    Event(u64, Vec<u8>),
    Text(String),
    Abort,
}

pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) app_id: String,
    pub(crate) tx: mpsc::Sender<Cmd>,
    pub(crate) silent: Arc<AtomicBool>,
}

pub(crate) struct Push {
    pub(crate) app_id: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) parts: usize,
    pub(crate) deliveries: u32,
    pub(crate) acked: bool,
    pub(crate) sent_at: Option<Instant>,
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
pub(crate) struct State {
    pub(crate) apps: HashMap<String, App>,
    pub(crate) tickets: HashMap<String, String>,
    pub(crate) tokens: HashMap<String, String>,
    pub(crate) conns: Vec<Conn>,
    pub(crate) next_conn: u64,
    pub(crate) pushes: Vec<Push>,
    /// Pushes waiting for a connection.
    pub(crate) ready: std::collections::VecDeque<u64>,
    /// Sent pushes to check for an ack, in due order.
    pub(crate) waiting: std::collections::VecDeque<(Instant, u64)>,
    pub(crate) frame_to_push: HashMap<String, u64>,
    pub(crate) acks: Vec<Ack>,
    pub(crate) pings: HashMap<String, usize>,
    pub(crate) endpoint_calls: HashMap<String, usize>,
    pub(crate) connects: HashMap<String, usize>,
    pub(crate) invalid_frames: usize,
    pub(crate) requests: Vec<Request>,
    pub(crate) issued: Vec<String>,
    pub(crate) im: im::Im,
}

pub(crate) struct Inner {
    pub(crate) opts: SimOptions,
    pub(crate) state: Mutex<State>,
    pub(crate) changed: Condvar,
    pub(crate) ws_addr: SocketAddr,
    /// Where clients are told to open the WebSocket: `ws://` on `ws_addr`,
    /// or `wss://` on a TLS front.
    pub(crate) ws_public: String,
    pub(crate) stop: AtomicBool,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn client_config(&self) -> Value {
        json!({
            "ReconnectCount": -1,
            "ReconnectInterval": self.opts.reconnect_interval,
            "ReconnectNonce": self.opts.reconnect_nonce,
            "PingInterval": self.opts.ping_interval,
        })
    }
}
