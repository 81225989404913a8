//! The shared reply key `at:channel:reply:feishu:<in_reply_to>`: how
//! replicas agree on one progress card per question and on who sends the
//! final answer. The values are the contract's (`bridge::contract`); this
//! file parses them into [`Reply`] and makes the few compare-and-set moves
//! the workers need.

use crate::bridge::contract;
use crate::bridge::store::{self, Store};

/// What the reply key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Nothing yet: no progress card, no final answer.
    None,
    /// A progress card is being created (by this or another replica).
    Pending,
    /// A final answer is creating the reply itself.
    FinalClaim,
    /// The progress card streaming the answer.
    Card(String),
    /// The final answer was delivered; the id of its first message.
    Final(String),
}

impl Reply {
    /// Parses the key's value (`None` when the key does not exist).
    pub fn from_value(v: Option<&str>) -> Reply {
        match v {
            None => Reply::None,
            Some(contract::REPLY_PENDING) => Reply::Pending,
            Some(contract::REPLY_FINAL_CLAIM) => Reply::FinalClaim,
            Some(v) => match v.strip_prefix(contract::REPLY_FINAL) {
                Some(id) => Reply::Final(id.to_owned()),
                None => Reply::Card(v.to_owned()),
            },
        }
    }
}

/// The reply's state in Redis, shared by all replicas.
pub fn read(store: &mut Store, irt: &str) -> store::Result<Reply> {
    Ok(Reply::from_value(store.get(&contract::reply_key(irt))?.as_deref()))
}

/// Claims the right to create the reply's first message with `value`
/// (`pending` or `final-claim`); one replica wins.
pub fn claim(store: &mut Store, irt: &str, value: &str) -> store::Result<bool> {
    store.set_nx_ex(&contract::reply_key(irt), value, contract::REPLY_CLAIM_TTL)
}

/// Records the progress card over this worker's own `pending` claim (a
/// final answer may have taken over meanwhile: then nothing changes).
pub fn record_card(store: &mut Store, irt: &str, card_id: &str) -> store::Result<bool> {
    let key = contract::reply_key(irt);
    store.replace_if(&key, contract::REPLY_PENDING, card_id, contract::REPLY_TTL)
}

/// After creating the card failed: keeps the claim a few seconds, since
/// Feishu may still have made the card (an answer lost on the way back)
/// and the final answer then looks for it by its uuid.
pub fn keep_failed_claim(store: &mut Store, irt: &str) -> store::Result<bool> {
    let key = contract::reply_key(irt);
    store.replace_if(
        &key,
        contract::REPLY_PENDING,
        contract::REPLY_PENDING,
        contract::REPLY_FAILED_CLAIM_TTL,
    )
}

/// Records that the final answer was delivered as `message_id`.
pub fn record_final(store: &mut Store, irt: &str, message_id: &str) -> store::Result<()> {
    store.set_ex(
        &contract::reply_key(irt),
        &contract::reply_final_value(message_id),
        contract::REPLY_TTL,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_of_the_reply_key() {
        assert_eq!(Reply::from_value(None), Reply::None);
        assert_eq!(Reply::from_value(Some("pending")), Reply::Pending);
        assert_eq!(Reply::from_value(Some("final-claim")), Reply::FinalClaim);
        assert_eq!(Reply::from_value(Some("om_card")), Reply::Card("om_card".into()));
        assert_eq!(Reply::from_value(Some("final:om_1")), Reply::Final("om_1".into()));
        // What the worker records is what it reads back.
        assert_eq!(
            Reply::from_value(Some(&contract::reply_final_value("om_2"))),
            Reply::Final("om_2".into())
        );
        // A card id that merely contains the prefix is still a card.
        assert_eq!(Reply::from_value(Some("om_final:x")), Reply::Card("om_final:x".into()));
    }
}
