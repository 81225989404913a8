//! The Redis side of channel status keys (contract §4): the "connected
//! wins" write, for one channel or many per script call, and the delete.

use super::contract;
use super::store::{Result, Store};

/// Status writes per script call.
const STATUS_BATCH: usize = 200;

impl Store {
    /// Writes a status key under the "connected wins" rule.
    pub fn write_status(
        &mut self,
        channel_id: &str,
        json: &str,
        connected: bool,
        instance_id: &str,
        ttl: u64,
    ) -> Result<bool> {
        let written = self.statuses(&[(channel_id, json, connected)], instance_id, ttl)?;
        Ok(written.first() == Some(&1))
    }

    /// [`Store::write_status`] for many channels, [`STATUS_BATCH`] per
    /// call of the script (the periodic refresh of every status key).
    /// `statuses`: channel id, status JSON, connected.
    pub fn write_statuses(
        &mut self,
        statuses: &[(String, String, bool)],
        instance_id: &str,
        ttl: u64,
    ) -> Result<()> {
        for batch in statuses.chunks(STATUS_BATCH) {
            let batch: Vec<(&str, &str, bool)> =
                batch.iter().map(|(id, json, c)| (id.as_str(), json.as_str(), *c)).collect();
            self.statuses(&batch, instance_id, ttl)?;
        }
        Ok(())
    }

    /// One call of the status script: per channel 1 when written.
    fn statuses(
        &mut self,
        statuses: &[(&str, &str, bool)],
        instance_id: &str,
        ttl: u64,
    ) -> Result<Vec<i64>> {
        self.with(|con, me| {
            let mut call = me.scripts.status.prepare_invoke();
            call.arg(ttl).arg(instance_id);
            for (channel_id, json, connected) in statuses {
                call.key(contract::status_key(channel_id));
                call.arg(*json).arg(if *connected { "1" } else { "0" });
            }
            call.invoke(con)
        })
    }

    /// Deletes a status key if this instance wrote it.
    pub fn clear_status(&mut self, channel_id: &str, instance_id: &str) -> Result<()> {
        self.with(|con, me| {
            me.scripts
                .status_clear
                .key(contract::status_key(channel_id))
                .arg(instance_id)
                .invoke::<i64>(con)?;
            Ok(())
        })
    }
}
