//! `make bench`: drives the release gateway binary with the simulator and a
//! private redis-server, and writes docs/BENCHMARKS.md.
//!
//! Usage: gateway-bench [--out FILE] [--gateway BIN] [--events N] [--serial N] [--channels 1,100,1000]
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use feishu_sim::events::MessageEvent;
use feishu_sim::harness::{
    Gateway, RedisServer, answer, channel, push_outbound, put_channel, wait_for,
};
use feishu_sim::{Sim, SimOptions};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Args {
    out: Option<PathBuf>,
    gateway: PathBuf,
    events: usize,
    serial: usize,
    channels: Vec<usize>,
}

fn args() -> Args {
    let exe = std::env::current_exe().expect("current exe");
    let mut a = Args {
        out: None,
        gateway: exe.with_file_name("asktable-feishu-gateway"),
        events: 50_000,
        serial: 2_000,
        channels: vec![1, 100, 1000],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => a.out = Some(value().into()),
            "--gateway" => a.gateway = value().into(),
            "--events" => a.events = value().parse().expect("--events N"),
            "--serial" => a.serial = value().parse().expect("--serial N"),
            "--channels" => {
                a.channels =
                    value().split(',').map(|n| n.parse().expect("--channels N,N")).collect()
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

const APP: &str = "cli_bench000000000001";
const SECRET: &str = "bench-secret";

/// A private Redis, the simulator and the gateway with one connected channel.
fn one_channel(gateway: &std::path::Path) -> (RedisServer, Sim, Gateway, redis::Connection) {
    let redis = RedisServer::start();
    let sim = Sim::start(SimOptions { poll: Duration::from_micros(200), ..SimOptions::default() });
    sim.add_app(APP, SECRET);
    let mut con = redis.con();
    put_channel(&mut con, "ch_bench", &channel("ch_bench", APP, SECRET));
    let gw = Gateway::start(gateway, &redis.url(), &sim, "bench", &[("RUST_LOG", "info")]);
    assert!(sim.wait_connections(APP, 1, Duration::from_secs(10)), "{}", gw.log());
    (redis, sim, gw, con)
}

/// Serial latency: one event at a time, from the frame written by the
/// simulator to the item popped from the inbound list.
fn latency(gateway: &std::path::Path, n: usize) -> (Vec<Duration>, f64) {
    let (_redis, sim, gw, mut con) = one_channel(gateway);
    let mut samples = Vec::with_capacity(n);
    let warmup = n / 10;
    for i in 0..n + warmup {
        let push = sim.push_event(APP, &MessageEvent::text(APP, &format!("question {i}")).json());
        let popped: Option<[String; 2]> =
            redis::cmd("BRPOP").arg("at:channel:inbound").arg(5).query(&mut con).expect("BRPOP");
        let got = Instant::now();
        assert!(popped.is_some(), "event {i} never arrived:\n{}", gw.log());
        // The simulator stamps the write just after it returns: wait for the stamp.
        assert!(sim.wait_until(Duration::from_secs(5), |s| s.sent_at(push).is_some()));
        let sent = sim.sent_at(push).expect("sent");
        if i >= warmup {
            samples.push(got - sent);
        }
        assert!(sim.wait_acked(push, Duration::from_secs(5)));
    }
    samples.sort();
    let rss = rss_kib(gw.pid()) as f64;
    (samples, rss)
}

/// Throughput: `n` events queued at once on one connection. Also returns
/// the gateway's CPU time per event.
fn throughput(gateway: &std::path::Path, n: usize) -> (f64, Duration, Duration) {
    let (_redis, sim, gw, mut con) = one_channel(gateway);
    let payloads: Vec<String> =
        (0..n).map(|i| MessageEvent::text(APP, &format!("q{i}")).json()).collect();
    let cpu0 = cpu_time(gw.pid());
    let first = sim.push_event(APP, &payloads[0]);
    for p in &payloads[1..] {
        sim.push_event(APP, p);
    }
    let ok = wait_for(Duration::from_secs(300), || {
        redis::cmd("LLEN").arg("at:channel:inbound").query::<usize>(&mut con).unwrap_or(0) >= n
    });
    let done = Instant::now();
    assert!(ok, "only some events arrived:\n{}", gw.log());
    assert!(sim.wait_until(Duration::from_secs(5), |s| s.sent_at(first).is_some()));
    let start = sim.sent_at(first).expect("sent");
    let elapsed = done - start;
    let cpu = (cpu_time(gw.pid()) - cpu0) / n as u32;
    (n as f64 / elapsed.as_secs_f64(), elapsed, cpu)
}

/// Outbound: serial latency (item pushed → Feishu call received) and the
/// rate of a backlog spread over `apps` apps, next to the rate Feishu's
/// per-app budget allows.
fn outbound(
    gateway: &std::path::Path,
    serial: usize,
    backlog: usize,
    apps: usize,
) -> (Vec<Duration>, f64, f64) {
    let redis = RedisServer::start();
    let sim = Sim::start(SimOptions { poll: Duration::from_millis(20), ..SimOptions::default() });
    let mut con = redis.con();
    for a in 0..apps {
        let app = format!("cli_out{a:013}");
        sim.add_app(&app, SECRET);
        put_channel(&mut con, &format!("ch_{a}"), &channel(&format!("ch_{a}"), &app, SECRET));
    }
    let gw = Gateway::start(
        gateway,
        &redis.url(),
        &sim,
        "bench",
        &[("RUST_LOG", "info"), ("TYPING_REACTION", "")],
    );
    assert!(wait_for(Duration::from_secs(20), || (0..apps)
        .all(|a| sim.connections(&format!("cli_out{a:013}")) == 1)));
    let mut lat = Vec::new();
    for i in 0..serial {
        let item = answer(
            &format!("s{i}"),
            &format!("ch_{}", i % apps),
            &format!("om_s{i}"),
            &format!("oc_s{i}"),
            "答案：1,284 万元。",
        );
        let pushed = Instant::now();
        push_outbound(&mut con, &item.to_string());
        assert!(sim.wait_messages(i + 1, Duration::from_secs(10)), "{}", gw.log());
        lat.push(sim.messages()[i].at - pushed);
        // Round-robin over the apps, slower than the per-app budget, so
        // the figure shows the gateway's own work, not its pacing.
        std::thread::sleep(Duration::from_millis(2));
    }
    lat.sort();
    let items: Vec<String> = (0..backlog)
        .map(|i| {
            answer(
                &format!("b{i}"),
                &format!("ch_{}", i % apps),
                &format!("om_b{i}"),
                &format!("oc_b{}", i % (apps * 30)),
                "**结果**：上海 512，浙江 433。",
            )
            .to_string()
        })
        .collect();
    let t0 = Instant::now();
    let mut pipe = redis::pipe();
    for it in &items {
        pipe.cmd("LPUSH").arg("at:channel:outbound:feishu").arg(it).ignore();
    }
    pipe.query::<()>(&mut con).expect("LPUSH");
    assert!(sim.wait_messages(serial + backlog, Duration::from_secs(300)), "{}", gw.log());
    let rate = backlog as f64 / t0.elapsed().as_secs_f64();
    let budget = apps as f64 * 50.0 / 1.05;
    (lat, rate, budget)
}

/// RSS and threads with 1, 100, 1000 connected channels, one process.
fn footprint(gateway: &std::path::Path, stages: &[usize]) -> Vec<(usize, u64, u64, Duration)> {
    let redis = RedisServer::start();
    let sim = Sim::start(SimOptions { poll: Duration::from_millis(50), ..SimOptions::default() });
    let mut con = redis.con();
    let gw = Gateway::start(gateway, &redis.url(), &sim, "bench", &[("RUST_LOG", "info")]);
    let mut rows = Vec::new();
    let mut have = 0;
    for &target in stages {
        let t0 = Instant::now();
        let mut pipe = redis::pipe();
        for i in have..target {
            let app = format!("cli_{i:016x}");
            sim.add_app(&app, SECRET);
            let id = format!("ch_{i}");
            pipe.cmd("HSET")
                .arg("at:channel:config:feishu")
                .arg(&id)
                .arg(channel(&id, &app, SECRET).to_string());
        }
        pipe.cmd("PUBLISH").arg("at:channel:config:feishu:changed").arg("*");
        pipe.query::<()>(&mut con).expect("HSET");
        let ok = wait_for(Duration::from_secs(120), || {
            (0..target).all(|i| sim.connections(&format!("cli_{i:016x}")) == 1)
        });
        assert!(ok, "not all {target} channels connected:\n{}", gw.log());
        let took = t0.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        rows.push((target, rss_kib(gw.pid()), threads(gw.pid()), took));
        have = target;
    }
    rows
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, Linux, loopback only")
}

fn main() {
    let a = args();
    assert!(
        a.gateway.exists(),
        "gateway binary {} not found (cargo build --release)",
        a.gateway.display()
    );
    let cmd = format!(
        "gateway-bench --events {} --serial {} --channels {}",
        a.events,
        a.serial,
        a.channels.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
    );
    eprintln!("serial latency, {} events…", a.serial);
    let (lat, rss_one) = latency(&a.gateway, a.serial);
    eprintln!("throughput, {} events…", a.events);
    let (rate, took, cpu) = throughput(&a.gateway, a.events);
    eprintln!("outbound…");
    let (out_lat, out_rate, out_budget) = outbound(&a.gateway, 500, 3000, 20);
    eprintln!("footprint at {:?} channels…", a.channels);
    let rows = footprint(&a.gateway, &a.channels);

    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Produced by `make bench` (`{cmd}`), which builds the release binaries, starts a private"
    );
    let _ = writeln!(
        md,
        "redis-server and the in-repo Feishu simulator on loopback, and drives the real gateway binary."
    );
    let _ = writeln!(md, "Machine: {}. Date: {}.\n", machine(), today());
    let _ = writeln!(
        md,
        "These machines are shared and noisy: read the figures as orders of magnitude.\n"
    );
    let _ = writeln!(md, "## Inbound: one connection\n");
    let _ = writeln!(md, "| measure | result | target |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| added latency p50 (frame written → item poppable from `at:channel:inbound`), {} serial events | {} | |",
        lat.len(),
        us(percentile(&lat, 0.5))
    );
    let _ = writeln!(md, "| added latency p99 | {} | ≤ 1 ms |", us(percentile(&lat, 0.99)));
    let _ = writeln!(md, "| added latency max | {} | |", us(*lat.last().expect("samples")));
    let _ = writeln!(
        md,
        "| throughput, {} events queued at once on one connection | {:.0} events/s ({:.2} s) | ≥ 20 000 events/s |",
        a.events,
        rate,
        took.as_secs_f64()
    );
    let _ = writeln!(md, "| gateway CPU time per event (user + system) | {} | |", us(cpu));
    let _ =
        writeln!(md, "| RSS after the latency run (1 channel) | {:.1} MiB | |", rss_one / 1024.0);
    let _ = writeln!(md, "\n## Outbound: answers to Feishu\n");
    let _ = writeln!(md, "| measure | result | target |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| added latency p50 (item pushed → reply call received by the simulator), {} serial items | {} | |",
        out_lat.len(),
        us(percentile(&out_lat, 0.5))
    );
    let _ = writeln!(md, "| added latency p99 | {} | ≤ 2 ms |", us(percentile(&out_lat, 0.99)));
    let _ = writeln!(
        md,
        "| throughput, 3000 items queued at once for 20 apps | {out_rate:.0} items/s | the budget: {out_budget:.0} items/s |"
    );
    let _ = writeln!(
        md,
        "\nThe gateway spaces calls at 50/s per app and 5/s per chat (Feishu's limits, with 5 % slack); the\nbacklog drains at {:.0} % of what those budgets allow.",
        100.0 * out_rate / out_budget
    );
    let _ = writeln!(md, "\n## Footprint: connected channels in one process\n");
    let _ = writeln!(
        md,
        "| channels connected | RSS | threads | time to connect the added channels |\n|---|---|---|---|"
    );
    for (n, rss, th, t) in &rows {
        let _ = writeln!(
            md,
            "| {n} | {:.1} MiB | {th} | {:.2} s |",
            *rss as f64 / 1024.0,
            t.as_secs_f64()
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last())
        && last.0 > first.0
    {
        let per = (last.1 as f64 - first.1 as f64) / (last.0 - first.0) as f64;
        let _ =
            writeln!(md, "\nRSS per additional connection: **{per:.0} KiB** (target ≤ 64 KiB).");
    }
    print!("{md}");
    if let Some(out) = a.out {
        std::fs::write(&out, &md).expect("write benchmark report");
        eprintln!("written to {}", out.display());
    }
}

fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
