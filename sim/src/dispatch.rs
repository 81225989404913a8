//! The dispatcher thread: sends due pushes (split into fragments) to one
//! random connection of their app and queues unacknowledged ones again
//! after `redelivery_after`, up to `max_deliveries`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::state::{Cmd, Conn, Inner};
use crate::{now_ms, pb, rand_hex, rand_u64};

/// Sends due pushes to one random connection of their app, and queues
/// unacknowledged ones again after `redelivery_after`.
pub(crate) fn dispatch(inner: Arc<Inner>) {
    while !inner.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let mut guard = inner.lock();
        let st = &mut *guard;
        while let Some(&(due, id)) = st.waiting.front() {
            if due > now {
                break;
            }
            st.waiting.pop_front();
            let p = &st.pushes[id as usize];
            if !p.acked && p.deliveries < inner.opts.max_deliveries {
                st.ready.push_back(id);
            }
        }
        let mut blocked = Vec::new();
        while let Some(id) = st.ready.pop_front() {
            let push = &mut st.pushes[id as usize];
            if push.acked {
                continue;
            }
            let conns: Vec<&Conn> = st.conns.iter().filter(|c| c.app_id == push.app_id).collect();
            if conns.is_empty() {
                blocked.push(id);
                continue;
            }
            let conn = conns[(rand_u64() % conns.len() as u64) as usize];
            push.deliveries += 1;
            let frame_id = format!("{id}_{}_{}", push.deliveries, rand_hex(8));
            let chunk = push.payload.len().div_ceil(push.parts).max(1);
            let pieces: Vec<&[u8]> = push.payload.chunks(chunk).collect();
            for (seq, piece) in pieces.iter().enumerate().rev() {
                let frame = pb::Frame {
                    seq_id: id,
                    log_id: rand_u64() >> 1,
                    service: 33554678,
                    method: 1,
                    headers: vec![
                        ("type".into(), "event".into()),
                        ("message_id".into(), frame_id.clone()),
                        ("sum".into(), pieces.len().to_string()),
                        ("seq".into(), seq.to_string()),
                        ("trace_id".into(), rand_hex(16)),
                        ("timestamp".into(), now_ms().to_string()),
                    ],
                    payload: piece.to_vec(),
                };
                let _ = conn.tx.send(Cmd::Event(id, frame.to_bytes()));
            }
            st.frame_to_push.insert(frame_id, id);
            st.waiting.push_back((now + inner.opts.redelivery_after, id));
        }
        st.ready.extend(blocked);
        let next = st.waiting.front().map(|(due, _)| *due);
        let wait = next.map_or(Duration::from_millis(20), |t| t.saturating_duration_since(now));
        let _ = inner
            .changed
            .wait_timeout(guard, wait.clamp(Duration::from_millis(1), Duration::from_millis(20)));
    }
}
