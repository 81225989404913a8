//! End to end, streaming: progress answers typing out in CardKit cards in
//! the simulator, past Feishu's ten-minute stream limit (a compressed
//! clock), past one card's size, through Feishu's errors, across replicas
//! and a kill -9, and the message-card fallback without CardKit.

use crate::support;

use feishu_sim::cardkit::Card;
use feishu_sim::{Fault, Route, SentMessage};
use serde_json::json;
use std::time::Duration;
use support::*;

const APP: &str = "cli_0123456789abcdef";
const SECRET: &str = "stream-secret";
const INSTANCE: &str = "gw-stream";

struct Setup {
    redis: RedisServer,
    sim: Sim,
    gw: Gateway,
    con: redis::Connection,
}

/// The simulator with streams that close after `timeout`.
fn sim_with(timeout: Duration) -> Sim {
    Sim::start(SimOptions {
        ping_interval: 2,
        redelivery_after: Duration::from_millis(1000),
        max_deliveries: 30,
        stream_timeout: timeout,
        ..SimOptions::default()
    })
}

fn setup_with(sim: Sim, env: &[(&str, &str)]) -> Setup {
    let redis = RedisServer::start();
    let mut con = redis.con();
    sim.add_app(APP, SECRET);
    put_channel(&mut con, "ch_1", &channel("ch_1", APP, SECRET));
    let mut all = vec![("TYPING_REACTION", "")];
    all.extend_from_slice(env);
    let gw = start_gateway(&redis.url(), &sim, INSTANCE, &all);
    assert!(sim.wait_connections(APP, 1, SECS(10)), "{}", gw.log());
    Setup { redis, sim, gw, con }
}

fn setup() -> Setup {
    setup_with(sim_with(SECS(600)), &[])
}

fn ask(s: &mut Setup, text: &str) -> MessageEvent {
    let ev = MessageEvent::text(APP, text);
    let push = s.sim.push_event(APP, &ev.json());
    assert!(s.sim.wait_acked(push, SECS(5)));
    ev
}

fn item(q: &MessageEvent, id: &str, kind: &str, text: &str) -> String {
    let mut a = answer(id, "ch_1", &q.message_id, &q.chat_id, text);
    a["kind"] = json!(kind);
    a["in_reply_to"] = json!(format!("feishu:{APP}:{}", q.message_id));
    a.to_string()
}

fn replies_to<'a>(msgs: &'a [SentMessage], q: &MessageEvent) -> Vec<&'a SentMessage> {
    msgs.iter().filter(|m| m.reply_to.as_deref() == Some(q.message_id.as_str())).collect()
}

fn card_of(s: &Setup, m: &SentMessage) -> Card {
    let id = m.card_id.clone().expect("the message shows a card entity");
    s.sim.cards().into_iter().find(|c| c.card_id == id).expect("the entity exists")
}

/// Waits until item `id` was delivered (its receipt says so).
fn delivered(s: &mut Setup, id: &str, timeout: Duration) -> bool {
    let key = format!("at:channel:receipt:feishu:{id}");
    wait_for(timeout, || {
        redis::cmd("GET")
            .arg(&key)
            .query::<Option<String>>(&mut s.con)
            .ok()
            .flatten()
            .is_some_and(|r| r.contains("delivered"))
    })
}

/// Waits until the reply's first card is recorded (the reply key holds its
/// message, the stream hash its card): what a later item of it will find.
fn card_recorded(s: &mut Setup, q: &MessageEvent) -> bool {
    let irt = format!("feishu:{APP}:{}", q.message_id);
    wait_for(SECS(10), || {
        let get = |con: &mut redis::Connection, cmd: redis::Cmd| {
            cmd.query::<Option<String>>(con).ok().flatten()
        };
        let reply = get(
            &mut s.con,
            redis::cmd("GET").arg(format!("at:channel:reply:feishu:{irt}")).clone(),
        );
        let msg = get(
            &mut s.con,
            redis::cmd("HGET").arg(format!("at:channel:stream:feishu:{irt}")).arg("msg:0").clone(),
        );
        msg.is_some() && reply == msg
    })
}

/// The text so far of an answer typed out in `n` steps.
fn typed(n: usize) -> String {
    (1..=n).map(|i| format!("第 {i} 步：查询华东区的销售额。")).collect::<Vec<_>>().join("")
}

#[test]
fn a_progress_answer_types_out_in_one_cardkit_card() {
    let mut s = setup();
    let q = ask(&mut s, "q");
    for i in 1..=12 {
        s.con_push(&item(&q, &format!("p{i}"), "progress", &typed(i)));
        std::thread::sleep(Duration::from_millis(60));
    }
    let answer = format!("{}\n\n**合计**：1,284 万元", typed(12));
    s.con_push(&item(&q, "f1", "final", &answer));
    assert!(delivered(&mut s, "f1", SECS(15)), "{}", s.gw.log());
    let msgs = s.sim.messages();
    let mine = replies_to(&msgs, &q);
    assert_eq!(mine.len(), 1, "one card for the whole answer: {msgs:?}");
    assert_eq!(mine[0].text(), answer);
    let card = card_of(&s, mine[0]);
    assert!(!card.streaming, "streaming closed at the end");
    let summary: String = typed(12).chars().take(60).collect();
    assert_eq!(card.summary(), format!("{summary}…"), "the chat list's summary");
    let ok: Vec<_> = card.ops.iter().filter(|o| o.code == 0).collect();
    assert!(ok.len() >= 3, "the text typed out in several writes: {:?}", card.ops);
    assert!(ok.windows(2).all(|w| w[0].sequence < w[1].sequence), "{:?}", card.ops);
    assert!(card.peak_ops_per_second() <= 6, "about five a second: {:?}", card.ops);
    assert!(card.ops.iter().all(|o| o.code == 0), "no refused operation: {:?}", card.ops);
    assert_eq!(s.sim.entity_patches(), 0, "no PATCH on an entity message");
    let key = format!("at:channel:reply:feishu:feishu:{APP}:{}", q.message_id);
    let state: Option<String> = redis::cmd("GET").arg(&key).query(&mut s.con).unwrap();
    assert_eq!(state, Some(format!("final:{}", mine[0].message_id)));
}

impl Setup {
    fn con_push(&mut self, raw: &str) {
        push_outbound(&mut self.con, raw);
    }
}

/// A 15-minute answer on a 10-minute stream, compressed: streams close
/// 3 s after they were opened, the gateway turns streaming on again after
/// 2 s, progress comes for 7.5 s.
#[test]
fn an_answer_outlives_the_stream_limit_by_reopening_before_it() {
    let mut s = setup_with(sim_with(SECS(3)), &[("CARDKIT_REOPEN_AFTER", "2")]);
    let q = ask(&mut s, "q");
    for i in 1..=25 {
        s.con_push(&item(&q, &format!("p{i}"), "progress", &typed(i)));
        std::thread::sleep(Duration::from_millis(300));
    }
    s.con_push(&item(&q, "f1", "final", &typed(26)));
    assert!(delivered(&mut s, "f1", SECS(15)), "{}", s.gw.log());
    let msgs = s.sim.messages();
    let mine = replies_to(&msgs, &q);
    assert_eq!(mine.len(), 1, "{msgs:?}");
    assert_eq!(mine[0].text(), typed(26), "complete, nothing doubled");
    let card = card_of(&s, mine[0]);
    let reopened = card.ops.iter().filter(|o| o.kind == "settings" && o.code == 0).count();
    assert!(reopened >= 3, "turned on again before each limit: {:?}", card.ops);
    assert_eq!(card.timeouts, 0, "Feishu never closed it: {:?}", card.ops);
    assert!(!card.streaming);
}

/// The same with the gateway reopening too late: Feishu closes the
/// stream (200850, then 300309) and the gateway recovers.
#[test]
fn a_stream_feishu_closed_is_recovered_and_the_answer_ends_complete() {
    let mut s = setup_with(sim_with(SECS(2)), &[("CARDKIT_REOPEN_AFTER", "600")]);
    let q = ask(&mut s, "q");
    for i in 1..=20 {
        s.con_push(&item(&q, &format!("p{i}"), "progress", &typed(i)));
        std::thread::sleep(Duration::from_millis(300));
    }
    s.con_push(&item(&q, "f1", "final", &typed(21)));
    assert!(delivered(&mut s, "f1", SECS(15)), "{}", s.gw.log());
    let msgs = s.sim.messages();
    let mine = replies_to(&msgs, &q);
    assert_eq!(mine.len(), 1, "{msgs:?}");
    assert_eq!(mine[0].text(), typed(21));
    let card = card_of(&s, mine[0]);
    assert!(card.timeouts >= 2, "Feishu closed it more than once: {:?}", card.ops);
    assert!(card.ops.iter().any(|o| o.code == 200850), "{:?}", card.ops);
    assert!(!card.streaming);
    assert!(s.gw.log().contains("turning it on again"), "{}", s.gw.log());
}

#[test]
fn when_the_final_write_fails_the_answer_arrives_as_a_reply_and_the_card_points_to_it() {
    let mut s = setup();
    let q = ask(&mut s, "q");
    s.con_push(&item(&q, "p1", "progress", "正在查询…"));
    assert!(card_recorded(&mut s, &q), "{}", s.gw.log());
    // Every write of the final text into the card is refused for good.
    s.sim.inject(Route::CardContent, Fault::code(400, 300305, "too many elements"));
    s.con_push(&item(&q, "f1", "final", "**结果**：42"));
    assert!(delivered(&mut s, "f1", SECS(15)), "{}", s.gw.log());
    let msgs = s.sim.messages();
    let mine = replies_to(&msgs, &q);
    assert_eq!(mine.len(), 2, "{msgs:?}");
    assert_eq!(mine[1].text(), "**结果**：42", "the final answer as a normal reply");
    assert!(mine[0].text().contains("完整回答见下一条消息"), "{}", mine[0].text());
    assert!(!card_of(&s, mine[0]).streaming, "the stale card is finished");
    let receipt: String =
        redis::cmd("GET").arg("at:channel:receipt:feishu:f1").query(&mut s.con).unwrap();
    assert!(receipt.contains(&mine[1].message_id), "{receipt}");
}

#[test]
fn rate_limits_flow_control_and_internal_errors_are_retried() {
    let mut s = setup();
    let q = ask(&mut s, "q");
    s.con_push(&item(&q, "p1", "progress", "正在查询…"));
    assert!(card_recorded(&mut s, &q), "{}", s.gw.log());
    s.sim.inject(Route::CardContent, Fault::code(429, 230020, "chat rate limit"));
    s.sim.inject(Route::CardContent, Fault::code(400, 11232, "send flow control"));
    s.sim.inject(Route::CardContent, Fault::code(500, 300120, "internal error"));
    s.con_push(&item(&q, "f1", "final", "**结果**：42"));
    assert!(delivered(&mut s, "f1", SECS(20)), "{}", s.gw.log());
    let msgs = s.sim.messages();
    let mine = replies_to(&msgs, &q);
    assert_eq!(mine.len(), 1, "retried, not treated as target gone: {msgs:?}");
    assert_eq!(mine[0].text(), "**结果**：42");
    assert!(s.gw.log().contains("retrying"), "{}", s.gw.log());
}

/// 300317 is a bug signal: logged, a fresh sequence well past Feishu's.
#[test]
fn a_sequence_feishu_refuses_is_logged_and_recovered() {
    let mut s = setup();
    let q = ask(&mut s, "q");
    s.con_push(&item(&q, "p1", "progress", "正在查询…"));
    assert!(card_recorded(&mut s, &q), "{}", s.gw.log());
    // A failover rolled the sequence back: Redis forgets it.
    let key = format!("at:channel:stream:feishu:feishu:{APP}:{}", q.message_id);
    s.con_push(&item(&q, "p2", "progress", "正在查询… 华东区"));
    assert!(wait_for(SECS(5), || s.sim.messages()[0].text().contains("华东区")));
    redis::cmd("HSET").arg(&key).arg("seq").arg(0).query::<()>(&mut s.con).unwrap();
    s.con_push(&item(&q, "f1", "final", "**结果**：42"));
    assert!(delivered(&mut s, "f1", SECS(15)), "{}", s.gw.log());
    let msgs = s.sim.messages();
    assert_eq!(replies_to(&msgs, &q).len(), 1);
    assert_eq!(msgs[0].text(), "**结果**：42");
    assert!(s.gw.log().contains("refused sequence"), "{}", s.gw.log());
}

#[test]
fn too_many_tables_are_shown_as_monospace_blocks() {
    let mut s = setup();
    let q = ask(&mut s, "q");
    s.con_push(&item(&q, "p1", "progress", "正在查询…"));
    assert!(card_recorded(&mut s, &q), "{}", s.gw.log());
    // Feishu's real table limit is lower than the render's (3 in practice).
    s.sim.inject(
        Route::CardContent,
        Fault::code(400, 230099, "Failed to create card content, ext=ErrCode: 11310; ErrMsg: card table number over limit"),
    );
    let table = "| 省份 | 销售额 |\n|---|---|\n| 上海 | 512 |";
    let answer = [table; 4].join("\n\n");
    s.con_push(&item(&q, "f1", "final", &answer));
    assert!(delivered(&mut s, "f1", SECS(15)), "{}", s.gw.log());
    let msgs = s.sim.messages();
    let mine = replies_to(&msgs, &q);
    assert_eq!(mine.len(), 1, "{msgs:?}");
    let text = mine[0].text();
    assert!(text.contains("上海") && !text.contains("|---|"), "{text}");
}

#[test]
fn a_long_streamed_answer_continues_in_the_next_card_without_splitting_blocks() {
    let mut s = setup();
    let q = ask(&mut s, "q");
    // A table in every other section: fewer than five per card, the
    // render's limit (beyond it tables become monospace blocks).
    let block = |i: usize| {
        let table = if i.is_multiple_of(2) {
            format!("| 省份 | 销售额 |\n|---|---|\n| 上海 | {i} |\n\n")
        } else {
            String::new()
        };
        format!(
            "### 第 {i} 节\n\n```sql\nselect province, sum(amount) from sales where part = {i}\n```\n\n{table}{}",
            "说明文字。".repeat(120)
        )
    };
    let text = |n: usize| (1..=n).map(block).collect::<Vec<_>>().join("\n\n");
    // About 2.3 KB a section: 20 sections pass one card's 20 KB of Markdown.
    for n in [2, 6, 10, 14, 18, 22, 26] {
        s.con_push(&item(&q, &format!("p{n}"), "progress", &text(n)));
        std::thread::sleep(Duration::from_millis(400));
    }
    s.con_push(&item(&q, "f1", "final", &text(30)));
    assert!(delivered(&mut s, "f1", SECS(20)), "{}", s.gw.log());
    let msgs = s.sim.messages();
    let mine = replies_to(&msgs, &q);
    assert!(mine.len() >= 2, "continued in another card: {}", mine.len());
    let shown: Vec<String> = mine.iter().map(|m| m.text()).collect();
    for t in &shown {
        assert_eq!(t.matches("```").count() % 2, 0, "a code fence split: {t}");
        assert_eq!(t.matches("| 上海").count(), t.matches("|---|").count(), "a table split: {t}");
    }
    let joined = shown.join("\n\n");
    if joined != text(30) {
        let (a, b) = (joined.as_bytes(), text(30));
        let at =
            a.iter().zip(b.as_bytes()).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        panic!(
            "lost or doubled at byte {at} of {}/{}: parts {:?}\n{}",
            a.len(),
            b.len(),
            shown.iter().map(String::len).collect::<Vec<_>>(),
            String::from_utf8_lossy(&a[at.saturating_sub(200)..(at + 200).min(a.len())])
        );
    }
    let streamed = mine.iter().filter(|m| m.card_id.is_some()).count();
    assert!(streamed >= 2, "the second card streamed too");
    for m in mine.iter().filter(|m| m.card_id.is_some()) {
        assert!(!card_of(&s, m).streaming, "every card finished");
    }
}

#[test]
fn without_the_cardkit_scope_progress_updates_a_message_card_and_check_says_so() {
    let mut s = setup();
    s.sim.console(APP, |c| {
        c.scopes.remove("cardkit:card:write");
    });
    for n in 0..2 {
        let q = ask(&mut s, "q");
        s.con_push(&item(&q, &format!("p{n}"), "progress", "正在查询…"));
        assert!(wait_for(SECS(10), || replies_to(&s.sim.messages(), &q).len() == 1));
        s.con_push(&item(&q, &format!("f{n}"), "final", "**结果**：42"));
        assert!(delivered(&mut s, &format!("f{n}"), SECS(15)), "{}", s.gw.log());
        let msgs = s.sim.messages();
        let mine = replies_to(&msgs, &q);
        assert_eq!(mine.len(), 1, "{msgs:?}");
        assert_eq!(mine[0].text(), "**结果**：42");
        assert!(mine[0].card_id.is_none() && mine[0].updates >= 1, "a PATCHed message card");
    }
    let creates =
        s.sim.requests().iter().filter(|r| r.path == "/open-apis/cardkit/v1/cards").count();
    assert_eq!(creates, 1, "remembered for the app, not asked again");
    assert_eq!(s.gw.log().matches("CardKit is not available").count(), 1, "logged once");
    let out = run_cli(&s.redis.url(), Some(&s.sim), &["check"], &[], "");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("stream answers")).unwrap_or_default();
    assert!(line.contains("stopped streaming") && line.contains("99991672"), "{text}");
}

#[test]
fn check_says_whether_answers_stream() {
    let s = setup();
    let out = run_cli(&s.redis.url(), Some(&s.sim), &["check"], &[], "");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("stream answers")).unwrap_or_default();
    assert!(line.contains("stream into CardKit cards"), "{text}");
    s.sim.console(APP, |c| {
        c.scopes.remove("cardkit:card:write");
    });
    let out = run_cli(&s.redis.url(), Some(&s.sim), &["check"], &[], "");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("stream answers")).unwrap_or_default();
    assert!(line.contains("cardkit:card:write not granted"), "{text}");
    assert!(out.status.success(), "a missing streaming scope is not a failure: {text}");
}

#[test]
fn two_replicas_stream_one_answer() {
    let mut s = setup();
    let gw2 = start_gateway(&s.redis.url(), &s.sim, "gw-stream-2", &[("TYPING_REACTION", "")]);
    assert!(s.sim.wait_connections(APP, 2, SECS(10)), "{}", gw2.log());
    let q = ask(&mut s, "q");
    for i in 1..=30 {
        s.con_push(&item(&q, &format!("p{i}"), "progress", &typed(i)));
        std::thread::sleep(Duration::from_millis(40));
    }
    s.con_push(&item(&q, "f1", "final", &typed(31)));
    assert!(delivered(&mut s, "f1", SECS(20)), "{}\n{}", s.gw.log(), gw2.log());
    let msgs = s.sim.messages();
    let mine = replies_to(&msgs, &q);
    assert_eq!(mine.len(), 1, "{msgs:?}");
    assert_eq!(mine[0].text(), typed(31));
    let card = card_of(&s, mine[0]);
    assert!(!card.streaming);
    assert!(card.peak_ops_per_second() <= 10, "{:?}", card.ops);
}

#[test]
fn killed_in_the_middle_of_a_stream_the_answer_still_ends_complete_once() {
    let mut s = setup();
    let q = ask(&mut s, "q");
    for i in 1..=5 {
        s.con_push(&item(&q, &format!("p{i}"), "progress", &typed(i)));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(wait_for(SECS(5), || s.sim.messages().first().is_some_and(|m| m.text() == typed(5))));
    // The next write hangs in Feishu; the gateway dies meanwhile.
    s.sim.inject(Route::CardContent, Fault::Delay(SECS(3)));
    s.con_push(&item(&q, "p6", "progress", &typed(6)));
    std::thread::sleep(Duration::from_millis(500));
    s.gw.kill9();
    s.con_push(&item(&q, "f1", "final", &typed(7)));
    let gw2 = start_gateway(&s.redis.url(), &s.sim, INSTANCE, &[("TYPING_REACTION", "")]);
    assert!(delivered(&mut s, "f1", SECS(20)), "{}", gw2.log());
    let msgs = s.sim.messages();
    let mine = replies_to(&msgs, &q);
    assert_eq!(mine.len(), 1, "{msgs:?}");
    assert_eq!(mine[0].text(), typed(7));
    assert!(!card_of(&s, mine[0]).streaming);
}

#[test]
fn an_error_answer_ends_the_stream_and_comes_as_its_own_reply() {
    let mut s = setup();
    let q = ask(&mut s, "q");
    s.con_push(&item(&q, "p1", "progress", "正在查询华东区…"));
    assert!(s.sim.wait_messages(1, SECS(10)), "{}", s.gw.log());
    let mut err: serde_json::Value = serde_json::from_str(&item(&q, "e1", "final", "x")).unwrap();
    err["status"] = json!("error");
    err["error"] = json!({"message": "数据源连接失败"});
    s.con_push(&err.to_string());
    assert!(delivered(&mut s, "e1", SECS(15)), "{}", s.gw.log());
    let msgs = s.sim.messages();
    let mine = replies_to(&msgs, &q);
    assert_eq!(mine.len(), 2, "{msgs:?}");
    assert_eq!(mine[0].text(), "正在查询华东区…", "the card keeps its text");
    let card = card_of(&s, mine[0]);
    assert!(!card.streaming, "and is no longer being written");
    assert_eq!(card.summary(), "数据源连接失败");
    assert_eq!(mine[1].text(), "数据源连接失败");
}
