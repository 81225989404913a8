//! The other side of Redis, for `check` and `status`: is AskTable Server
//! reading `at:channel:inbound` (how many questions wait, how old the
//! oldest is), and do answers flow back (the last answer per channel,
//! dead letters of the last hour with their reasons).

use serde_json::Value;

use crate::bridge::contract;
use crate::bridge::store::{self, Store};
use crate::clock::now_ms;

/// Past this age the oldest waiting question means nobody reads the list.
pub const STUCK_AFTER_MS: u64 = 60_000;

/// What the server side looks like from Redis.
#[derive(Default)]
pub struct ServerSide {
    pub waiting: u64,
    /// Age of the oldest waiting question, when one waits.
    pub oldest_ms: Option<u64>,
    /// Dead letters of the last hour: (when, reason).
    pub dead_last_hour: Vec<(u64, String)>,
    /// Questions stored and not answered yet, and the age of the oldest.
    pub pending: u64,
    pub oldest_pending_ms: Option<u64>,
}

impl ServerSide {
    pub fn read(st: &mut Store) -> store::Result<ServerSide> {
        let now = now_ms();
        let waiting = st.llens(&[contract::INBOUND])?.first().copied().unwrap_or(0);
        // The server pops from the right: the oldest question is there.
        let oldest = st.lindex(contract::INBOUND, -1)?;
        let oldest_ms = oldest
            .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
            .and_then(|v| v["ts"].as_u64())
            .map(|ts| now.saturating_sub(ts));
        let dead_last_hour = st
            .lrange(contract::DEAD, 0, 199)?
            .iter()
            .filter_map(|raw| serde_json::from_slice::<Value>(raw).ok())
            .filter_map(|d| Some((d["ts"].as_u64()?, d["reason"].as_str()?.to_owned())))
            .filter(|(ts, _)| now.saturating_sub(*ts) < 3_600_000)
            .collect();
        let pending = st.pending_count()?;
        let oldest_pending_ms = st.oldest_pending()?.map(|at| now.saturating_sub(at));
        Ok(ServerSide { waiting, oldest_ms, dead_last_hour, pending, oldest_pending_ms })
    }

    /// Whether AskTable Server looks like it reads this Redis.
    pub fn reading(&self) -> bool {
        self.oldest_ms.is_none_or(|age| age < STUCK_AFTER_MS)
    }

    /// One line on the inbound list, e.g. "37 questions waiting, the oldest
    /// 12 minutes: AskTable Server is not reading this Redis".
    pub fn inbound_line(&self) -> String {
        match self.oldest_ms {
            None => "no question waiting in at:channel:inbound".into(),
            Some(age) if self.reading() => {
                format!("{} question(s) waiting, the oldest {}", self.waiting, ago(age))
            }
            Some(age) => format!(
                "{} question(s) waiting, the oldest {}: AskTable Server is not reading this Redis",
                self.waiting,
                ago(age)
            ),
        }
    }

    /// One line on the questions waiting for their answer.
    pub fn pending_line(&self) -> String {
        match self.oldest_pending_ms {
            Some(age) if self.pending > 0 => format!(
                "{} question(s) stored and not answered yet, the oldest {}",
                self.pending,
                ago(age)
            ),
            _ => "every stored question has been answered".into(),
        }
    }

    /// One line on the dead letters of the last hour.
    pub fn dead_line(&self) -> String {
        if self.dead_last_hour.is_empty() {
            return "no dead letter in the last hour".into();
        }
        let mut reasons: Vec<&str> = self.dead_last_hour.iter().map(|(_, r)| r.as_str()).collect();
        reasons.dedup();
        let shown: Vec<String> =
            reasons.iter().take(3).map(|r| r.chars().take(120).collect()).collect();
        format!(
            "{} answer(s) dead-lettered in the last hour: {}",
            self.dead_last_hour.len(),
            shown.join("; ")
        )
    }
}

/// When the last answer of a channel was delivered, as text.
pub fn last_answer(st: &mut Store, channel_id: &str) -> Option<String> {
    let at: u64 = st.get(&contract::last_answer_key(channel_id)).ok().flatten()?.parse().ok()?;
    Some(format!("last answer delivered {} ago", ago(now_ms().saturating_sub(at))))
}

/// "12 s", "5 minutes", "3 hours", "2 days".
pub fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} minutes", s / 60),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_the_operator_should_conclude() {
        let stuck =
            ServerSide { waiting: 37, oldest_ms: Some(12 * 60_000), ..ServerSide::default() };
        assert!(!stuck.reading());
        assert_eq!(
            stuck.inbound_line(),
            "37 question(s) waiting, the oldest 12 minutes: AskTable Server is not reading this Redis"
        );
        let fine = ServerSide { waiting: 2, oldest_ms: Some(3000), ..ServerSide::default() };
        assert!(fine.reading() && fine.inbound_line().contains("the oldest 3 s"));
        let idle = ServerSide { dead_last_hour: vec![(1, "x".into())], ..ServerSide::default() };
        assert!(idle.reading());
        assert_eq!(idle.dead_line(), "1 answer(s) dead-lettered in the last hour: x");
        assert_eq!(ago(3 * 3_600_000), "3 hours");
    }
}
