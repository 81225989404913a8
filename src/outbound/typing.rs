//! The typing reaction's lifecycle: the connection threads ask for it when
//! a question is stored ([`TypingJob`], best effort), the `typing` thread
//! adds it and records its id in the typing key, and the worker that
//! delivers the answer marks the key done and removes the reaction
//! ([`untype`]). A reaction added after the answer (the key already says
//! done) is removed at once.

use crossbeam_channel::Receiver;
use std::sync::Arc;

use super::ChannelRef;
use super::budget::Budget;
use super::send::Courier;
use crate::bridge::contract;
use crate::bridge::store::Store;
use crate::feishu::api::{Api, AppCreds};
use crate::panics;

/// A request to show the typing reaction on a stored question.
#[derive(Debug, Clone)]
pub struct TypingJob {
    pub creds: AppCreds,
    pub message_id: String,
    pub chat_id: String,
}

/// The `typing` thread's state.
pub struct Typing {
    emoji: String,
    store: Store,
    api: Arc<Api>,
    budget: Arc<Budget>,
}

impl Typing {
    /// Shows `emoji` (Feishu's emoji type) with calls paced by `budget`.
    pub fn new(emoji: String, store: Store, api: Arc<Api>, budget: Arc<Budget>) -> Typing {
        Typing { emoji, store, api, budget }
    }

    /// Adds reactions until `rx` closes or `stop` fires.
    pub fn run(&mut self, rx: &Receiver<TypingJob>, stop: &Receiver<()>) {
        loop {
            let job = crossbeam_channel::select! {
                recv(rx) -> job => match job { Ok(j) => j, Err(_) => return },
                recv(stop) -> _ => return,
            };
            panics::inject("typing");
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

/// Marks the question answered and removes its typing reaction, if one
/// was added. `lane` is the chat whose budget the call uses.
pub fn untype(store: &mut Store, courier: &Courier, ch: &ChannelRef, message_id: &str, lane: &str) {
    match store.typing_done(&ch.app_id, message_id) {
        Ok(Some(reaction_id)) if reaction_id != contract::TYPING_DONE => {
            courier.budget.wait(&ch.app_id, lane);
            if let Err(e) = courier.api.delete_reaction(&ch.creds, message_id, &reaction_id) {
                log::info!("outbound: typing reaction on {message_id} not removed: {e}");
            }
        }
        _ => {}
    }
}
