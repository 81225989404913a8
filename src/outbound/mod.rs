//! Outbound: AskTable's answers back to Feishu.
//!
//! One `outbound-pop` thread ([`pop`]) moves items with `BLMOVE` from
//! `at:channel:outbound:feishu` to this instance's processing list and hands
//! them over bounded channels to `reply-N` workers ([`worker`]); the lane is
//! chosen by chat so replies in one chat keep their order. A worker renders
//! the answer, sends it ([`send`]) with idempotency uuids derived from the
//! item id, retries transient failures within `OUTBOUND_RETRY_WINDOW`, and
//! only then removes the item from the processing list (or dead-letters
//! it). Progress items stream into one card, updated at most about once a
//! second ([`coalesce`]); replicas agree on that card through the reply key
//! ([`reply`]). Calls are paced by [`budget`]. A `typing` thread
//! ([`typing`]) adds the typing reaction to questions as they are stored.
//!
//! This file starts and stops the threads.

mod budget;
mod coalesce;
mod pop;
mod reply;
mod send;
mod typing;
mod worker;

use crossbeam_channel::{Sender, bounded};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bridge::contract::Outbound as Item;
use crate::bridge::store::Store;
use crate::feishu::api::{Api, AppCreds};
use crate::render::Limits;

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
}

/// An item taken from Redis, as a worker sees it.
pub struct Job {
    /// The item as it is in the processing list (to remove it exactly).
    raw: String,
    item: Item,
    /// When it was taken: the start of its retry window.
    since: Instant,
}

/// The running outbound threads.
pub struct Outbound {
    stop: Option<Sender<()>>,
    handles: Vec<JoinHandle<()>>,
    typing: Option<Sender<TypingJob>>,
}

impl Outbound {
    pub fn start(
        settings: Settings,
        client: redis::Client,
        api: Arc<Api>,
        channels: Channels,
    ) -> Outbound {
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let budget = Arc::new(budget::Budget::default());
        let in_flight = pop::InFlight::default();
        let mut handles = Vec::new();
        let mut lanes = Vec::new();
        for n in 0..settings.workers.max(1) {
            let (tx, rx) = bounded::<Job>(32);
            lanes.push(tx);
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
                coalescer: coalesce::Coalescer::default(),
            };
            let spawned =
                thread::Builder::new().name(format!("reply-{n}")).spawn(move || w.run(rx));
            handles.extend(spawned.map_err(|e| log::error!("cannot start reply worker: {e}")));
        }
        let pop_stop = stop_rx.clone();
        let pop = pop::Pop::new(settings.clone(), Store::new(client.clone()), lanes, in_flight);
        let spawned =
            thread::Builder::new().name("outbound-pop".into()).spawn(move || pop.run(pop_stop));
        handles.extend(spawned.map_err(|e| log::error!("cannot start outbound-pop: {e}")));
        let typing = if settings.typing_reaction.is_empty() {
            None
        } else {
            let (tx, rx) = bounded::<TypingJob>(1024);
            let t = typing::Typing::new(
                settings.typing_reaction.clone(),
                Store::new(client),
                api,
                budget,
            );
            let stop = stop_rx.clone();
            let spawned =
                thread::Builder::new().name("typing".into()).spawn(move || t.run(rx, stop));
            handles.extend(spawned.map_err(|e| log::error!("cannot start typing thread: {e}")));
            Some(tx)
        };
        Outbound { stop: Some(stop_tx), handles, typing }
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
        for h in self.handles.drain(..) {
            while !h.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                log::warn!(
                    "outbound thread {:?} still busy at shutdown; its item stays queued",
                    h.thread().name()
                );
            }
        }
    }
}
