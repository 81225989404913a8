//! Every secret through every output (issue 11, item 6): the App Secret,
//! Encrypt Key and Verification Token of a channel, the tenant tokens,
//! tickets and access keys Feishu hands out, the Redis password in each URL
//! form, and a config field of the wrong type holding a secret. None may
//! appear in the gateway's log at trace, in any Redis value the gateway
//! writes, or in the output of `check`, `status`, `status --json`,
//! `channel list`, `check --json`, `trace`, `dead list` and failing commands.

use crate::support;

use serde_json::json;
use std::process::Command;
use support::*;

const APP: &str = "cli_5ec2e75000000000a";
const APP_SECRET: &str = "app-secret-Zq81x";
const ENCRYPT_KEY: &str = "encrypt-key-Pw47m";
const TOKEN: &str = "verify-token-Hk22c";
const REDIS_PW: &str = "redis-pass-Tb90v";
const LEAKED: &str = "wrong-type-secret-Ry63k";

fn cmd(url: &str, sim: &Sim, args: &[&str]) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"));
    c.env_clear()
        .env("REDIS_URL", url)
        .env("FEISHU_BASE_URL", sim.base_url())
        .env("RUST_LOG", "trace")
        .env("GATEWAY_INSTANCE_ID", "cli")
        .args(args);
    let out = output_within(&mut c, SECS(30));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Every value of every key (strings, lists, hashes) except the config
/// hash, which holds the secrets by design.
fn redis_dump(con: &mut redis::Connection) -> String {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    let mut out = String::new();
    for k in keys.iter().filter(|k| *k != "at:channel:config:feishu") {
        let t: String = redis::cmd("TYPE").arg(k).query(con).unwrap();
        let v: Vec<String> = match t.as_str() {
            "string" => vec![redis::cmd("GET").arg(k).query(con).unwrap()],
            "list" => redis::cmd("LRANGE").arg(k).arg(0).arg(-1).query(con).unwrap(),
            "hash" => redis::cmd("HGETALL").arg(k).query(con).unwrap(),
            _ => vec![],
        };
        out.push_str(&format!("{k} {v:?}\n"));
    }
    out
}

#[test]
fn no_secret_reaches_any_output() {
    let redis = RedisServer::start();
    let mut admin = redis.con();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("gw")
        .arg("on")
        .arg(format!(">{REDIS_PW}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query::<()>(&mut admin)
        .unwrap();
    let url = format!("redis://gw:{REDIS_PW}@127.0.0.1:{}/0", redis.port);
    let sim = sim();
    sim.add_app(APP, APP_SECRET);
    let mut cfg = channel("ch_sec", APP, APP_SECRET);
    cfg["encrypt_key"] = json!(ENCRYPT_KEY);
    cfg["verification_token"] = json!(TOKEN);
    put_channel(&mut admin, "ch_sec", &cfg);
    // A wrong app secret (the error path), and a secret in a field of the
    // wrong type (the config error path).
    sim.add_app("cli_5ec2e75000000000b", "the-real-one");
    put_channel(&mut admin, "ch_bad", &channel("ch_bad", "cli_5ec2e75000000000b", APP_SECRET));
    put_raw_channel(
        &mut admin,
        "ch_typo",
        &json!({"app_id": "cli_x", "app_secret": "s", "enabled": LEAKED}).to_string(),
    );
    let gw = start_gateway(&url, &sim, "gw-sec", &[("RUST_LOG", "trace")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)), "{}", gw.log());
    // Encrypted traffic with the token, an answer, a wrong token, a reconnect.
    let ev = MessageEvent::text(APP, "q").with_token(TOKEN);
    let sealed = json!({"encrypt": asktable_feishu_gateway::feishu::crypto::encrypt(ENCRYPT_KEY, &ev.json())});
    assert!(sim.wait_acked(sim.push_event(APP, &sealed.to_string()), SECS(5)), "{}", gw.log());
    let wrong = MessageEvent::text(APP, "q2").with_token("not-the-token");
    let sealed = json!({"encrypt": asktable_feishu_gateway::feishu::crypto::encrypt(ENCRYPT_KEY, &wrong.json())});
    sim.push_event(APP, &sealed.to_string());
    push_outbound(
        &mut admin,
        &answer("s1", "ch_sec", &ev.message_id, &ev.chat_id, "a").to_string(),
    );
    assert!(sim.wait_messages(1, SECS(10)), "{}", gw.log());
    sim.drop_connections(APP);
    assert!(sim.wait_until(SECS(10), |s| s.total_connects(APP) >= 2));
    assert!(wait_for(SECS(10), || state(&mut admin, "ch_bad").as_deref() == Some("error")));
    assert!(wait_for(SECS(10), || state(&mut admin, "ch_typo").as_deref() == Some("error")));

    let mut outputs = vec![
        ("gateway log", gw.log()),
        ("redis values", redis_dump(&mut admin)),
        ("check", cmd(&url, &sim, &["check"])),
        ("status", cmd(&url, &sim, &["status"])),
        ("status --json", cmd(&url, &sim, &["status", "--json"])),
        ("channel list", cmd(&url, &sim, &["channel", "list"])),
        ("check --json", cmd(&url, &sim, &["check", "--json", "--chat", "oc_x"])),
        ("trace", cmd(&url, &sim, &["trace", &ev.message_id])),
        ("trace --json", cmd(&url, &sim, &["trace", &wrong.message_id, "--json"])),
        ("dead list --json", cmd(&url, &sim, &["dead", "list", "--json"])),
    ];
    // Every URL form with a wrong password, and refused commands.
    let p = redis.port;
    for bad in [
        format!("redis://gw:{REDIS_PW}x@127.0.0.1:{p}/0"),
        format!("redis://:{REDIS_PW}@127.0.0.1:1/0"),
        format!("redis+unix:///nonexistent.sock?pass={REDIS_PW}"),
        format!("redis+unix:///nonexistent.sock?db=0&password={REDIS_PW}"),
        format!("rediss://gw:{REDIS_PW}@127.0.0.1:{p}/0"),
        format!("not a url {REDIS_PW}"),
    ] {
        outputs.push(("check with a bad REDIS_URL", cmd(&bad, &sim, &["check"])));
        outputs.push(("status with a bad REDIS_URL", cmd(&bad, &sim, &["status"])));
    }
    outputs.push((
        "channel put with the secret on the command line",
        cmd(
            &url,
            &sim,
            &["channel", "put", "ch_x", "--app-id", "cli_x", "--app-secret", APP_SECRET],
        ),
    ));
    let mut secrets: Vec<String> =
        [APP_SECRET, ENCRYPT_KEY, TOKEN, REDIS_PW, LEAKED].iter().map(|s| s.to_string()).collect();
    secrets.extend(sim.issued_secrets());
    assert!(secrets.len() > 6, "the simulator issued tokens and tickets: {secrets:?}");
    for (what, text) in &outputs {
        assert!(!text.is_empty(), "{what} is empty");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{what} shows a secret ({secret}):\n{text}");
        }
    }
    // The outputs said something useful all the same.
    assert!(outputs[0].1.contains("TRACE") || outputs[0].1.contains("DEBUG"));
    assert!(outputs[2].1.contains("ch_bad") && outputs[4].1.contains("config_invalid"));
    assert!(outputs[4].1.contains("enabled must be"), "{}", outputs[4].1);
}
