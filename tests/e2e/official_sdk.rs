//! The official Feishu Python SDK (lark-oapi 1.7.5) against feishu-sim:
//! proof that the simulator speaks the protocol the official client
//! speaks (endpoint, pbbp2 frames, pings, fragments, acks).
//! `.ci/install-deps` puts the SDK in target/lark-venv.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use support::*;

#[test]
fn the_official_client_connects_pings_receives_and_acks() {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/lark-venv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sim/official/lark_client.py");
    assert!(std::path::Path::new(python).exists(), "{python} missing: run ./.ci/install-deps");
    let sim = sim();
    let app = "cli_0ff1c1a100000001";
    sim.add_app(app, "official-secret");
    let mut child = Command::new(python)
        .args([script, app, "official-secret", &sim.base_url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // The SDK logs to stdout too; only the handler's lines matter.
        for line in
            BufReader::new(stdout).lines().map_while(Result::ok).filter(|l| l.starts_with("EVENT "))
        {
            let _ = tx.send(line);
        }
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(sim.wait_connections(app, 1, SECS(30)), "the official client did not connect");
        assert!(
            sim.wait_until(SECS(10), |s| s.pings(app) >= 1),
            "no ping from the official client"
        );
        assert_eq!(sim.invalid_frames(), 0);

        let ev = MessageEvent::text(app, "official hello");
        let push = sim.push_event(app, &ev.json());
        assert!(sim.wait_acked(push, SECS(10)), "no ack 200 from the official client");
        let line = rx.recv_timeout(SECS(10)).expect("the handler saw the event");
        assert_eq!(line, format!("EVENT {} {{\"text\": \"official hello\"}}", ev.message_id));
        let ack = &sim.acks(push)[0];
        assert!(ack.headers.iter().any(|(k, _)| k == "biz_rt"), "{:?}", ack.headers);

        // A fragmented event, reassembled by the official client.
        let long = MessageEvent::text(app, &"分片".repeat(300));
        let push = sim.push_event_in_parts(app, &long.json(), 3);
        assert!(sim.wait_acked(push, SECS(10)), "fragmented event not acked");
        let line = rx.recv_timeout(SECS(10)).expect("the handler saw the fragmented event");
        assert!(line.starts_with(&format!("EVENT {}", long.message_id)), "{line}");
        assert_eq!(sim.acks(push).len(), 1);
        // Pongs carried a ClientConfig the client accepted: it keeps pinging.
        let before = sim.pings(app);
        assert!(sim.wait_until(SECS(10), |s| s.pings(app) > before), "the client stopped pinging");
        assert_eq!(sim.invalid_frames(), 0);
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// `make bench` compares the gateway with bridges on the official Python
/// and Node SDKs (sim/official/lark_bridge.py, node_bridge.js); the
/// comparison is fair only if all do the same work: the same inbound item
/// through the same script, and one reply per answer.
#[test]
fn the_benchmarks_sdk_bridges_store_what_the_gateway_stores_and_reply() {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = format!("{root}/target/lark-venv/bin/python");
    assert!(std::path::Path::new(&python).exists(), "{python} missing: run ./.ci/install-deps");
    let node_modules = format!("{root}/target/node-bridge/node_modules");
    assert!(
        std::path::Path::new(&node_modules).exists(),
        "{node_modules} missing: run ./.ci/install-deps"
    );
    let sim = sim();
    let app = "cli_0ff1c1a1b41d9e01";
    sim.add_app(app, "bridge-secret");
    let bot = sim.bot_open_id(app).unwrap();
    let events = [
        MessageEvent::text(app, "本月销售额是多少？"),
        MessageEvent::text(app, "@_user_1  各省 排名")
            .in_group("oc_group_bench")
            .mention("@_user_1", &bot, "AskBot"),
    ];
    // The same events through the gateway and through the bridge, each
    // with its own Redis.
    let mut stored = Vec::new();
    for subject in ["gateway", "python", "node"] {
        let redis = RedisServer::start();
        let mut con = redis.con();
        let mut cfg = channel("ch_b", app, "bridge-secret");
        cfg["agent_id"] = "agent_1".into();
        put_channel(&mut con, "ch_b", &cfg);
        let running = if subject == "gateway" {
            start_gateway(&redis.url(), &sim, "gw-b", &[("TYPING_REACTION", "")])
        } else {
            let mut cmd = if subject == "python" {
                let mut c = Command::new(&python);
                c.arg(format!("{root}/sim/official/lark_bridge.py"));
                c
            } else {
                let mut c = Command::new("node");
                c.env("NODE_PATH", &node_modules)
                    .arg(format!("{root}/sim/official/node_bridge.js"));
                c
            };
            cmd.arg(sim.base_url())
                .arg(redis.url())
                .arg(format!("{root}/src/bridge/contract/inbound.lua"));
            Gateway::spawn(cmd, "READY", SECS(60))
        };
        assert!(sim.wait_connections(app, 1, SECS(30)), "{subject}: {}", running.log());
        let mut items = Vec::new();
        for ev in &events {
            let push = sim.push_event(app, &ev.json());
            assert!(sim.wait_acked(push, SECS(10)), "{subject}: {}", running.log());
            // Feishu sends it again: stored once all the same.
            let again = sim.push_event(app, &ev.json());
            assert!(sim.wait_acked(again, SECS(10)));
            let mut got = inbound(&mut con);
            assert_eq!(got.len(), items.len() + 1, "{subject} stores each message once");
            let mut item = got.pop().expect("the newest item");
            item["ts"] = 0.into();
            items.push(item);
        }
        let before = sim.messages().len();
        let ev = &events[0];
        let item = answer(&format!("a-{subject}"), "ch_b", &ev.message_id, &ev.chat_id, "42");
        push_outbound(&mut con, &item.to_string());
        assert!(sim.wait_messages(before + 1, SECS(10)), "{subject}: {}", running.log());
        let reply = &sim.messages()[before];
        assert_eq!(reply.reply_to.as_deref(), Some(ev.message_id.as_str()));
        assert_eq!(reply.text(), "42");
        assert!(reply.uuid.is_some(), "{subject} sends with an idempotency key");
        drop(running);
        assert!(sim.wait_until(SECS(10), |s| s.connections(app) == 0));
        stored.push(items);
    }
    assert_eq!(stored[0], stored[1], "the Python bridge builds the gateway's inbound items");
    assert_eq!(stored[0], stored[2], "the Node bridge builds the gateway's inbound items");
}
