//! Streaming answers (issue 15's benchmark): how soon an answer's first
//! progress item shows text in Feishu, and how many updates a card gets per
//! second under a producer far faster than Feishu allows, for the CardKit
//! path and the message-card (PATCH) path side by side.

use std::process::Command;
use std::time::{Duration, Instant};

use feishu_sim::harness::*;
use feishu_sim::{Sim, SimOptions};

use super::subjects::Subjects;

const APP: &str = "cli_5ea3000000000001";
const SECRET: &str = "stream-bench-secret";

pub struct Stream {
    pub cardkit: bool,
    /// Progress item pushed → the reply holding its text sent, per answer.
    pub first_visible: Vec<Duration>,
    /// Per streamed card: updates per second over its streaming time.
    pub per_second: Vec<f64>,
    /// The most updates any card got within one second (CardKit: the
    /// simulator times each operation; 0 for message cards).
    pub peak: usize,
    /// Updates Feishu refused (rate, sequence) over the run.
    pub refused: usize,
}

/// An item of the answer to question `q`, in a chat of its own (so the
/// figures show the path, not the 5/s pacing of one chat).
fn item(q: &str, id: &str, kind: &str, text: &str) -> String {
    let mut a = answer(id, "ch_s", q, &format!("oc_{q}"), text);
    a["kind"] = serde_json::json!(kind);
    a["in_reply_to"] = serde_json::json!(format!("feishu:{APP}:{q}"));
    a.to_string()
}

/// `answers` answers one after the other, ten a second: first-visible
/// latency; then
/// `fast` answers each fed a progress item every 10 ms for 2 s.
pub fn stream(s: &Subjects, cardkit: bool, answers: usize, fast: usize) -> Stream {
    let redis = RedisServer::start();
    let sim = Sim::start(SimOptions { poll: Duration::from_millis(20), ..SimOptions::default() });
    let mut con = redis.con();
    sim.add_app(APP, SECRET);
    put_channel(&mut con, "ch_s", &channel("ch_s", APP, SECRET));
    let mut cmd = Command::new(&s.gateway);
    cmd.env_clear()
        .env("REDIS_URL", redis.url())
        .env("FEISHU_BASE_URL", sim.base_url())
        .env("GATEWAY_INSTANCE_ID", "bench-stream")
        .env("RUST_LOG", "warn")
        .env("TYPING_REACTION", "")
        .env("CARDKIT_STREAMING", if cardkit { "on" } else { "off" });
    let gw = Gateway::spawn(cmd, "", Duration::from_secs(30));
    assert!(sim.wait_connections(APP, 1, Duration::from_secs(30)), "{}", gw.log());
    let shown = |q: &str| sim.messages().into_iter().find(|m| m.reply_to.as_deref() == Some(q));
    let mut first_visible = Vec::new();
    for i in 0..=answers {
        let q = format!("om_sb{i}");
        let pushed = Instant::now();
        push_outbound(&mut con, &item(&q, &format!("p{i}"), "progress", "正在查询华东区的销售额…"));
        assert!(wait_for(Duration::from_secs(10), || shown(&q).is_some()), "{}", gw.log());
        // The first one warms the token cache up.
        if i > 0 {
            first_visible.push(shown(&q).expect("shown").at - pushed);
        }
        push_outbound(&mut con, &item(&q, &format!("f{i}"), "final", "**合计**：1,284 万元"));
        assert!(
            wait_for(Duration::from_secs(10), || shown(&q)
                .is_some_and(|m| m.text().contains("合计"))),
            "{}",
            gw.log()
        );
        // Four calls an answer at most: ten answers a second stay under the
        // app's 50 calls a second, so the figure is the path's, not pacing's.
        std::thread::sleep(Duration::from_millis(100));
    }
    first_visible.sort();
    let mut per_second = Vec::new();
    let mut peak = 0;
    for i in 0..fast {
        let q = format!("om_sf{i}");
        let start = Instant::now();
        let mut n = 0;
        let mut text = String::new();
        while start.elapsed() < Duration::from_secs(2) {
            n += 1;
            text.push_str("华东区销售额继续增长。");
            push_outbound(&mut con, &item(&q, &format!("fp{i}-{n}"), "progress", &text));
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(500));
        push_outbound(&mut con, &item(&q, &format!("ff{i}"), "final", &text));
        assert!(
            wait_for(Duration::from_secs(20), || shown(&q).is_some_and(|m| m.text() == text)),
            "{}",
            gw.log()
        );
        let m = shown(&q).expect("shown");
        match m.card_id.as_ref().and_then(|id| sim.cards().into_iter().find(|c| &c.card_id == id)) {
            Some(card) => {
                let ok: Vec<Instant> =
                    card.ops.iter().filter(|o| o.code == 0).map(|o| o.at).collect();
                if let (Some(a), Some(b)) = (ok.first(), ok.last()) {
                    per_second.push(ok.len() as f64 / (*b - *a).as_secs_f64().max(0.001));
                }
                peak = peak.max(card.peak_ops_per_second());
            }
            None => {
                // A message card: its updates over the producer's 2.5 s.
                per_second.push(m.updates as f64 / 2.5);
            }
        }
    }
    let refused = sim.cards().iter().flat_map(|c| &c.ops).filter(|o| o.code != 0).count();
    Stream { cardkit, first_visible, per_second, peak, refused }
}
