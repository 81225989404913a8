//! `make bench`: runs the same load through four subjects — the release
//! gateway binary, a bridge on the official Feishu Node SDK and one on the
//! Python SDK (sim/official/), and a null relay that does the least a relay
//! can (the floor) — against the in-repo simulator and a private
//! redis-server, in one run, and writes docs/BENCHMARKS.md.
//!
//! Usage: gateway-bench [--out FILE] [--gateway BIN] [--events N]
//!        [--bridge-events N] [--serial N] [--backlog N] [--channels 0,1,100,1000]
//!        [--idle SECONDS] [--only gateway,static,node,python,floor]
//!        [--parts latency,throughput,outbound,scale,stream]
//!
//! Diagnostics: BENCH_THREADS=1 prints each scale stage's wake-ups by
//! thread name and copies the gateway's /proc smaps to
//! /tmp/gw-<N>-<tls>.smaps; BENCH_WRAP="strace -f -c -o FILE" (any command) runs the
//! gateway under it; BENCH_RUST_LOG sets the gateway's log filter (info).
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

mod measure;
mod report;
mod stream;
mod subjects;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use measure::{Outbound, Scale};
use subjects::{Kind, Subjects};

pub struct Args {
    pub out: Option<PathBuf>,
    pub gateway: PathBuf,
    pub events: usize,
    pub bridge_events: usize,
    pub serial: usize,
    pub backlog: usize,
    pub channels: Vec<usize>,
    pub idle: Duration,
    pub only: Vec<Kind>,
    /// Which measurements: latency, throughput, outbound, scale.
    pub parts: Vec<String>,
}

fn args() -> Args {
    let exe = std::env::current_exe().expect("current exe");
    let mut a = Args {
        out: None,
        gateway: exe.with_file_name("asktable-feishu-gateway"),
        events: 50_000,
        bridge_events: 5_000,
        serial: 2_000,
        backlog: 3_000,
        channels: vec![0, 1, 100, 1000],
        idle: Duration::from_secs(30),
        only: vec![Kind::Gateway, Kind::Static, Kind::Node, Kind::Python, Kind::Floor],
        parts: ["latency", "throughput", "outbound", "scale", "stream"].map(String::from).to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let mut number = |what: &str| value().parse().unwrap_or_else(|_| panic!("{what} N"));
        match flag.as_str() {
            "--out" => a.out = Some(value().into()),
            "--gateway" => a.gateway = value().into(),
            "--events" => a.events = number("--events"),
            "--bridge-events" => a.bridge_events = number("--bridge-events"),
            "--serial" => a.serial = number("--serial"),
            "--backlog" => a.backlog = number("--backlog"),
            "--idle" => a.idle = Duration::from_secs(number("--idle") as u64),
            "--channels" => {
                a.channels =
                    value().split(',').map(|n| n.parse().expect("--channels N,N")).collect()
            }
            "--parts" => a.parts = value().split(',').map(String::from).collect(),
            "--only" => {
                a.only = value()
                    .split(',')
                    .map(|k| match k {
                        "gateway" => Kind::Gateway,
                        "static" => Kind::Static,
                        "node" => Kind::Node,
                        "python" => Kind::Python,
                        "floor" => Kind::Floor,
                        other => panic!("--only: unknown subject {other}"),
                    })
                    .collect()
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Everything measured for one subject.
pub struct Results {
    pub kind: Kind,
    pub latency: Vec<Duration>,
    pub rate: f64,
    pub cpu: Duration,
    pub out: Option<Outbound>,
    pub scale: Vec<Scale>,
    /// The gateway only: CardKit and message-card streaming.
    pub stream: Vec<stream::Stream>,
}

fn measure(s: &Subjects, a: &Args, kind: Kind) -> Results {
    let events = match kind {
        Kind::Gateway | Kind::Static | Kind::Floor => a.events,
        Kind::Node | Kind::Python => a.bridge_events,
    };
    let name = kind.name();
    // The static binary: only where the allocator matters, memory at scale.
    let part = |p: &str| a.parts.iter().any(|x| x == p) && (kind != Kind::Static || p == "scale");
    let latency = if part("latency") {
        eprintln!("{name}: serial latency, {} events…", a.serial);
        measure::latency(s, kind, a.serial)
    } else {
        vec![Duration::ZERO]
    };
    let (rate, cpu) = if part("throughput") {
        eprintln!("{name}: throughput, {events} events…");
        measure::throughput(s, kind, events)
    } else {
        (0.0, Duration::ZERO)
    };
    let out = (kind.replies() && part("outbound")).then(|| {
        eprintln!("{name}: outbound…");
        measure::outbound(s, kind, 500, a.backlog, 100)
    });
    let mut scale = Vec::new();
    if kind.replies() && part("scale") {
        for (n, tls) in stages(&a.channels) {
            let t = if tls { "wss://" } else { "ws://" };
            eprintln!("{name}: started with {n} channel(s) over {t}, idle {:?}…", a.idle);
            scale.push(measure::scale(s, kind, n, tls, a.idle));
        }
    }
    let mut streams = Vec::new();
    if kind == Kind::Gateway && part("stream") {
        for cardkit in [true, false] {
            eprintln!("{name}: streaming (CardKit {cardkit})…");
            streams.push(stream::stream(s, cardkit, 200, 5));
        }
    }
    Results { kind, latency, rate, cpu, out, scale, stream: streams }
}

/// The scale stages: each channel count over ws://, the largest over wss:// too.
pub fn stages(channels: &[usize]) -> Vec<(usize, bool)> {
    let most = channels.iter().copied().max().unwrap_or(0);
    channels.iter().map(|n| (*n, false)).chain((most > 0).then_some((most, true))).collect()
}

pub fn command_output(cmd: &Path, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    let a = args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe().expect("current exe");
    let s = Subjects {
        gateway: a.gateway.clone(),
        static_gateway: root.join("../target/static/asktable-feishu-gateway"),
        python: root.join("../target/lark-venv/bin/python"),
        node_modules: root.join("../target/node-bridge/node_modules"),
        null_relay: exe.with_file_name("null-relay"),
        official: root.join("official"),
        script: root.join("../src/bridge/contract/inbound.lua"),
    };
    assert!(s.gateway.exists(), "gateway binary {} not found", s.gateway.display());
    assert!(
        s.null_relay.exists(),
        "{} not found: cargo build -p feishu-sim",
        s.null_relay.display()
    );
    assert!(s.python.exists(), "{} not found: run .ci/install-deps", s.python.display());
    assert!(
        s.node_modules.exists(),
        "{} not found: run .ci/install-deps",
        s.node_modules.display()
    );
    if a.only.contains(&Kind::Static) {
        assert!(s.static_gateway.exists(), "{} not found: make static", s.static_gateway.display());
    }
    let results: Vec<Results> = a.only.iter().map(|k| measure(&s, &a, *k)).collect();
    let versions = [
        command_output(
            &s.python,
            &[
                "-c",
                "import importlib.metadata as m, sys; print('lark-oapi', m.version('lark-oapi'), 'on Python', sys.version.split()[0])",
            ],
        ),
        format!(
            "@larksuiteoapi/node-sdk {} and ioredis {} on Node {}",
            package_version(&s.node_modules, "@larksuiteoapi/node-sdk"),
            package_version(&s.node_modules, "ioredis"),
            command_output(Path::new("node"), &["--version"]).trim_start_matches('v')
        ),
    ];
    let md = report::render(&a, &results, &versions);
    print!("{md}");
    if let Some(out) = &a.out {
        std::fs::write(out, &md).expect("write benchmark report");
        eprintln!("written to {}", out.display());
    }
}

fn package_version(node_modules: &Path, name: &str) -> String {
    std::fs::read_to_string(node_modules.join(name).join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
