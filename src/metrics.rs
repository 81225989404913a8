//! Process-wide counters and gauges, served in the Prometheus text format on
//! `METRICS_ADDR` together with `/healthz`.
//!
//! Updating a metric takes one short lock; nothing is exported unless
//! `METRICS_ADDR` is set, but counting is always on (it is cheap).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::clock::now_ms;

// Every metric's name, in one place: a typo does not compile, and the
// architecture test checks that each has a call site.

/// Gauge: 1 for the channel's current state (labels `channel`, `state`).
pub const CHANNEL_STATE: &str = "feishu_gateway_channel_state";
/// Gauge: seconds since the channel's connection last received a frame.
pub const LAST_FRAME_AGE: &str = "feishu_gateway_last_frame_age_seconds";
/// Counter: long connections lost and reopened (label `channel`).
pub const RECONNECTS: &str = "feishu_gateway_reconnects_total";
/// Counter: Feishu events by outcome (labels `channel`, `outcome`).
pub const INBOUND_EVENTS: &str = "feishu_gateway_inbound_events_total";
/// Counter: acknowledgements sent to Feishu (label `code`).
pub const ACKS: &str = "feishu_gateway_acks_total";
/// Counter: outbound items by outcome (label `outcome`).
pub const OUTBOUND_ITEMS: &str = "feishu_gateway_outbound_items_total";
/// Counter: Feishu REST errors (label `code`).
pub const FEISHU_ERRORS: &str = "feishu_gateway_feishu_errors_total";
/// Counter: Feishu REST calls retried.
pub const OUTBOUND_RETRIES: &str = "feishu_gateway_outbound_retries_total";
/// Counter: tenant tokens fetched.
pub const TOKEN_REFRESHES: &str = "feishu_gateway_token_refreshes_total";
/// Gauge: length of the Redis lists (label `queue`).
pub const QUEUE_LENGTH: &str = "feishu_gateway_queue_length";
/// Counter: panics caught in long-lived threads, each followed by a restart (label `thread`).
pub const THREAD_RESTARTS: &str = "feishu_gateway_thread_restarts_total";
/// Counter: questions not answered within ANSWER_TIMEOUT (label `channel`).
pub const UNANSWERED: &str = "feishu_gateway_unanswered_questions_total";
/// Gauge: 1 while the main loop is alive and Redis reachable.
pub const UP: &str = "feishu_gateway_up";

struct Registry {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    gauges: Mutex<BTreeMap<(&'static str, String), f64>>,
    /// Per channel: when a frame last arrived (ms since the epoch).
    frames: Mutex<BTreeMap<String, u64>>,
    /// When the main loop last went round (ms since the epoch); the
    /// process start until it first does.
    alive: AtomicU64,
    /// The main loop's Redis trouble (`None`: every operation works).
    redis_problem: Mutex<Option<String>>,
    /// When an event was last acknowledged 200 / refused with 500.
    acked_at: AtomicU64,
    refused_at: AtomicU64,
}

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry {
        counters: Mutex::new(BTreeMap::new()),
        gauges: Mutex::new(BTreeMap::new()),
        frames: Mutex::new(BTreeMap::new()),
        alive: AtomicU64::new(now_ms()),
        redis_problem: Mutex::new(Some("not connected yet".into())),
        acked_at: AtomicU64::new(0),
        refused_at: AtomicU64::new(0),
    })
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    if inner.is_empty() { String::new() } else { format!("{{{}}}", inner.join(",")) }
}

/// Adds `n` to a counter.
pub fn add(name: &'static str, pairs: &[(&str, &str)], n: u64) {
    *registry().counters.lock().expect("metrics lock").entry((name, labels(pairs))).or_default() +=
        n;
}

/// Adds one to a counter.
pub fn inc(name: &'static str, pairs: &[(&str, &str)]) {
    add(name, pairs, 1);
}

/// Sets a gauge.
pub fn set(name: &'static str, pairs: &[(&str, &str)], v: f64) {
    registry().gauges.lock().expect("metrics lock").insert((name, labels(pairs)), v);
}

/// Removes every series of a gauge for a channel (when it is removed).
pub fn forget_channel(channel: &str) {
    let needle = labels(&[("channel", channel)]);
    let needle = needle.trim_end_matches('}');
    registry().gauges.lock().expect("metrics lock").retain(|(_, l), _| !l.starts_with(needle));
    registry().frames.lock().expect("metrics lock").remove(channel);
}

/// Records that a frame arrived on a channel's connection.
pub fn frame_seen(channel: &str) {
    let mut f = registry().frames.lock().expect("metrics lock");
    match f.get_mut(channel) {
        Some(t) => *t = now_ms(),
        None => {
            f.insert(channel.to_owned(), now_ms());
        }
    }
}

/// The main loop calls this every time round.
pub fn main_loop_alive() {
    registry().alive.store(now_ms(), Ordering::Relaxed);
}

/// The main loop's Redis trouble changed (`None`: every operation works).
pub fn set_redis_problem(problem: Option<String>) {
    *registry().redis_problem.lock().expect("metrics lock") = problem;
}

/// Records an acknowledgement sent to Feishu: 200 (stored or skipped) or
/// 500 (refused: Feishu delivers the event again).
pub fn ack_sent(code: u16) {
    inc(ACKS, &[("code", if code == 200 { "200" } else { "500" })]);
    let at = if code == 200 { &registry().acked_at } else { &registry().refused_at };
    at.store(now_ms(), Ordering::Relaxed);
}

/// Call at start: the clock of the stall check starts with the process.
pub fn init() {
    registry();
}

/// Why `/healthz` answers 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    /// The main loop has not gone round for this many milliseconds.
    Stalled(u64),
    /// Redis calls of the main loop fail (the trouble, in words).
    Redis(String),
    /// The last event was refused (acknowledged 500), this many ms ago.
    RefusingEvents(u64),
}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unhealthy::Stalled(ms) => write!(f, "main loop stalled for {ms} ms"),
            Unhealthy::Redis(p) => write!(f, "Redis: {p}"),
            Unhealthy::RefusingEvents(ms) => write!(
                f,
                "events are being refused (the last {ms} ms ago): they cannot be stored in Redis"
            ),
        }
    }
}

impl std::error::Error for Unhealthy {}

/// How long a refused event keeps `/healthz` failing (unless one is
/// stored meanwhile).
const REFUSED_FOR: u64 = 60_000;

/// Healthy: the main loop went round within 5 s, Redis answers, and no
/// event was refused in the last minute since the last one stored.
pub fn healthy() -> Result<(), Unhealthy> {
    let r = registry();
    let now = now_ms();
    let age = now.saturating_sub(r.alive.load(Ordering::Relaxed));
    if age > 5000 {
        return Err(Unhealthy::Stalled(age));
    }
    if let Some(p) = r.redis_problem.lock().expect("metrics lock").clone() {
        return Err(Unhealthy::Redis(p));
    }
    let refused = r.refused_at.load(Ordering::Relaxed);
    let since = now.saturating_sub(refused);
    if refused > r.acked_at.load(Ordering::Relaxed) && since < REFUSED_FOR {
        return Err(Unhealthy::RefusingEvents(since));
    }
    Ok(())
}

const HELP: &[(&str, &str, &str)] = &[
    (CHANNEL_STATE, "gauge", "1 for the channel's current state"),
    (LAST_FRAME_AGE, "gauge", "seconds since the channel's connection last received a frame"),
    (RECONNECTS, "counter", "long connections lost and reopened"),
    (INBOUND_EVENTS, "counter", "Feishu events by outcome"),
    (ACKS, "counter", "acknowledgements sent to Feishu by code"),
    (OUTBOUND_ITEMS, "counter", "outbound items by outcome"),
    (FEISHU_ERRORS, "counter", "Feishu REST errors by code"),
    (OUTBOUND_RETRIES, "counter", "Feishu REST calls retried"),
    (TOKEN_REFRESHES, "counter", "tenant tokens fetched"),
    (QUEUE_LENGTH, "gauge", "length of the Redis lists"),
    (THREAD_RESTARTS, "counter", "panics caught in long-lived threads, each followed by a restart"),
    (UNANSWERED, "counter", "questions not answered within ANSWER_TIMEOUT"),
    (UP, "gauge", "1 while the main loop is alive and Redis reachable"),
];

/// Every declared metric, in exposition order.
pub fn names() -> impl Iterator<Item = &'static str> {
    HELP.iter().map(|(name, _, _)| *name)
}

/// The Prometheus text exposition.
pub fn render() -> String {
    let r = registry();
    let mut samples: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((name, l), v) in r.counters.lock().expect("metrics lock").iter() {
        samples.entry(name).or_default().push(format!("{name}{l} {v}"));
    }
    for ((name, l), v) in r.gauges.lock().expect("metrics lock").iter() {
        samples.entry(name).or_default().push(format!("{name}{l} {v}"));
    }
    for (thread, n) in crate::panics::restarts() {
        let name = THREAD_RESTARTS;
        samples
            .entry(name)
            .or_default()
            .push(format!("{name}{} {n}", labels(&[("thread", &thread)])));
    }
    let now = now_ms();
    for (ch, t) in r.frames.lock().expect("metrics lock").iter() {
        let name = LAST_FRAME_AGE;
        let age = now.saturating_sub(*t) as f64 / 1000.0;
        samples
            .entry(name)
            .or_default()
            .push(format!("{name}{} {age:.3}", labels(&[("channel", ch)])));
    }
    let up = if healthy().is_ok() { 1 } else { 0 };
    samples.entry(UP).or_default().push(format!("{UP} {up}"));
    let mut out = String::new();
    for (name, kind, help) in HELP {
        if let Some(lines) = samples.get(name) {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// Clients served at once; more are answered 503 at once.
const MAX_CLIENTS: usize = 16;
/// The whole request (line and headers) must arrive within this.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// Serves `/metrics` and `/healthz` on `addr`: a `metrics` thread accepts,
/// and each client is served by a short-lived thread of its own, so a slow
/// one holds up no other.
pub fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        let clients = std::sync::Arc::new(AtomicU64::new(0));
        crate::panics::keep_running("metrics", || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                crate::panics::inject("metrics");
                if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS as u64 {
                    clients.fetch_sub(1, Ordering::AcqRel);
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = respond(&stream, "503 Service Unavailable", "text/plain", "busy\n");
                    continue;
                }
                let held = clients.clone();
                let spawned =
                    std::thread::Builder::new().name("metrics-client".into()).spawn(move || {
                        serve_one(&stream);
                        held.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    clients.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })
    })?;
    Ok(bound)
}

/// Reads one request (within [`REQUEST_DEADLINE`]) and answers it.
fn serve_one(stream: &std::net::TcpStream) {
    let deadline = std::time::Instant::now() + REQUEST_DEADLINE;
    let _ = stream.set_write_timeout(Some(REQUEST_DEADLINE));
    let mut reader = BufReader::new(stream).take(8192);
    let mut request = String::new();
    let mut line = String::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if request.is_empty() => request = std::mem::take(&mut line),
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let _ = match path {
        "/metrics" => respond(stream, "200 OK", "text/plain; version=0.0.4", &render()),
        "/healthz" => match healthy() {
            Ok(()) => respond(stream, "200 OK", "text/plain", "ok\n"),
            Err(e) => respond(stream, "503 Service Unavailable", "text/plain", &format!("{e}\n")),
        },
        _ => respond(stream, "404 Not Found", "text/plain", "not found\n"),
    };
}

fn respond(
    mut stream: &std::net::TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        inc(ACKS, &[("code", "200")]);
        add(ACKS, &[("code", "200")], 2);
        set(CHANNEL_STATE, &[("channel", "c\"1"), ("state", "connected")], 1.0);
        frame_seen("c1");
        let out = render();
        assert!(out.contains("# TYPE feishu_gateway_acks_total counter\n"), "{out}");
        assert!(out.contains("feishu_gateway_acks_total{code=\"200\"} 3\n"), "{out}");
        assert!(
            out.contains(
                "feishu_gateway_channel_state{channel=\"c\\\"1\",state=\"connected\"} 1\n"
            ),
            "{out}"
        );
        assert!(out.contains("feishu_gateway_last_frame_age_seconds{channel=\"c1\"} 0."), "{out}");
        forget_channel("c1");
        assert!(!render().contains("channel=\"c1\""));
    }
}
