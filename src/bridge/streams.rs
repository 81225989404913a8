//! The Redis side of CardKit streams (contract `stream`): the stream hash
//! replicas share per reply, its sequence, the per-app memory of CardKit
//! being unavailable, and the welcome marker.

use std::collections::HashMap;

use super::contract;
use super::store::{Result, Store};

/// A reply's CardKit stream as Redis holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRec {
    /// The card being streamed (index into `cards`).
    pub part: usize,
    /// Per part: the card entity and, once sent, its message.
    pub cards: Vec<(String, Option<String>)>,
    /// Per completed part: the hash of the Markdown it shows.
    pub hashes: Vec<Option<String>>,
    pub opened_ms: u64,
    pub closing: bool,
    /// A lower table limit after Feishu refused a card for its tables.
    pub tables: Option<usize>,
    /// The next part's card, when one was created and not yet sent as
    /// the current part (a worker died in between): reused, not made again.
    pub next_card: Option<String>,
}

impl StreamRec {
    /// Parses the hash (`None` when it names no card).
    pub fn from_fields(f: &HashMap<String, String>) -> Option<StreamRec> {
        let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
        let part = num(contract::STREAM_PART).unwrap_or(0) as usize;
        let mut cards = Vec::new();
        let mut hashes = Vec::new();
        for i in 0..=part {
            let card = f.get(&contract::stream_card_field(i))?.clone();
            cards.push((card, f.get(&contract::stream_msg_field(i)).cloned()));
            hashes.push(f.get(&contract::stream_hash_field(i)).cloned());
        }
        Some(StreamRec {
            part,
            cards,
            hashes,
            opened_ms: num(contract::STREAM_OPENED).unwrap_or(0),
            closing: f.contains_key(contract::STREAM_CLOSING),
            tables: num(contract::STREAM_TABLES).map(|n| n as usize),
            next_card: f.get(&contract::stream_card_field(part + 1)).cloned(),
        })
    }

    /// The card being streamed.
    pub fn card(&self) -> &str {
        &self.cards[self.part].0
    }

    /// The message of the first card (the reply's message).
    pub fn first_message(&self) -> Option<&str> {
        self.cards.first().and_then(|c| c.1.as_deref())
    }
}

impl Store {
    /// A reply's stream, if it has one.
    pub fn stream(&mut self, irt: &str) -> Result<Option<StreamRec>> {
        let key = contract::stream_key(irt);
        let fields: HashMap<String, String> =
            self.with(|con, _| redis::cmd("HGETALL").arg(&key).query(con))?;
        Ok(StreamRec::from_fields(&fields))
    }

    /// Sets fields of a reply's stream (and its TTL); in Sentinel mode
    /// waits for a replica, so that a failover does not forget a card.
    pub fn stream_set(&mut self, irt: &str, fields: &[(&str, &str)]) -> Result<()> {
        let key = contract::stream_key(irt);
        self.with(|con, me| {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("HSET").arg(&key);
            for (k, v) in fields {
                pipe.arg(*k).arg(*v);
            }
            pipe.ignore().cmd("EXPIRE").arg(&key).arg(contract::REPLY_TTL).ignore();
            pipe.query::<()>(con)?;
            if me.replicated {
                let _ = super::connect::confirm_replicated(con);
            }
            Ok(())
        })
    }

    /// The next sequence for an operation on the reply's cards; `None` for
    /// a progress update once a final answer is completing the stream.
    pub fn stream_seq(&mut self, irt: &str, is_final: bool) -> Result<Option<i64>> {
        self.stream_seq_by(irt, is_final, 1)
    }

    /// Like [`stream_seq`](Self::stream_seq), `step` past the last one
    /// (to get past a sequence Feishu already has).
    pub fn stream_seq_by(&mut self, irt: &str, is_final: bool, step: u32) -> Result<Option<i64>> {
        let key = contract::stream_key(irt);
        let kind = if is_final { "final" } else { "progress" };
        let n: i64 = self.with(|con, me| {
            let s = &me.scripts.stream_seq;
            s.key(&key).arg(kind).arg(contract::REPLY_TTL).arg(step).invoke(con)
        })?;
        Ok((n > 0).then_some(n))
    }

    /// Why CardKit is off for an app, if it is.
    pub fn cardkit_off(&mut self, app_id: &str) -> Result<Option<String>> {
        self.get(&contract::cardkit_off_key(app_id))
    }

    /// Remembers that CardKit is off for an app; `true` when this is news
    /// (the caller logs it once).
    pub fn set_cardkit_off(&mut self, app_id: &str, why: &str) -> Result<bool> {
        self.set_nx_ex(&contract::cardkit_off_key(app_id), why, contract::CARDKIT_OFF_TTL)
    }

    /// Waits for a replica in Sentinel mode (best effort): after recording
    /// a reply's card, so that a failover does not forget it.
    pub fn confirm_replicated(&mut self) {
        if self.replicated {
            let _ = self.with(|con, _| super::connect::confirm_replicated(con));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_hash_read_back() {
        let f = |kv: &[(&str, &str)]| -> HashMap<String, String> {
            kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(StreamRec::from_fields(&f(&[])), None);
        assert_eq!(StreamRec::from_fields(&f(&[("seq", "4")])), None, "no card yet");
        let one = StreamRec::from_fields(&f(&[("card:0", "71"), ("opened", "5")])).unwrap();
        assert_eq!(one.card(), "71");
        assert_eq!(one.first_message(), None);
        assert_eq!(one.opened_ms, 5);
        assert!(!one.closing);
        let two = StreamRec::from_fields(&f(&[
            ("part", "1"),
            ("card:0", "71"),
            ("msg:0", "om_a"),
            ("hash:0", "h"),
            ("card:1", "72"),
            ("closing", "1"),
            ("tables", "2"),
        ]))
        .unwrap();
        assert_eq!(two.card(), "72");
        assert_eq!(two.first_message(), Some("om_a"));
        assert_eq!(two.hashes, vec![Some("h".to_owned()), None]);
        assert!(two.closing);
        assert_eq!(two.tables, Some(2));
        // A part whose card is missing: not a stream to write to.
        assert_eq!(StreamRec::from_fields(&f(&[("part", "1"), ("card:0", "71")])), None);
    }
}
