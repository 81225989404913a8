//! CardKit card entities (shared/feishu-protocol.md §13): create one,
//! stream an element's text, change its settings (streaming on/off,
//! summary), replace it whole; and follow-up bubbles (§15). Every card
//! operation carries the card's `sequence` and a deterministic `uuid`
//! chosen by the caller, so a retry of the same operation is the same
//! operation; Feishu's "uuid already used" (`200770`) is success.

use serde_json::{Value, json};

use super::api::{Api, ApiError, AppCreds, data_str, path_id};

/// Feishu's code for an operation whose uuid was already used: it ran.
const ALREADY_DONE: i64 = 200_770;

/// What a failed card operation means for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardFailure {
    /// Streaming was closed (timed out `200850`, or closed `300309`):
    /// open it again, or replace the card.
    Closed,
    /// The sequence was not above the card's (`300317`): another replica
    /// got ahead, or a bug; read the sequence again.
    Sequence,
    /// The tenant did not grant `cardkit:card:write` (`99991672`).
    NoPermission,
    /// Too many tables in the card (`230099` with `11310`).
    Tables,
    /// The card is over 30 KB (`200860`, `230025`).
    TooLarge,
    /// The entity is gone or expired (`200740`, `200750`).
    Gone,
    /// Anything else: the usual classification applies.
    Other,
}

impl ApiError {
    /// Classifies a CardKit failure.
    pub fn card_failure(&self) -> CardFailure {
        let ApiError::Feishu { code, msg, .. } = self else { return CardFailure::Other };
        match code {
            200_850 | 300_309 => CardFailure::Closed,
            300_317 => CardFailure::Sequence,
            99_991_672 => CardFailure::NoPermission,
            230_099 if msg.contains("11310") => CardFailure::Tables,
            200_860 | 230_025 => CardFailure::TooLarge,
            200_740 | 200_750 => CardFailure::Gone,
            _ => CardFailure::Other,
        }
    }
}

/// An already-used uuid means the operation ran: success.
fn done_if_replayed(r: Result<(), ApiError>) -> Result<(), ApiError> {
    match r {
        Err(ApiError::Feishu { code: ALREADY_DONE, .. }) => Ok(()),
        other => other,
    }
}

impl Api {
    /// Creates a card entity from card JSON 2.0; returns its `card_id`.
    pub fn create_card(&self, creds: &AppCreds, card: &str) -> Result<String, ApiError> {
        let url = Self::url(creds, "/open-apis/cardkit/v1/cards");
        let body = json!({ "type": "card_json", "data": card });
        let reply = self.with_token(creds, |http, token| http.post(&url, &body, Some(token)))?;
        let id = data_str(&reply, "card_id");
        path_id(&id)?;
        Ok(id)
    }

    /// One operation on card `card_id` (`tail` after its path, `PATCH` or
    /// `PUT`): the body with the sequence and uuid, a replay as success.
    #[allow(clippy::too_many_arguments)]
    fn card_op(
        &self,
        creds: &AppCreds,
        card_id: &str,
        tail: &str,
        patch: bool,
        mut body: Value,
        sequence: i64,
        uuid: &str,
    ) -> Result<(), ApiError> {
        path_id(card_id)?;
        let url = Self::url(creds, &format!("/open-apis/cardkit/v1/cards/{card_id}{tail}"));
        body["sequence"] = json!(sequence);
        body["uuid"] = json!(uuid);
        let sent = self.with_token(creds, |http, t| {
            if patch { http.patch(&url, &body, t) } else { http.put(&url, &body, t) }
        });
        done_if_replayed(sent.map(|_| ()))
    }

    /// Streams the full text so far into a markdown element.
    pub fn stream_text(
        &self,
        creds: &AppCreds,
        card_id: &str,
        element_id: &str,
        text: &str,
        sequence: i64,
        uuid: &str,
    ) -> Result<(), ApiError> {
        path_id(element_id)?;
        let tail = format!("/elements/{element_id}/content");
        self.card_op(creds, card_id, &tail, false, json!({ "content": text }), sequence, uuid)
    }

    /// Changes a card's settings (`{"config":{…}}` as a JSON string).
    pub fn card_settings(
        &self,
        creds: &AppCreds,
        card_id: &str,
        settings: &str,
        sequence: i64,
        uuid: &str,
    ) -> Result<(), ApiError> {
        let body = json!({ "settings": settings });
        self.card_op(creds, card_id, "/settings", true, body, sequence, uuid)
    }

    /// Replaces a whole card (card JSON 2.0).
    pub fn replace_card(
        &self,
        creds: &AppCreds,
        card_id: &str,
        card: &str,
        sequence: i64,
        uuid: &str,
    ) -> Result<(), ApiError> {
        let body = json!({ "card": { "type": "card_json", "data": card } });
        self.card_op(creds, card_id, "", false, body, sequence, uuid)
    }

    /// Suggested-question bubbles under the bot's latest message in a
    /// one-on-one chat (`push_follow_up`).
    pub fn push_follow_up(
        &self,
        creds: &AppCreds,
        message_id: &str,
        questions: &[String],
    ) -> Result<(), ApiError> {
        path_id(message_id)?;
        let url =
            Self::url(creds, &format!("/open-apis/im/v1/messages/{message_id}/push_follow_up"));
        let items: Vec<_> = questions.iter().map(|q| json!({ "content": q })).collect();
        let body = json!({ "follow_ups": items });
        self.with_token(creds, |http, t| http.post(&url, &body, Some(t))).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feishu(code: i64, msg: &str) -> ApiError {
        ApiError::Feishu { status: 400, code, msg: msg.into(), rate_limit_reset: None }
    }

    #[test]
    fn the_cardkit_error_taxonomy() {
        assert_eq!(feishu(200850, "card streaming timeout").card_failure(), CardFailure::Closed);
        assert_eq!(feishu(300309, "streaming mode is closed").card_failure(), CardFailure::Closed);
        assert_eq!(feishu(300317, "sequence").card_failure(), CardFailure::Sequence);
        assert_eq!(feishu(99991672, "Access denied").card_failure(), CardFailure::NoPermission);
        assert_eq!(feishu(230099, "ext=ErrCode: 11310").card_failure(), CardFailure::Tables);
        assert_eq!(feishu(230099, "bad card").card_failure(), CardFailure::Other);
        assert_eq!(feishu(200860, "too large").card_failure(), CardFailure::TooLarge);
        assert_eq!(feishu(200740, "not found").card_failure(), CardFailure::Gone);
        // Rate limits and flow control are retried, never "target gone".
        for code in [230020, 11232, 300120, 300313, 300314, 300315] {
            assert!(
                matches!(feishu(code, "x").failure(), super::super::api::Failure::Transient(_)),
                "{code}"
            );
        }
        assert_eq!(done_if_replayed(Err(feishu(200770, "uuid"))), Ok(()));
        assert!(done_if_replayed(Err(feishu(300317, "x"))).is_err());
    }
}
