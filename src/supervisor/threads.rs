//! The channel threads' lifecycle: starting one `feishu-<channel>` thread
//! per enabled channel (with its session, its Redis writer and a panic
//! catcher), stopping it by dropping its stop sender, joining it when it
//! has exited, restarting it after a panic, and the bounded shutdown.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::Instant;

use super::{CLOSE_BY, Event, PANIC_RESTART_DELAY, REPORT_BY, Running, SHUTDOWN_GRACE, Supervisor};
use crate::bridge::contract::State;
use crate::bridge::store::Store;
use crate::channel::ChannelConfig;
use crate::feishu::api::AppCreds;
use crate::feishu::conn::{self, LastError, Session, Transport, Update};
use crate::inbound::InboundWriter;
use crate::outbound::ChannelRef;
use crate::panics;

/// What a channel's thread owns.
struct ChannelThread {
    session: Session,
    writer: InboundWriter,
    stop: conn::Stop,
    tx: crossbeam_channel::Sender<Event>,
    api: Arc<crate::feishu::api::Api>,
    generation: u64,
    runner: super::Runner,
}

impl ChannelThread {
    /// The thread's body: the session, with panics caught and reported.
    fn run(mut self: Box<Self>) {
        let this = &mut *self;
        let (tx, id, generation) = (&this.tx, &this.session.channel_id, this.generation);
        let report = |update| {
            let _ = tx.send(Event::Session { channel_id: id.clone(), generation, update });
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            (this.runner)(&this.session, &this.api, &mut this.writer, &this.stop, &report)
        }));
        let panic = result.err().map(|p| panics::message(p.as_ref()));
        let _ = tx.send(Event::Exited { channel_id: id.clone(), generation, panic });
    }
}

impl Supervisor {
    pub(super) fn start(&mut self, cfg: ChannelConfig) {
        let generation = self.next_gen;
        self.next_gen += 1;
        let id = cfg.channel_id.clone();
        let base_url =
            self.cfg.feishu_base_url.clone().unwrap_or_else(|| cfg.domain.base_url().to_owned());
        let routing = Arc::new(RwLock::new(cfg.routing.clone()));
        let session = Session {
            channel_id: id.clone(),
            creds: AppCreds {
                base_url,
                app_id: cfg.app_id.clone(),
                app_secret: cfg.app_secret.clone(),
            },
            encrypt_key: cfg.encrypt_key.clone(),
            verification_token: cfg.verification_token.clone(),
            routing: routing.clone(),
            max_message_age: self.cfg.max_message_age,
            tuning: self.tuning,
            transport: match self.cfg.feishu_base_url {
                Some(_) => Transport::AllowPlain,
                None => Transport::TlsOnly,
            },
        };
        let writer = InboundWriter {
            store: Store::new(self.client.clone()),
            channel_id: id.clone(),
            instance_id: self.cfg.instance_id.clone(),
            creds: session.creds.clone(),
            dedup_ttl: self.cfg.dedup_ttl,
            hint: self.cfg.unsupported_hint.clone(),
            typing: self.typing.clone(),
        };
        self.published.write().expect("channels lock").insert(
            id.clone(),
            ChannelRef { app_id: cfg.app_id.clone(), creds: session.creds.clone() },
        );
        let (stop_tx, stop_rx) = conn::stop_pair();
        // One box moved into the thread: the closure is a pointer, so no
        // frame on the long-lived thread's stack holds a copy of all this.
        let body = Box::new(ChannelThread {
            session,
            writer,
            stop: stop_rx,
            tx: self.tx.clone(),
            api: self.api.clone(),
            generation,
            runner: self.runner,
        });
        let spawned = thread::Builder::new().name(format!("feishu-{id}")).spawn(move || body.run());
        let ch = self.channels.get_mut(&id).expect("channel exists before start");
        match spawned {
            Ok(handle) => {
                ch.run = Some(Running { generation, stop: stop_tx, handle, routing, config: cfg })
            }
            Err(e) => {
                log::error!("[{id}] cannot start a thread: {e}; retrying");
                self.restart_later(&id);
            }
        }
    }

    /// Starts a channel's thread again after [`PANIC_RESTART_DELAY`]
    /// (`on_tick` does it), waking the main loop then.
    fn restart_later(&mut self, id: &str) {
        let at = Instant::now() + PANIC_RESTART_DELAY;
        if let Some(ch) = self.channels.get_mut(id) {
            ch.restart_at = Some(at);
        }
        self.wake_by(at);
    }

    /// Asks a channel's thread to stop; it is joined when it has exited.
    pub(super) fn stop(&mut self, id: &str) {
        self.published.write().expect("channels lock").remove(id);
        if let Some(run) = self.channels.get_mut(id).and_then(|c| c.run.take()) {
            drop(run.stop);
            self.stopping.insert(run.generation, run.handle);
        }
    }

    pub(super) fn on_update(&mut self, id: &str, generation: u64, update: Update) {
        let Some(ch) = self.channels.get_mut(id) else { return };
        if ch.run.as_ref().map(|r| r.generation) != Some(generation) {
            return; // from a thread that is being stopped
        }
        match update {
            Update::EventSeen(at) => ch.last_event_at = Some(at),
            Update::Connecting => self.set_state(id, State::Connecting, None),
            Update::Connected => self.set_state(id, State::Connected, None),
            Update::Disconnected(e) => self.set_state(id, State::Disconnected, Some(e)),
            Update::Error(e) => self.set_state(id, State::Error, Some(e)),
        }
    }

    pub(super) fn on_exit(&mut self, id: &str, generation: u64, panic: Option<String>) {
        if let Some(handle) = self.stopping.remove(&generation) {
            let _ = handle.join();
            return;
        }
        let Some(ch) = self.channels.get_mut(id) else { return };
        if ch.run.as_ref().map(|r| r.generation) != Some(generation) {
            return;
        }
        let run = ch.run.take().expect("checked above");
        let _ = run.handle.join();
        self.restart_later(id);
        let why = panic.unwrap_or_else(|| "the connection thread ended unexpectedly".into());
        panics::record(&format!("feishu-{id}"));
        log::error!("[{id}] connection thread failed: {why}; restarting this channel");
        self.set_state(id, State::Error, Some(LastError::new("internal_error", why)));
    }

    /// Stops every channel, waits for the threads, reports and cleans up.
    /// Everything is bounded from `asked` (SIGTERM): see [`REPORT_BY`].
    pub(super) fn shutdown(&mut self, asked: Instant) {
        log::info!(
            "shutting down: closing {} connection(s)",
            self.channels.values().filter(|c| c.run.is_some()).count()
        );
        let ids: Vec<String> = self.channels.keys().cloned().collect();
        for id in &ids {
            self.stop(id);
        }
        let deadline = (Instant::now() + SHUTDOWN_GRACE).min(asked + CLOSE_BY);
        while !self.stopping.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            match self.rx.recv_timeout(left) {
                Ok(Event::Exited { generation, .. }) => {
                    if let Some(h) = self.stopping.remove(&generation) {
                        let _ = h.join();
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if !self.stopping.is_empty() {
            log::warn!("{} connection thread(s) did not stop in time", self.stopping.len());
        }
        let stopped = LastError::new(
            "gateway_stopped",
            format!("gateway instance {} stopped", self.cfg.instance_id),
        );
        for (n, id) in ids.iter().enumerate() {
            if Instant::now() >= asked + REPORT_BY {
                // Their keys expire after STATUS_TTL; the heartbeat's too.
                log::warn!(
                    "Redis is slow: {} final status write(s) skipped to exit in time",
                    ids.len() - n
                );
                break;
            }
            let keep = matches!(self.channels.get(id), Some(c) if matches!(c.state, State::Error | State::Disabled));
            if !keep {
                self.set_state(id, State::Disconnected, Some(stopped.clone()));
            }
        }
        if Instant::now() < asked + REPORT_BY {
            let _ = self.store.delete_heartbeat(&self.cfg.instance_id);
        }
        log::info!("Feishu Gateway stopped");
    }
}
