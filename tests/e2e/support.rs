//! Test helpers: the simulator crate's harness, plus the gateway binary
//! built for these tests.
#![allow(dead_code, unused_imports)] // each test file uses a different subset

pub use feishu_sim::events::MessageEvent;
pub use feishu_sim::harness::*;
pub use feishu_sim::{Sim, SimOptions};

/// Starts the gateway binary of this build.
pub fn start_gateway(
    redis_url: &str,
    sim: &Sim,
    instance: &str,
    extra: &[(&str, &str)],
) -> Gateway {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"));
    Gateway::start(bin, redis_url, sim, instance, extra)
}

/// A private Redis and the simulator with one channel per
/// `(channel_id, app_id, secret)`: the app registered in the simulator, its
/// config in Redis.
pub fn world(channels: &[(&str, &str, &str)]) -> (RedisServer, Sim, redis::Connection) {
    world_on(RedisServer::start(), channels)
}

/// [`world`] on a given Redis (e.g. one that survives restarts).
pub fn world_on(
    redis: RedisServer,
    channels: &[(&str, &str, &str)],
) -> (RedisServer, Sim, redis::Connection) {
    let sim = sim();
    let mut con = redis.con();
    for (id, app, secret) in channels {
        sim.add_app(app, secret);
        put_channel(&mut con, id, &channel(id, app, secret));
    }
    (redis, sim, con)
}

/// `GET path` on 127.0.0.1:`port`: (HTTP status, body); status 0 when the
/// server closed the connection without answering.
pub fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(SECS(5))).unwrap();
    // A server that closes at once (a probe it could not serve) is an
    // answer too: no status.
    if write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0);
    (code, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// The value of one series in a Prometheus exposition.
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

/// Runs one operator command of this build against `redis_url` (and the
/// simulator as Feishu), with `stdin`; bounded to 30 s.
pub fn run_cli(
    redis_url: &str,
    sim: Option<&Sim>,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"));
    cmd.env_clear()
        .env("REDIS_URL", redis_url)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(sim) = sim {
        cmd.env("FEISHU_BASE_URL", sim.base_url());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let mut out = None;
    // Bounded: the commands finish in well under the limit.
    assert!(wait_for(SECS(30), || {
        out = child.try_wait().unwrap();
        out.is_some()
    }));
    child.wait_with_output().unwrap()
}

/// A command's stdout and stderr together.
pub fn out_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
