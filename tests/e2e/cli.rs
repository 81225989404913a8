//! The operator commands against a real Redis, the simulator and a running gateway.

use crate::support;

use serde_json::{Value, json};
use support::*;

const APP: &str = "cli_c0ffee0000000001";
const SECRET: &str = "cli-test-secret-never-printed";

#[test]
fn channel_put_list_rm_round_trip_never_shows_the_secret() {
    let redis = RedisServer::start();
    let url = redis.url();
    let put = run_cli(
        &url,
        None,
        &[
            "channel",
            "put",
            "ch_ops",
            "--app-id",
            APP,
            "--agent-id",
            "ag1",
            "--group-policy",
            "all",
        ],
        &[],
        &format!("{SECRET}\n"),
    );
    assert!(put.status.success(), "{}", out_text(&put));
    assert!(!out_text(&put).contains(SECRET));
    let mut con = redis.con();
    let raw: String =
        redis::cmd("HGET").arg("at:channel:config:feishu").arg("ch_ops").query(&mut con).unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        (v["app_id"].as_str(), v["app_secret"].as_str(), v["agent_id"].as_str()),
        (Some(APP), Some(SECRET), Some("ag1"))
    );
    assert_eq!(v["group_policy"], "all");
    // From the environment instead of stdin.
    let put2 = run_cli(
        &url,
        None,
        &["channel", "put", "ch_env", "--app-id", "cli_x", "--disabled"],
        &[("FEISHU_APP_SECRET", "env-secret-xyz"), ("FEISHU_ENCRYPT_KEY", "ek-secret")],
        "",
    );
    assert!(put2.status.success(), "{}", out_text(&put2));
    let list = run_cli(&url, None, &["channel", "list"], &[], "");
    let out = out_text(&list);
    assert!(list.status.success());
    assert!(out.contains("ch_ops") && out.contains(APP) && out.contains("app_secret=***"), "{out}");
    assert!(out.contains("encrypt_key=***"));
    for secret in [SECRET, "env-secret-xyz", "ek-secret"] {
        assert!(!out.contains(secret), "{out}");
    }
    // Secrets on the command line are refused.
    let bad = run_cli(
        &url,
        None,
        &["channel", "put", "ch_x", "--app-id", "cli_x", "--app-secret", "s"],
        &[],
        "",
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(out_text(&bad).contains("never taken from the command line"));
    // Invalid values are refused before anything is written.
    let bad = run_cli(
        &url,
        None,
        &["channel", "put", "ch_y", "--app-id", "cli_y", "--domain", "http://x"],
        &[],
        "s\n",
    );
    assert_eq!(bad.status.code(), Some(2), "{}", out_text(&bad));
    let rm = run_cli(&url, None, &["channel", "rm", "ch_ops"], &[], "");
    assert!(rm.status.success());
    let exists: bool = redis::cmd("HEXISTS")
        .arg("at:channel:config:feishu")
        .arg("ch_ops")
        .query(&mut con)
        .unwrap();
    assert!(!exists);
    assert_eq!(run_cli(&url, None, &["channel", "rm", "ch_ops"], &[], "").status.code(), Some(2));
}

#[test]
fn check_and_status_on_a_good_and_a_broken_setup() {
    let mut redis = RedisServer::start();
    let sim = sim();
    sim.add_app(APP, SECRET);
    sim.add_app("cli_bad0000000000001", "right-secret");
    let url = redis.url();
    let mut con = redis.con();
    put_channel(&mut con, "ch_ok", &channel("ch_ok", APP, SECRET));
    let gw = start_gateway(&url, &sim, "gw-ops", &[]);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    assert!(wait_for(SECS(5), || state(&mut con, "ch_ok").as_deref() == Some("connected")));
    assert!(wait_for(SECS(5), || redis::cmd("EXISTS")
        .arg("at:channel:gateway:feishu:gw-ops")
        .query::<bool>(&mut con)
        .unwrap()));

    let good = run_cli(&url, Some(&sim), &["check"], &[], "");
    let out = out_text(&good);
    assert!(good.status.success(), "{out}\n{}", gw.log());
    assert!(out.contains("✔") && !out.contains("✘"), "{out}");
    assert!(out.contains("Bot cli_c0ffee0000000001"), "bot name shown: {out}");
    assert!(out.contains("version 7"), "redis version shown: {out}");
    assert!(!out.contains(SECRET));

    let status = run_cli(&url, None, &["status", "--json"], &[], "");
    let rows: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(rows[0]["channel_id"], "ch_ok");
    assert_eq!(rows[0]["state"], "connected");
    assert_eq!(rows[0]["instance_id"], "gw-ops");
    assert_eq!(rows[0]["app_id"], APP);
    let table = out_text(&run_cli(&url, None, &["status"], &[], ""));
    assert!(
        table.contains("CHANNEL") && table.contains("ch_ok") && table.contains("connected"),
        "{table}"
    );

    // A wrong secret: check fails with a hint; status shows the error.
    put_channel(&mut con, "ch_bad", &channel("ch_bad", "cli_bad0000000000001", "wrong"));
    assert!(wait_for(SECS(5), || state(&mut con, "ch_bad").as_deref() == Some("error")));
    let bad = run_cli(&url, Some(&sim), &["check"], &[], "");
    let out = out_text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    // One cause, one ✘: what needs valid credentials is skipped, not failed.
    assert!(out.contains("✘  ch_bad: credentials"), "{out}");
    assert!(out.contains("App Secret is wrong") && out.contains("developer console"), "{out}");
    assert!(out.contains("·  ch_bad: feishu app") && !out.contains("ch_bad: bot"), "{out}");
    assert!(!out.contains("publish a new app version"), "no wrong hint: {out}");
    let rows: Value =
        serde_json::from_slice(&run_cli(&url, None, &["status", "--json"], &[], "").stdout)
            .unwrap();
    let bad_row = rows.as_array().unwrap().iter().find(|r| r["channel_id"] == "ch_bad").unwrap();
    assert_eq!(bad_row["state"], "error");
    assert_eq!(bad_row["last_error"]["code"], "invalid_credentials");

    // Redis down: check says so and fails.
    redis.stop();
    let down = run_cli(&url, Some(&sim), &["check"], &[], "");
    let out = out_text(&down);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        out.contains("✘") && out.contains("unreachable") && out.contains("check REDIS_URL"),
        "{out}"
    );
    // Bad environment.
    let env = run_cli(&url, None, &["check"], &[("STATUS_TTL", "x")], "");
    assert_eq!(env.status.code(), Some(1));
    assert!(out_text(&env).contains("invalid STATUS_TTL"));
}

/// Issue 13, item 3: `check` and `status` tell whether AskTable Server is
/// on the other side of this Redis (questions waiting, the oldest's age)
/// and whether answers flow back (last answer per channel, dead letters).
#[test]
fn check_and_status_tell_whether_asktable_server_reads_and_answers() {
    let (redis, sim, mut con) = world(&[("ch_srv", APP, SECRET)]);
    let url = redis.url();
    let gw = start_gateway(&url, &sim, "gw-srv", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    // Nothing waits yet, nothing answered: no complaint about the server.
    let out = out_text(&run_cli(&url, Some(&sim), &["check"], &[], ""));
    assert!(out.contains("✔  AskTable Server") && out.contains("no question waiting"), "{out}");
    // Questions nobody takes, the oldest 12 minutes old.
    let old = feishu_sim::now_ms() - 12 * 60_000;
    for i in 0..3 {
        let item = json!({"schema": "at.channel.inbound", "v": 1, "id": format!("feishu:{APP}:om_{i}"), "ts": old + i});
        redis::cmd("LPUSH")
            .arg("at:channel:inbound")
            .arg(item.to_string())
            .query::<()>(&mut con)
            .unwrap();
    }
    let q = MessageEvent::text(APP, "q");
    assert!(sim.wait_acked(sim.push_event(APP, &q.json()), SECS(5)));
    let out = out_text(&run_cli(&url, Some(&sim), &["check"], &[], ""));
    assert!(
        out.contains("4 question(s) waiting, the oldest 12 minutes: AskTable Server is not reading this Redis")
            && out.contains("compare REDIS_URL"),
        "{out}"
    );
    // An answer flows back, and a bad one is dead-lettered.
    push_outbound(&mut con, &answer("srv1", "ch_srv", &q.message_id, &q.chat_id, "a").to_string());
    push_outbound(&mut con, "{broken");
    assert!(sim.wait_messages(1, SECS(10)), "{}", gw.log());
    assert!(wait_for(SECS(5), || dead_letters(&mut con).len() == 1));
    let out = out_text(&run_cli(&url, Some(&sim), &["check"], &[], ""));
    assert!(out.contains("ch_srv: answers") && out.contains("last answer delivered"), "{out}");
    assert!(out.contains("1 answer(s) dead-lettered in the last hour: invalid JSON"), "{out}");
    let status = out_text(&run_cli(&url, Some(&sim), &["status"], &[], ""));
    assert!(
        status.contains("inbound: 4 question(s) waiting") && status.contains("LAST ANSWER"),
        "{status}"
    );
    let json_rows: Value =
        serde_json::from_str(&out_text(&run_cli(&url, None, &["status", "--json"], &[], "")))
            .unwrap();
    assert!(json_rows[0]["last_answer_at"].as_u64().is_some(), "{json_rows}");
}
