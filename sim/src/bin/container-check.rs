//! `make container-test` (called by .ci/container-test): the gateway's
//! image under podman-compose, as AskTable's guide runs it. dist/compose.yaml
//! plus a test file with `asktable_redis` (a local image of this machine's
//! redis-server) and the simulator's address; the simulator and a stand-in
//! responder run here, reachable from the containers.
//!
//! Checks: a question answered through the container; `Feishu Gateway
//! running` in its log, with times in TZ=Asia/Shanghai (+08:00); the
//! healthcheck healthy, unhealthy while Redis is stopped, healthy again;
//! `stop` exits 0 within 10 s; a recreated container keeps its instance id
//! and delivers the answer it had not finished.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use feishu_sim::events::MessageEvent;
use feishu_sim::harness::{answer, channel, llen, put_channel, wait_for};
use feishu_sim::{Fault, Route, Sim, SimOptions};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const APP: &str = "cli_c0a7a1e500000001";
const SECRET: &str = "container-secret";
const GW: &str = "asktable_feishu_gateway";
const INSTANCE: &str = "asktable_feishu_gateway";

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} is required (set by .ci/container-test)"))
}

/// Runs a command, bounded; returns (success, stdout+stderr).
fn run(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let out = feishu_sim::harness::output_within(cmd, limit);
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn podman(args: &[&str]) -> (bool, String) {
    run(Command::new("podman").args(args), Duration::from_secs(120))
}

struct Compose {
    files: Vec<String>,
}

impl Compose {
    fn run(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new("podman-compose");
        cmd.args(["-p", "asktable"]);
        for f in &self.files {
            cmd.args(["-f", f]);
        }
        cmd.args(args);
        run(&mut cmd, Duration::from_secs(180))
    }
}

fn health() -> bool {
    podman(&["healthcheck", "run", GW]).0
}

fn check(ok: bool, what: &str, detail: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        println!("container-check: ✔ {what}");
        Ok(())
    } else {
        Err(format!("{what}\n{}", detail()))
    }
}

fn main() -> ExitCode {
    match checks() {
        Ok(()) => {
            println!("container-check: OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("container-check: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn checks() -> Result<(), String> {
    let (host, redis_port, dir) = (env("SIM_HOST"), env("REDIS_PORT"), env("WORK_DIR"));
    let image = env("GATEWAY_IMAGE");
    let redis_image = env("REDIS_IMAGE");
    let sim = Sim::start(SimOptions { public_host: Some(host.clone()), ..SimOptions::default() });
    sim.add_app(APP, SECRET);
    let test_file = format!("{dir}/compose.test.yaml");
    std::fs::write(
        &test_file,
        format!(
            "services:\n  asktable_redis:\n    image: {redis_image}\n    container_name: asktable_redis\n    ports:\n      - \"127.0.0.1:{redis_port}:6379\"\n  {GW}:\n    image: {image}\n    environment:\n      FEISHU_BASE_URL: {}\n      RUST_LOG: info\n",
            sim.base_url()
        ),
    )
    .map_err(|e| e.to_string())?;
    let compose = Compose { files: vec![env("COMPOSE_FILE"), test_file] };
    let _ = compose.run(&["down", "-t", "2"]);
    let result = scenario(&sim, &compose, &redis_port);
    if result.is_err() {
        eprintln!("{}", podman(&["logs", GW]).1);
    }
    let _ = compose.run(&["down", "-t", "2"]);
    result
}

fn scenario(sim: &Sim, compose: &Compose, redis_port: &str) -> Result<(), String> {
    let (ok, out) = compose.run(&["up", "-d", "asktable_redis"]);
    check(ok, "asktable_redis is up", || out)?;
    let url = format!("redis://127.0.0.1:{redis_port}/0");
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut con = None;
    wait_for(Duration::from_secs(20), || {
        con = client.get_connection_with_timeout(Duration::from_secs(1)).ok();
        con.is_some()
    });
    let mut con = con.ok_or("Redis in its container never answered")?;
    put_channel(&mut con, "ch_c", &channel("ch_c", APP, SECRET));

    let (ok, out) = compose.run(&["up", "-d"]);
    check(ok, "docker compose up -d (podman-compose)", || out)?;
    check(
        sim.wait_connections(APP, 1, Duration::from_secs(30)),
        "the gateway in its container connects to Feishu",
        || podman(&["logs", GW]).1,
    )?;
    let logs = podman(&["logs", GW]).1;
    check(
        logs.contains("Feishu Gateway running"),
        "`Feishu Gateway running` in docker logs",
        || logs.clone(),
    )?;
    check(
        logs.lines().next().is_some_and(|l| l.get(23..29) == Some("+08:00")),
        "log times in TZ=Asia/Shanghai (+08:00)",
        || logs.clone(),
    )?;

    // A question through the container and back.
    let q = MessageEvent::text(APP, "容器里的问题");
    let push = sim.push_event(APP, &q.json());
    check(sim.wait_acked(push, Duration::from_secs(10)), "the event is acknowledged", || {
        podman(&["logs", GW]).1
    })?;
    let popped: Option<[String; 2]> = redis::cmd("BRPOP")
        .arg("at:channel:inbound")
        .arg(10)
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    check(popped.is_some(), "the question reaches at:channel:inbound", String::new)?;
    let a = answer("c-1", "ch_c", &q.message_id, &q.chat_id, "答案 from the container");
    redis::cmd("LPUSH")
        .arg("at:channel:outbound:feishu")
        .arg(a.to_string())
        .query::<()>(&mut con)
        .map_err(|e| e.to_string())?;
    check(
        sim.wait_until(Duration::from_secs(15), |s| {
            s.messages().iter().any(|m| m.text().contains("from the container"))
        }),
        "the answer reaches Feishu",
        || podman(&["logs", GW]).1,
    )?;

    // Health follows Redis.
    check(wait_for(Duration::from_secs(30), health), "healthcheck: healthy", || {
        podman(&["exec", GW, "/usr/local/bin/asktable-feishu-gateway", "health"]).1
    })?;
    let (ok, out) = podman(&["stop", "-t", "5", "asktable_redis"]);
    check(ok, "Redis stopped", || out)?;
    check(
        wait_for(Duration::from_secs(30), || !health()),
        "healthcheck: unhealthy with Redis stopped",
        || podman(&["healthcheck", "run", GW]).1,
    )?;
    let (ok, out) = podman(&["start", "asktable_redis"]);
    check(ok, "Redis started again", || out)?;
    check(wait_for(Duration::from_secs(60), health), "healthcheck: healthy again", || {
        podman(&["healthcheck", "run", GW]).1
    })?;
    let mut con =
        client.get_connection_with_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    put_channel(&mut con, "ch_c", &channel("ch_c", APP, SECRET)); // Redis keeps nothing on disk

    // An answer in flight when the container stops: Feishu fails the
    // first attempts (retried with backoff), the container stops meanwhile.
    check(
        sim.wait_connections(APP, 1, Duration::from_secs(30)),
        "reconnected after Redis came back",
        || podman(&["logs", GW]).1,
    )?;
    for _ in 0..6 {
        sim.inject(Route::Reply, Fault::server_error());
    }
    let q2 = MessageEvent::text(APP, "第二个问题");
    let a2 = answer("c-2", "ch_c", &q2.message_id, &q2.chat_id, "the unfinished answer");
    redis::cmd("LPUSH")
        .arg("at:channel:outbound:feishu")
        .arg(a2.to_string())
        .query::<()>(&mut con)
        .map_err(|e| e.to_string())?;
    let processing = format!("at:channel:outbound:feishu:processing:{INSTANCE}");
    check(
        wait_for(Duration::from_secs(10), || llen(&mut con, &processing) == 1),
        "the answer is being delivered",
        || podman(&["logs", GW]).1,
    )?;
    let t = Instant::now();
    let (ok, out) = podman(&["stop", "-t", "15", GW]);
    let took = t.elapsed();
    let code = podman(&["inspect", "--format", "{{.State.ExitCode}}", GW]).1;
    check(
        ok && took < Duration::from_secs(10) && code.trim() == "0",
        &format!("docker stop: exit {} after {:.1} s (< 10 s)", code.trim(), took.as_secs_f64()),
        || format!("{out}\n{}", podman(&["logs", GW]).1),
    )?;
    check(
        llen(&mut con, &processing) == 1,
        "the unfinished answer stays in its instance's processing list",
        String::new,
    )?;
    let early = sim.messages().iter().any(|m| m.text() == "the unfinished answer");
    check(!early, "not shown before the recreation (Feishu kept failing)", String::new)?;
    let redis_id = podman(&["inspect", "--format", "{{.Id}}", "asktable_redis"]).1;
    let gw_id = podman(&["inspect", "--format", "{{.Id}}", GW]).1;
    // podman-compose 1.0's --force-recreate takes the whole project down
    // (Redis too); the container alone is removed and created again, as
    // `docker compose up -d` does after an image upgrade.
    let _ = podman(&["rm", "-f", GW]);
    let (ok, out) = compose.run(&["up", "-d", "--no-deps", GW]);
    let new_id = podman(&["inspect", "--format", "{{.Id}}", GW]).1;
    check(ok && new_id != gw_id, "the container is recreated", || out)?;
    let same_redis = podman(&["inspect", "--format", "{{.Id}}", "asktable_redis"]).1 == redis_id;
    check(same_redis && llen(&mut con, &processing) <= 1, "… next to the same Redis", String::new)?;
    check(
        sim.wait_until(Duration::from_secs(40), |s| {
            s.messages().iter().any(|m| m.text() == "the unfinished answer")
        }),
        "the recreated container (same instance id) delivers it",
        || podman(&["logs", GW]).1,
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let shown = sim.messages().iter().filter(|m| m.text() == "the unfinished answer").count();
    check(shown == 1, &format!("shown once ({shown})"), String::new)?;
    let logs = podman(&["logs", GW]).1;
    check(
        logs.contains(&format!("instance {INSTANCE}")),
        "the instance id survived the recreation",
        || logs.clone(),
    )?;
    Ok(())
}
