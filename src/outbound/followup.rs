//! Suggested follow-up questions (`content.follow_ups`) shown as Feishu
//! follow-up bubbles under a final answer (shared/feishu-protocol.md §15):
//! only in one-on-one chats and only under the bot's latest message, so
//! they go right after the answer, best effort.

use super::worker::Worker;
use super::{ChannelRef, Job};
use crate::bridge::contract::Kind;

impl Worker {
    /// Suggested follow-up questions under a final answer's last message,
    /// in a one-on-one chat (Feishu allows them nowhere else): best effort,
    /// skipped silently where Feishu refuses.
    pub(super) fn follow_ups(&mut self, ch: &ChannelRef, job: &Job, last: &str) {
        let item = &job.item;
        if item.follow_ups.is_empty() || item.kind != Kind::Final || item.is_error {
            return;
        }
        // The question's trace knows its chat type; a group is skipped
        // without asking Feishu.
        let group = item.message_id.as_deref().is_some_and(|q| {
            self.store
                .read_trace(q)
                .is_ok_and(|t| t.iter().any(|(k, v)| k == "chat_type" && v == "group"))
        });
        if group {
            return;
        }
        self.courier.budget.wait(&ch.app_id, item.lane_key());
        match self.courier.api.push_follow_up(&ch.creds, last, &item.follow_ups) {
            Ok(()) => log::info!(
                "outbound [{}]: {} follow-up question(s) shown under {last}",
                item.channel_id,
                item.follow_ups.len()
            ),
            Err(e) => log::info!(
                "outbound [{}]: follow-up questions of item {} not shown ({e})",
                item.channel_id,
                item.id
            ),
        }
    }
}
