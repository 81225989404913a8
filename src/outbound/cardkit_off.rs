//! Apps without CardKit: whether progress streams into CardKit cards for
//! an app, and remembering (per app, an hour, logged once) that CardKit
//! refused it (no `cardkit:card:write`, an API that is not there), so that
//! its progress updates message cards instead (contract `cardkit_off_key`).

use super::ChannelRef;
use super::send::Undelivered;
use super::worker::Worker;
use crate::bridge::contract;
use crate::feishu::api::ApiError;
use crate::feishu::cardkit::CardFailure;

impl Worker {
    /// Whether progress for this app streams into CardKit cards.
    pub(super) fn cardkit_on(&mut self, ch: &ChannelRef) -> bool {
        self.settings.cardkit && !matches!(self.store.cardkit_off(&ch.app_id), Ok(Some(_)))
    }

    /// CardKit refused for this app: remembered (logged once), and the
    /// caller falls back to message cards.
    pub(super) fn cardkit_refused(&mut self, ch: &ChannelRef, why: &Undelivered) {
        let reason = why.to_string();
        if let Ok(true) = self.store.set_cardkit_off(&ch.app_id, &reason) {
            log::warn!(
                "outbound [{}]: CardKit is not available ({reason}); progress answers update message cards instead for the next {} min (grant cardkit:card:write to stream)",
                ch.app_id,
                contract::CARDKIT_OFF_TTL / 60
            );
        }
    }
}

/// Whether a refusal at create time means "this app has no CardKit": the
/// scope is not granted, or the API is not there (an older deployment).
pub(super) fn unavailable(e: &ApiError) -> bool {
    use crate::feishu::http::HttpError;
    e.card_failure() == CardFailure::NoPermission
        || matches!(e, ApiError::Http(HttpError::NotJson { status: 404 | 405 }))
        || matches!(e, ApiError::Feishu { status: 404, .. })
}
