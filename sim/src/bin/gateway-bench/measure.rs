//! The measurements, each run the same way for every subject.

use feishu_sim::events::MessageEvent;
use feishu_sim::harness::{
    Gateway, RedisServer, answer, channel, hwm_kib, push_outbound, put_channel, rss_kib, threads,
    wait_for,
};
use feishu_sim::{Sim, SimOptions};
use std::time::{Duration, Instant};

use super::subjects::{Kind, Subjects};

/// User + system CPU time of a process so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Context switches of every thread of a process so far: how often its
/// threads went to sleep and woke up.
pub fn wakeups(pid: u32) -> u64 {
    by_thread(pid).iter().map(|(_, n)| n).sum()
}

/// Context switches per thread, by the thread name's first word.
fn by_thread(pid: u32) -> Vec<(String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return vec![] };
    tasks
        .flatten()
        .filter_map(|t| {
            let st = std::fs::read_to_string(t.path().join("status")).ok()?;
            let name =
                st.lines().next()?.trim_start_matches("Name:").trim().split('-').next()?.to_owned();
            let n: u64 = st
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            Some((name, n))
        })
        .collect()
}

/// App ids the Node SDK accepts: `cli_` and 16 hex digits.
pub const APP: &str = "cli_be0c400000000001";
const SECRET: &str = "bench-secret";

fn app(i: usize) -> String {
    format!("cli_{i:016x}")
}

/// A private Redis, the simulator and one subject with one connected channel.
fn one_channel(s: &Subjects, kind: Kind) -> (RedisServer, Sim, Gateway, redis::Connection) {
    let redis = RedisServer::start();
    let sim = Sim::start(SimOptions { poll: Duration::from_micros(200), ..SimOptions::default() });
    sim.add_app(APP, SECRET);
    let mut con = redis.con();
    put_channel(&mut con, "ch_bench", &channel("ch_bench", APP, SECRET));
    let gw = s.start(kind, &redis, &sim, None, (APP, SECRET));
    assert!(sim.wait_connections(APP, 1, Duration::from_secs(30)), "{}", gw.log());
    (redis, sim, gw, con)
}

/// Serial latency: one event at a time, from the frame written by the
/// simulator to the item popped from the inbound list.
pub fn latency(s: &Subjects, kind: Kind, n: usize) -> Vec<Duration> {
    let (_redis, sim, gw, mut con) = one_channel(s, kind);
    let mut samples = Vec::with_capacity(n);
    let warmup = n / 10;
    for i in 0..n + warmup {
        let push = sim.push_event(APP, &MessageEvent::text(APP, &format!("question {i}")).json());
        let popped: Option<[String; 2]> =
            redis::cmd("BRPOP").arg("at:channel:inbound").arg(5).query(&mut con).expect("BRPOP");
        let got = Instant::now();
        assert!(popped.is_some(), "{kind:?}: event {i} never arrived:\n{}", gw.log());
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
pub fn throughput(s: &Subjects, kind: Kind, n: usize) -> (f64, Duration) {
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
    assert!(ok, "{kind:?}: only some events arrived:\n{}", gw.log());
    let cpu = (cpu_time(gw.pid()) - cpu0) / n as u32;
    assert!(sim.wait_until(Duration::from_secs(5), |s| s.sent_at(first).is_some()));
    let start = sim.sent_at(first).expect("sent");
    (n as f64 / (done - start).as_secs_f64(), cpu)
}

pub struct Outbound {
    pub latency: Vec<Duration>,
    pub rate: f64,
    pub cpu: Duration,
}

/// Outbound: serial latency (item pushed → reply call received by the
/// simulator), then a backlog of `backlog` items spread over `apps` apps:
/// replies/s and CPU per reply.
pub fn outbound(s: &Subjects, kind: Kind, serial: usize, backlog: usize, apps: usize) -> Outbound {
    let redis = RedisServer::start();
    let sim = Sim::start(SimOptions { poll: Duration::from_millis(20), ..SimOptions::default() });
    let mut con = redis.con();
    let out_app = |a: usize| format!("cli_0ff{a:013}");
    for a in 0..apps {
        sim.add_app(&out_app(a), SECRET);
        put_channel(
            &mut con,
            &format!("ch_{a}"),
            &channel(&format!("ch_{a}"), &out_app(a), SECRET),
        );
    }
    let gw = s.start(kind, &redis, &sim, None, (APP, SECRET));
    assert!(
        wait_for(Duration::from_secs(300), || (0..apps).all(|a| sim.connections(&out_app(a)) == 1)),
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
    // One reply per app first, so that all hold a tenant token.
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

/// One start with `n` channels configured: the production (re)start.
pub struct Scale {
    pub n: usize,
    pub tls: bool,
    /// From the process's start to every app connected.
    pub connect: Duration,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
    /// CPU used while idle, as a share of one core.
    pub idle_cpu: f64,
    /// Wake-ups (context switches of all its threads) per minute while
    /// idle, in all.
    pub wakeups_per_min: f64,
}

/// Starts the subject with `n` apps configured (over `wss://` with `tls`),
/// times the connect, lets it settle, then measures its memory and its CPU
/// over `idle` with nothing to do.
pub fn scale(s: &Subjects, kind: Kind, n: usize, tls: bool, idle: Duration) -> Scale {
    let redis = RedisServer::start();
    let sim =
        Sim::start(SimOptions { tls, poll: Duration::from_millis(50), ..SimOptions::default() });
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    if let Some(pem) = sim.ca_pem() {
        std::fs::write(&ca, pem).expect("write the CA");
    }
    let mut con = redis.con();
    let mut pipe = redis::pipe();
    for i in 0..n {
        sim.add_app(&app(i), SECRET);
        let id = format!("ch_{i}");
        pipe.cmd("HSET")
            .arg("at:channel:config:feishu")
            .arg(&id)
            .arg(channel(&id, &app(i), SECRET).to_string())
            .ignore();
    }
    if n > 0 {
        pipe.query::<()>(&mut con).expect("HSET");
    }
    let t0 = Instant::now();
    let gw =
        s.start(kind, &redis, &sim, tls.then(|| ca.to_str().expect("utf-8 path")), (APP, SECRET));
    let ok = wait_for(Duration::from_secs(600), || (0..n).all(|i| sim.connections(&app(i)) == 1));
    let connect = t0.elapsed();
    assert!(ok, "{kind:?}: not all {n} channels connected:\n{}", gw.log());
    // Settle: the connect burst's helpers end, the first pings are answered.
    std::thread::sleep(Duration::from_secs(5));
    let wake0 = wakeups(gw.pid());
    let by0 = by_thread(gw.pid());
    let cpu0 = cpu_time(gw.pid());
    let t1 = Instant::now();
    std::thread::sleep(idle);
    let cpu = cpu_time(gw.pid()) - cpu0;
    let took = t1.elapsed();
    let woke = wakeups(gw.pid()).saturating_sub(wake0);
    if std::env::var_os("BENCH_THREADS").is_some() {
        let mut by: std::collections::BTreeMap<String, i64> = Default::default();
        for (name, v) in by_thread(gw.pid()) {
            *by.entry(name).or_default() += v as i64;
        }
        for (name, v) in by0 {
            *by.entry(name).or_default() -= v as i64;
        }
        eprintln!("{by:?}");
        let _ = std::process::Command::new("cp")
            .arg(format!("/proc/{}/smaps", gw.pid()))
            .arg(format!("/tmp/gw-{n}-{tls}.smaps"))
            .status();
    }
    Scale {
        n,
        tls,
        connect,
        rss_kib: rss_kib(gw.pid()),
        hwm_kib: hwm_kib(gw.pid()),
        threads: threads(gw.pid()),
        idle_cpu: cpu.as_secs_f64() / took.as_secs_f64(),
        wakeups_per_min: woke as f64 / took.as_secs_f64() * 60.0,
    }
}
