//! Outbound: AskTable's answers back to Feishu.
//!
//! One `outbound-pop` thread ([`pop`]) moves items with `BLMOVE` from
//! `at:channel:outbound:feishu` to this instance's processing list and
//! queues them on the [`board`], one queue per chat, which `reply-N`
//! workers ([`worker`]) take from: a chat's replies keep their order, and a
//! slow chat or app holds up no one else. A worker renders the answer,
//! sends it ([`send`]) with idempotency uuids derived from the item id,
//! retries transient failures within `OUTBOUND_RETRY_WINDOW`, and only then
//! removes the item from the processing list (or dead-letters it). Progress
//! items stream into one card, updated at most about once a second (the
//! board's coalescing); replicas agree on that card through the reply key
//! ([`reply`]). Calls are paced by [`budget`]. A `typing` thread
//! ([`typing`]) adds the typing reaction to questions as they are stored.
//! Every thread survives a panic ([`crate::panics`]).
//!
//! This file starts and stops the threads.

mod board;
mod budget;
mod cardkit_off;
mod followup;
mod pop;
mod reply;
mod send;
mod stream;
mod typing;
mod unanswered;
mod worker;

use crossbeam_channel::{Sender, bounded};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bridge::contract::{self, Outbound as Item};
use crate::bridge::store::Store;
use crate::clock::now_ms;
use crate::feishu::api::{Api, AppCreds};
use crate::metrics;
use crate::panics;
use crate::render::Limits;
use board::Board;

pub use typing::TypingJob;

/// What a worker needs to know about a channel.
#[derive(Debug, Clone)]
pub struct ChannelRef {
    pub app_id: String,
    pub creds: AppCreds,
}

/// The channels the supervisor runs, by channel id.
pub type Channels = Arc<RwLock<HashMap<String, ChannelRef>>>;

/// Outbound settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub instance_id: String,
    pub retry_window: Duration,
    pub typing_reaction: String,
    pub workers: usize,
    pub limits: Limits,
    /// `FEISHU_BASE_URL`, used for channels resolved outside the registry.
    pub base_url_override: Option<String>,
    /// Seconds a heartbeat may be missing before another instance takes over
    /// that instance's processing list.
    pub recover_every: Duration,
    /// `ANSWER_TIMEOUT` (`None` = off) and `NO_ANSWER_HINT`.
    pub answer_timeout: Option<Duration>,
    pub no_answer_hint: String,
    /// `CARDKIT_STREAMING`: progress streams into CardKit cards.
    pub cardkit: bool,
    /// `CARDKIT_REOPEN_AFTER`.
    pub stream_reopen: Duration,
}

/// The answer a stream operation is for: its channel, the item being
/// delivered, and the reply (`in_reply_to`).
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub ch: &'a ChannelRef,
    pub job: &'a Job,
    pub irt: &'a str,
}

/// An item taken from Redis, as a worker sees it.
pub struct Job {
    /// The item as it is in the processing list (to remove it exactly).
    raw: Vec<u8>,
    item: Item,
    /// When it was taken: the start of its retry window.
    since: Instant,
}

/// Dead-letters `raw` from `processing` with `reason`, counted, and writes
/// its receipt when it has an id; `false` when Redis did not take it (the
/// item stays in the processing list and is offered again).
fn bury(store: &mut Store, processing: &str, raw: &[u8], reason: &str) -> bool {
    metrics::inc(metrics::OUTBOUND_ITEMS, &[("outcome", "dead_letter")]);
    let now = now_ms();
    let dead = contract::dead_letter_json(reason, raw, now);
    let receipt = contract::item_ids(raw).map(|ids| {
        let fate = contract::Fate::DeadLettered(reason);
        let json =
            contract::receipt_json(&ids.id, &ids.channel_id, ids.in_reply_to.as_deref(), fate, now);
        (ids.id, json)
    });
    let receipt = receipt.as_ref().map(|(id, json)| (id.as_str(), json.as_str()));
    store.dead_letter(&dead, processing, raw, receipt).is_ok()
}

/// Items queued on the board, all chats together, before the pop thread waits.
const BOARD_TOTAL: usize = 4096;

/// The running outbound threads.
pub struct Outbound {
    stop: Option<Sender<()>>,
    board: Arc<Board<Job>>,
    pop: Option<JoinHandle<()>>,
    handles: Vec<JoinHandle<()>>,
    typing: Option<Sender<TypingJob>>,
}

impl Outbound {
    pub fn start(
        settings: Settings,
        client: crate::bridge::store::Target,
        api: Arc<Api>,
        channels: Channels,
    ) -> Outbound {
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let budget = Arc::new(budget::Budget::default());
        let in_flight = pop::InFlight::default();
        let workers = settings.workers.max(1);
        let board = Arc::new(Board::new(board::Limits {
            total: BOARD_TOTAL,
            per_app: workers.div_ceil(2),
        }));
        let mut handles = Vec::new();
        for n in 0..workers {
            let name = format!("reply-{n}");
            let mut w = worker::Worker {
                settings: settings.clone(),
                store: Store::new(client.clone()),
                in_flight: in_flight.clone(),
                courier: send::Courier {
                    api: api.clone(),
                    budget: budget.clone(),
                    limits: settings.limits,
                    retry_window: settings.retry_window,
                },
                channels: channels.clone(),
                name: name.clone(),
            };
            let board = board.clone();
            let spawned = thread::Builder::new()
                .name(name.clone())
                .spawn(move || panics::keep_running(&name, || w.run(&board)));
            handles.extend(spawned.map_err(|e| log::error!("cannot start reply worker: {e}")));
        }
        let mut pop =
            pop::Pop::new(settings.clone(), Store::new(client.clone()), board.clone(), in_flight);
        let pop_stop = stop_rx.clone();
        let pop = thread::Builder::new()
            .name("outbound-pop".into())
            .spawn(move || panics::keep_running("outbound-pop", || pop.run(&pop_stop)))
            .map_err(|e| log::error!("cannot start outbound-pop: {e}"))
            .ok();
        let typing = if settings.typing_reaction.is_empty() {
            None
        } else {
            let (tx, rx) = bounded::<TypingJob>(1024);
            let mut t = typing::Typing::new(
                settings.typing_reaction.clone(),
                Store::new(client),
                api,
                budget,
            );
            let stop = stop_rx.clone();
            let spawned = thread::Builder::new()
                .name("typing".into())
                .spawn(move || panics::keep_running("typing", || t.run(&rx, &stop)));
            handles.extend(spawned.map_err(|e| log::error!("cannot start typing thread: {e}")));
            Some(tx)
        };
        Outbound { stop: Some(stop_tx), board, pop, handles, typing }
    }

    /// Where stored questions ask for the typing reaction (none when off).
    pub fn typing(&self) -> Option<Sender<TypingJob>> {
        self.typing.clone()
    }

    /// Stops taking items, lets the workers finish what they hold, and
    /// joins the threads (waiting at most `grace`).
    pub fn stop(mut self, grace: Duration) {
        drop(self.stop.take());
        drop(self.typing.take());
        let deadline = Instant::now() + grace;
        // The pop thread first (it ends within one BLMOVE timeout), so that
        // nothing is queued after the board closes.
        if let Some(pop) = self.pop.take() {
            join_until(pop, deadline);
        }
        self.board.close();
        for h in self.handles.drain(..) {
            join_until(h, deadline);
        }
        let left = self.board.queued();
        if left > 0 {
            log::warn!(
                "outbound: {left} queued item(s) not handled before shutdown; they stay queued in Redis"
            );
        }
    }
}

/// Joins `h` if it finishes before `deadline`; else leaves it (its item
/// stays in the processing list for the next start).
fn join_until(h: JoinHandle<()>, deadline: Instant) {
    while !h.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    if h.is_finished() {
        if let Err(p) = h.join() {
            log::error!("outbound thread ended with a panic: {}", panics::message(p.as_ref()));
        }
    } else {
        log::warn!(
            "outbound thread {:?} still busy at shutdown; its item stays queued",
            h.thread().name()
        );
    }
}
