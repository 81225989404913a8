//! Honest health (issue 11, item 5): the Redis trouble is named (OOM,
//! READONLY, NOPERM, wrong password, unreachable) in the log, `/healthz`,
//! `check` and `status`, without flapping while reads still work;
//! `/healthz` fails while events are refused, serves every client promptly,
//! and reports no bogus stall at start.

use crate::support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const APP: &str = "cli_hea1th0000000000a";
const SECRET: &str = "health-secret";

fn cmd(redis_url: &str, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"));
    c.env_clear().env("REDIS_URL", redis_url).env("GATEWAY_INSTANCE_ID", "probe").args(args);
    output_within(&mut c, SECS(30))
}

fn all_output(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn config_set(con: &mut redis::Connection, key: &str, value: &str) {
    redis::cmd("CONFIG").arg("SET").arg(key).arg(value).query::<()>(con).unwrap();
}

/// Waits for `/healthz` to answer `code` with a body containing `needle`.
fn wait_health(port: u16, code: u16, needle: &str) -> bool {
    wait_for(SECS(15), || {
        let (c, body) = get(port, "/healthz");
        c == code && body.contains(needle)
    })
}

#[test]
fn out_of_memory_and_read_only_are_named_and_do_not_flap() {
    let (redis, sim, mut con) = world(&[("ch_h", APP, SECRET)]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // Config re-read every second: reads keep working while writes fail.
    let env = [("METRICS_ADDR", addr.as_str()), ("CONFIG_REFRESH_INTERVAL", "1")];
    let gw = start_gateway(&redis.url(), &sim, "gw-h", &env);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    assert!(wait_health(port, 200, "ok"), "{}", gw.log());

    config_set(&mut con, "maxmemory", "1");
    assert!(wait_health(port, 503, "out of memory"), "{}", gw.log());
    let check = cmd(&redis.url(), &["check"]);
    let out = all_output(&check);
    assert!(out.contains("✘") && out.contains("out of memory"), "{out}");
    assert!(out.contains("maxmemory"), "the hint names the fix: {out}");
    let status = cmd(&redis.url(), &["status"]);
    assert!(all_output(&status).contains("may be stale"), "{}", all_output(&status));
    // Several config reads succeed meanwhile: no "works again" in between.
    std::thread::sleep(SECS(4));
    let log = gw.log();
    assert!(log.contains(": out of memory (writes refused):"), "{log}");
    assert!(!log.contains("Redis works again"), "flapped while OOM:\n{log}");
    assert!(!log.contains(": unreachable:"), "OOM reported as unreachable:\n{log}");
    config_set(&mut con, "maxmemory", "0");
    assert!(wait_health(port, 200, "ok"), "{}", gw.log());
    assert!(gw.wait_log("Redis works again", SECS(5)));

    // A replica (of a master that is not there): writes say READONLY.
    let nowhere = free_port().to_string();
    redis::cmd("REPLICAOF").arg("127.0.0.1").arg(&nowhere).query::<()>(&mut con).unwrap();
    assert!(wait_health(port, 503, "read-only"), "{}", gw.log());
    let out = all_output(&cmd(&redis.url(), &["check"]));
    assert!(out.contains("read-only") && out.contains("master"), "{out}");
    redis::cmd("REPLICAOF").arg("NO").arg("ONE").query::<()>(&mut con).unwrap();
    assert!(wait_health(port, 200, "ok"), "{}", gw.log());
    assert_eq!(gw.log().matches("Redis works again").count(), 2, "{}", gw.log());
}

#[test]
fn a_user_without_script_permission_is_named_and_refused_events_fail_health() {
    let (redis, sim, mut con) = world(&[("ch_h", APP, SECRET)]);
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("gw")
        .arg("on")
        .arg(">pw")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-evalsha")
        .arg("-eval")
        .query::<()>(&mut con)
        .unwrap();
    let url = format!("redis://gw:pw@127.0.0.1:{}/0", redis.port);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let gw = start_gateway(&url, &sim, "gw-np", &[("METRICS_ADDR", addr.as_str())]);
    assert!(sim.wait_connections(APP, 1, SECS(10)), "{}", gw.log());
    assert!(wait_health(port, 503, "permission denied"), "{}", gw.log());
    let push = sim.push_event(APP, &MessageEvent::text(APP, "q").json());
    assert!(sim.wait_until(SECS(10), |s| s.acks(push).iter().any(|a| a.code == 500)));
    assert!(gw.log().contains("permission denied (ACL)"), "{}", gw.log());
    let out = all_output(&cmd(&url, &["check"]));
    assert!(out.contains("✘") && out.contains("permission denied"), "{out}");
    // A wrong password is named as such.
    let wrong = format!("redis://gw:nope@127.0.0.1:{}/0", redis.port);
    let out = all_output(&cmd(&wrong, &["check"]));
    assert!(out.contains("authentication failed"), "{out}");
    // Allowed again: the refused event is stored and health recovers.
    redis::cmd("ACL").arg("SETUSER").arg("gw").arg("+@all").query::<()>(&mut con).unwrap();
    assert!(sim.wait_acked(push, SECS(30)), "{}", gw.log());
    assert!(wait_health(port, 200, "ok"), "{}", gw.log());
}

#[test]
fn events_refused_fail_health_even_when_the_main_loop_can_write() {
    let (redis, sim, mut con) = world(&[("ch_h", APP, SECRET)]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let gw = start_gateway(&redis.url(), &sim, "gw-rf", &[("METRICS_ADDR", addr.as_str())]);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    assert!(wait_health(port, 200, "ok"), "{}", gw.log());
    // The inbound list holds another type: every event is refused.
    redis::cmd("SET").arg("at:channel:inbound").arg("x").query::<()>(&mut con).unwrap();
    let push = sim.push_event(APP, &MessageEvent::text(APP, "q").json());
    assert!(sim.wait_until(SECS(10), |s| s.acks(push).iter().any(|a| a.code == 500)));
    assert!(wait_health(port, 503, "events are being refused"), "{}", gw.log());
    redis::cmd("DEL").arg("at:channel:inbound").query::<()>(&mut con).unwrap();
    assert!(sim.wait_acked(push, SECS(30)), "{}", gw.log());
    assert!(wait_health(port, 200, "ok"), "{}", gw.log());
}

#[test]
fn a_slow_probe_client_blocks_no_other_and_start_reports_no_stall() {
    let (redis, sim, _con) = world(&[("ch_h", APP, SECRET)]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = [("METRICS_ADDR", addr.as_str())];
    let mut c = Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"));
    c.env_clear()
        .env("REDIS_URL", redis.url())
        .env("FEISHU_BASE_URL", sim.base_url())
        .env("GATEWAY_INSTANCE_ID", "gw-slow");
    for (k, v) in env {
        c.env(k, v);
    }
    let gw = Gateway::spawn(c, "metrics on", SECS(10));
    // From the first probe on: never a stall of decades.
    let until = Instant::now() + SECS(2);
    while Instant::now() < until {
        let (_, body) = get(port, "/healthz");
        assert!(!body.contains("stalled"), "{body}\n{}", gw.log());
    }
    assert!(wait_health(port, 200, "ok"), "{}", gw.log());
    // A client that sends a byte every 0.5 s...
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let dribble = std::thread::spawn(move || {
        for b in b"GET /healthz HTTP/1.1\r\n" {
            if slow.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    // ...holds up no other probe.
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(port, "/healthz").0, 200);
        assert!(t.elapsed() < SECS(2), "a probe waited {:?} behind a slow client", t.elapsed());
    }
    drop(dribble);
}

/// Issue 12: `health` (the image's HEALTHCHECK) follows the running
/// gateway: its /healthz with METRICS_ADDR, else its heartbeat in Redis.
#[test]
fn the_health_command_follows_the_running_gateway() {
    let (mut redis, sim, _con) = world(&[("ch_h", "cli_hea1th0000000001", "s")]);
    let url = redis.url();
    let port = free_port();
    let addr = format!("0.0.0.0:{port}");
    let health = |env: &[(&str, &str)]| {
        let o = run_cli(&url, None, &["health"], env, "");
        (o.status.code(), out_text(&o))
    };
    let with_metrics = [("METRICS_ADDR", addr.as_str())];
    let (code, out) = health(&with_metrics);
    assert_eq!(code, Some(1), "nothing runs yet: {out}");
    assert!(out.contains("is it running"), "{out}");
    let mut gw = start_gateway(&url, &sim, "gw-h", &[("METRICS_ADDR", &addr)]);
    assert!(wait_for(SECS(10), || health(&with_metrics).0 == Some(0)), "{}", gw.log());
    let by_heartbeat = [("GATEWAY_INSTANCE_ID", "gw-h")];
    let (code, out) = health(&by_heartbeat);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("instance gw-h wrote its heartbeat"), "{out}");
    let (code, out) = health(&[("GATEWAY_INSTANCE_ID", "gw-other")]);
    assert_eq!(code, Some(1), "{out}");
    redis.stop();
    assert!(wait_for(SECS(10), || health(&with_metrics).0 == Some(1)), "{}", gw.log());
    assert!(health(&with_metrics).1.contains("503"), "{}", health(&with_metrics).1);
    redis.restart();
    assert!(wait_for(SECS(15), || health(&with_metrics).0 == Some(0)), "{}", gw.log());
    gw.signal("TERM");
    assert!(gw.wait_exit(SECS(10)).is_some_and(|s| s.success()));
    assert_eq!(health(&by_heartbeat).0, Some(1), "the heartbeat goes with the process");
    assert_eq!(run_cli(&url, None, &["health", "x"], &[], "").status.code(), Some(2));
}
