//! The connection threads' port to Redis: [`InboundWriter`] implements
//! `feishu::conn::InboundStore` over a `bridge::store::Store`. It stores
//! questions (dedup + LPUSH in one script), queues the text-only hint for
//! non-text messages, and asks the typing thread to show the reaction on a
//! freshly stored question.
//!
//! It sits above both `feishu::conn` and `bridge` so that neither has to
//! know the other.

use crossbeam_channel::Sender;

use crate::bridge::contract;
use crate::bridge::questions::{InboundItem, Track};
use crate::bridge::store::Store;
use crate::channel::Routing;
use crate::clock::now_ms;
use crate::feishu::api::AppCreds;
use crate::feishu::conn::{InboundStore, StoreError, Stored};
use crate::feishu::event::{ChatEntered, Message, NonText};
use crate::outbound::TypingJob;

/// The connection thread's view of Redis: stores inbound items, queues
/// hint replies, and asks for the typing reaction.
pub struct InboundWriter {
    pub store: Store,
    pub channel_id: String,
    /// This gateway instance, recorded in each message's trace.
    pub instance_id: String,
    pub creds: AppCreds,
    pub dedup_ttl: u64,
    /// `UNSUPPORTED_MESSAGE_HINT`; empty = no reply to non-text messages.
    pub hint: String,
    /// Where fresh questions ask for the typing reaction (`None` = off).
    pub typing: Option<Sender<TypingJob>>,
}

impl InboundStore for InboundWriter {
    fn store(
        &mut self,
        messages: &[&Message],
        routing: &Routing,
    ) -> Result<Vec<Stored>, StoreError> {
        let now = now_ms();
        let app_id = &self.creds.app_id;
        let track = Track { now_ms: now, instance_id: self.instance_id.clone() };
        let items: Vec<InboundItem> = messages
            .iter()
            .map(|m| InboundItem {
                keys: vec![
                    contract::dedup_key(app_id, &m.message_id),
                    contract::fingerprint_key(app_id, m),
                ],
                trace: contract::trace_key(&m.message_id),
                json: contract::inbound_item(&self.channel_id, app_id, routing, m, now),
                record: contract::trace_record(&self.channel_id, app_id, m),
            })
            .collect();
        let fresh: Vec<Stored> = self
            .store
            .push_unique(contract::INBOUND, &items, self.dedup_ttl, Some(&track))?
            .into_iter()
            .map(|new| if new { Stored::New } else { Stored::Duplicate })
            .collect();
        if let Some(typing) = &self.typing {
            for (m, _) in messages.iter().zip(&fresh).filter(|(_, f)| **f == Stored::New) {
                // Cosmetic: when the typing thread is behind, skip it.
                let _ = typing.try_send(TypingJob {
                    creds: self.creds.clone(),
                    message_id: m.message_id.clone(),
                    chat_id: m.chat_id.clone(),
                });
            }
        }
        Ok(fresh)
    }

    fn store_hint(&mut self, m: &NonText) -> Result<(), StoreError> {
        if self.hint.is_empty() {
            return Ok(());
        }
        let app_id = &self.creds.app_id;
        let json = contract::hint_item(&self.channel_id, app_id, m, &self.hint, now_ms());
        let item = InboundItem {
            keys: vec![contract::dedup_key(app_id, &m.message_id)],
            trace: String::new(),
            json,
            record: String::new(),
        };
        self.store
            .push_unique(contract::OUTBOUND, &[item], self.dedup_ttl, None)
            .map_err(StoreError::from)?;
        let why = format!("not text ({}): the text-only hint was sent", m.msg_type);
        self.note_skipped(&m.message_id, &why);
        Ok(())
    }

    fn store_welcome(&mut self, chat: &ChatEntered, text: &str) -> Result<(), StoreError> {
        let app_id = &self.creds.app_id;
        let json = contract::welcome_item(&self.channel_id, app_id, &chat.chat_id, text, now_ms());
        let item = InboundItem {
            keys: vec![contract::welcome_key(app_id, &chat.chat_id)],
            trace: String::new(),
            json,
            record: String::new(),
        };
        let queued = self
            .store
            .push_unique(contract::OUTBOUND, &[item], contract::WELCOME_TTL, None)
            .map_err(StoreError::from)?;
        if queued.first() == Some(&true) {
            log::info!("[{}] welcome queued for chat {}", self.channel_id, chat.chat_id);
        }
        Ok(())
    }

    fn note_skipped(&mut self, message_id: &str, why: &str) {
        let now = now_ms().to_string();
        let fields = [
            ("outcome", "skipped"),
            ("skipped", why),
            ("received_at", now.as_str()),
            ("instance", self.instance_id.as_str()),
            ("channel", self.channel_id.as_str()),
        ];
        if let Err(e) = self.store.trace_note(message_id, &fields) {
            log::debug!("[{}] trace of {message_id} not written: {e}", self.channel_id);
        }
    }
}
