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

#[test]
fn a_black_holed_redis_stalls_nothing_that_does_not_need_it() {
    use std::os::unix::net::UnixDatagram;
    let apps: Vec<(String, String, String)> = (0..20)
        .map(|i| (format!("ch_b{i}"), format!("cli_b1ack{i:012}"), format!("s{i}")))
        .collect();
    let refs: Vec<(&str, &str, &str)> =
        apps.iter().map(|(c, a, s)| (c.as_str(), a.as_str(), s.as_str())).collect();
    let (redis, sim, _con) = world(&refs);
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // Read every notification as it comes (as systemd does), with its time.
    let pings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = pings.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = sock.recv(&mut buf) {
            if &buf[..n] == b"WATCHDOG=1" {
                seen.lock().unwrap().push(std::time::Instant::now());
            }
        }
    });
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = [
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "2000000"),
        ("METRICS_ADDR", addr.as_str()),
        ("TYPING_REACTION", ""),
    ];
    let mut gw = start_gateway(&redis.url(), &sim, "gw-bh", &env);
    for (_, app, _) in &apps {
        assert!(sim.wait_connections(app, 1, SECS(15)), "{}", gw.log());
    }
    let connects: usize = apps.iter().map(|(_, a, _)| sim.total_connects(a)).sum();
    let hole = BlackHole::new(redis.port);
    // Watchdog pings (every second with WATCHDOG_USEC=2 s) keep coming.
    let watch_from = std::time::Instant::now();
    std::thread::sleep(SECS(10));
    let pings: Vec<std::time::Duration> = pings
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t >= watch_from)
        .map(|t| *t - watch_from)
        .collect();
    // Finding the established connection half-open takes one I/O timeout
    // (3 s) and one connection attempt (the main loop waits 1 s for it);
    // after that the pings come on time (every second).
    let gaps: Vec<std::time::Duration> =
        pings.windows(2).map(|w| w[1] - w[0]).chain(pings.first().copied()).collect();
    let long = gaps.iter().filter(|g| **g > std::time::Duration::from_millis(2500)).count();
    assert!(
        gaps.iter().all(|g| *g < SECS(5)) && long <= 1 && pings.len() >= 5,
        "the watchdog went quiet with Redis black-holed: {pings:?}\n{}",
        gw.log()
    );
    // /healthz answers at once, and says what is wrong.
    let t = std::time::Instant::now();
    let (code, body) = get(port, "/healthz");
    assert!(t.elapsed() < SECS(2) && code == 503 && body.contains("unreachable"), "{code} {body}");
    // An event cannot be stored: refused, not acknowledged.
    let push = sim.push_event(&apps[0].1, &MessageEvent::text(&apps[0].1, "q").json());
    assert!(sim.wait_until(SECS(10), |s| !s.acks(push).is_empty()));
    assert!(sim.acks(push).iter().all(|a| a.code != 200));
    // The long connections, which need no Redis, were never dropped.
    let now: usize = apps.iter().map(|(_, a, _)| sim.total_connects(a)).sum();
    assert_eq!(now, connects, "connections were reopened:\n{}", gw.log());
    // SIGTERM is acted on, and the process exits within 10 s.
    let t = std::time::Instant::now();
    gw.signal("TERM");
    let exit = gw.wait_exit(SECS(20));
    let took = t.elapsed();
    drop(hole);
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}\n{}", gw.log());
    assert!(took < SECS(10), "exit took {took:?} with Redis black-holed:\n{}", gw.log());
}

/// A peer that accepts TCP and never says a word (no TLS handshake).
fn silent_peer() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[test]
fn a_tls_peer_that_never_answers_bounds_check_status_and_the_gateway() {
    let (_listener, port) = silent_peer();
    let url = format!("rediss://127.0.0.1:{port}/0");
    for args in [&["check"][..], &["status"][..]] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"));
        c.env_clear().env("REDIS_URL", &url).args(args);
        let t = std::time::Instant::now();
        let out = output_within(&mut c, SECS(30));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(t.elapsed() < SECS(15), "{args:?} took {:?}", t.elapsed());
        assert!(!out.status.success() && text.contains("unreachable"), "{args:?}: {text}");
    }
    let sim = sim();
    let mut gw = start_gateway(&url, &sim, "gw-tls", &[]);
    assert!(gw.wait_log(": unreachable:", SECS(10)), "{}", gw.log());
    let t = std::time::Instant::now();
    gw.signal("TERM");
    assert!(gw.wait_exit(SECS(20)).is_some_and(|s| s.success()), "{}", gw.log());
    assert!(t.elapsed() < SECS(10), "exit took {:?}:\n{}", t.elapsed(), gw.log());
}
