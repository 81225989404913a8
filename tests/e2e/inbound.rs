//! End to end, inbound: the simulator pushes events over the real protocol,
//! the gateway binary stores them in a real redis-server and acknowledges.

use crate::support;

use serde_json::json;
use support::*;

/// One app, one channel, one gateway: the common setup.
struct Setup {
    redis: RedisServer,
    sim: Sim,
    gw: Gateway,
    con: redis::Connection,
    bot: String,
}

const APP: &str = "cli_a1b2c3d4e5f6a7b8";
const SECRET: &str = "app-secret-do-not-log-9f8e7d";

fn setup_with(config: serde_json::Value, env: &[(&str, &str)]) -> Setup {
    let redis = RedisServer::start();
    let sim = sim();
    let bot = sim.add_app(APP, SECRET);
    let mut con = redis.con();
    put_channel(&mut con, "ch_1", &config);
    let gw = start_gateway(&redis.url(), &sim, "gw-test", env);
    assert!(sim.wait_connections(APP, 1, SECS(10)), "no connection:\n{}", gw.log());
    Setup { redis, sim, gw, con, bot }
}

fn setup() -> Setup {
    setup_with(channel("ch_1", APP, SECRET), &[])
}

#[test]
fn p2p_text_is_stored_with_every_field_and_acked() {
    let mut s = setup();
    let ev = MessageEvent::text(APP, "  上个月华东区的销售额是多少？ ");
    let push = s.sim.push_event(APP, &ev.json());
    assert!(s.sim.wait_acked(push, SECS(5)), "not acked:\n{}", s.gw.log());
    let items = inbound(&mut s.con);
    assert_eq!(items.len(), 1);
    let item = &items[0];
    let ts = item["ts"].as_u64().unwrap();
    assert!(ts >= ev.create_time);
    assert_eq!(
        item,
        &json!({
            "schema": "at.channel.inbound", "v": 1,
            "id": format!("feishu:{APP}:{}", ev.message_id), "ts": ts,
            "channel_type": "feishu", "channel_id": "ch_1", "agent_id": "agent_x1", "project_id": "proj_7",
            "session_key": format!("feishu:ch_1:{}", ev.sender_open_id),
            "sender": {"open_id": ev.sender_open_id, "union_id": format!("on_{}", &ev.sender_open_id[3..]),
                       "user_id": null, "tenant_key": "736588c9260f175e", "sender_type": "user"},
            "chat": {"chat_id": ev.chat_id, "chat_type": "p2p"},
            "message": {"message_id": ev.message_id, "root_id": null, "parent_id": null, "thread_id": null,
                        "create_time": ev.create_time, "msg_type": "text"},
            "question": "上个月华东区的销售额是多少？",
            "mentions": [],
            "event_id": ev.event_id,
        })
    );
    // The ack echoes the frame's headers, adds biz_rt and carries code 200.
    let acks = s.sim.acks(push);
    assert_eq!(acks.len(), 1);
    let h = &acks[0].headers;
    assert!(h.iter().any(|(k, v)| k == "type" && v == "event"));
    assert!(h.iter().any(|(k, _)| k == "trace_id"));
    assert!(h.last().is_some_and(|(k, v)| k == "biz_rt" && v.parse::<u64>().is_ok()), "{h:?}");
    // The dedup marker exists with the configured TTL.
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("at:channel:dedup:feishu:{APP}:{}", ev.message_id))
        .query(&mut s.con)
        .unwrap();
    assert!(ttl > 86_000 && ttl <= 86_400, "{ttl}");
    let _ = &s.redis;
}

#[test]
fn group_messages_follow_the_mention_policy() {
    let mut s = setup();
    let without = MessageEvent::text(APP, "@_user_1 what about Q3?")
        .in_group("oc_g1")
        .mention("@_user_1", "ou_alice", "Alice");
    let with = MessageEvent::text(APP, "@_user_1 Q3 sales, cc @_user_2")
        .in_group("oc_g1")
        .mention("@_user_1", &s.bot, "AskBot")
        .mention("@_user_2", "ou_alice", "Alice");
    let p1 = s.sim.push_event(APP, &without.json());
    let p2 = s.sim.push_event(APP, &with.json());
    assert!(s.sim.wait_acked(p1, SECS(5)) && s.sim.wait_acked(p2, SECS(5)));
    let items = inbound(&mut s.con);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["question"], "Q3 sales, cc @Alice");
    assert_eq!(items[0]["mentions"], json!([{"name": "Alice", "open_id": "ou_alice"}]));
    assert_eq!(items[0]["chat"], json!({"chat_id": "oc_g1", "chat_type": "group"}));

    // group_policy "all", applied in place without reconnecting.
    let mut cfg = channel("ch_1", APP, SECRET);
    cfg["group_policy"] = json!("all");
    put_channel(&mut s.con, "ch_1", &cfg);
    assert!(s.gw.wait_log("applied in place", SECS(5)), "{}", s.gw.log());
    let again = MessageEvent::text(APP, "@_user_1 and Q4?")
        .in_group("oc_g1")
        .mention("@_user_1", "ou_alice", "Alice");
    let p3 = s.sim.push_event(APP, &again.json());
    assert!(s.sim.wait_acked(p3, SECS(5)));
    let items = inbound(&mut s.con);
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["question"], "@Alice and Q4?");
    assert_eq!(s.sim.total_connects(APP), 1, "a group_policy change must not reconnect");
}

#[test]
fn post_message_is_flattened() {
    let mut s = setup();
    let content = json!({"title": "季度复盘", "content": [
        [{"tag": "at", "user_id": "@_user_1", "user_name": "AskBot"}, {"tag": "text", "text": " 按 "},
         {"tag": "text", "text": "省份", "style": ["bold"]}, {"tag": "text", "text": " 汇总"}],
        [{"tag": "img", "image_key": "img_v2_1"}],
        [{"tag": "a", "text": "报表", "href": "https://bi.example/r/1"}]
    ]});
    let ev = MessageEvent::of_type(APP, "post", content)
        .in_group("oc_g")
        .mention("@_user_1", &s.bot, "AskBot");
    let push = s.sim.push_event(APP, &ev.json());
    assert!(s.sim.wait_acked(push, SECS(5)));
    let items = inbound(&mut s.con);
    assert_eq!(items[0]["question"], "季度复盘\n按 省份 汇总\n\n报表 (https://bi.example/r/1)");
    assert_eq!(items[0]["message"]["msg_type"], "post");
}

#[test]
fn redelivered_event_is_stored_once_even_across_a_restart() {
    let mut s = setup();
    let ev = MessageEvent::text(APP, "how many orders?");
    let p1 = s.sim.push_event(APP, &ev.json());
    let p2 = s.sim.push_event(APP, &ev.json());
    assert!(s.sim.wait_acked(p1, SECS(5)) && s.sim.wait_acked(p2, SECS(5)));
    assert_eq!(inbound(&mut s.con).len(), 1);
    assert!(s.gw.wait_log("was already stored", SECS(2)));
    // A new gateway process (same Redis) still knows the message.
    s.gw.kill9();
    assert!(s.sim.wait_connections(APP, 0, SECS(5)));
    let gw2 = start_gateway(&s.redis.url(), &s.sim, "gw-test", &[]);
    assert!(s.sim.wait_connections(APP, 1, SECS(10)));
    let p3 = s.sim.push_event(APP, &ev.json());
    assert!(s.sim.wait_acked(p3, SECS(5)), "{}", gw2.log());
    assert_eq!(inbound(&mut s.con).len(), 1);
}

#[test]
fn app_senders_stale_non_text_and_other_events_are_acked_not_stored() {
    let mut s = setup();
    // Older than MAX_MESSAGE_AGE (12 h by default).
    let old = feishu_sim::now_ms() - 13 * 3_600_000;
    let pushes = [
        s.sim.push_event(APP, &MessageEvent::text(APP, "from a bot").sent_by_app().json()),
        s.sim.push_event(APP, &MessageEvent::text(APP, "old news").created_at(old).json()),
        s.sim.push_event(
            APP,
            &MessageEvent::of_type(APP, "image", json!({"image_key": "img_1"})).json(),
        ),
        s.sim.push_event(APP, &feishu_sim::events::bot_added(APP)),
        s.sim.push_event(APP, &MessageEvent::text(APP, "   ").json()),
    ];
    for p in pushes {
        assert!(s.sim.wait_acked(p, SECS(5)), "push {p} not acked:\n{}", s.gw.log());
        assert_eq!(s.sim.acks(p)[0].code, 200);
    }
    let good = s.sim.push_event(APP, &MessageEvent::text(APP, "real question").json());
    assert!(s.sim.wait_acked(good, SECS(5)));
    let items = inbound(&mut s.con);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["question"], "real question");
    assert!(
        s.gw.log().lines().any(|l| l.contains("INFO") && l.contains("older than MAX_MESSAGE_AGE")),
        "a stale skip is logged at info with its event: {}",
        s.gw.log()
    );
}

/// Found by an independent fault harness (issue 11): Feishu redelivers a
/// refused event after 15 s, 5 min, 1 h and 6 h; with the old 2-hour
/// MAX_MESSAGE_AGE the 6-hour redelivery after a long Redis outage was
/// acknowledged and dropped.
#[test]
fn an_event_redelivered_six_hours_later_is_still_stored() {
    let mut s = setup();
    let six_hours_ago = feishu_sim::now_ms() - 6 * 3_600_000 - 5 * 60_000;
    let p = s.sim.push_event(
        APP,
        &MessageEvent::text(APP, "asked at dawn").created_at(six_hours_ago).json(),
    );
    assert!(s.sim.wait_acked(p, SECS(5)), "{}", s.gw.log());
    let items = inbound(&mut s.con);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["question"], "asked at dawn");
}

#[test]
fn fragmented_event_is_reassembled() {
    let mut s = setup();
    let long = "销售额 ".repeat(400);
    let ev = MessageEvent::text(APP, &long);
    let push = s.sim.push_event_in_parts(APP, &ev.json(), 4);
    assert!(s.sim.wait_acked(push, SECS(5)), "{}", s.gw.log());
    assert_eq!(s.sim.acks(push).len(), 1, "only the completing fragment is acked");
    let items = inbound(&mut s.con);
    assert_eq!(items[0]["question"], long.trim());
}

#[test]
fn encrypted_event_is_decrypted_with_the_encrypt_key() {
    let key = "encrypt-key-do-not-log-5a4b";
    let mut cfg = channel("ch_1", APP, SECRET);
    cfg["encrypt_key"] = json!(key);
    let mut s = setup_with(cfg, &[]);
    let ev = MessageEvent::text(APP, "encrypted question");
    let wrapped =
        json!({"encrypt": asktable_feishu_gateway::feishu::crypto::encrypt(key, &ev.json())})
            .to_string();
    let push = s.sim.push_event(APP, &wrapped);
    assert!(s.sim.wait_acked(push, SECS(5)));
    assert_eq!(inbound(&mut s.con)[0]["question"], "encrypted question");
    assert_eq!(state(&mut s.con, "ch_1").as_deref(), Some("connected"));
}

/// Issue 13: an event the channel cannot decrypt was acknowledged and
/// dropped, so a wrong Encrypt Key lost every message for good. Now it is
/// refused (500), the status names the Encrypt Key, and once the key is
/// fixed Feishu's redelivery is stored, once.
#[test]
fn an_event_encrypted_with_another_key_is_refused_until_the_key_is_fixed() {
    let mut cfg = channel("ch_1", APP, SECRET);
    cfg["encrypt_key"] = json!("the-old-wrong-key");
    let mut s = setup_with(cfg.clone(), &[]);
    let ev = MessageEvent::text(APP, "encrypted with the app's real key");
    let sealed = json!({"encrypt": asktable_feishu_gateway::feishu::crypto::encrypt("the-real-key", &ev.json())});
    let push = s.sim.push_event(APP, &sealed.to_string());
    assert!(s.sim.wait_until(SECS(10), |sim| sim.acks(push).len() >= 2), "{}", s.gw.log());
    assert!(s.sim.acks(push).iter().all(|a| a.code == 500), "acknowledged without being stored");
    assert!(wait_for(SECS(5), || state(&mut s.con, "ch_1").as_deref() == Some("error")));
    let st = status(&mut s.con, "ch_1").unwrap();
    assert_eq!(st["last_error"]["code"], "encrypt_key", "{st}");
    assert!(st["last_error"]["message"].as_str().unwrap().contains("encrypt_key"), "{st}");
    assert!(inbound(&mut s.con).is_empty());
    // The operator fixes the key: the next delivery is stored, once.
    cfg["encrypt_key"] = json!("the-real-key");
    put_channel(&mut s.con, "ch_1", &cfg);
    assert!(s.sim.wait_acked(push, SECS(20)), "{}", s.gw.log());
    assert!(wait_for(SECS(5), || inbound(&mut s.con).len() == 1));
    std::thread::sleep(SECS(2));
    assert_eq!(inbound(&mut s.con).len(), 1);
    assert!(wait_for(SECS(10), || state(&mut s.con, "ch_1").as_deref() == Some("connected")));
    for secret in ["the-old-wrong-key", "the-real-key"] {
        assert!(!s.gw.log().contains(secret));
    }
}

#[test]
fn encrypted_event_without_a_key_is_refused_and_reported() {
    let mut s = setup();
    let ev = MessageEvent::text(APP, "q");
    let wrapped =
        json!({"encrypt": asktable_feishu_gateway::feishu::crypto::encrypt("k", &ev.json())})
            .to_string();
    let push = s.sim.push_event(APP, &wrapped);
    assert!(s.sim.wait_until(SECS(10), |sim| !sim.acks(push).is_empty()));
    assert!(s.sim.acks(push).iter().all(|a| a.code == 500));
    assert!(s.gw.wait_log("channel has no encrypt_key", SECS(2)), "{}", s.gw.log());
    assert!(wait_for(SECS(5), || state(&mut s.con, "ch_1").as_deref() == Some("error")));
    assert!(inbound(&mut s.con).is_empty());
}

#[test]
fn verification_token_mismatch_is_dropped() {
    let mut cfg = channel("ch_1", APP, SECRET);
    cfg["verification_token"] = json!("vt-right");
    let mut s = setup_with(cfg, &[]);
    let bad =
        s.sim.push_event(APP, &MessageEvent::text(APP, "forged").with_token("vt-wrong").json());
    let good =
        s.sim.push_event(APP, &MessageEvent::text(APP, "genuine").with_token("vt-right").json());
    let blank = s.sim.push_event(APP, &MessageEvent::text(APP, "over ws").json());
    assert!(
        s.sim.wait_acked(bad, SECS(5))
            && s.sim.wait_acked(good, SECS(5))
            && s.sim.wait_acked(blank, SECS(5))
    );
    let questions: Vec<_> =
        inbound(&mut s.con).iter().map(|i| i["question"].as_str().unwrap().to_owned()).collect();
    assert_eq!(questions, ["genuine", "over ws"]);
    assert!(s.gw.log().contains("verification token differs"));
}

#[test]
fn garbage_frames_then_a_good_event() {
    let mut s = setup();
    s.sim.send_raw(APP, &[0xff, 0xff, 0xff]);
    s.sim.send_raw(APP, b"");
    s.sim.send_text(APP, "hello?");
    // A data frame whose payload is not JSON: refused (Feishu's schedule
    // bounds its redeliveries), counted, and nothing else is affected.
    let bad_json = s.sim.push_event(APP, "{this is not json");
    assert!(s.sim.wait_until(SECS(5), |sim| !sim.acks(bad_json).is_empty()));
    assert!(s.sim.acks(bad_json).iter().all(|a| a.code == 500));
    let good = s.sim.push_event(APP, &MessageEvent::text(APP, "still alive?").json());
    assert!(s.sim.wait_acked(good, SECS(5)), "{}", s.gw.log());
    assert_eq!(inbound(&mut s.con).len(), 1);
    assert!(s.gw.log().contains("undecodable frame"));
    assert_eq!(s.sim.total_connects(APP), 1, "garbage must not cost the connection");
}

#[test]
fn closed_connection_is_reopened() {
    let mut s = setup();
    assert!(wait_for(SECS(5), || state(&mut s.con, "ch_1").as_deref() == Some("connected")));
    s.sim.drop_connections(APP);
    assert!(
        s.sim.wait_until(SECS(10), |sim| sim.total_connects(APP) == 2 && sim.connections(APP) == 1),
        "{}",
        s.gw.log()
    );
    assert_eq!(s.sim.endpoint_calls(APP), 2, "each reconnect asks for a fresh endpoint");
    let push = s.sim.push_event(APP, &MessageEvent::text(APP, "after reconnect").json());
    assert!(s.sim.wait_acked(push, SECS(5)));
    assert_eq!(inbound(&mut s.con).len(), 1);
    assert!(wait_for(SECS(5), || state(&mut s.con, "ch_1").as_deref() == Some("connected")));
}

#[test]
fn silent_dead_connection_is_detected() {
    let mut s = setup();
    assert!(wait_for(SECS(5), || state(&mut s.con, "ch_1").as_deref() == Some("connected")));
    s.sim.silence_connections(APP);
    // Ping interval 2 s, pong timeout 2 s: noticed within a few seconds.
    assert!(
        wait_for(SECS(10), || state(&mut s.con, "ch_1").as_deref() != Some("connected")),
        "status stayed connected on a dead connection:\n{}",
        s.gw.log()
    );
    let st = status(&mut s.con, "ch_1").unwrap();
    assert_eq!(st["last_error"]["code"], "dead_connection", "{st}");
    assert!(s.sim.wait_until(SECS(10), |sim| sim.total_connects(APP) == 2), "{}", s.gw.log());
    assert!(wait_for(SECS(5), || state(&mut s.con, "ch_1").as_deref() == Some("connected")));
    let push = s.sim.push_event(APP, &MessageEvent::text(APP, "back").json());
    assert!(s.sim.wait_acked(push, SECS(10)));
    assert_eq!(inbound(&mut s.con).len(), 1);
}

#[test]
fn status_and_heartbeat_are_written() {
    let mut s = setup();
    assert!(wait_for(SECS(5), || state(&mut s.con, "ch_1").as_deref() == Some("connected")));
    let st = status(&mut s.con, "ch_1").unwrap();
    assert_eq!(st["schema"], "at.channel.status");
    assert_eq!(st["v"], 1);
    assert_eq!(st["app_id"], APP);
    assert_eq!(st["instance_id"], "gw-test");
    assert_eq!(st["last_error"], serde_json::Value::Null);
    assert!(st["since"].as_u64().unwrap() > 0);
    let ttl: i64 =
        redis::cmd("TTL").arg("at:channel:status:feishu:ch_1").query(&mut s.con).unwrap();
    assert!((1..=3).contains(&ttl), "{ttl}");
    // Refreshed before it expires.
    std::thread::sleep(SECS(4));
    assert_eq!(state(&mut s.con, "ch_1").as_deref(), Some("connected"));
    let push = s.sim.push_event(APP, &MessageEvent::text(APP, "q").json());
    assert!(s.sim.wait_acked(push, SECS(5)));
    assert!(wait_for(SECS(5), || status(&mut s.con, "ch_1").unwrap()["last_event_at"]
        .as_u64()
        .is_some()));
    let hb: String =
        redis::cmd("GET").arg("at:channel:gateway:feishu:gw-test").query(&mut s.con).unwrap();
    let hb: serde_json::Value = serde_json::from_str(&hb).unwrap();
    assert_eq!(hb["schema"], "at.channel.gateway");
    assert_eq!(hb["channels"], json!(["ch_1"]));
    assert_eq!(hb["pid"], s.gw.pid());
}

#[test]
fn a_burst_is_stored_in_order_exactly_once() {
    let mut s = setup();
    let events: Vec<MessageEvent> =
        (0..300).map(|i| MessageEvent::text(APP, &format!("q{i:03}"))).collect();
    let mut pushes = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        pushes.push(s.sim.push_event(APP, &ev.json()));
        if i % 7 == 0 {
            // A redelivered copy right behind the original, and an event to skip.
            pushes.push(s.sim.push_event(APP, &ev.json()));
            pushes.push(s.sim.push_event(APP, &feishu_sim::events::bot_added(APP)));
        }
    }
    for p in &pushes {
        assert!(s.sim.wait_acked(*p, SECS(10)), "push {p} not acked:\n{}", s.gw.log());
    }
    assert!(pushes.iter().all(|p| s.sim.acks(*p).iter().all(|a| a.code == 200)));
    let questions: Vec<String> =
        inbound(&mut s.con).iter().map(|i| i["question"].as_str().unwrap().to_owned()).collect();
    let expected: Vec<String> = (0..300).map(|i| format!("q{i:03}")).collect();
    assert_eq!(questions, expected);
}

/// Asks `text` while Redis refuses the store, expects only 500 acks (and
/// `reason` in the log), then `fix`es Redis and expects the redelivery to
/// be stored exactly once.
fn refused_then_stored_once(
    sim: &Sim,
    gw: &Gateway,
    con: &mut redis::Connection,
    text: &str,
    reason: &str,
    fix: impl FnOnce(&mut redis::Connection),
) {
    let p = sim.push_event(APP, &MessageEvent::text(APP, text).json());
    assert!(
        wait_for(SECS(10), || sim.acks(p).iter().any(|a| a.code == 500)),
        "not refused: {}",
        gw.log()
    );
    assert!(sim.acks(p).iter().all(|a| a.code == 500), "acked while not stored");
    assert!(gw.log().contains(reason), "the reason is logged: {}", gw.log());
    fix(con);
    assert!(sim.wait_acked(p, SECS(10)), "{}", gw.log());
    let items = inbound(con);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["question"], text);
}

/// Found by an independent fault harness (issue 11): Redis does not roll a
/// script back, so when the inbound script's dedup marker was set and its
/// LPUSH then failed, the retry called the event a duplicate and acked it
/// 200: lost. Here the list has the wrong type until the operator fixes it.
#[test]
fn a_push_that_fails_half_way_is_refused_then_stored_once() {
    let mut s = setup();
    let _: () = redis::cmd("SET").arg("at:channel:inbound").arg("oops").query(&mut s.con).unwrap();
    refused_then_stored_once(&s.sim, &s.gw, &mut s.con, "wrongtype", "not a list", |con| {
        let _: () = redis::cmd("DEL").arg("at:channel:inbound").query(con).unwrap();
    });
}

/// The same with an ACL user that may run scripts and SET but not LPUSH
/// (issue 11): refused with 500 until the permission is granted.
#[test]
fn a_user_without_lpush_loses_nothing() {
    let (redis, sim, mut con) = world(&[("ch_1", APP, SECRET)]);
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "limited", "on", ">pw-limited", "~*", "&*", "+@all", "-lpush"])
        .query(&mut con)
        .unwrap();
    let url = redis.url().replacen("redis://", "redis://limited:pw-limited@", 1);
    let gw = start_gateway(&url, &sim, "gw-acl", &[]);
    assert!(sim.wait_connections(APP, 1, SECS(10)), "{}", gw.log());
    refused_then_stored_once(&sim, &gw, &mut con, "no lpush", "may not LPUSH", |con| {
        let _: () = redis::cmd("ACL").arg(&["SETUSER", "limited", "+lpush"]).query(con).unwrap();
    });
}

/// Found by peers (shared/feishu-protocol.md §12): Feishu has pushed the
/// same text again with a new `message_id` (and a new event id). It is
/// stored once; the same text sent again later, or elsewhere, is not a
/// duplicate.
#[test]
fn the_same_text_redelivered_with_a_new_message_id_is_stored_once() {
    let mut s = setup();
    let first = MessageEvent::text(APP, "同一个问题");
    let again = first.clone().with_new_ids();
    // Sent again a second later: a new question.
    let later =
        MessageEvent { create_time: first.create_time + 1000, ..again.clone() }.with_new_ids();
    // The same text at the same time in another topic: a new question.
    let topic =
        MessageEvent { thread_id: Some("omt_other".into()), ..first.clone() }.with_new_ids();
    for ev in [&first, &again, &later, &topic] {
        let push = s.sim.push_event(APP, &ev.json());
        assert!(s.sim.wait_acked(push, SECS(5)), "{}", s.gw.log());
    }
    let stored: Vec<String> = inbound(&mut s.con)
        .iter()
        .map(|i| i["message"]["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(!stored.contains(&again.message_id), "{stored:?}");
    // The new message id is remembered too: its own redelivery is a duplicate.
    let push = s.sim.push_event(APP, &again.json());
    assert!(s.sim.wait_acked(push, SECS(5)));
    assert_eq!(inbound(&mut s.con).len(), 3);
}
