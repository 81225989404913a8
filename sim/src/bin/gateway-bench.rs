//! `make bench`: runs the same load through (a) the release gateway binary
//! and (b) a minimal bridge built on the official Feishu Python SDK
//! (sim/official/lark_bridge.py), both against the in-repo simulator and a
//! private redis-server, in one run, and writes docs/BENCHMARKS.md.
//!
//! Usage: gateway-bench [--out FILE] [--gateway BIN] [--python BIN] [--events N]
//!        [--bridge-events N] [--serial N] [--backlog N] [--channels 0,1,100,1000]
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use feishu_sim::events::MessageEvent;
use feishu_sim::harness::{
    Gateway, RedisServer, answer, channel, push_outbound, put_channel, rss_kib, threads, wait_for,
};
use feishu_sim::{Sim, SimOptions};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Args {
    out: Option<PathBuf>,
    gateway: PathBuf,
    python: PathBuf,
    events: usize,
    bridge_events: usize,
    serial: usize,
    backlog: usize,
    channels: Vec<usize>,
}

fn args() -> Args {
    let exe = std::env::current_exe().expect("current exe");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut a = Args {
        out: None,
        gateway: exe.with_file_name("asktable-feishu-gateway"),
        python: root.join("target/lark-venv/bin/python"),
        events: 50_000,
        bridge_events: 5_000,
        serial: 2_000,
        backlog: 3_000,
        channels: vec![0, 1, 100, 1000],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let mut number = |what: &str| value().parse().unwrap_or_else(|_| panic!("{what} N"));
        match flag.as_str() {
            "--out" => a.out = Some(value().into()),
            "--gateway" => a.gateway = value().into(),
            "--python" => a.python = value().into(),
            "--events" => a.events = number("--events"),
            "--bridge-events" => a.bridge_events = number("--bridge-events"),
            "--serial" => a.serial = number("--serial"),
            "--backlog" => a.backlog = number("--backlog"),
            "--channels" => {
                a.channels =
                    value().split(',').map(|n| n.parse().expect("--channels N,N")).collect()
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// What is measured: the gateway, or the bridge on the official SDK.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Gateway,
    Bridge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::Bridge => "official-SDK bridge",
        }
    }
}

/// Where the two subjects live.
struct Subjects {
    gateway: PathBuf,
    python: PathBuf,
    bridge: PathBuf,
    script: PathBuf,
}

impl Subjects {
    /// Starts one subject against `redis` and `sim`. Both do the same work
    /// per message: the gateway's typing reaction is off, since the bridge
    /// has none.
    fn start(&self, kind: Kind, redis: &RedisServer, sim: &Sim) -> Gateway {
        match kind {
            Kind::Gateway => Gateway::start(
                &self.gateway,
                &redis.url(),
                sim,
                "bench",
                &[("RUST_LOG", "info"), ("TYPING_REACTION", "")],
            ),
            Kind::Bridge => {
                let mut cmd = Command::new(&self.python);
                cmd.arg(&self.bridge).arg(sim.base_url()).arg(redis.url()).arg(&self.script);
                Gateway::spawn(cmd, "READY", Duration::from_secs(60))
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// User + system CPU time of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

const APP: &str = "cli_bench000000000001";
const SECRET: &str = "bench-secret";

/// A private Redis, the simulator and one subject with one connected channel.
fn one_channel(s: &Subjects, kind: Kind) -> (RedisServer, Sim, Gateway, redis::Connection) {
    let redis = RedisServer::start();
    let sim = Sim::start(SimOptions { poll: Duration::from_micros(200), ..SimOptions::default() });
    sim.add_app(APP, SECRET);
    let mut con = redis.con();
    put_channel(&mut con, "ch_bench", &channel("ch_bench", APP, SECRET));
    let gw = s.start(kind, &redis, &sim);
    assert!(sim.wait_connections(APP, 1, Duration::from_secs(30)), "{}", gw.log());
    (redis, sim, gw, con)
}

/// Serial latency: one event at a time, from the frame written by the
/// simulator to the item popped from the inbound list.
fn latency(s: &Subjects, kind: Kind, n: usize) -> Vec<Duration> {
    let (_redis, sim, gw, mut con) = one_channel(s, kind);
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
    samples
}

/// Throughput: `n` events queued at once on one connection, and the
/// subject's CPU time per event.
fn throughput(s: &Subjects, kind: Kind, n: usize) -> (f64, Duration) {
    let (_redis, sim, gw, mut con) = one_channel(s, kind);
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
    let cpu = (cpu_time(gw.pid()) - cpu0) / n as u32;
    assert!(sim.wait_until(Duration::from_secs(5), |s| s.sent_at(first).is_some()));
    let start = sim.sent_at(first).expect("sent");
    (n as f64 / (done - start).as_secs_f64(), cpu)
}

struct Outbound {
    latency: Vec<Duration>,
    rate: f64,
    cpu: Duration,
}

/// Outbound: serial latency (item pushed → reply call received by the
/// simulator), then a backlog of `backlog` items spread over `apps` apps:
/// replies/s and CPU per reply.
fn outbound(s: &Subjects, kind: Kind, serial: usize, backlog: usize, apps: usize) -> Outbound {
    let redis = RedisServer::start();
    let sim = Sim::start(SimOptions { poll: Duration::from_millis(20), ..SimOptions::default() });
    let mut con = redis.con();
    for a in 0..apps {
        let app = format!("cli_out{a:013}");
        sim.add_app(&app, SECRET);
        put_channel(&mut con, &format!("ch_{a}"), &channel(&format!("ch_{a}"), &app, SECRET));
    }
    let gw = s.start(kind, &redis, &sim);
    assert!(
        wait_for(Duration::from_secs(120), || (0..apps)
            .all(|a| sim.connections(&format!("cli_out{a:013}")) == 1)),
        "{}",
        gw.log()
    );
    let item = |tag: &str, i: usize, chat: usize, text: &str| {
        answer(
            &format!("{tag}{i}"),
            &format!("ch_{}", i % apps),
            &format!("om_{tag}{i}"),
            &format!("oc_{tag}{chat}"),
            text,
        )
        .to_string()
    };
    // One reply per app first, so that both hold a tenant token.
    for i in 0..apps {
        push_outbound(&mut con, &item("w", i, i, "warm-up"));
    }
    assert!(sim.wait_messages(apps, Duration::from_secs(60)), "{}", gw.log());
    let mut latency = Vec::new();
    for i in 0..serial {
        let pushed = Instant::now();
        push_outbound(&mut con, &item("s", i, i, "答案：1,284 万元。"));
        assert!(sim.wait_messages(apps + i + 1, Duration::from_secs(10)), "{}", gw.log());
        latency.push(sim.messages()[apps + i].at - pushed);
        // Round-robin over the apps, slower than the per-app budget, so
        // the figure shows the subject's own work, not the gateway's pacing.
        std::thread::sleep(Duration::from_millis(2));
    }
    latency.sort();
    let mut pipe = redis::pipe();
    for i in 0..backlog {
        let it = item("b", i, i % (apps * 30), "**结果**：上海 512，浙江 433。");
        pipe.cmd("LPUSH").arg("at:channel:outbound:feishu").arg(it).ignore();
    }
    let cpu0 = cpu_time(gw.pid());
    let t0 = Instant::now();
    pipe.query::<()>(&mut con).expect("LPUSH");
    let total = apps + serial + backlog;
    assert!(sim.wait_messages(total, Duration::from_secs(600)), "{}", gw.log());
    let rate = backlog as f64 / t0.elapsed().as_secs_f64();
    let cpu = (cpu_time(gw.pid()) - cpu0) / backlog as u32;
    Outbound { latency, rate, cpu }
}

/// RSS and threads at each number of connected channels (0 = idle), in one
/// process, and the time it took to connect the added ones.
fn footprint(s: &Subjects, kind: Kind, stages: &[usize]) -> Vec<(usize, u64, u64, Duration)> {
    let redis = RedisServer::start();
    let sim = Sim::start(SimOptions { poll: Duration::from_millis(50), ..SimOptions::default() });
    let mut con = redis.con();
    let gw = s.start(kind, &redis, &sim);
    let app = |i: usize| format!("cli_{i:016x}");
    let mut rows = Vec::new();
    let mut have = 0;
    for &target in stages {
        let t0 = Instant::now();
        let mut pipe = redis::pipe();
        for i in have..target {
            sim.add_app(&app(i), SECRET);
            let id = format!("ch_{i}");
            pipe.cmd("HSET")
                .arg("at:channel:config:feishu")
                .arg(&id)
                .arg(channel(&id, &app(i), SECRET).to_string());
        }
        pipe.cmd("PUBLISH").arg("at:channel:config:feishu:changed").arg("*");
        pipe.query::<()>(&mut con).expect("HSET");
        let ok = wait_for(Duration::from_secs(300), || {
            (have..target).all(|i| sim.connections(&app(i)) == 1)
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
    let mem_gib = proc_meminfo_kib() as f64 / 1024.0 / 1024.0;
    format!("{cpu}, {cores} cores, {mem_gib:.0} GiB, Linux, loopback only")
}

fn proc_meminfo_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn command_output(cmd: &Path, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Everything measured for one subject.
struct Results {
    latency: Vec<Duration>,
    rate: f64,
    cpu: Duration,
    out: Outbound,
    rows: Vec<(usize, u64, u64, Duration)>,
}

fn measure(s: &Subjects, a: &Args, kind: Kind) -> Results {
    let events = if kind == Kind::Gateway { a.events } else { a.bridge_events };
    eprintln!("{}: serial latency, {} events…", kind.name(), a.serial);
    let latency = latency(s, kind, a.serial);
    eprintln!("{}: throughput, {events} events…", kind.name());
    let (rate, cpu) = throughput(s, kind, events);
    eprintln!("{}: outbound…", kind.name());
    let out = outbound(s, kind, 500, a.backlog, 100);
    eprintln!("{}: footprint at {:?} channels…", kind.name(), a.channels);
    let rows = footprint(s, kind, &a.channels);
    Results { latency, rate, cpu, out, rows }
}

/// One row of the side-by-side table: both figures and gateway ÷ bridge.
fn row(md: &mut String, what: &str, g: f64, b: f64, show: impl Fn(f64) -> String, target: &str) {
    let ratio = if b > 0.0 { g / b } else { f64::NAN };
    // A target reads "≤ 0.1×": say whether this run met it.
    let verdict = target
        .trim_start_matches("≤ ")
        .trim_end_matches('×')
        .parse::<f64>()
        .map_or("", |max| if ratio <= max { " ✔" } else { " ✘ missed" });
    let _ =
        writeln!(md, "| {what} | {} | {} | {ratio:.3}× | {target}{verdict} |", show(g), show(b));
}

fn main() {
    let a = args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let s = Subjects {
        gateway: a.gateway.clone(),
        python: a.python.clone(),
        bridge: root.join("official/lark_bridge.py"),
        script: root.join("../src/bridge/contract/inbound.lua"),
    };
    assert!(s.gateway.exists(), "gateway binary {} not found", s.gateway.display());
    assert!(s.python.exists(), "{} not found: run .ci/install-deps", s.python.display());
    let cmd = format!(
        "gateway-bench --events {} --bridge-events {} --serial {} --backlog {} --channels {}",
        a.events,
        a.bridge_events,
        a.serial,
        a.backlog,
        a.channels.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
    );
    let g = measure(&s, &a, Kind::Gateway);
    let b = measure(&s, &a, Kind::Bridge);
    let sdk = command_output(
        &s.python,
        &[
            "-c",
            "import importlib.metadata as m, sys; print('lark-oapi', m.version('lark-oapi'), 'on Python', sys.version.split()[0])",
        ],
    );

    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Produced by `make bench` (`{cmd}`), which builds the release binaries, starts a private\n\
         redis-server and the in-repo Feishu simulator on loopback, and runs the same load through\n\
         (a) the release gateway binary and (b) a minimal bridge built on the official Feishu Python\n\
         SDK ({sdk}, `sim/official/lark_bridge.py`: one `lark.ws.Client` per app on the SDK's\n\
         event loop, a handler running the gateway's own Lua script, a thread replying through the\n\
         SDK's REST client), one after the other in the same run."
    );
    let _ = writeln!(md, "\nMachine: {}. Date: {}.\n", machine(), today());
    let _ = writeln!(
        md,
        "These machines are shared and noisy: read absolute figures as orders of magnitude; the\n\
         ratios come from one run, side by side. Both subjects store each message with the same\n\
         script and answer with one call per reply; the gateway's typing reaction is off for the\n\
         run. The bridge has none of the gateway's error handling, pacing, rendering or status\n\
         reporting, so the comparison flatters it. Inbound latency runs from the moment the\n\
         simulator writes the event's frame to the moment the benchmark's `BRPOP` returns the\n\
         item: three loopback hops (simulator → subject → Redis → benchmark) for both.\n"
    );
    let _ = writeln!(md, "## Side by side\n");
    let _ = writeln!(
        md,
        "| measure | gateway | official-SDK bridge | gateway ÷ bridge | target |\n|---|---|---|---|---|"
    );
    let secs_us = |v: f64| format!("{:.0} µs", v * 1e6);
    row(
        &mut md,
        "CPU time per inbound event (user + system)",
        g.cpu.as_secs_f64(),
        b.cpu.as_secs_f64(),
        secs_us,
        "≤ 0.1×",
    );
    for (p, target) in [(0.5, "≤ 0.5×"), (0.99, "")] {
        row(
            &mut md,
            &format!(
                "inbound latency p{:.0}, {} serial events (frame written → item in Redis)",
                p * 100.0,
                g.latency.len()
            ),
            percentile(&g.latency, p).as_secs_f64(),
            percentile(&b.latency, p).as_secs_f64(),
            secs_us,
            target,
        );
    }
    row(
        &mut md,
        "inbound throughput, one connection (events/s)",
        g.rate,
        b.rate,
        |v| format!("{v:.0}"),
        "",
    );
    for ((n, grss, _, _), (_, brss, _, _)) in g.rows.iter().zip(&b.rows) {
        let what = if *n == 0 {
            "RSS idle (running, no channel)".to_owned()
        } else {
            format!("RSS with {n} connected app{}", if *n == 1 { "" } else { "s" })
        };
        let target = match *n {
            0 => "≤ 0.1×",
            1000 => "≤ 0.33×",
            _ => "",
        };
        row(
            &mut md,
            &what,
            *grss as f64,
            *brss as f64,
            |v| format!("{:.1} MiB", v / 1024.0),
            target,
        );
    }
    if let (Some(gl), Some(bl)) = (g.rows.last(), b.rows.last()) {
        row(
            &mut md,
            &format!("time until all {} apps are connected", gl.0),
            gl.3.as_secs_f64(),
            bl.3.as_secs_f64(),
            |v| format!("{v:.2} s"),
            "",
        );
    }
    row(
        &mut md,
        &format!("outbound replies/s, {} items queued at once for 100 apps", a.backlog),
        g.out.rate,
        b.out.rate,
        |v| format!("{v:.0}"),
        "",
    );
    row(
        &mut md,
        "CPU time per outbound reply",
        g.out.cpu.as_secs_f64(),
        b.out.cpu.as_secs_f64(),
        secs_us,
        "",
    );
    for p in [0.5, 0.99] {
        row(
            &mut md,
            &format!(
                "outbound latency p{:.0}, {} serial items (pushed → reply call received)",
                p * 100.0,
                g.out.latency.len()
            ),
            percentile(&g.out.latency, p).as_secs_f64(),
            percentile(&b.out.latency, p).as_secs_f64(),
            secs_us,
            "",
        );
    }
    let budget = 100.0 * 50.0 / 1.05;
    let _ = writeln!(
        md,
        "\nThe gateway spaces calls at 50/s per app and 5/s per chat (Feishu's limits, with 5 %\n\
         slack), so its backlog rate is capped at {budget:.0} replies/s for 100 apps; the bridge\n\
         does not pace at all (against the real Feishu it would collect 429s)."
    );

    let _ = writeln!(md, "\n## Gateway alone\n");
    let _ = writeln!(md, "| measure | result | target |\n|---|---|---|");
    let _ = writeln!(md, "| inbound latency p99 | {} | ≤ 1 ms |", us(percentile(&g.latency, 0.99)));
    let _ = writeln!(md, "| inbound latency max | {} | |", us(*g.latency.last().expect("samples")));
    let _ = writeln!(
        md,
        "| inbound throughput, {} events queued at once on one connection | {:.0} events/s | ≥ 20 000 events/s |",
        a.events, g.rate
    );
    let _ = writeln!(
        md,
        "| outbound latency p99 | {} | ≤ 2 ms |",
        us(percentile(&g.out.latency, 0.99))
    );
    let _ = writeln!(
        md,
        "| outbound backlog rate ÷ pacing budget | {:.0} % | |",
        100.0 * g.out.rate / budget
    );
    let _ = writeln!(
        md,
        "\n| channels connected | gateway RSS | threads | bridge RSS | threads | time to connect the added channels (gateway / bridge) |\n|---|---|---|---|---|---|"
    );
    for ((n, grss, gth, gt), (_, brss, bth, bt)) in g.rows.iter().zip(&b.rows) {
        let _ = writeln!(
            md,
            "| {n} | {:.1} MiB | {gth} | {:.1} MiB | {bth} | {:.2} s / {:.2} s |",
            *grss as f64 / 1024.0,
            *brss as f64 / 1024.0,
            gt.as_secs_f64(),
            bt.as_secs_f64()
        );
    }
    let nonzero: Vec<_> = g.rows.iter().filter(|r| r.0 > 0).collect();
    if let (Some(first), Some(last)) = (nonzero.first(), nonzero.last())
        && last.0 > first.0
    {
        let per = (last.1 as f64 - first.1 as f64) / (last.0 - first.0) as f64;
        let _ = writeln!(
            md,
            "\nGateway RSS per additional connection: **{per:.0} KiB** (target ≤ 64 KiB)."
        );
    }
    print!("{md}");
    if let Some(out) = a.out {
        std::fs::write(&out, &md).expect("write benchmark report");
        eprintln!("written to {}", out.display());
    }
}

fn today() -> String {
    command_output(Path::new("date"), &["+%Y-%m-%d"])
}
