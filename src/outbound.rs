//! Outbound: AskTable's answers back to Feishu.
//!
//! One `outbound-pop` thread moves items with `BLMOVE` from
//! `at:channel:outbound:feishu` to this instance's processing list and hands
//! them over bounded channels to `reply-N` workers; the lane is chosen by chat
//! so replies in one chat keep their order. A worker renders the answer,
//! sends it with idempotency uuids derived from the item id, retries
//! transient failures within `OUTBOUND_RETRY_WINDOW`, and only then removes
//! the item from the processing list (or dead-letters it). Progress items
//! stream into one card, updated at most about once a second. A `typing`
//! thread adds the typing reaction to questions as they are stored.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded};
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bridge::contract::{self, Kind, Outbound as Item};
use crate::bridge::store::{self, Store};
use crate::clock::{Backoff, now_ms};
use crate::feishu::api::{Api, AppCreds, Destination, Failure};
use crate::metrics;
use crate::render::{self, Limits, Part};

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

/// Feishu's per-app budget for IM calls (50/s) and per-chat budget (5/s).
pub const APP_RATE: f64 = 50.0;
pub const CHAT_RATE: f64 = 5.0;
/// Progress updates per reply.
pub const UPDATE_EVERY: Duration = Duration::from_secs(1);

/// A request to show the typing reaction on a stored question.
#[derive(Debug, Clone)]
pub struct TypingJob {
    pub creds: AppCreds,
    pub message_id: String,
    pub chat_id: String,
}

/// Request budgets shared by all workers: calls on one key are spaced at
/// least `1/rate` apart, so no one-second window holds more than `rate`
/// calls (Feishu counts 5/s per chat, 50/s per app).
#[derive(Default)]
pub struct Budget {
    next: Mutex<HashMap<String, Instant>>,
}

impl Budget {
    /// Reserves one call on `key` at `rate`/s; returns how long to wait
    /// before making it.
    pub fn reserve(&self, key: &str, rate: f64, now: Instant) -> Duration {
        // 5 % slack so that network jitter cannot squeeze one call too many
        // into Feishu's one-second window.
        let interval = Duration::from_secs_f64(1.05 / rate);
        let mut next = self.next.lock().expect("budget lock");
        if next.len() > 10_000 {
            next.retain(|_, t| *t > now);
        }
        let at = next.get(key).copied().unwrap_or(now).max(now);
        next.insert(key.to_owned(), at + interval);
        at - now
    }

    /// Waits until both the app and the chat may make one more call.
    pub fn wait(&self, app_id: &str, chat: &str) {
        let now = Instant::now();
        let a = self.reserve(&format!("app:{app_id}"), APP_RATE, now);
        let c = self.reserve(&format!("chat:{app_id}:{chat}"), CHAT_RATE, now);
        let d = a.max(c);
        if !d.is_zero() {
            thread::sleep(d);
        }
    }
}

/// A deterministic Feishu idempotency key (≤ 50 chars) for part `n` of an
/// item, in a `variant` (`c` rendered, `t` text fallback, `p` progress card).
pub fn uuid(id: &str, variant: char, n: usize) -> String {
    format!("{}-{variant}{n}", contract::short_hash(id))
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
        let budget = Arc::new(Budget::default());
        let in_flight = InFlight::default();
        let mut handles = Vec::new();
        let mut lanes = Vec::new();
        for n in 0..settings.workers.max(1) {
            let (tx, rx) = bounded::<Job>(32);
            lanes.push(tx);
            let mut w = Worker {
                settings: settings.clone(),
                store: Store::new(client.clone()),
                in_flight: in_flight.clone(),
                api: api.clone(),
                channels: channels.clone(),
                budget: budget.clone(),
                held: HashMap::new(),
                last_update: HashMap::new(),
            };
            let spawned =
                thread::Builder::new().name(format!("reply-{n}")).spawn(move || w.run(rx));
            handles.extend(spawned.map_err(|e| log::error!("cannot start reply worker: {e}")));
        }
        let pop_stop = stop_rx.clone();
        let pop = Pop {
            settings: settings.clone(),
            store: Store::new(client.clone()),
            lanes,
            redis_ok: None,
            own_recovered: false,
            in_flight,
            sweep_due: false,
        };
        let spawned =
            thread::Builder::new().name("outbound-pop".into()).spawn(move || pop.run(pop_stop));
        handles.extend(spawned.map_err(|e| log::error!("cannot start outbound-pop: {e}")));
        let typing = if settings.typing_reaction.is_empty() {
            None
        } else {
            let (tx, rx) = bounded::<TypingJob>(1024);
            let t = Typing {
                emoji: settings.typing_reaction.clone(),
                store: Store::new(client),
                api,
                budget,
            };
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

/// The reply mapping's value while the first message is being created.
const PENDING: &str = "pending";
/// The reply mapping's value while a final answer creates the reply itself.
const FINAL_CLAIM: &str = "final-claim";
/// Prefix of the mapping's value once the final answer was delivered.
const FINAL: &str = "final:";
/// Seconds a creation claim lasts if its holder dies.
const CLAIM_TTL: u64 = 60;
/// Seconds a progress card's claim is kept after creating the card failed.
const FAILED_CLAIM_TTL: u64 = 3;
/// How long a progress item is retried: less than CLAIM_TTL, so that its
/// claim is still held when it records the card (a preview that late is
/// not worth more).
const PROGRESS_RETRY: Duration = Duration::from_secs(20);
/// How long a final answer waits for Redis to tell the reply's state.
const REDIS_WAIT: Duration = Duration::from_secs(10);

/// What `at:channel:reply:feishu:<in_reply_to>` says.
enum Reply {
    None,
    Pending,
    FinalClaim,
    Card(String),
    Final(String),
}

/// An item taken from Redis, as a worker sees it.
struct Job {
    raw: String,
    item: Item,
    since: Instant,
}

/// Items of this instance's processing list that a worker holds (taken
/// from Redis and not finished yet), counted by their raw JSON. What is in
/// the list but not here was taken without reaching a worker: a `BLMOVE`
/// whose reply was lost when Redis restarted, or an item whose removal
/// failed. The pop thread sweeps those up.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<String, usize>>>);

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, raw: &str) {
        *self.lock().entry(raw.to_owned()).or_default() += 1;
    }

    fn release(&self, raw: &str) {
        let mut map = self.lock();
        if let Some(n) = map.get_mut(raw) {
            *n -= 1;
            if *n == 0 {
                map.remove(raw);
            }
        }
    }
}

struct Pop {
    settings: Settings,
    store: Store,
    lanes: Vec<Sender<Job>>,
    redis_ok: Option<bool>,
    own_recovered: bool,
    in_flight: InFlight,
    /// Set when Redis was unreachable: a reply may have been lost.
    sweep_due: bool,
}

impl Pop {
    fn run(mut self, stop: Receiver<()>) {
        let processing = contract::processing_key(&self.settings.instance_id);
        let mut next_recovery = Instant::now();
        let mut wait = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        loop {
            if !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
                return; // dropping the lanes lets the workers finish and exit
            }
            if Instant::now() >= next_recovery || (self.sweep_due && self.redis_ok == Some(true)) {
                next_recovery = Instant::now() + self.settings.recover_every;
                if self.recover(&processing).and_then(|()| self.sweep(&processing)).is_err() {
                    next_recovery = Instant::now();
                }
            }
            // Nothing new is taken before the previous run's leftovers are back.
            if !self.own_recovered {
                if !matches!(stop.recv_timeout(wait.next_delay()), Err(RecvTimeoutError::Timeout)) {
                    return;
                }
                continue;
            }
            match self.store.blmove(contract::OUTBOUND, &processing, Duration::from_secs(1)) {
                Ok(Some(raw)) => {
                    self.note(Ok(()));
                    wait.reset();
                    self.dispatch(raw, &processing);
                }
                Ok(None) => self.note(Ok(())),
                Err(e) => {
                    self.note(Err(e.to_string()));
                    if !matches!(
                        stop.recv_timeout(wait.next_delay()),
                        Err(RecvTimeoutError::Timeout)
                    ) {
                        return;
                    }
                }
            }
        }
    }

    fn note(&mut self, r: Result<(), String>) {
        let ok = r.is_ok();
        if self.redis_ok != Some(ok) {
            match r {
                Ok(()) if self.redis_ok.is_some() => log::info!("outbound: Redis reachable again"),
                Ok(()) => {}
                Err(e) => {
                    log::warn!("outbound: cannot read {} ({e}); retrying", contract::OUTBOUND)
                }
            }
            self.redis_ok = Some(ok);
        }
        self.sweep_due |= !ok;
    }

    /// Hands items of this instance's processing list that no worker holds
    /// to the workers (see [`InFlight`]).
    fn sweep(&mut self, own: &str) -> Result<(), ()> {
        let orphans: Vec<String> = {
            // Held across the read, so that an item a worker finishes
            // meanwhile is either gone from the list or still counted.
            let in_flight = self.in_flight.lock();
            let mut held = in_flight.clone();
            let listed = self.store.lrange(own).map_err(|_| ())?;
            listed
                .into_iter()
                .filter(|raw| match held.get_mut(raw) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        false
                    }
                    _ => true,
                })
                .collect()
        };
        self.sweep_due = false;
        if !orphans.is_empty() {
            log::info!(
                "outbound: {} item(s) in {own} had not reached a worker (a reply lost while Redis was unreachable); handling them now",
                orphans.len()
            );
        }
        for raw in orphans {
            self.dispatch(raw, own);
        }
        Ok(())
    }

    /// Re-queues this instance's leftovers from a previous run (once, at
    /// start) and the lists of instances whose heartbeat has expired.
    fn recover(&mut self, own: &str) -> Result<(), ()> {
        if !self.own_recovered {
            let n = self.store.requeue(own).map_err(|_| ())?;
            if n > 0 {
                log::info!(
                    "outbound: re-queued {n} unfinished item(s) from this instance's previous run"
                );
            }
            self.own_recovered = true;
        }
        for list in self.store.processing_lists().map_err(|_| ())? {
            let instance =
                list.strip_prefix(&contract::processing_prefix()).unwrap_or_default().to_owned();
            if list == own
                || self.store.exists(&contract::heartbeat_key(&instance)).map_err(|_| ())?
            {
                continue;
            }
            let n = self.store.requeue(&list).map_err(|_| ())?;
            if n > 0 {
                log::info!(
                    "outbound: re-queued {n} unfinished item(s) of stopped instance {instance}"
                );
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, raw: String, processing: &str) {
        match contract::parse_outbound(&raw) {
            Ok(item) => {
                let mut h = DefaultHasher::new();
                item.lane_key().hash(&mut h);
                let lane = (h.finish() % self.lanes.len() as u64) as usize;
                self.in_flight.add(&raw);
                let job = Job { raw, item, since: Instant::now() };
                if let Err(e) = self.lanes[lane].send(job) {
                    self.in_flight.release(&e.0.raw);
                    log::error!(
                        "outbound: reply worker {lane} is gone; item stays in {processing}"
                    );
                }
            }
            Err(reason) => {
                metrics::inc("feishu_gateway_outbound_items_total", &[("outcome", "dead_letter")]);
                log::warn!("outbound: item dead-lettered: {reason}");
                let dead = contract::dead_letter_json(&reason, &raw, now_ms());
                if self.store.dead_letter(&dead, processing, &raw).is_err() {
                    log::warn!("outbound: could not dead-letter an item; it stays in {processing}");
                }
            }
        }
    }
}

/// Why an item could not be delivered.
struct Undeliverable(String);

struct Worker {
    settings: Settings,
    store: Store,
    in_flight: InFlight,
    api: Arc<Api>,
    channels: Channels,
    budget: Arc<Budget>,
    /// Progress items waiting for their update slot, by `in_reply_to`.
    held: HashMap<String, (Job, Instant)>,
    last_update: HashMap<String, Instant>,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Job>) {
        loop {
            let next_due = self.held.values().map(|(_, due)| *due).min();
            let timeout = next_due.map_or(Duration::from_millis(500), |d| {
                d.saturating_duration_since(Instant::now())
            });
            match rx.recv_timeout(timeout) {
                Ok(job) => self.handle(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let held: Vec<Job> = self.held.drain().map(|(_, (j, _))| j).collect();
                    for job in held {
                        self.progress(job);
                    }
                    return;
                }
            }
            let now = Instant::now();
            let due: Vec<String> =
                self.held.iter().filter(|(_, (_, d))| *d <= now).map(|(k, _)| k.clone()).collect();
            for key in due {
                if let Some((job, _)) = self.held.remove(&key) {
                    self.progress(job);
                }
            }
            self.last_update.retain(|_, t| t.elapsed() < Duration::from_secs(60));
        }
    }

    fn processing(&self) -> String {
        contract::processing_key(&self.settings.instance_id)
    }

    /// Removes a finished item from the processing list.
    fn done(&mut self, raw: &str) {
        let list = self.processing();
        let removed = (0..3).any(|attempt| {
            if attempt > 0 {
                thread::sleep(Duration::from_millis(200));
            }
            self.store.lrem(&list, raw).is_ok()
        });
        if !removed {
            log::warn!(
                "outbound: could not remove a delivered item from {list}; it will be offered again (Feishu's uuid keeps it from showing twice)"
            );
        }
        self.in_flight.release(raw);
    }

    fn dead(&mut self, job: &Job, reason: &str) {
        metrics::inc("feishu_gateway_outbound_items_total", &[("outcome", "dead_letter")]);
        log::warn!(
            "outbound: item {} for channel {} dead-lettered: {reason}",
            job.item.id,
            job.item.channel_id
        );
        let dead = contract::dead_letter_json(reason, &job.raw, now_ms());
        if self.store.dead_letter(&dead, &self.processing(), &job.raw).is_err() {
            log::warn!(
                "outbound: could not dead-letter item {}; it will be tried again",
                job.item.id
            );
        }
        self.in_flight.release(&job.raw);
    }

    /// Leaves an item in the processing list for later (the pop thread's
    /// sweep hands it out again once Redis answers).
    fn postpone(&mut self, job: &Job, reason: &str) {
        log::warn!("outbound: item {} postponed: {reason}", job.item.id);
        self.in_flight.release(&job.raw);
    }

    fn handle(&mut self, job: Job) {
        let key = job.item.in_reply_to.clone();
        // A newer item for the same reply supersedes a held progress item.
        if let Some(k) = &key
            && let Some((old, _)) = self.held.remove(k)
        {
            self.done(&old.raw);
        }
        match job.item.kind {
            Kind::Progress => {
                let k = key.expect("progress items have in_reply_to");
                match self.last_update.get(&k) {
                    Some(t) if t.elapsed() < UPDATE_EVERY => {
                        let due = *t + UPDATE_EVERY;
                        self.held.insert(k, (job, due));
                    }
                    _ => self.progress(job),
                }
            }
            Kind::Final => self.deliver_final(job),
        }
    }

    /// The channel of an item: the running registry, else the config hash.
    fn channel(&mut self, channel_id: &str) -> Option<ChannelRef> {
        if let Some(c) = self.channels.read().expect("channels lock").get(channel_id) {
            return Some(c.clone());
        }
        let raw = self.store.read_config(channel_id).ok().flatten()?;
        let cfg = contract::parse_channel_config(channel_id, &raw).ok().filter(|c| c.enabled)?;
        let base_url = self
            .settings
            .base_url_override
            .clone()
            .unwrap_or_else(|| cfg.domain.base_url().to_owned());
        Some(ChannelRef {
            app_id: cfg.app_id.clone(),
            creds: AppCreds { base_url, app_id: cfg.app_id, app_secret: cfg.app_secret },
        })
    }

    /// The reply's state in Redis, shared by all replicas.
    fn reply_state(&mut self, irt: &str) -> Result<Reply, Undeliverable> {
        let v = self
            .store
            .get(&contract::reply_key(irt))
            .map_err(|e| Undeliverable(format!("redis: {e}")))?;
        Ok(match v.as_deref() {
            None => Reply::None,
            Some(PENDING) => Reply::Pending,
            Some(FINAL_CLAIM) => Reply::FinalClaim,
            Some(v) => match v.strip_prefix(FINAL) {
                Some(id) => Reply::Final(id.to_owned()),
                None => Reply::Card(v.to_owned()),
            },
        })
    }

    /// Claims the right to create the reply's first message (one replica wins).
    fn claim(&mut self, irt: &str, value: &str) -> store::Result<bool> {
        self.store.set_nx_ex(&contract::reply_key(irt), value, CLAIM_TTL)
    }

    fn set_reply(&mut self, irt: &str, value: &str) {
        let _ = self.store.set_ex(&contract::reply_key(irt), value, contract::REPLY_TTL);
    }

    fn progress(&mut self, job: Job) {
        let Some(ch) = self.channel(&job.item.channel_id) else {
            return self.dead(&job, &format!("unknown channel {}", job.item.channel_id));
        };
        let irt = job.item.in_reply_to.clone().expect("progress items have in_reply_to");
        let card = render::cards(&job.item.text, &self.settings.limits).swap_remove(0);
        let result = match self.reply_state(&irt) {
            Ok(Reply::Card(message_id)) => self.call(&ch, &job, |w| {
                w.api
                    .update_card(&ch.creds, &message_id, &card.content)
                    .map(|_| Some(message_id.clone()))
            }),
            // The first card's uuid derives from the reply, not the item, so
            // no retry or later item can create a second card.
            // Unclaimed (Redis unreachable included): no preview.
            Ok(Reply::None) if self.claim(&irt, PENDING).unwrap_or(false) => {
                let sent = self
                    .send_parts_as(&ch, &job, &[card], &irt, 'p')
                    .map(|ids| ids.into_iter().next());
                // Only over our own claim: a final answer may have taken over.
                // After a failure Feishu may still have made the card (an
                // answer lost on the way back): the claim is kept a few
                // seconds, so the final answer looks for it by its uuid.
                let key = contract::reply_key(&irt);
                let _ = match &sent {
                    Ok(Some(id)) => self.store.replace_if(&key, PENDING, id, contract::REPLY_TTL),
                    _ => self.store.replace_if(&key, PENDING, PENDING, FAILED_CLAIM_TTL),
                };
                sent
            }
            // Being created by another worker, or already final: a preview
            // that is no longer needed.
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        };
        match result {
            Ok(shown) => {
                if shown.is_some() {
                    metrics::inc("feishu_gateway_outbound_items_total", &[("outcome", "progress")]);
                    self.last_update.insert(irt, Instant::now());
                }
                self.done(&job.raw);
            }
            // Progress is a preview: a failed update is not worth a dead letter.
            Err(Undeliverable(reason)) => {
                log::info!("outbound: progress update {} not shown: {reason}", job.item.id);
                self.done(&job.raw);
            }
        }
    }

    fn deliver_final(&mut self, job: Job) {
        let Some(ch) = self.channel(&job.item.channel_id) else {
            return self.dead(&job, &format!("unknown channel {}", job.item.channel_id));
        };
        let limits = self.settings.limits;
        let irt = job.item.in_reply_to.clone().filter(|_| !job.item.is_error);
        // Which card to complete, if a progress card exists (or is being made).
        let mut streamed = None;
        let mut saw_pending = false;
        if let Some(irt) = &irt {
            // A progress card being created (possibly by another replica)
            // is waited for; a dead creator's claim expires after CLAIM_TTL.
            let deadline = Instant::now() + Duration::from_secs(CLAIM_TTL + 5);
            // Without the reply's state, sending could show a second
            // message next to a progress card: Redis is waited for.
            let redis_deadline = Instant::now() + REDIS_WAIT;
            loop {
                let state = self.reply_state(irt);
                if state.is_err() && Instant::now() < redis_deadline {
                    thread::sleep(Duration::from_millis(250));
                    continue;
                }
                match state {
                    Ok(Reply::Card(id) | Reply::Final(id)) => streamed = Some(id),
                    Ok(Reply::Pending) if Instant::now() < deadline => {
                        saw_pending = true;
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    // Nothing streamed: this answer creates the reply (late
                    // progress items then see it is final and stand down).
                    // A progress card may have claimed it just now: look again.
                    Ok(Reply::None) => match self.claim(irt, FINAL_CLAIM) {
                        Ok(false) if Instant::now() < deadline => continue,
                        Ok(_) => {}
                        Err(_) if Instant::now() < redis_deadline => continue,
                        Err(e) => return self.postpone(&job, &e.to_string()),
                    },
                    Err(Undeliverable(reason)) => return self.postpone(&job, &reason),
                    _ => {}
                }
                break;
            }
        }
        if let (Some(irt), None, true) = (&irt, &streamed, saw_pending) {
            streamed = self.adopt_progress_card(&ch, &job, irt);
        }
        let result = match streamed {
            // Complete the streamed card; further parts become new replies.
            Some(card_id) => {
                let mut body = job.item.text.clone();
                for l in &job.item.links {
                    body.push_str(&format!("\n📎 [{}]({})", l.name, l.url));
                }
                let cards = render::cards(&body, &limits);
                let updated = self
                    .call(&ch, &job, |w| w.api.update_card(&ch.creds, &card_id, &cards[0].content));
                match updated {
                    Ok(()) => {
                        self.send_parts(&ch, &job, &cards[1..], 'u').map(|_| vec![card_id.clone()])
                    }
                    Err(Undeliverable(reason)) => {
                        log::info!(
                            "outbound: card {card_id} not updated ({reason}); sending the answer as a new reply"
                        );
                        let parts = render::render(&job.item.text, &job.item.links, &limits);
                        self.send_parts(&ch, &job, &parts, 'c')
                    }
                }
            }
            None => {
                let parts = if job.item.is_error {
                    render::texts(&job.item.text, &limits)
                } else {
                    render::render(&job.item.text, &job.item.links, &limits)
                };
                self.send_parts(&ch, &job, &parts, 'c')
            }
        };
        let result = result.map(|ids| {
            if let (Some(irt), Some(first)) = (&irt, ids.first()) {
                self.set_reply(irt, &format!("{FINAL}{first}"));
            }
        });
        match result {
            Ok(()) => {
                metrics::inc("feishu_gateway_outbound_items_total", &[("outcome", "delivered")]);
                log::info!(
                    "outbound: item {} delivered to {} ({} chat)",
                    job.item.id,
                    job.item.message_id.as_deref().or(job.item.chat_id.as_deref()).unwrap_or("?"),
                    ch.app_id
                );
                self.untype(&ch, &job);
                self.done(&job.raw);
            }
            Err(Undeliverable(reason)) => self.dead(&job, &reason),
        }
    }

    /// The progress card of a creator that died between creating it and
    /// recording its id (its claim expired): sending with the progress
    /// card's uuid again makes Feishu return that card instead of a new one
    /// (or creates it now, if the creator died before Feishu had it). The
    /// caller then completes it like any streamed card.
    fn adopt_progress_card(&mut self, ch: &ChannelRef, job: &Job, irt: &str) -> Option<String> {
        let card = render::cards(&job.item.text, &self.settings.limits).swap_remove(0);
        let message_id = job.item.message_id.as_deref()?;
        let dest = Destination::Reply { message_id, in_thread: job.item.reply_in_thread };
        // No fallbacks here: whatever does not come back as the card is
        // left to the usual path.
        let sent = self.call(ch, job, |w| {
            w.api.send(&ch.creds, dest, card.msg_type, &card.content, &uuid(irt, 'p', 0))
        });
        let id = sent.ok()?;
        log::info!("outbound: completing progress card {id} of an interrupted reply to {irt}");
        Some(id)
    }

    /// Removes the typing reaction from the question, if it was added.
    fn untype(&mut self, ch: &ChannelRef, job: &Job) {
        let Some(message_id) = &job.item.message_id else { return };
        if self.settings.typing_reaction.is_empty() {
            return;
        }
        match self.store.typing_done(&ch.app_id, message_id) {
            Ok(Some(reaction_id)) if reaction_id != "done" => {
                self.budget.wait(&ch.app_id, job.item.lane_key());
                if let Err(e) = self.api.delete_reaction(&ch.creds, message_id, &reaction_id) {
                    log::info!("outbound: typing reaction on {message_id} not removed: {e}");
                }
            }
            _ => {}
        }
    }

    /// Sends parts in order; returns their Feishu message ids. Falls back to
    /// the chat when the message is gone, to plain text when a card is refused.
    fn send_parts(
        &mut self,
        ch: &ChannelRef,
        job: &Job,
        parts: &[Part],
        variant: char,
    ) -> Result<Vec<String>, Undeliverable> {
        let base = job.item.id.clone();
        self.send_parts_as(ch, job, parts, &base, variant)
    }

    /// `send_parts` with uuids derived from `base` instead of the item id.
    fn send_parts_as(
        &mut self,
        ch: &ChannelRef,
        job: &Job,
        parts: &[Part],
        base: &str,
        variant: char,
    ) -> Result<Vec<String>, Undeliverable> {
        let item = &job.item;
        let mut ids = Vec::new();
        let mut in_thread = item.reply_in_thread;
        let mut to_chat = item.message_id.is_none();
        let mut i = 0;
        let mut parts: Vec<Part> = parts.to_vec();
        let mut variant = variant;
        while i < parts.len() {
            let part = parts[i].clone();
            let id = uuid(base, variant, i);
            let dest = match (&item.message_id, &item.chat_id) {
                (Some(m), _) if !to_chat => Destination::Reply { message_id: m, in_thread },
                (_, Some(c)) => Destination::Chat { chat_id: c },
                _ => {
                    return Err(Undeliverable(
                        "the message was withdrawn and the item has no chat_id".into(),
                    ));
                }
            };
            let sent = self.call_raw(ch, job, |w| {
                w.api.send(&ch.creds, dest, part.msg_type, &part.content, &id)
            });
            match sent {
                Ok(message_id) => {
                    ids.push(message_id);
                    i += 1;
                }
                Err(SendError::Fail(Failure::TargetGone, e)) if !to_chat => {
                    log::info!(
                        "outbound: cannot reply to {:?} ({e}); sending to the chat",
                        item.message_id
                    );
                    to_chat = true;
                }
                Err(SendError::Fail(Failure::NoThreads, _)) if in_thread => in_thread = false,
                Err(SendError::Fail(Failure::CardRejected | Failure::TooLarge, e))
                    if part.msg_type == "interactive" =>
                {
                    log::warn!(
                        "outbound: Feishu refused a card for item {} ({e}); sending text instead",
                        item.id
                    );
                    let rest: String = parts[i..]
                        .iter()
                        .map(|p| card_markdown(&p.content))
                        .collect::<Vec<_>>()
                        .join("\n\n");
                    let mut text = render::texts(&rest, &self.settings.limits);
                    parts.truncate(i);
                    parts.append(&mut text);
                    variant = 't';
                }
                Err(SendError::Fail(_, e)) => return Err(Undeliverable(format!("feishu: {e}"))),
                Err(SendError::GaveUp(reason)) => return Err(Undeliverable(reason)),
            }
        }
        Ok(ids)
    }

    /// Runs a Feishu call with the budget and transient retries; any
    /// other failure is undeliverable.
    fn call<T>(
        &mut self,
        ch: &ChannelRef,
        job: &Job,
        f: impl FnMut(&Worker) -> Result<T, crate::feishu::api::ApiError>,
    ) -> Result<T, Undeliverable> {
        self.call_raw(ch, job, f).map_err(|e| match e {
            SendError::Fail(_, e) => Undeliverable(format!("feishu: {e}")),
            SendError::GaveUp(reason) => Undeliverable(reason),
        })
    }

    fn call_raw<T>(
        &mut self,
        ch: &ChannelRef,
        job: &Job,
        mut f: impl FnMut(&Worker) -> Result<T, crate::feishu::api::ApiError>,
    ) -> Result<T, SendError> {
        let window = match job.item.kind {
            Kind::Progress => self.settings.retry_window.min(PROGRESS_RETRY),
            Kind::Final => self.settings.retry_window,
        };
        let deadline = job.since + window;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            self.budget.wait(&ch.app_id, job.item.lane_key());
            let e = match f(self) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            metrics::inc("feishu_gateway_feishu_errors_total", &[("code", &e.code().to_string())]);
            match e.failure() {
                Failure::Transient(wait) => {
                    let wait = wait.unwrap_or(backoff.current()).min(Duration::from_secs(60));
                    if Instant::now() + wait >= deadline {
                        return Err(SendError::GaveUp(format!(
                            "still failing after the retry window of {}s: {e}",
                            self.settings.retry_window.as_secs()
                        )));
                    }
                    metrics::inc("feishu_gateway_outbound_retries_total", &[]);
                    log::info!(
                        "outbound: item {} retrying in {:.1}s: {e}",
                        job.item.id,
                        wait.as_secs_f64()
                    );
                    thread::sleep(wait);
                    backoff.next_delay();
                }
                other => return Err(SendError::Fail(other, e.to_string())),
            }
        }
    }
}

enum SendError {
    Fail(Failure, String),
    GaveUp(String),
}

/// The Markdown inside a card part (for the text fallback).
fn card_markdown(content: &str) -> String {
    serde_json::from_str::<serde_json::Value>(content)
        .ok()
        .and_then(|v| v["body"]["elements"][0]["content"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

struct Typing {
    emoji: String,
    store: Store,
    api: Arc<Api>,
    budget: Arc<Budget>,
}

impl Typing {
    fn run(mut self, rx: Receiver<TypingJob>, stop: Receiver<()>) {
        loop {
            let job = crossbeam_channel::select! {
                recv(rx) -> job => match job { Ok(j) => j, Err(_) => return },
                recv(stop) -> _ => return,
            };
            self.budget.wait(&job.creds.app_id, &job.chat_id);
            let reaction = match self.api.add_reaction(&job.creds, &job.message_id, &self.emoji) {
                Ok(id) if !id.is_empty() => id,
                Ok(_) => continue,
                Err(e) => {
                    log::info!(
                        "[{}] typing reaction on {} not added: {e}",
                        job.creds.app_id,
                        job.message_id
                    );
                    continue;
                }
            };
            let key = contract::typing_key(&job.creds.app_id, &job.message_id);
            // If the answer was already delivered, the key says "done".
            if let Ok(false) = self.store.set_nx_ex(&key, &reaction, contract::REPLY_TTL) {
                let _ = self.api.delete_reaction(&job.creds, &job.message_id, &reaction);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_short_and_stable() {
        let a = uuid("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", 'c', 0);
        assert_eq!(a, uuid("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", 'c', 0));
        assert_ne!(a, uuid("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", 'c', 1));
        assert_ne!(a, uuid("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", 't', 0));
        assert!(uuid(&"x".repeat(64), 'c', 999).len() <= 50);
    }

    #[test]
    fn budget_spaces_calls_per_key() {
        let b = Budget::default();
        let t0 = Instant::now();
        assert_eq!(b.reserve("chat", 5.0, t0), Duration::ZERO);
        assert_eq!(b.reserve("chat", 5.0, t0), Duration::from_millis(210));
        assert_eq!(b.reserve("chat", 5.0, t0), Duration::from_millis(420));
        assert_eq!(b.reserve("other", 5.0, t0), Duration::ZERO);
        // Idle time is not saved up for a burst later.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(b.reserve("chat", 5.0, later), Duration::ZERO);
        assert_eq!(b.reserve("chat", 5.0, later), Duration::from_millis(210));
    }
}
