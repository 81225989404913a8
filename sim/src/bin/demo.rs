//! `make demo`: one question travels from a local Feishu simulator through
//! the gateway and Redis to a stand-in for AskTable Server and back.
//! Everything runs on 127.0.0.1 and stops at the end; nothing is left behind.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use feishu_sim::events::MessageEvent;
use feishu_sim::harness::{
    Gateway, RedisServer, answer, channel, push_outbound, put_channel, state, wait_for,
};
use feishu_sim::{Sim, SimOptions};
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

const APP: &str = "cli_a1b2c3d4e5f6a7b8";
const SECRET: &str = "demo-app-secret";
const QUESTION: &str = "上个月华东区各省的销售额是多少？";

/// Starts examples/server/asktable_server.py with the venv's Python.
fn reference_server(redis_url: &str) -> Option<Gateway> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("target/lark-venv/bin/python");
    if !python.exists() {
        eprintln!("demo: {} not found; run ./.ci/install-deps first", python.display());
        return None;
    }
    let mut cmd = std::process::Command::new(python);
    cmd.arg(root.join("examples/server/asktable_server.py"))
        .env("REDIS_URL", redis_url)
        .env("SERVER_ID", "demo")
        .env("PROGRESS", "0")
        .env("RECEIPT_WAIT", "0");
    Some(Gateway::spawn(cmd, "serving", Duration::from_secs(15)))
}

/// Steps 3 and 4 with the built-in stand-in: shows the stored item, then
/// answers it.
fn builtin_responder(
    con: &mut redis::Connection,
    gw: &Gateway,
    sim: &Sim,
    push: u64,
    ev: &MessageEvent,
) -> bool {
    step(3, "The gateway stores it in Redis, then acknowledges the event to Feishu:");
    let popped: Option<[String; 2]> =
        redis::cmd("BRPOP").arg("at:channel:inbound").arg(10).query(con).unwrap_or(None);
    let Some([_, item]) = popped else {
        eprintln!("demo: no item reached at:channel:inbound:\n{}", gw.log());
        return false;
    };
    let item: Value = serde_json::from_str(&item).expect("inbound item is JSON");
    let shown = serde_json::json!({
        "id": item["id"], "channel_id": item["channel_id"], "agent_id": item["agent_id"],
        "session_key": item["session_key"], "question": item["question"], "chat": item["chat"],
    });
    println!("      BRPOP at:channel:inbound →");
    println!("{}", indent(&serde_json::to_string_pretty(&shown).expect("JSON")));
    if sim.wait_acked(push, Duration::from_secs(5)) {
        println!("      Feishu received the ack {{\"code\":200}}");
    }

    step(4, "A stand-in for AskTable Server answers with Markdown on at:channel:outbound:feishu:");
    let question = item["question"].as_str().unwrap_or_default();
    let markdown = format!(
        "你问的是：**{question}**\n\n| 省份 | 销售额（万元） | 同比 |\n|---|---|---|\n| 上海 | 512 | +12% |\n| 浙江 | 433 | +8% |\n| 江苏 | 339 | +5% |\n\n合计 **1,284 万元**。"
    );
    let out = answer("demo-answer-1", "ch_demo", &ev.message_id, &ev.chat_id, &markdown);
    push_outbound(con, &out.to_string());
    println!("{}", indent(&markdown));
    true
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
}

/// `make demo` uses the gateway built next to it. CI also runs it with
/// `DEMO_GATEWAY=target/static/asktable-feishu-gateway DEMO_TLS=1`: the
/// shipped binary, over https:// and wss:// with the simulator's private CA.
/// With `DEMO_SERVER=python` the reference AskTable Server
/// (examples/server/asktable_server.py) answers instead of the built-in
/// stand-in.
fn main() -> ExitCode {
    let gateway =
        std::env::var_os("DEMO_GATEWAY").map(std::path::PathBuf::from).unwrap_or_else(|| {
            std::env::current_exe().expect("current exe").with_file_name("asktable-feishu-gateway")
        });
    let tls = std::env::var_os("DEMO_TLS").is_some_and(|v| v == "1");
    if !gateway.exists() {
        eprintln!(
            "demo: {} not found; run `make demo` (it builds everything first)",
            gateway.display()
        );
        return ExitCode::FAILURE;
    }
    println!("AskTable Feishu Gateway demo: everything runs locally, on 127.0.0.1 only.");

    step(1, "Starting a private redis-server, the Feishu simulator (one bot app) and the gateway…");
    let redis = RedisServer::start();
    let sim = Sim::start(SimOptions { ping_interval: 5, tls, ..SimOptions::default() });
    let ca_dir = tempfile::tempdir().expect("temp dir");
    let ca = ca_dir.path().join("sim-ca.pem");
    if let Some(pem) = sim.ca_pem() {
        std::fs::write(&ca, pem).expect("write CA");
    }
    sim.add_app(APP, SECRET);
    let mut con = redis.con();
    let mut cfg = channel("ch_demo", APP, SECRET);
    cfg["agent_id"] = Value::from("agent_sales");
    put_channel(&mut con, "ch_demo", &cfg);
    println!("      redis          {}", redis.url());
    println!("      Feishu (sim)   {}", sim.base_url());
    println!(
        "      channel config HSET at:channel:config:feishu ch_demo {{\"app_id\": \"{APP}\", \"app_secret\": \"***\", …}}"
    );
    let mut env = vec![("RUST_LOG", "info")];
    if tls {
        env.push(("SSL_CERT_FILE", ca.to_str().expect("UTF-8 temp path")));
    }
    let gw = Gateway::start(&gateway, &redis.url(), &sim, "gw-demo", &env);
    if !sim.wait_connections(APP, 1, Duration::from_secs(15))
        || !wait_for(Duration::from_secs(10), || {
            state(&mut con, "ch_demo").as_deref() == Some("connected")
        })
    {
        eprintln!("demo: the gateway did not connect:\n{}", gw.log());
        return ExitCode::FAILURE;
    }
    println!("      gateway        connected: at:channel:status:feishu:ch_demo says \"connected\"");

    step(2, &format!("A Feishu user asks the bot in a one-on-one chat: \"{QUESTION}\""));
    let ev = MessageEvent::text(APP, QUESTION);
    let push = sim.push_event(APP, &ev.json());
    println!("      Feishu pushes event {} over the long connection (pbbp2 frame)", ev.event_id);

    let python_server = std::env::var_os("DEMO_SERVER").is_some_and(|v| v == "python");
    let _server = if python_server {
        match reference_server(&redis.url()) {
            Some(server) => {
                step(
                    3,
                    "The gateway stores it in Redis and acknowledges it; the reference server takes it:",
                );
                if sim.wait_acked(push, Duration::from_secs(5)) {
                    println!("      Feishu received the ack {{\"code\":200}}");
                }
                if !server.wait_log("answered", Duration::from_secs(15)) {
                    eprintln!("demo: the reference server did not answer:\n{}", server.log());
                    return ExitCode::FAILURE;
                }
                step(
                    4,
                    "examples/server/asktable_server.py answered on at:channel:outbound:feishu:",
                );
                println!("{}", indent(&server.log()));
                Some(server)
            }
            None => return ExitCode::FAILURE,
        }
    } else {
        if !builtin_responder(&mut con, &gw, &sim, push, &ev) {
            return ExitCode::FAILURE;
        }
        None
    };

    step(5, "The gateway renders it and replies in Feishu:");
    if !sim.wait_messages(1, Duration::from_secs(15)) {
        eprintln!("demo: no reply reached Feishu:\n{}", gw.log());
        return ExitCode::FAILURE;
    }
    let reply = sim.messages().remove(0);
    println!(
        "      POST /open-apis/im/v1/messages/{}/reply  msg_type={}  uuid={}",
        reply.reply_to.as_deref().unwrap_or("?"),
        reply.msg_type,
        reply.uuid.as_deref().unwrap_or("-")
    );

    step(6, "The answer as Feishu received it:");
    println!("{}", indent(&reply.text()));
    println!(
        "\nDone: the question went Feishu → gateway → Redis → responder → Redis → gateway → Feishu."
    );
    println!("Stopping everything the demo started.");
    drop(gw);
    drop(sim);
    drop(redis);
    ExitCode::SUCCESS
}
