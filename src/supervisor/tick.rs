//! The main loop's deadlines: watchdog pings, queue samples, channel
//! restarts, config re-reads, status refreshes and heartbeats. The loop
//! sleeps until the earliest of them ([`Supervisor::wake_by`]); nothing
//! ticks at a fixed rate.

use std::time::{Duration, Instant};

use super::{HEARTBEAT_EVERY, QUEUE_SAMPLE_EVERY, Supervisor};
use crate::metrics;
use crate::systemd;

impl Supervisor {
    /// Does what is due and computes when the loop must wake next.
    pub(super) fn on_tick(&mut self) {
        let now = Instant::now();
        metrics::main_loop_alive();
        if let Some(every) = self.watchdog
            && now >= self.next_watchdog
        {
            self.next_watchdog = now + every / 2;
            systemd::notify("WATCHDOG=1");
        }
        if now >= self.next_queue_sample {
            self.next_queue_sample = now + QUEUE_SAMPLE_EVERY;
            self.sample_queues();
        }
        let due: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.restart_at.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let ch = self.channels.get_mut(&id).expect("listed above");
            ch.restart_at = None;
            if let Ok(cfg) = ch.config.clone()
                && cfg.enabled
                && ch.run.is_none()
            {
                self.start(cfg);
            }
        }
        if now >= self.next_reload {
            self.reload();
        }
        if now >= self.next_status {
            self.next_status = now + Duration::from_secs(self.cfg.status_ttl / 3);
            self.write_all_statuses();
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT_EVERY;
            self.write_heartbeat();
        }
        let restarts = self.channels.values().filter_map(|c| c.restart_at);
        self.wake_at =
            [self.next_queue_sample, self.next_reload, self.next_status, self.next_heartbeat]
                .into_iter()
                .chain(self.watchdog.map(|_| self.next_watchdog))
                .chain(restarts)
                .min()
                .expect("not empty");
    }

    /// Makes the main loop run [`Supervisor::on_tick`] by `t` at the latest.
    pub(super) fn wake_by(&mut self, t: Instant) {
        self.wake_at = self.wake_at.min(t);
    }
}
