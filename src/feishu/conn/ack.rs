//! What each complete event needs before it is acknowledged, and which ack
//! it gets. Pure: [`plan`] maps the pending events plus the store's answer
//! to one `(code, outcome)` per event in arrival order, and [`ack_frame`]
//! builds the frame Feishu expects back; the session writes them.
//!
//! The rule the gateway lives by: 200 only for an event that was stored
//! (or deliberately needs nothing stored); 500 otherwise, so Feishu
//! delivers it again.

use std::time::{Duration, Instant};

use super::super::event;
use super::super::frame::Frame;
use super::Stored;

/// A complete event waiting for its ack.
pub struct Pending {
    /// The frame that completed the event; echoed back as the ack.
    pub frame: Frame,
    pub received: Instant,
    pub work: Work,
}

/// What an event needs before it can be acknowledged.
#[derive(Debug)]
pub enum Work {
    /// A question to store.
    Question(Box<event::Message>),
    /// A non-text message whose hint reply must be queued.
    Hint(event::NonText),
    /// A chat the bot entered: its welcome message (the text) must be queued.
    Welcome(event::ChatEntered, String),
    /// Nothing: acknowledge with 200. The outcome label for metrics.
    Skip(&'static str),
    /// Cannot be understood now (no or a wrong Encrypt Key, a payload that
    /// does not parse): 500, so Feishu delivers it again, a bounded number
    /// of times (its schedule: 15 s, 5 min, 1 h, 6 h), and an event stored
    /// once the key is fixed is not lost. The outcome label for metrics.
    Refuse(&'static str),
}

/// The questions among `pending`, in order (what one store call takes).
pub fn questions(pending: &[Pending]) -> Vec<&event::Message> {
    pending
        .iter()
        .filter_map(|p| match &p.work {
            Work::Question(m) => Some(m.as_ref()),
            _ => None,
        })
        .collect()
}

/// The ack code and metrics outcome of every event, in arrival order.
/// `stored`: the store's answer for the questions in order, `None` when
/// storing failed. `queue` queues the gateway's own reply to a
/// [`Work::Hint`] or [`Work::Welcome`] and says whether it was queued; it is
/// called in order.
pub fn plan<'a>(
    works: impl IntoIterator<Item = &'a Work>,
    stored: Option<&[Stored]>,
    mut queue: impl FnMut(&Work) -> bool,
) -> Vec<(u16, &'static str)> {
    let mut fresh = stored.map(|s| s.iter());
    works
        .into_iter()
        .map(|work| match work {
            Work::Question(_) => match fresh.as_mut().and_then(Iterator::next) {
                Some(Stored::New) => (200, "stored"),
                Some(Stored::Duplicate) => (200, "duplicate"),
                None => (500, "not_stored"),
            },
            Work::Hint(_) if queue(work) => (200, "unsupported"),
            Work::Welcome(..) if queue(work) => (200, "welcomed"),
            Work::Hint(_) | Work::Welcome(..) => (500, "not_stored"),
            Work::Skip(outcome) => (200, *outcome),
            Work::Refuse(outcome) => (500, *outcome),
        })
        .collect()
}

/// The ack for `frame`: its headers plus `biz_rt` (ms spent), and the
/// payload `{"code":N}`.
pub fn ack_frame(mut frame: Frame, code: u16, took: Duration) -> Frame {
    frame.headers.push(("biz_rt".into(), took.as_millis().to_string()));
    frame.payload = Some(format!("{{\"code\":{code}}}").into_bytes());
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(id: &str) -> Work {
        Work::Hint(event::NonText {
            event_id: format!("e_{id}"),
            message_id: id.into(),
            chat_id: "oc_1".into(),
            msg_type: "image".into(),
        })
    }

    fn question() -> Work {
        Work::Question(Box::default())
    }

    #[test]
    fn stored_and_duplicate_questions_get_200_in_arrival_order() {
        let works = [question(), Work::Skip("stale"), question(), question()];
        let acks = plan(&works, Some(&[Stored::New, Stored::Duplicate, Stored::New]), |_| true);
        assert_eq!(acks, [(200, "stored"), (200, "stale"), (200, "duplicate"), (200, "stored")]);
    }

    #[test]
    fn questions_not_stored_get_500_the_rest_still_200() {
        let works = [question(), Work::Skip("filtered"), question(), hint("om_h")];
        let acks = plan(&works, None, |_| true);
        assert_eq!(
            acks,
            [(500, "not_stored"), (200, "filtered"), (500, "not_stored"), (200, "unsupported")]
        );
    }

    #[test]
    fn own_replies_are_queued_in_order_and_a_failed_one_is_refused() {
        let mut asked = Vec::new();
        let welcome = Work::Welcome(
            event::ChatEntered { event_id: "e".into(), chat_id: "oc_w".into(), p2p: true },
            "hi".into(),
        );
        let works = [hint("om_1"), question(), hint("om_2"), welcome];
        let acks = plan(&works, Some(&[Stored::New]), |w| {
            let id = match w {
                Work::Hint(m) => m.message_id.clone(),
                Work::Welcome(c, _) => c.chat_id.clone(),
                _ => unreachable!("only own replies are queued"),
            };
            asked.push(id.clone());
            id != "om_2"
        });
        assert_eq!(asked, ["om_1", "om_2", "oc_w"]);
        assert_eq!(
            acks,
            [(200, "unsupported"), (200, "stored"), (500, "not_stored"), (200, "welcomed")]
        );
    }

    #[test]
    fn the_ack_echoes_the_frame_with_the_code_and_time_spent() {
        let frame = Frame {
            seq_id: 7,
            log_id: 8,
            service: 9,
            method: 1,
            headers: vec![("type".into(), "event".into()), ("message_id".into(), "m1".into())],
            payload_encoding: None,
            payload_type: None,
            payload: Some(b"{\"schema\":\"2.0\"}".to_vec()),
            log_id_new: None,
        };
        let ack = ack_frame(frame, 500, Duration::from_millis(42));
        assert_eq!((ack.seq_id, ack.log_id, ack.service, ack.method), (7, 8, 9, 1));
        assert_eq!(ack.header("message_id"), Some("m1"));
        assert_eq!(ack.header("biz_rt"), Some("42"));
        assert_eq!(ack.payload.as_deref(), Some(&b"{\"code\":500}"[..]));
    }
}
