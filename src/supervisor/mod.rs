//! The main loop: owns the channel registry, reconciles it with the config
//! in Redis, starts and stops one connection thread per channel, and writes
//! status and heartbeat keys.
//!
//! Everything arrives as one closed [`Event`]; no other thread changes the
//! registry. Every thread is named, owned here and joined. A panic in a
//! channel's thread restarts that channel only.

use crossbeam_channel::{Receiver, Sender, bounded, select};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bridge::contract::{self, State};
use crate::bridge::store::{self, Problem, RedisError, Store};
use crate::bridge::watch::{self, WatchEvent};
use crate::channel::ChannelConfig;
use crate::clock::{Backoff, now_ms};
use crate::config::Config;
use crate::feishu::api::Api;
use crate::feishu::conn::{
    self, InboundStore, LastError, Session, Stop, StopHandle, Tuning, Update,
};
use crate::feishu::http::Http;
use crate::metrics;
use crate::outbound::{Channels, Outbound, Settings as OutboundSettings, TypingJob};
use crate::panics;
use crate::render::Limits;
use crate::systemd;
use registry::{Known, Parsed, Step};

mod registry;
mod report;
mod threads;
mod tick;

/// Signals the supervisor reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop.
    Terminate,
    /// SIGHUP: re-read the config now.
    Reload,
}

/// Why the supervisor cannot start.
#[derive(Debug)]
pub enum StartError {
    /// `REDIS_URL` is not a usable Redis URL.
    RedisUrl(RedisError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::RedisUrl(e) => write!(f, "REDIS_URL: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Everything the main loop reacts to.
#[derive(Debug)]
pub enum Event {
    Watch(WatchEvent),
    Session { channel_id: String, generation: u64, update: Update },
    Exited { channel_id: String, generation: u64, panic: Option<String> },
    Signal(Signal),
    Tick,
}

/// The body of a channel's thread: [`conn::run`] in production; tests may
/// substitute their own (e.g. one that panics) to exercise the supervisor.
pub type Runner = fn(&Session, &Api, &mut dyn InboundStore, &Stop, &dyn Fn(Update));

/// How long shutdown waits for connection threads.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// From SIGTERM: replies in flight may finish until this, connection
/// threads stop until [`CLOSE_BY`], and the final status writes are made
/// until [`REPORT_BY`], so that the process exits within 10 s whatever
/// Redis does.
const REPLIES_BY: Duration = Duration::from_secs(5);
const CLOSE_BY: Duration = Duration::from_millis(6500);
const REPORT_BY: Duration = Duration::from_secs(7);
/// How long a main-loop call waits for a Redis connection attempt (one
/// still running goes on in the background: a black-holed Redis must not
/// hold up the watchdog or SIGTERM).
const MAIN_CONNECT_WAIT: Duration = Duration::from_secs(1);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Longest sleep of the main loop: well inside `/healthz`'s 5 s stall limit.
const MAIN_MAX_WAIT: Duration = Duration::from_secs(2);
/// Reply workers (one app may hold half of them).
const OUTBOUND_WORKERS: usize = 8;
const PANIC_RESTART_DELAY: Duration = Duration::from_secs(1);

struct Running {
    generation: u64,
    /// Dropping it tells the thread to stop (and wakes it).
    stop: StopHandle,
    handle: JoinHandle<()>,
    routing: Arc<RwLock<crate::channel::Routing>>,
    config: ChannelConfig,
}

struct Channel {
    /// The last config read, or why it is unusable.
    config: Parsed,
    state: State,
    since: u64,
    last_error: Option<LastError>,
    last_event_at: Option<u64>,
    run: Option<Running>,
    restart_at: Option<Instant>,
}

/// The gateway's main loop and its state.
pub struct Supervisor {
    cfg: Config,
    client: store::Target,
    store: Store,
    api: Arc<Api>,
    tuning: Tuning,
    runner: Runner,
    /// Running channels as the outbound workers see them.
    published: Channels,
    /// Where stored questions ask for the typing reaction.
    typing: Option<Sender<TypingJob>>,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    channels: BTreeMap<String, Channel>,
    stopping: HashMap<u64, JoinHandle<()>>,
    next_gen: u64,
    /// The main loop's Redis operations that fail now, with the trouble.
    redis_failing: BTreeMap<&'static str, (Problem, String)>,
    /// A Redis operation of the main loop has worked once.
    redis_seen: bool,
    started_at: u64,
    next_reload: Instant,
    reload_backoff: Backoff,
    next_status: Instant,
    next_heartbeat: Instant,
    next_queue_sample: Instant,
    /// READY=1 was sent (config read from Redis once).
    ready: bool,
    watchdog: Option<Duration>,
    next_watchdog: Instant,
    /// When the main loop must next run [`Supervisor::on_tick`]: the
    /// earliest of the `next_*` times and every pending restart.
    wake_at: Instant,
}

impl Supervisor {
    pub fn new(cfg: Config, tuning: Tuning) -> Result<Supervisor, StartError> {
        let client = store::target(&cfg).map_err(StartError::RedisUrl)?;
        let (tx, rx) = bounded(4096);
        let now = Instant::now();
        Ok(Supervisor {
            store: Store::new(client.clone()).with_connect_wait(MAIN_CONNECT_WAIT),
            client,
            api: Arc::new(Api::new(Http::new(Duration::from_secs(10)))),
            tuning,
            runner: conn::run,
            published: Channels::default(),
            typing: None,
            tx,
            rx,
            channels: BTreeMap::new(),
            stopping: HashMap::new(),
            next_gen: 1,
            redis_failing: BTreeMap::new(),
            redis_seen: false,
            started_at: now_ms(),
            next_reload: now,
            reload_backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(32)),
            next_status: now,
            next_heartbeat: now,
            next_queue_sample: now,
            ready: false,
            watchdog: systemd::watchdog_interval(),
            next_watchdog: now,
            wake_at: now,
            cfg,
        })
    }

    /// Replaces the body of channel threads (for tests).
    pub fn with_runner(mut self, runner: Runner) -> Supervisor {
        self.runner = runner;
        self
    }

    /// Runs until SIGTERM/SIGINT (delivered through `signals`).
    pub fn run(mut self, signals: Receiver<Signal>) {
        let (watch_tx, watch_rx) = bounded(64);
        let (watch_stop_tx, watch_stop_rx) = bounded::<()>(1);
        let mut connector = store::Connector::new(self.client.clone());
        let watcher = thread::Builder::new()
            .name("config-watch".into())
            .spawn(move || {
                panics::keep_running("config-watch", || {
                    watch::run(&mut connector, watch_tx.clone(), watch_stop_rx.clone())
                })
            })
            .expect("spawn config-watch thread");
        let outbound = Outbound::start(
            OutboundSettings {
                instance_id: self.cfg.instance_id.clone(),
                retry_window: self.cfg.outbound_retry_window,
                typing_reaction: self.cfg.typing_reaction.clone(),
                workers: OUTBOUND_WORKERS,
                limits: Limits::default(),
                base_url_override: self.cfg.feishu_base_url.clone(),
                recover_every: Duration::from_secs(contract::HEARTBEAT_TTL),
                answer_timeout: self.cfg.answer_timeout,
                no_answer_hint: self.cfg.no_answer_hint.clone(),
                cardkit: self.cfg.cardkit,
                stream_reopen: self.cfg.stream_reopen,
            },
            self.client.clone(),
            self.api.clone(),
            self.published.clone(),
        );
        self.typing = outbound.typing();
        log::info!(
            "Feishu Gateway running: instance {}, version {}, redis {}",
            self.cfg.instance_id,
            env!("CARGO_PKG_VERSION"),
            self.cfg.redis_url_for_logs()
        );
        // The first heartbeat and config read now, not a tick later.
        self.on_tick();
        // No ticks: the loop sleeps until its next deadline (at most
        // MAIN_MAX_WAIT, so that /healthz sees it go round) or an event.
        loop {
            let wait = self.wake_at.saturating_duration_since(Instant::now()).min(MAIN_MAX_WAIT);
            let event = select! {
                recv(self.rx) -> e => e.expect("supervisor holds a sender"),
                recv(watch_rx) -> e => match e {
                    Ok(w) => Event::Watch(w),
                    Err(_) => Event::Tick,
                },
                recv(signals) -> s => Event::Signal(s.unwrap_or(Signal::Terminate)),
                default(wait) => Event::Tick,
            };
            if let Event::Signal(Signal::Terminate) = event {
                break;
            }
            metrics::main_loop_alive();
            // A steady stream of events must not starve the deadlines.
            let tick = matches!(event, Event::Tick) || Instant::now() >= self.wake_at;
            self.handle(event);
            if tick {
                self.on_tick();
            }
        }
        drop(watch_stop_tx);
        systemd::notify(
            "STOPPING=1\nSTATUS=stopping: finishing replies in flight, closing connections",
        );
        // Stop taking answers and finish the ones in hand, then close connections.
        let asked = Instant::now();
        self.typing = None;
        outbound.stop(REPLIES_BY);
        self.shutdown(asked);
        // Not joined: it sleeps in a read of up to 30 s and holds nothing
        // that needs finishing; it sees the stop then, or ends with the process.
        drop(watcher);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Watch(WatchEvent::Changed(id)) => {
                log::debug!("config change announced for {id}");
                self.reload();
            }
            Event::Watch(WatchEvent::Subscribed) => {
                // Logged after the read: a change made after this line is
                // seen only through an announcement (tests rely on it).
                self.reload();
                log::debug!("subscribed to {}", contract::CONFIG_CHANGED);
            }
            Event::Watch(WatchEvent::Lost(e)) => log::debug!("config subscription lost: {e}"),
            Event::Signal(Signal::Reload) => {
                log::info!("SIGHUP: re-reading channel configuration");
                self.reload();
            }
            Event::Signal(Signal::Terminate) => {}
            Event::Session { channel_id, generation, update } => {
                self.on_update(&channel_id, generation, update)
            }
            Event::Exited { channel_id, generation, panic } => {
                self.on_exit(&channel_id, generation, panic)
            }
            Event::Tick => {}
        }
    }

    /// Re-reads the config hash and reconciles. On failure retries with backoff.
    fn reload(&mut self) {
        let now = Instant::now();
        match self.store.read_configs() {
            Ok(entries) => {
                self.note_redis("config read", Ok(()));
                self.reload_backoff.reset();
                self.next_reload = now + self.cfg.config_refresh;
                self.wake_by(self.next_reload);
                self.reconcile(entries);
                if !self.ready {
                    self.ready = true;
                    systemd::notify("READY=1");
                    self.notify_status();
                }
            }
            Err(e) => {
                self.note_redis("config read", Err(e));
                self.next_reload =
                    now + self.reload_backoff.next_delay().min(self.cfg.config_refresh);
                self.wake_by(self.next_reload);
            }
        }
    }

    fn reconcile(&mut self, entries: Vec<(String, Vec<u8>)>) {
        let parsed: BTreeMap<String, Parsed> = entries
            .into_iter()
            .map(|(id, raw)| {
                let parsed = contract::parse_channel_config(&id, &raw);
                (id.clone(), parsed)
            })
            .collect();
        let known: BTreeMap<String, Known> = self
            .channels
            .iter()
            .map(|(id, ch)| {
                let running = ch.run.as_ref().map(|r| &r.config);
                (id.clone(), Known { running, restart_pending: ch.restart_at.is_some() })
            })
            .collect();
        let plan = registry::plan(parsed, &known);
        for id in plan.removed {
            log::info!("[{id}] channel removed from the configuration; closing its connection");
            self.stop(&id);
            self.channels.remove(&id);
            metrics::forget_channel(&id);
            let result = self.store.clear_status(&id, &self.cfg.instance_id);
            self.note_redis("status write", result);
        }
        for (id, step) in plan.steps {
            self.apply(&id, step);
        }
    }

    /// Carries out one channel's step of the plan.
    fn apply(&mut self, id: &str, step: Step) {
        let ch = self.channels.entry(id.to_owned()).or_insert_with(|| Channel {
            config: Err(contract::Invalid(String::new())),
            state: State::Connecting,
            since: now_ms(),
            last_error: None,
            last_event_at: None,
            run: None,
            restart_at: None,
        });
        let parsed = step.parsed();
        let unchanged = ch.config == parsed;
        ch.config = parsed;
        match step {
            Step::Reject(problem) => {
                if !unchanged {
                    log::error!("[{id}] channel configuration rejected: {problem}");
                }
                self.stop(id);
                self.set_state(id, State::Error, Some(LastError::new("config_invalid", problem.0)));
            }
            Step::Disable(c) => {
                if !unchanged {
                    log::info!("[{id} {}] channel disabled", c.app_id);
                }
                self.stop(id);
                self.set_state(id, State::Disabled, None);
            }
            Step::Restart(c) => {
                log::info!("[{id} {}] credentials, keys or domain changed; reconnecting", c.app_id);
                self.stop(id);
                self.start(c);
            }
            Step::InPlace { config: c, routing_changed } => {
                let ch = self.channels.get_mut(id).expect("inserted above");
                if let Some(run) = &mut ch.run {
                    if routing_changed {
                        log::info!(
                            "[{id} {}] agent, project or group policy changed; applied in place",
                            c.app_id
                        );
                        *run.routing.write().expect("routing lock") = c.routing.clone();
                    }
                    run.config = c;
                }
            }
            Step::Start(c) => self.start(c),
            Step::AwaitRestart(_) => {}
        }
    }
}
