//! Broken infrastructure and broken threads (issue 11): a hung Feishu app
//! holds up no other app's answers, and every long-lived thread survives a
//! panic, counted and logged, without losing what it held.

use crate::support;

use serde_json::json;
use support::*;

const FAST: &str = "cli_fa5700000000000a";
const SLOW: &str = "cli_510w00000000000b";

#[test]
fn a_hung_app_holds_up_no_other_apps_answers() {
    let (redis, sim, mut con) = world(&[("ch_s", SLOW, "s1"), ("ch_f", FAST, "s2")]);
    let gw = start_gateway(&redis.url(), &sim, "gw-iso", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(SLOW, 1, SECS(10)) && sim.wait_connections(FAST, 1, SECS(10)));
    // Every call of the slow app outlasts the client's timeout.
    sim.slow_app(SLOW, SECS(60));
    // 40 answers for the slow app over 8 chats (5 each), queued first...
    for i in 0..40 {
        let mut item = answer(&format!("s{i}"), "ch_s", "", &format!("oc_slow{}", i % 8), "slow");
        item["in_reply_to"] = json!(format!("q-s{i}"));
        push_outbound(&mut con, &item.to_string());
    }
    // ...then one answer in each of 8 chats of the other app.
    for i in 0..8 {
        let q = MessageEvent::text(FAST, &format!("q{i}"));
        assert!(sim.wait_acked(sim.push_event(FAST, &q.json()), SECS(5)));
        let item =
            answer(&format!("f{i}"), "ch_f", &q.message_id, &q.chat_id, &format!("fast {i}"));
        push_outbound(&mut con, &item.to_string());
    }
    assert!(
        sim.wait_until(SECS(30), |s| s.messages().iter().filter(|m| m.app_id == FAST).count() == 8),
        "the fast app's answers were held up:\n{}",
        gw.log()
    );
    // Nothing of the slow app was dropped meanwhile: its items are still held.
    let held = |con: &mut redis::Connection| {
        llen(con, "at:channel:outbound:feishu:processing:gw-iso")
            + llen(con, "at:channel:outbound:feishu")
    };
    assert!(wait_for(SECS(5), || held(&mut con) == 40), "{}", gw.log());
    assert!(dead_letters(&mut con).is_empty());
}

#[test]
fn one_hung_chat_holds_up_no_other_chat_of_the_same_app() {
    let (redis, sim, mut con) = world(&[("ch_f", FAST, "s2")]);
    let gw = start_gateway(&redis.url(), &sim, "gw-chat", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(FAST, 1, SECS(10)));
    // A chat with 40 answers whose target message never answers in time:
    // replies to it hang (a delayed fault per call would also do).
    let q = MessageEvent::text(FAST, "q");
    assert!(sim.wait_acked(sim.push_event(FAST, &q.json()), SECS(5)));
    for i in 0..40 {
        sim.inject(feishu_sim::Route::Reply, feishu_sim::Fault::Delay(SECS(60)));
        let mut item = answer(&format!("h{i}"), "ch_f", &q.message_id, &q.chat_id, "held");
        item["in_reply_to"] = json!(format!("q-h{i}"));
        push_outbound(&mut con, &item.to_string());
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Answers for other chats go as new messages (no reply call to hang).
    for i in 0..8 {
        let item = answer(&format!("o{i}"), "ch_f", "", &format!("oc_other{i}"), "other");
        push_outbound(&mut con, &item.to_string());
    }
    assert!(
        sim.wait_until(SECS(30), |s| s.messages().iter().filter(|m| m.text() == "other").count()
            == 8),
        "other chats were held up by one chat:\n{}",
        gw.log()
    );
}

#[test]
fn a_panicking_reply_worker_dead_letters_that_item_and_goes_on() {
    let (redis, sim, mut con) = world(&[("ch_f", FAST, "s2")]);
    let env = [("TYPING_REACTION", ""), ("GATEWAY_FAULTS", "panic:reply")];
    let gw = start_gateway(&redis.url(), &sim, "gw-p1", &env);
    assert!(sim.wait_connections(FAST, 1, SECS(10)));
    let q = MessageEvent::text(FAST, "q");
    assert!(sim.wait_acked(sim.push_event(FAST, &q.json()), SECS(5)));
    push_outbound(&mut con, &answer("a1", "ch_f", &q.message_id, &q.chat_id, "one").to_string());
    assert!(wait_for(SECS(10), || dead_letters(&mut con).len() == 1), "{}", gw.log());
    let dead = dead_letters(&mut con);
    assert!(dead[0]["reason"].as_str().unwrap().contains("internal error"), "{dead:?}");
    assert!(gw.log().contains("panicked (fault injected at reply"), "{}", gw.log());
    // Every worker still works (the next items land on all of them).
    for i in 0..16 {
        let item = answer(&format!("b{i}"), "ch_f", "", &format!("oc_{i}"), &format!("n{i}"));
        push_outbound(&mut con, &item.to_string());
    }
    assert!(sim.wait_messages(16, SECS(15)), "{}", gw.log());
    assert!(
        wait_for(SECS(5), || llen(&mut con, "at:channel:outbound:feishu:processing:gw-p1") == 0)
    );
}

#[test]
fn every_long_lived_thread_survives_a_panic() {
    let (redis, sim, mut con) = world(&[("ch_f", FAST, "s2")]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = [
        ("METRICS_ADDR", addr.as_str()),
        ("GATEWAY_FAULTS", "panic:outbound-pop,panic:typing,panic:config-watch,panic:metrics"),
    ];
    let gw = start_gateway(&redis.url(), &sim, "gw-p2", &env);
    assert!(sim.wait_connections(FAST, 1, SECS(10)));
    // outbound-pop panics while handing out the first item: the item stays
    // in the processing list and the restarted thread delivers it.
    let q = MessageEvent::text(FAST, "q");
    assert!(sim.wait_acked(sim.push_event(FAST, &q.json()), SECS(5)));
    push_outbound(&mut con, &answer("a1", "ch_f", &q.message_id, &q.chat_id, "one").to_string());
    assert!(
        sim.wait_until(SECS(15), |s| s.messages().iter().any(|m| m.text() == "one")),
        "{}",
        gw.log()
    );
    // typing panicked on the first question; the second gets its reaction.
    let q2 = MessageEvent::text(FAST, "q2");
    assert!(sim.wait_acked(sim.push_event(FAST, &q2.json()), SECS(5)));
    assert!(
        sim.wait_until(SECS(10), |s| s.reactions().iter().any(|r| r.message_id == q2.message_id)),
        "{}",
        gw.log()
    );
    // config-watch panics on the first announcement, re-subscribes, and
    // the change is still applied.
    const NEW: &str = "cli_new0000000000000c";
    sim.add_app(NEW, "s3");
    put_channel(&mut con, "ch_new", &channel("ch_new", NEW, "s3"));
    assert!(sim.wait_connections(NEW, 1, SECS(15)), "{}", gw.log());
    // metrics panics on its first client; the next is served.
    let _ = get(port, "/healthz");
    assert!(wait_for(SECS(5), || get(port, "/healthz").0 == 200), "{}", gw.log());
    let body = get(port, "/metrics").1;
    for thread in ["outbound-pop", "typing", "config-watch", "metrics"] {
        let series = format!("feishu_gateway_thread_restarts_total{{thread=\"{thread}\"}}");
        assert_eq!(metric(&body, &series), Some(1.0), "{series}\n{body}");
        assert!(gw.log().contains(&format!("thread {thread} panicked")), "{}", gw.log());
    }
    assert!(dead_letters(&mut con).is_empty());
}
