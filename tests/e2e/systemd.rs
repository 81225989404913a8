//! The systemd unit passes `systemd-analyze`, and the gateway speaks the
//! notification protocol (READY, STATUS, WATCHDOG, STOPPING).

use crate::support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use support::*;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/asktable-feishu-gateway.service");

fn analyze(args: &[&str]) -> std::process::Output {
    // systemd-analyze is in Debian's systemd package (.ci/install-deps installs it).
    output_within(Command::new("systemd-analyze").args(args), SECS(60))
}

#[test]
fn unit_verifies_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(unit.contains("\nExecStart=/usr/local/bin/asktable-feishu-gateway\n"));
    // verify insists that ExecStart exists: point it at this build.
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/asktable-feishu-gateway",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_asktable-feishu-gateway")),
    );
    let path = dir.path().join("asktable-feishu-gateway.service");
    std::fs::write(&path, unit).unwrap();
    let out = analyze(&["verify", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify:\n{stderr}");
}

#[test]
fn unit_exposure_is_at_most_1_1() {
    let out = analyze(&["security", "--offline=true", UNIT]);
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 1.1, "exposure {level} > 1.1:\n{text}");
}

#[test]
fn notifies_ready_status_watchdog_and_stopping() {
    let redis = RedisServer::start();
    let sim = sim();
    sim.add_app("cli_5d00000000000001", "s");
    put_channel(&mut redis.con(), "ch_sd", &channel("ch_sd", "cli_5d00000000000001", "s"));
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(SECS(1))).unwrap();
    let mut gw = start_gateway(
        &redis.url(),
        &sim,
        "gw-sd",
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap()), ("WATCHDOG_USEC", "1000000")],
    );
    let mut got: Vec<String> = Vec::new();
    let read_until = |want: &str, got: &mut Vec<String>| {
        wait_for(SECS(10), || {
            let mut buf = [0u8; 512];
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            got.iter().any(|m| m.contains(want))
        })
    };
    assert!(read_until("READY=1", &mut got), "{got:?}\n{}", gw.log());
    assert!(read_until("1 connected", &mut got), "{got:?}");
    assert!(got.iter().any(|m| m.starts_with("STATUS=1 channel(s)")), "{got:?}");
    let pings_before = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(read_until("WATCHDOG=1", &mut got));
    std::thread::sleep(SECS(1));
    assert!(read_until("WATCHDOG=1", &mut got));
    assert!(got.iter().filter(|m| *m == "WATCHDOG=1").count() > pings_before, "{got:?}");
    gw.signal("TERM");
    assert!(read_until("STOPPING=1", &mut got), "{got:?}");
    assert!(gw.wait_exit(SECS(15)).is_some_and(|s| s.success()));
}

#[test]
fn journald_gets_priority_prefixes() {
    // A taken METRICS_ADDR makes the gateway stop at once with an error line.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"))
        .env_clear()
        .env("REDIS_URL", "redis://127.0.0.1:1/0")
        .env("JOURNAL_STREAM", "8:12345")
        .env("METRICS_ADDR", taken.local_addr().unwrap().to_string())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for(SECS(10), || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "the gateway did not stop");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().any(|l| l.starts_with("<3>invalid METRICS_ADDR")), "{err}");
}

/// Issue 12, item 7: dist/env.example with every setting uncommented reads
/// the same through `set -a; . env; set +a` (the README's step for
/// `check`) as systemd's EnvironmentFile= reads it (quotes removed), and
/// the gateway accepts it.
#[test]
fn the_env_example_reads_the_same_in_a_shell_and_under_systemd() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/dist/env.example")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env");
    let mut settings = Vec::new();
    let mut lines = Vec::new();
    for line in example.lines() {
        let setting = line.strip_prefix('#').filter(|l| {
            l.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
        });
        match setting {
            Some(l) => {
                let (k, v) = l.split_once('=').unwrap();
                settings.push((k.to_owned(), v.trim_matches('"').to_owned()));
                lines.push(l.to_owned());
            }
            None => lines.push(line.to_owned()),
        }
    }
    assert!(settings.len() >= 15, "{settings:?}");
    std::fs::write(&path, lines.join("\n")).unwrap();
    for (k, want) in &settings {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("set -a; . '{}'; set +a; printenv {k}", path.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{k}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'), want, "{k}");
    }
    // The gateway takes every value (Redis itself is not reachable here).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"));
    cmd.env_clear().arg("check");
    for (k, v) in &settings {
        if !k.starts_with("REDIS_SENTINEL") && k != "SSL_CERT_FILE" {
            cmd.env(k, v);
        }
    }
    cmd.env("REDIS_URL", format!("redis://127.0.0.1:{}/0", free_port()));
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("✔  environment"), "{text}{}", String::from_utf8_lossy(&out.stderr));
}
