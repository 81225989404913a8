//! End to end, chat events and follow-ups: the welcome message when the bot
//! is added to a group or a user opens the one-on-one chat (once per chat,
//! across replicas and restarts), other event types acknowledged and
//! ignored, and suggested questions as follow-up bubbles where Feishu
//! allows them.

use crate::support;

use feishu_sim::SentMessage;
use feishu_sim::events::{bot_added_to, chat_event, p2p_entered};
use serde_json::json;
use std::time::Duration;
use support::*;

const APP: &str = "cli_0123456789abcdef";
const SECRET: &str = "chats-secret";
const WELCOME: &str = "你好！我是 **AskTable**，用中文问我数据问题。";

fn world_with(sim: Sim, welcome: Option<&str>) -> (RedisServer, Sim, redis::Connection) {
    let redis = RedisServer::start();
    let mut con = redis.con();
    sim.add_app(APP, SECRET);
    let mut cfg = channel("ch_1", APP, SECRET);
    if let Some(w) = welcome {
        cfg["welcome_message"] = json!(w);
    }
    put_channel(&mut con, "ch_1", &cfg);
    (redis, sim, con)
}

fn to_chat<'a>(msgs: &'a [SentMessage], chat: &str) -> Vec<&'a SentMessage> {
    msgs.iter().filter(|m| m.chat_id.as_deref() == Some(chat)).collect()
}

fn push_acked(sim: &Sim, payload: &str) {
    let push = sim.push_event(APP, payload);
    assert!(sim.wait_acked(push, SECS(10)), "event not acknowledged with 200");
    assert!(sim.acks(push).iter().all(|a| a.code == 200), "{:?}", sim.acks(push));
}

#[test]
fn the_welcome_goes_once_to_each_chat_across_replicas_and_restarts() {
    let (redis, sim, _con) = world_with(sim(), Some(WELCOME));
    let mut gw1 = start_gateway(&redis.url(), &sim, "gw-a", &[("TYPING_REACTION", "")]);
    let gw2 = start_gateway(&redis.url(), &sim, "gw-b", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 2, SECS(10)), "{}", gw1.log());
    let (group, p2p) = ("oc_group_1", "oc_p2p_1");
    // Feishu sends each twice (another event id each time), to either replica.
    for _ in 0..2 {
        push_acked(&sim, &bot_added_to(APP, group));
        push_acked(&sim, &p2p_entered(APP, p2p));
    }
    assert!(wait_for(SECS(10), || to_chat(&sim.messages(), group).len() == 1
        && to_chat(&sim.messages(), p2p).len() == 1));
    // A restart, and the user opens the chat again.
    gw1.signal("TERM");
    assert!(gw1.wait_exit(SECS(10)).is_some());
    let gw3 = start_gateway(&redis.url(), &sim, "gw-a", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 2, SECS(10)));
    push_acked(&sim, &p2p_entered(APP, p2p));
    push_acked(&sim, &bot_added_to(APP, group));
    std::thread::sleep(Duration::from_secs(2));
    let msgs = sim.messages();
    for chat in [group, p2p] {
        let got = to_chat(&msgs, chat);
        assert_eq!(got.len(), 1, "one welcome in {chat}: {msgs:?}\n{}", gw2.log());
        assert_eq!(got[0].msg_type, "interactive", "formatted as a card");
        assert_eq!(got[0].text(), WELCOME);
        assert!(got[0].reply_to.is_none(), "a message to the chat, not a reply");
        // Queued once: the marker, not only Feishu's uuid (an hour), keeps it single.
        let logs = [gw1.log(), gw2.log(), gw3.log()].concat();
        let queued = logs.matches(&format!("welcome queued for chat {chat}")).count();
        assert_eq!(queued, 1, "{logs}");
    }
}

#[test]
fn without_a_welcome_message_chat_events_and_other_types_are_acked_and_ignored() {
    let (redis, sim, _con) = world_with(sim(), None);
    let gw = start_gateway(&redis.url(), &sim, "gw-c", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)), "{}", gw.log());
    push_acked(&sim, &bot_added_to(APP, "oc_g"));
    push_acked(&sim, &p2p_entered(APP, "oc_p"));
    for t in ["im.chat.member.bot.deleted_v1", "im.message.reaction.created_v1", "x.y.z_v9"] {
        push_acked(&sim, &chat_event(APP, t, json!({"chat_id": "oc_g"})));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(sim.messages().is_empty(), "{:?}", sim.messages());
    // A welcome configured later (in place, no reconnect) applies.
    let mut con = redis.con();
    let mut cfg = channel("ch_1", APP, SECRET);
    cfg["welcome_message"] = json!("Hi");
    put_channel(&mut con, "ch_1", &cfg);
    publish(&mut con, "ch_1");
    assert!(wait_for(SECS(10), || {
        push_acked(&sim, &bot_added_to(APP, "oc_g2"));
        to_chat(&sim.messages(), "oc_g2").len() == 1
    }));
    assert_eq!(sim.total_connects(APP), 1, "no reconnect for a welcome change");
}

fn final_with_follow_ups(q: &MessageEvent, id: &str, follow_ups: serde_json::Value) -> String {
    let mut a = answer(id, "ch_1", &q.message_id, &q.chat_id, "**合计**：1,284 万元");
    a["in_reply_to"] = json!(format!("feishu:{APP}:{}", q.message_id));
    a["content"]["follow_ups"] = follow_ups;
    a.to_string()
}

#[test]
fn suggested_questions_become_follow_up_bubbles_in_one_on_one_chats_only() {
    let (redis, sim, mut con) = world_with(sim(), None);
    let gw = start_gateway(&redis.url(), &sim, "gw-f", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)), "{}", gw.log());
    // One-on-one: the bubbles go under the answer (too long ones and
    // extras are left out).
    let q = MessageEvent::text(APP, "上个月华东区销售额？");
    push_acked(&sim, &q.json());
    let mut asked: Vec<String> = (1..=7).map(|i| format!("按省份 {i}？")).collect();
    asked.insert(1, "长".repeat(101));
    push_outbound(&mut con, &final_with_follow_ups(&q, "f1", json!(asked)));
    assert!(gw.wait_log("follow-up question(s) shown", SECS(10)), "{}", gw.log());
    let msgs = sim.messages();
    let answer = msgs.iter().find(|m| m.reply_to.as_deref() == Some(&q.message_id)).unwrap();
    let want: Vec<String> = (1..=5).map(|i| format!("按省份 {i}？")).collect();
    assert_eq!(answer.follow_ups, want);
    // A group: not even asked.
    let bot = sim.bot_open_id(APP).unwrap();
    let g = MessageEvent::text(APP, "@_user_1 销售额？")
        .in_group("oc_grp")
        .mention("@_user_1", &bot, "Bot");
    push_acked(&sim, &g.json());
    push_outbound(&mut con, &final_with_follow_ups(&g, "f2", json!(["再问一个？"])));
    assert!(gw.wait_log("item f2 delivered", SECS(10)), "{}", gw.log());
    std::thread::sleep(Duration::from_millis(500));
    let pushes = sim.requests().iter().filter(|r| r.path.ends_with("/push_follow_up")).count();
    assert_eq!(pushes, 1, "no push_follow_up for a group answer");
    // A wrong type is a bad item, as the schema says.
    push_outbound(&mut con, &final_with_follow_ups(&q, "f3", json!("not a list")));
    assert!(wait_for(SECS(10), || dead_letters(&mut con).len() == 1), "{}", gw.log());
}

#[test]
fn follow_ups_feishu_refuses_are_skipped_and_the_answer_stands() {
    let sim = Sim::start(SimOptions {
        ping_interval: 2,
        follow_up_window: Duration::ZERO,
        ..SimOptions::default()
    });
    let (redis, sim, mut con) = world_with(sim, None);
    let gw = start_gateway(&redis.url(), &sim, "gw-g", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)), "{}", gw.log());
    let q = MessageEvent::text(APP, "q");
    push_acked(&sim, &q.json());
    push_outbound(&mut con, &final_with_follow_ups(&q, "f1", json!(["再问？"])));
    assert!(gw.wait_log("follow-up questions of item f1 not shown", SECS(10)), "{}", gw.log());
    let msgs = sim.messages();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].follow_ups.is_empty());
    let receipt: String =
        redis::cmd("GET").arg("at:channel:receipt:feishu:f1").query(&mut con).unwrap();
    assert!(receipt.contains("delivered"), "{receipt}");
}
