//! The contract as a server developer implements it (issue 16): every value
//! the gateway writes, and every item the stand-in responders write, is
//! valid against docs/schema/; what the outbound schema rejects, the
//! gateway dead-letters with a reason; the compatibility rules hold; the
//! reference server (examples/server) works against the real gateway and
//! reads its delivery receipts; and the environment tables match the code.

use crate::support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use support::*;

const APP: &str = "cli_c0ntract000000000a";
const SECRET: &str = "contract-secret";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn python() -> String {
    format!("{ROOT}/target/lark-venv/bin/python")
}

/// Validates each document against docs/schema/<name>.schema.json: "ok" or
/// "invalid: …" per document.
fn validate(name: &str, docs: &[String]) -> Vec<String> {
    let mut input = tempfile::NamedTempFile::new().unwrap();
    for d in docs {
        let one_line: Value = serde_json::from_str(d).unwrap_or(Value::String(d.clone()));
        writeln!(input, "{one_line}").unwrap();
    }
    let mut cmd = Command::new(python());
    cmd.arg(format!("{ROOT}/docs/schema/validate.py")).arg(name).arg(input.path());
    // The venv's python (.ci/install-deps installs jsonschema), bounded.
    let out = output_within(&mut cmd, SECS(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

fn all_valid(name: &str, docs: &[String]) {
    assert!(!docs.is_empty(), "no {name} values to check");
    for (doc, verdict) in docs.iter().zip(validate(name, docs)) {
        assert_eq!(verdict, "ok", "{name}: {doc}");
    }
}

fn strings(con: &mut redis::Connection, pattern: &str) -> Vec<String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(con).unwrap();
    keys.iter().map(|k| redis::cmd("GET").arg(k).query::<String>(con).unwrap()).collect()
}

fn list(con: &mut redis::Connection, key: &str) -> Vec<String> {
    redis::cmd("LRANGE").arg(key).arg(0).arg(-1).query(con).unwrap()
}

#[test]
fn what_the_gateway_and_the_responders_write_is_valid_and_what_the_schema_rejects_is_dead_lettered()
{
    let (redis, sim, mut con) = world(&[("ch_k", APP, SECRET)]);
    let gw = start_gateway(&redis.url(), &sim, "gw-k", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    let q = MessageEvent::text(APP, "合同里的问题");
    assert!(sim.wait_acked(sim.push_event(APP, &q.json()), SECS(5)));
    let group = MessageEvent::text(APP, "@_user_1 群里的问题").in_group("oc_g1").mention(
        "@_user_1",
        &sim.bot_open_id(APP).unwrap(),
        "Bot",
    );
    assert!(sim.wait_acked(sim.push_event(APP, &group.json()), SECS(5)));
    let inbound_items = list(&mut con, "at:channel:inbound");
    assert_eq!(inbound_items.len(), 2);
    all_valid("inbound", &inbound_items);

    // The Rust stand-in's items (the harness, the demo, the soak) and extras.
    let good = answer("k1", "ch_k", &q.message_id, &q.chat_id, "**答**");
    let mut with_extra = answer("k2", "ch_k", "", &q.chat_id, "extra field");
    with_extra["target"]["message_id"] = Value::Null;
    with_extra["a_field_from_the_future"] = json!({"x": 1});
    let goods = vec![good.to_string(), with_extra.to_string()];
    all_valid("outbound", &goods);
    // The gateway's own no-answer notices (ANSWER_TIMEOUT), with and
    // without NO_ANSWER_HINT.
    let irt = format!("feishu:{APP}:{}", q.message_id);
    let notice = |text: &str| {
        asktable_feishu_gateway::bridge::contract::notice_item(
            "ch_k",
            &irt,
            &q.message_id,
            &q.chat_id,
            false,
            text,
            1,
        )
    };
    all_valid("outbound", &[notice("no answer yet"), notice("")]);
    // What the schema rejects, each with what the gateway's reason says.
    let bad = |f: &dyn Fn(&mut Value)| {
        let mut v = answer("kb", "ch_k", &q.message_id, &q.chat_id, "x");
        f(&mut v);
        v.to_string()
    };
    let rejected: Vec<(String, &str)> = vec![
        (bad(&|v| v["v"] = json!(2)), "unsupported contract version"),
        (bad(&|v| v["schema"] = json!("at.channel.other")), "unknown schema"),
        (bad(&|v| v["id"] = json!("x".repeat(65))), "longer than 64"),
        (bad(&|v| v["id"] = json!(" ")), "id is missing"),
        (bad(&|v| v["channel_id"] = json!("c h")), "channel id"),
        (bad(&|v| v["target"] = json!({})), "neither message_id nor chat_id"),
        (bad(&|v| v["target"]["message_id"] = json!("om_1/../x")), "not a Feishu id"),
        (bad(&|v| v["kind"] = json!("shout")), "unknown kind"),
        (
            bad(&|v| {
                v["kind"] = json!("progress");
                v["in_reply_to"] = Value::Null;
            }),
            "needs in_reply_to",
        ),
        (bad(&|v| v["status"] = json!("maybe")), "unknown status"),
        (bad(&|v| v["content"]["text"] = json!("  ")), "empty"),
        (bad(&|v| v["in_reply_to"] = json!("r".repeat(257))), "in_reply_to"),
        (bad(&|v| v["target"]["reply_in_thread"] = json!("yes")), "invalid JSON"),
    ];
    let raws: Vec<String> = rejected.iter().map(|(r, _)| r.clone()).collect();
    for ((raw, _), verdict) in rejected.iter().zip(validate("outbound", &raws)) {
        assert!(
            verdict.starts_with("invalid"),
            "the schema accepts what the gateway rejects: {raw}"
        );
    }
    for raw in raws.iter().chain(&goods) {
        push_outbound(&mut con, raw);
    }
    assert!(wait_for(SECS(15), || dead_letters(&mut con).len() == rejected.len()), "{}", gw.log());
    assert!(sim.wait_messages(2, SECS(10)), "the item with an extra field was not delivered");
    let dead = list(&mut con, "at:channel:outbound:feishu:dead");
    for (raw, want) in &rejected {
        let letter: Vec<Value> = dead
            .iter()
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter(|d| d["item"].as_str() == Some(raw.as_str()))
            .collect();
        assert_eq!(letter.len(), 1, "{raw}");
        let reason = letter[0]["reason"].as_str().unwrap();
        assert!(reason.contains(want), "{raw}: reason {reason:?} lacks {want:?}");
    }
    all_valid("dead-letter", &dead);

    // Receipts: one per final item, delivered or dead-lettered.
    assert!(wait_for(SECS(5), || strings(&mut con, "at:channel:receipt:feishu:*").len() >= 3));
    let receipts = strings(&mut con, "at:channel:receipt:feishu:*");
    all_valid("receipt", &receipts);
    let k1: Value = serde_json::from_str(
        &redis::cmd("GET").arg("at:channel:receipt:feishu:k1").query::<String>(&mut con).unwrap(),
    )
    .unwrap();
    let shown = sim
        .messages()
        .iter()
        .find(|m| m.reply_to.as_deref() == Some(q.message_id.as_str()))
        .map(|m| m.message_id.clone());
    assert_eq!(k1["status"], "delivered");
    assert_eq!(k1["message_ids"][0].as_str(), shown.as_deref(), "{k1}");
    let kb: Value = serde_json::from_str(
        &redis::cmd("GET").arg("at:channel:receipt:feishu:kb").query::<String>(&mut con).unwrap(),
    )
    .unwrap();
    assert_eq!(kb["status"], "dead_lettered");
    assert!(kb["reason"].as_str().is_some_and(|r| !r.is_empty()));
    let ttl: i64 = redis::cmd("TTL").arg("at:channel:receipt:feishu:k1").query(&mut con).unwrap();
    assert!(ttl > 86_000 && ttl <= 86_400, "{ttl}");

    // Status and heartbeat.
    assert!(wait_for(SECS(5), || !strings(&mut con, "at:channel:gateway:feishu:*").is_empty()));
    all_valid("status", &strings(&mut con, "at:channel:status:feishu:*"));
    all_valid("heartbeat", &strings(&mut con, "at:channel:gateway:feishu:*"));
    // The config `channel put` writes.
    let mut c = Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"));
    c.env_clear().env("REDIS_URL", redis.url()).env("FEISHU_APP_SECRET", "s3cret").args([
        "channel",
        "put",
        "ch_put",
        "--app-id",
        "cli_put",
        "--agent-id",
        "ag",
    ]);
    assert!(output_within(&mut c, SECS(20)).status.success());
    let cfg: String =
        redis::cmd("HGET").arg("at:channel:config:feishu").arg("ch_put").query(&mut con).unwrap();
    all_valid("channel-config", &[cfg, channel("ch_x", "cli_x", "s").to_string()]);
}

/// An inbound item for `q` as the gateway writes it (for the reference
/// server's functions).
fn inbound_item_of(q: &MessageEvent) -> String {
    json!({
        "schema": "at.channel.inbound", "v": 1, "id": format!("feishu:{APP}:{}", q.message_id),
        "channel_id": "ch_r", "question": "问题",
        "message": {"message_id": q.message_id}, "chat": {"chat_id": q.chat_id},
    })
    .to_string()
}

#[test]
fn the_reference_server_answers_through_the_real_gateway_and_reads_the_receipt() {
    let (redis, sim, mut con) = world(&[("ch_r", APP, SECRET)]);
    let gw = start_gateway(&redis.url(), &sim, "gw-ref", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    let mut server = Command::new(python());
    server
        .arg(format!("{ROOT}/examples/server/asktable_server.py"))
        .env("REDIS_URL", redis.url())
        .env("SERVER_ID", "ref-1");
    let server = Gateway::spawn(server, "serving at:channel:inbound", SECS(20));
    let questions: Vec<MessageEvent> =
        (0..3).map(|i| MessageEvent::text(APP, &format!("参考问题 {i}"))).collect();
    for q in &questions {
        assert!(sim.wait_acked(sim.push_event(APP, &q.json()), SECS(5)));
    }
    // A redelivered question (same message id) is stored once and answered once.
    assert!(sim.wait_acked(sim.push_event(APP, &questions[0].json()), SECS(5)));
    assert!(
        sim.wait_until(SECS(20), |s| {
            questions.iter().all(|q| {
                s.messages().iter().any(|m| {
                    m.reply_to.as_deref() == Some(q.message_id.as_str())
                        && m.text().contains("合计 **1,284 万元**")
                })
            })
        }),
        "{}\n{}",
        server.log(),
        gw.log()
    );
    // One card per question: the progress card completed in place.
    for q in &questions {
        let n = sim
            .messages()
            .iter()
            .filter(|m| m.reply_to.as_deref() == Some(q.message_id.as_str()))
            .count();
        assert_eq!(n, 1, "{:?}", sim.messages());
    }
    assert!(
        wait_for(SECS(15), || server.log().matches("delivered as om_").count() == 3),
        "{}",
        server.log()
    );
    assert!(wait_for(SECS(5), || llen(&mut con, "asktable:inbound:processing:ref-1") == 0));
    // Nothing it wrote was dead-lettered, and its items are schema-valid.
    let dead: Vec<String> = list(&mut con, "at:channel:outbound:feishu:dead");
    assert!(dead.is_empty(), "{dead:?}");
    let item = inbound_item_of(&questions[0]);
    let code = format!(
        "import json, sys; sys.path.insert(0, '{ROOT}/examples/server'); import asktable_server as s; \
         item = json.loads(sys.argv[1]); print(s.outbound(item, 'p-1', 'progress', 'so far')); \
         print(s.outbound(item, 'a-1', 'final', s.agent(item['question'])))"
    );
    let out = output_within(Command::new(python()).args(["-c", &code, &item]), SECS(30));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let items: Vec<String> =
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(items.len(), 2);
    all_valid("outbound", &items);
}

/// Every environment variable the code reads is in the README's table (or,
/// for test settings, in docs/RELIABILITY.md), and every variable the tables
/// list is read by the code or by a library the table names.
#[test]
fn the_environment_tables_match_the_code() {
    let mut read = BTreeSet::new();
    let mut stack = vec![std::path::PathBuf::from(format!("{ROOT}/src"))];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let code = std::fs::read_to_string(&p).unwrap();
            for pat in ["get(\"", "var(\"", "var_os(\"", "get_env(\""] {
                for part in code.split(pat).skip(1) {
                    let name: String = part.chars().take_while(|c| *c != '"').collect();
                    // Variables have an underscore (JSON keys like "URL" do not).
                    if name.contains('_')
                        && name
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
                    {
                        read.insert(name);
                    }
                }
            }
            // The files that read the environment: every variable-shaped
            // string literal in them is a variable they read (config.rs
            // through its `secs(…)` helper, proxy.rs from a list).
            let readers =
                ["config.rs", "proxy.rs", "logging.rs", "systemd.rs", "panics.rs", "main.rs"];
            if readers.iter().any(|r| p.ends_with(r)) {
                for part in code.split('"').skip(1).step_by(2) {
                    let upper = part.to_ascii_uppercase();
                    let shaped = upper.contains('_')
                        && upper.len() > 3
                        && upper
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
                        && (part == upper || (p.ends_with("proxy.rs") && part.ends_with("_proxy")));
                    // env!("CARGO_…") is the build's, not the process's.
                    if shaped && !upper.starts_with("CARGO_") {
                        read.insert(upper);
                    }
                }
            }
        }
    }
    let doc = |path: &str| std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap();
    let table_names = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with("| `"))
            .flat_map(|l| {
                let first = l.split('|').nth(1).unwrap_or_default().to_owned();
                first.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>()
            })
            .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_') && n.len() > 2)
            .collect()
    };
    let readme = table_names(&doc("README.md"));
    let protocol = table_names(&doc("docs/PROTOCOL.md"));
    let reliability = doc("docs/RELIABILITY.md");
    // Read by the process through libraries or systemd, not by name in src/.
    let by_libraries: BTreeSet<&str> = ["SSL_CERT_FILE"].into();
    // systemd's and the command line's own, documented where they apply.
    let elsewhere: BTreeSet<&str> = [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "JOURNAL_STREAM",
        "FEISHU_APP_SECRET",
        "FEISHU_ENCRYPT_KEY",
        "FEISHU_VERIFICATION_TOKEN",
        "HOSTNAME",
    ]
    .into();
    for name in &read {
        let documented = readme.contains(name)
            || elsewhere.contains(name.as_str())
            || (name == "GATEWAY_FAULTS" && reliability.contains("GATEWAY_FAULTS"));
        assert!(documented, "{name} is read by the code but not in README.md's environment table");
    }
    for name in readme.iter().chain(&protocol) {
        assert!(
            read.contains(name) || by_libraries.contains(name.as_str()),
            "{name} is documented but nothing reads it"
        );
    }
    for name in &readme {
        assert!(
            protocol.contains(name) || by_libraries.contains(name.as_str()) || name == "RUST_LOG",
            "{name} is in README.md but not in docs/PROTOCOL.md's table"
        );
    }
    // The others are read by name and explained in prose somewhere.
    let prose = doc("README.md") + &doc("docs/PROTOCOL.md") + &doc("ARCHITECTURE.md");
    for name in read.iter().filter(|n| elsewhere.contains(n.as_str())) {
        let systemd =
            name.starts_with("WATCHDOG") || name == "NOTIFY_SOCKET" || name == "JOURNAL_STREAM";
        assert!(systemd || prose.contains(name.as_str()), "{name} is read but explained nowhere");
    }
}
