//! What the supervisor reports: channel states to the status keys (and
//! the `feishu_gateway_channel_state` gauge), this instance's heartbeat,
//! the queue-length gauges, Redis reachability in the log (once per
//! change), and the `STATUS=` line `systemctl status` shows.

use super::{Channel, Supervisor};
use crate::bridge::contract::{self, State};
use crate::bridge::store;
use crate::clock::now_ms;
use crate::feishu::conn::LastError;
use crate::metrics;
use crate::systemd;

/// How soon a failed heartbeat write is tried again.
const HEARTBEAT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Supervisor {
    /// Records how a Redis operation of the main loop went, and logs when
    /// the set of failing operations changes (not once per attempt). Each
    /// operation clears only its own failure, so a read that works while
    /// writes are refused (OOM, READONLY, NOPERM) does not flap the state.
    pub(super) fn note_redis(&mut self, op: &'static str, result: store::Result<()>) -> bool {
        let ok = result.is_ok();
        let before = self.redis_problem();
        match result {
            Ok(()) => {
                self.redis_failing.remove(op);
            }
            Err(e) => {
                let problem = e.problem();
                // Logged when a kind of trouble appears, not per operation or attempt.
                if !self.redis_failing.values().any(|(p, _)| *p == problem) {
                    log::error!(
                        "Redis at {}: {}: {op} failed: {e}; {}; retrying in the background",
                        self.cfg.redis_url_for_logs(),
                        problem.as_str(),
                        problem.hint()
                    );
                }
                self.redis_failing.insert(op, (problem, e.to_string()));
            }
        }
        let first = ok && !self.redis_seen;
        self.redis_seen |= ok;
        let after = self.redis_problem();
        if first {
            log::info!("connected to Redis");
        } else if before.is_some() && after.is_none() {
            log::info!("Redis works again");
        }
        if before != after {
            metrics::set_redis_problem(after.clone());
            self.notify_status();
        }
        ok
    }

    /// The main loop's Redis trouble, in words (`None` when every
    /// operation works).
    pub(super) fn redis_problem(&self) -> Option<String> {
        if !self.redis_seen && self.redis_failing.is_empty() {
            return Some("not connected yet".into());
        }
        let mut problems: Vec<&str> =
            self.redis_failing.values().map(|(p, _)| p.as_str()).collect();
        problems.sort();
        problems.dedup();
        (!problems.is_empty()).then(|| problems.join(", "))
    }

    pub(super) fn set_state(&mut self, id: &str, state: State, error: Option<LastError>) {
        let Some(ch) = self.channels.get_mut(id) else { return };
        if ch.state == state && ch.last_error == error {
            return;
        }
        let app = ch.config.as_ref().map(|c| c.app_id.as_str()).unwrap_or("-");
        if ch.state != state {
            ch.since = now_ms();
            match &error {
                Some(e) => log::info!("[{id} {app}] {} ({})", state.as_str(), e.code),
                None => log::info!("[{id} {app}] {}", state.as_str()),
            }
        }
        ch.state = state;
        ch.last_error = error;
        for s in [
            State::Connecting,
            State::Connected,
            State::Disconnected,
            State::Error,
            State::Disabled,
        ] {
            let v = if s == state { 1.0 } else { 0.0 };
            metrics::set(metrics::CHANNEL_STATE, &[("channel", id), ("state", s.as_str())], v);
        }
        self.write_status(id);
        self.notify_status();
    }

    pub(super) fn write_status(&mut self, id: &str) {
        let Some(ch) = self.channels.get(id) else { return };
        let json = self.status_of(id, ch, now_ms());
        let connected = ch.state == State::Connected;
        let result = self.store.write_status(
            id,
            &json,
            connected,
            &self.cfg.instance_id,
            self.cfg.status_ttl,
        );
        self.note_redis("status write", result.map(|_| ()));
    }

    /// Refreshes every channel's status key, batched (the periodic refresh:
    /// with 1000 channels, a handful of round trips instead of 1000).
    pub(super) fn write_all_statuses(&mut self) {
        let now = now_ms();
        let statuses: Vec<(String, String, bool)> = self
            .channels
            .iter()
            .map(|(id, ch)| (id.clone(), self.status_of(id, ch, now), ch.state == State::Connected))
            .collect();
        let result =
            self.store.write_statuses(&statuses, &self.cfg.instance_id, self.cfg.status_ttl);
        self.note_redis("status write", result);
    }

    /// A channel's status value (PROTOCOL.md §4).
    fn status_of(&self, id: &str, ch: &Channel, now: u64) -> String {
        contract::status_json(&contract::Status {
            channel_id: id,
            app_id: ch.config.as_ref().ok().map(|c| c.app_id.as_str()),
            state: ch.state,
            since: ch.since,
            last_event_at: ch.last_event_at,
            last_error: ch.last_error.as_ref().map(|e| (e.code.as_str(), e.message.as_str())),
            instance_id: &self.cfg.instance_id,
            now_ms: now,
        })
    }

    /// Tells systemd how the channels are doing (`systemctl status` shows it).
    pub(super) fn notify_status(&self) {
        if !self.ready {
            return;
        }
        let states: Vec<State> = self.channels.values().map(|c| c.state).collect();
        // Ready means the config was read: "not connected yet" cannot show.
        systemd::notify(&status_line(&states, self.redis_problem().as_deref()));
    }

    /// Writes this instance's heartbeat key.
    pub(super) fn write_heartbeat(&mut self) {
        let ids: Vec<&str> = self.channels.keys().map(String::as_str).collect();
        let json = contract::heartbeat_json(
            &self.cfg.instance_id,
            std::process::id(),
            self.started_at,
            &ids,
            now_ms(),
        );
        let result = self.store.write_heartbeat(&self.cfg.instance_id, &json);
        if !self.note_redis("heartbeat write", result) {
            // Again soon: the heartbeat must not lapse for long, and the
            // outage is over only when it is written again.
            self.next_heartbeat = std::time::Instant::now() + HEARTBEAT_RETRY;
            self.wake_by(self.next_heartbeat);
        }
    }

    /// Samples the lengths of the Redis lists into gauges.
    pub(super) fn sample_queues(&mut self) {
        let processing = contract::processing_key(&self.cfg.instance_id);
        let keys = [contract::INBOUND, contract::OUTBOUND, processing.as_str(), contract::DEAD];
        if let Ok(lens) = self.store.llens(&keys) {
            for (name, len) in ["inbound", "outbound", "processing", "dead"].iter().zip(lens) {
                metrics::set(metrics::QUEUE_LENGTH, &[("queue", name)], len as f64);
            }
        }
    }
}

/// The systemd `STATUS=` line for channels in `states`.
pub fn status_line(states: &[State], redis_problem: Option<&str>) -> String {
    let count = |st: State| states.iter().filter(|s| **s == st).count();
    let mut line =
        format!("STATUS={} channel(s): {} connected", states.len(), count(State::Connected));
    let others = [
        (State::Connecting, "connecting"),
        (State::Disconnected, "disconnected"),
        (State::Error, "in error"),
        (State::Disabled, "disabled"),
    ];
    for (st, name) in others {
        let n = count(st);
        if n > 0 {
            line.push_str(&format!(", {n} {name}"));
        }
    }
    if let Some(p) = redis_problem {
        line.push_str(&format!("; Redis {p}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_systemd_status_line() {
        assert_eq!(status_line(&[], None), "STATUS=0 channel(s): 0 connected");
        let states = [State::Connected, State::Error, State::Connected, State::Disabled];
        assert_eq!(
            status_line(&states, Some("out of memory (writes refused)")),
            "STATUS=4 channel(s): 2 connected, 1 in error, 1 disabled; Redis out of memory (writes refused)"
        );
        assert_eq!(
            status_line(&[State::Connecting, State::Disconnected], None),
            "STATUS=2 channel(s): 0 connected, 1 connecting, 1 disconnected"
        );
    }
}
