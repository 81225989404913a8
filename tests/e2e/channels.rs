//! End to end: channel configuration, credentials, Redis outages, replicas,
//! signals, the environment and the logs.

use crate::support;

use serde_json::json;
use std::process::Command;
use support::*;

const APP_A: &str = "cli_aaaaaaaaaaaaaaaa";
const APP_B: &str = "cli_bbbbbbbbbbbbbbbb";
const SECRET_A: &str = "secret-a-never-logged-1f2e3d";
const SECRET_B: &str = "secret-b-never-logged-4c5b6a";

#[test]
fn wrong_secret_is_an_error_while_another_channel_works() {
    let redis = RedisServer::start();
    let sim = sim();
    sim.add_app(APP_A, SECRET_A);
    sim.add_app(APP_B, SECRET_B);
    let mut con = redis.con();
    put_channel(&mut con, "ch_bad", &channel("ch_bad", APP_A, "not-the-secret"));
    put_channel(&mut con, "ch_1good", &channel("ch_1good", APP_B, SECRET_B));
    let gw = start_gateway(&redis.url(), &sim, "gw-1", &[]);
    assert!(sim.wait_connections(APP_B, 1, SECS(10)));
    assert!(
        wait_for(SECS(5), || state(&mut con, "ch_bad").as_deref() == Some("error")),
        "{}",
        gw.log()
    );
    let st = status(&mut con, "ch_bad").unwrap();
    assert_eq!(st["last_error"]["code"], "invalid_credentials", "{st}");
    let msg = st["last_error"]["message"].as_str().unwrap();
    assert!(msg.contains("App Secret does not match"), "{msg}");
    assert!(!msg.contains("not-the-secret"));
    assert_eq!(sim.connections(APP_A), 0);
    let push = sim.push_event(APP_B, &MessageEvent::text(APP_B, "works").json());
    assert!(sim.wait_acked(push, SECS(5)));
    assert_eq!(inbound(&mut con).len(), 1);
    assert_eq!(state(&mut con, "ch_1good").as_deref(), Some("connected"));

    // The operator fixes the secret: the server updates Redis and announces it.
    put_channel(&mut con, "ch_bad", &channel("ch_bad", APP_A, SECRET_A));
    assert!(sim.wait_connections(APP_A, 1, SECS(10)), "{}", gw.log());
    assert!(wait_for(SECS(5), || state(&mut con, "ch_bad").as_deref() == Some("connected")));
}

#[test]
fn secret_change_announced_by_publish_reconnects() {
    let (redis, sim, mut con) = world(&[("ch_1", APP_A, SECRET_A)]);
    // No periodic re-read during the test: only the notification can trigger it.
    let gw = start_gateway(&redis.url(), &sim, "gw-1", &[("CONFIG_REFRESH_INTERVAL", "3600")]);
    assert!(sim.wait_connections(APP_A, 1, SECS(10)));
    assert!(gw.wait_log("subscribed to at:channel:config:feishu:changed", SECS(5)));
    sim.set_secret(APP_A, "rotated-secret-77");
    put_channel(&mut con, "ch_1", &channel("ch_1", APP_A, "rotated-secret-77"));
    assert!(
        sim.wait_until(SECS(10), |s| s.total_connects(APP_A) == 2 && s.connections(APP_A) == 1),
        "{}",
        gw.log()
    );
    assert!(gw.log().contains("credentials, keys or domain changed"));
    let push = sim.push_event(APP_A, &MessageEvent::text(APP_A, "after rotation").json());
    assert!(sim.wait_acked(push, SECS(5)));
}

#[test]
fn removed_and_disabled_channels_close_their_connections() {
    let (redis, sim, mut con) = world(&[("ch_a", APP_A, SECRET_A), ("ch_b", APP_B, SECRET_B)]);
    let gw = start_gateway(&redis.url(), &sim, "gw-1", &[("CONFIG_REFRESH_INTERVAL", "3600")]);
    assert!(sim.wait_connections(APP_A, 1, SECS(10)) && sim.wait_connections(APP_B, 1, SECS(10)));
    assert!(wait_for(SECS(5), || state(&mut con, "ch_a").as_deref() == Some("connected")));

    remove_channel(&mut con, "ch_a");
    assert!(sim.wait_connections(APP_A, 0, SECS(5)), "zombie connection:\n{}", gw.log());
    assert!(
        wait_for(SECS(5), || status(&mut con, "ch_a").is_none()),
        "status of a removed channel remains"
    );
    // Events for the removed app are not taken by anyone any more.
    let push = sim.push_event(APP_A, &MessageEvent::text(APP_A, "nobody home").json());
    std::thread::sleep(SECS(1));
    assert_eq!(sim.deliveries(push), 0);

    let mut disabled = channel("ch_b", APP_B, SECRET_B);
    disabled["enabled"] = json!(false);
    put_channel(&mut con, "ch_b", &disabled);
    assert!(sim.wait_connections(APP_B, 0, SECS(5)));
    assert!(wait_for(SECS(5), || state(&mut con, "ch_b").as_deref() == Some("disabled")));
}

#[test]
fn bad_config_entries_only_affect_their_own_channel() {
    let (redis, sim, mut con) = world(&[("ch_1good", APP_A, SECRET_A)]);
    put_raw_channel(&mut con, "ch_json", "{\"app_id\": \"cli_x\", ");
    put_channel(&mut con, "ch_nosecret", &json!({"app_id": "cli_y"}));
    put_channel(&mut con, "ch_2dup", &channel("ch_2dup", APP_A, SECRET_A));
    let gw = start_gateway(&redis.url(), &sim, "gw-1", &[]);
    assert!(sim.wait_connections(APP_A, 1, SECS(10)));
    let expect = [
        ("ch_json", "not valid JSON"),
        ("ch_nosecret", "app_secret is missing"),
        ("ch_2dup", "already used by channel ch_1good"),
    ];
    for (ch, want) in expect {
        assert!(
            wait_for(SECS(5), || state(&mut con, ch).as_deref() == Some("error")),
            "{ch}:\n{}",
            gw.log()
        );
        let st = status(&mut con, ch).unwrap();
        assert_eq!(st["last_error"]["code"], "config_invalid");
        assert!(st["last_error"]["message"].as_str().unwrap().contains(want), "{ch}: {st}");
    }
    assert!(wait_for(SECS(5), || state(&mut con, "ch_1good").as_deref() == Some("connected")));
    // Still exactly one connection for the shared app id.
    std::thread::sleep(SECS(1));
    assert_eq!(sim.connections(APP_A), 1);
    let push = sim.push_event(APP_A, &MessageEvent::text(APP_A, "q").json());
    assert!(sim.wait_acked(push, SECS(5)));
    assert_eq!(inbound(&mut con)[0]["channel_id"], "ch_1good");
}

#[test]
fn redis_restart_while_running_loses_and_duplicates_nothing() {
    let mut redis = RedisServer::start_persistent();
    let sim = sim();
    sim.add_app(APP_A, SECRET_A);
    let mut con = redis.con();
    put_channel(&mut con, "ch_1", &channel("ch_1", APP_A, SECRET_A));
    let gw = start_gateway(&redis.url(), &sim, "gw-1", &[]);
    assert!(sim.wait_connections(APP_A, 1, SECS(10)));
    let before = sim.push_event(APP_A, &MessageEvent::text(APP_A, "before the outage").json());
    assert!(sim.wait_acked(before, SECS(5)));

    redis.stop();
    let during = MessageEvent::text(APP_A, "during the outage");
    let push = sim.push_event(APP_A, &during.json());
    // The gateway refuses the event (no 200) while it cannot store it.
    assert!(
        sim.wait_until(SECS(10), |s| s.acks(push).iter().any(|a| a.code != 200)),
        "{}",
        gw.log()
    );
    assert!(!sim.acks(push).iter().any(|a| a.code == 200));
    assert!(gw.wait_log("not acknowledged, Feishu will deliver them again", SECS(2)));

    redis.restart();
    assert!(sim.wait_acked(push, SECS(15)), "not stored after Redis came back:\n{}", gw.log());
    let mut con = redis.con();
    let questions: Vec<String> =
        inbound(&mut con).iter().map(|i| i["question"].as_str().unwrap().to_owned()).collect();
    assert_eq!(questions, ["before the outage", "during the outage"]);
    // Feishu may still push a late copy: it is recognised.
    let again = sim.push_event(APP_A, &during.json());
    assert!(sim.wait_acked(again, SECS(5)));
    assert_eq!(inbound(&mut con).len(), 2);
    // The outage is logged once, not once per attempt.
    assert_eq!(gw.log().matches(": unreachable:").count(), 1, "{}", gw.log());
    assert!(gw.wait_log("Redis works again", SECS(5)));
}

#[test]
fn redis_unreachable_at_start_is_retried() {
    let mut redis = RedisServer::start_persistent();
    let sim = sim();
    sim.add_app(APP_A, SECRET_A);
    put_channel(&mut redis.con(), "ch_1", &channel("ch_1", APP_A, SECRET_A));
    redis.stop();
    let gw = start_gateway(&redis.url(), &sim, "gw-1", &[]);
    assert!(gw.wait_log(": unreachable:", SECS(5)));
    std::thread::sleep(SECS(2));
    redis.restart();
    assert!(sim.wait_connections(APP_A, 1, SECS(15)), "{}", gw.log());
    assert_eq!(gw.log().matches(": unreachable:").count(), 1, "{}", gw.log());
}

#[test]
fn periodic_refresh_and_sighup_pick_up_unannounced_changes() {
    let redis = RedisServer::start();
    let sim = sim();
    sim.add_app(APP_A, SECRET_A);
    sim.add_app(APP_B, SECRET_B);
    let mut con = redis.con();
    let gw = start_gateway(&redis.url(), &sim, "gw-1", &[("CONFIG_REFRESH_INTERVAL", "3600")]);
    assert!(gw.wait_log("subscribed to", SECS(5)));
    let raw = channel("ch_a", APP_A, SECRET_A).to_string();
    redis::cmd("HSET")
        .arg("at:channel:config:feishu")
        .arg("ch_a")
        .arg(raw)
        .query::<()>(&mut con)
        .unwrap();
    std::thread::sleep(SECS(1));
    assert_eq!(sim.connections(APP_A), 0, "nothing announced the change");
    gw.signal("HUP");
    assert!(sim.wait_connections(APP_A, 1, SECS(10)), "{}", gw.log());

    let gw2 = start_gateway(&redis.url(), &sim, "gw-2", &[("CONFIG_REFRESH_INTERVAL", "1")]);
    let raw = channel("ch_b", APP_B, SECRET_B).to_string();
    redis::cmd("HSET")
        .arg("at:channel:config:feishu")
        .arg("ch_b")
        .arg(raw)
        .query::<()>(&mut con)
        .unwrap();
    // gw-2 re-reads every second; gw-1 does not.
    assert!(sim.wait_connections(APP_B, 1, SECS(10)), "{}", gw2.log());
}

#[test]
fn two_replicas_share_one_app_without_duplicates() {
    let (redis, sim, mut con) = world(&[("ch_1", APP_A, SECRET_A)]);
    let gw1 = start_gateway(&redis.url(), &sim, "gw-1", &[]);
    let mut gw2 = start_gateway(&redis.url(), &sim, "gw-2", &[]);
    assert!(sim.wait_connections(APP_A, 2, SECS(10)));
    let events: Vec<MessageEvent> =
        (0..20).map(|i| MessageEvent::text(APP_A, &format!("q{i}"))).collect();
    let mut pushes = Vec::new();
    for ev in &events {
        // Each event twice: Feishu redelivers to a random connection.
        pushes.push(sim.push_event(APP_A, &ev.json()));
        pushes.push(sim.push_event(APP_A, &ev.json()));
    }
    for p in &pushes {
        assert!(sim.wait_acked(*p, SECS(10)));
    }
    let items = inbound(&mut con);
    assert_eq!(items.len(), 20, "each question exactly once");
    let conns: std::collections::HashSet<u64> =
        pushes.iter().flat_map(|p| sim.acks(*p)).map(|a| a.conn).collect();
    assert_eq!(conns.len(), 2, "events were spread over both replicas");
    // "Connected wins": while one replica is connected the status says so.
    gw2.signal("TERM");
    assert!(gw2.wait_exit(SECS(10)).is_some_and(|s| s.success()));
    std::thread::sleep(SECS(1));
    assert_eq!(state(&mut con, "ch_1").as_deref(), Some("connected"), "{}", gw1.log());
    assert_eq!(status(&mut con, "ch_1").unwrap()["instance_id"], "gw-1");
}

#[test]
fn sigterm_closes_connections_and_exits_zero() {
    let (redis, sim, mut con) = world(&[("ch_1", APP_A, SECRET_A)]);
    let mut gw = start_gateway(&redis.url(), &sim, "gw-1", &[]);
    assert!(sim.wait_connections(APP_A, 1, SECS(10)));
    let started = std::time::Instant::now();
    gw.signal("TERM");
    let status_code = gw.wait_exit(SECS(10)).expect("exited");
    assert!(status_code.success(), "{status_code:?}\n{}", gw.log());
    assert!(started.elapsed() < SECS(6), "took {:?}", started.elapsed());
    assert_eq!(sim.connections(APP_A), 0);
    let st = status(&mut con, "ch_1").unwrap();
    assert_eq!(st["state"], "disconnected");
    assert_eq!(st["last_error"]["code"], "gateway_stopped");
    let hb: Option<String> =
        redis::cmd("GET").arg("at:channel:gateway:feishu:gw-1").query(&mut con).unwrap();
    assert!(hb.is_none());
    assert!(gw.log().contains("Feishu Gateway stopped"));
}

#[test]
fn no_secret_ever_appears_in_the_log() {
    let redis = RedisServer::start();
    let sim = sim();
    sim.add_app(APP_A, SECRET_A);
    sim.add_app(APP_B, SECRET_B);
    let mut con = redis.con();
    let mut a = channel("ch_a", APP_A, SECRET_A);
    a["encrypt_key"] = json!("encrypt-key-secret-8d7c");
    a["verification_token"] = json!("verification-token-secret-6b5a");
    put_channel(&mut con, "ch_a", &a);
    put_channel(&mut con, "ch_b", &channel("ch_b", APP_B, "wrong-secret-secret-4e3d"));
    let gw = start_gateway(&redis.url(), &sim, "gw-1", &[("RUST_LOG", "trace")]);
    assert!(sim.wait_connections(APP_A, 1, SECS(10)));
    let ev = MessageEvent::text(APP_A, "q").with_token("verification-token-secret-6b5a");
    let enc =
        asktable_feishu_gateway::feishu::crypto::encrypt("encrypt-key-secret-8d7c", &ev.json());
    let push = sim.push_event(APP_A, &json!({ "encrypt": enc }).to_string());
    assert!(sim.wait_acked(push, SECS(5)));
    let bad =
        sim.push_event(APP_A, &MessageEvent::text(APP_A, "q").with_token("forged-token").json());
    assert!(sim.wait_acked(bad, SECS(5)));
    sim.drop_connections(APP_A);
    assert!(sim.wait_until(SECS(10), |s| s.total_connects(APP_A) == 2));
    assert!(wait_for(SECS(5), || state(&mut con, "ch_b").as_deref() == Some("error")));
    let log = gw.log();
    let mut secrets = vec![
        SECRET_A.to_owned(),
        "wrong-secret-secret-4e3d".into(),
        "encrypt-key-secret-8d7c".into(),
        "verification-token-secret-6b5a".into(),
    ];
    secrets.extend(sim.issued_secrets());
    assert!(secrets.len() >= 6, "tickets, access keys and tokens were issued");
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "secret {s:?} in the log:\n{log}");
    }
    assert!(log.contains("long connection open"), "the log has content:\n{log}");
}

#[test]
fn bad_environment_exits_2_with_one_clear_line() {
    let bin = env!("CARGO_BIN_EXE_asktable-feishu-gateway");
    let cases = [
        ("STATUS_TTL", "abc", "invalid STATUS_TTL: \"abc\" is not a whole number of seconds"),
        ("REDIS_URL", "http://localhost:6379", "invalid REDIS_URL"),
        ("FEISHU_BASE_URL", "open.feishu.cn", "invalid FEISHU_BASE_URL"),
        ("MAX_MESSAGE_AGE", "-1", "invalid MAX_MESSAGE_AGE"),
    ];
    for (var, value, want) in cases {
        let out = output_within(Command::new(bin).env_clear().env(var, value), SECS(10));
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{var}: {err}");
    }
    let out = output_within(Command::new(bin).arg("--version"), SECS(10));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("asktable-feishu-gateway {}", env!("CARGO_PKG_VERSION"))
    );
    let out = output_within(Command::new(bin).arg("--help"), SECS(10));
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("REDIS_URL"));
    let out = output_within(Command::new(bin).arg("--bogus"), SECS(10));
    assert_eq!(out.status.code(), Some(2));
}

/// Found by an independent fault harness (issue 11): a channel id holding
/// a NUL byte panicked the main thread at every start (a crash loop under
/// systemd), and a config field that is not UTF-8 failed every config read
/// ("Redis is unreachable"). Each now rejects only its own entry.
#[test]
fn a_nul_or_non_utf8_channel_id_rejects_only_that_entry() {
    let (redis, sim, mut con) = world(&[("ch_good", "cli_good", "s-good")]);
    let _: () = redis::cmd("HSET")
        .arg("at:channel:config:feishu")
        .arg("ch\0nul")
        .arg(channel("ch\0nul", "cli_nul", "s-nul").to_string())
        .arg(&b"ch\xffbad"[..])
        .arg(channel("x", "cli_bad", "s-bad").to_string())
        .query(&mut con)
        .unwrap();
    let gw = start_gateway(&redis.url(), &sim, "gw-bad-ids", &[]);
    assert!(sim.wait_connections("cli_good", 1, SECS(10)), "{}", gw.log());
    assert!(
        wait_for(SECS(5), || state(&mut con, "ch\0nul").as_deref() == Some("error")),
        "{}",
        gw.log()
    );
    assert!(gw.log().contains("control characters"), "{}", gw.log());
    assert!(gw.log().contains("not UTF-8"), "{}", gw.log());
    assert_eq!(sim.connections("cli_nul") + sim.connections("cli_bad"), 0);
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}
