//! Harness for tests, the benchmark and the demo: a private redis-server on
//! a free port in a temp dir, the gateway binary as a child process with its
//! log captured, the Redis contract's keys as seen by AskTable Server, and
//! bounded waits.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{Sim, SimOptions};
use serde_json::Value;

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A numeric field of `/proc/<pid>/status` (0 when unreadable).
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:")
}

/// Peak resident memory of a process (VmHWM), in KiB.
pub fn hwm_kib(pid: u32) -> u64 {
    proc_status(pid, "VmHWM:")
}

/// How many threads a process has.
pub fn threads(pid: u32) -> u64 {
    proc_status(pid, "Threads:")
}

/// A redis-server of this test's own, on a free port, in a temp dir.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
    /// TLS only (`--port 0 --tls-port`), with a certificate of this CA.
    tls: Option<crate::tls::Certs>,
    /// Lines of its config file (e.g. `replicaof …`), written once: Redis
    /// rewrites the file when Sentinel reconfigures it (`CONFIG REWRITE`),
    /// so a restart after a failover keeps the role Sentinel gave it.
    conf: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// With an append-only file, so that data survives `restart`.
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_with(true)
    }

    /// Speaking TLS only, with a certificate of a private CA
    /// ([`RedisServer::ca_pem`]); [`RedisServer::url`] is `rediss://`.
    pub fn start_tls() -> RedisServer {
        RedisServer::start_opts(false, Some(crate::tls::Certs::generate()), &[])
    }

    fn start_with(persistent: bool) -> RedisServer {
        RedisServer::start_opts(persistent, None, &[])
    }

    /// A replica of the Redis on `master_port` (on loopback), with an
    /// append-only file like [`RedisServer::start_persistent`]: once
    /// promoted it may be restarted too.
    pub fn start_replica_of(master_port: u16) -> RedisServer {
        let port = master_port.to_string();
        RedisServer::start_opts(true, None, &[&format!("replicaof 127.0.0.1 {port}")])
    }

    fn start_opts(persistent: bool, tls: Option<crate::tls::Certs>, conf: &[&str]) -> RedisServer {
        let mut tls = tls;
        for _ in 0..10 {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut r = RedisServer {
                child: None,
                port: free_port(),
                dir,
                persistent,
                tls: tls.take(),
                conf: conf.iter().map(|a| a.to_string()).collect(),
            };
            if r.spawn() {
                return r;
            }
            tls = r.tls.take();
        }
        panic!("redis-server did not start (is it installed? see .ci/install-deps)");
    }

    fn spawn(&mut self) -> bool {
        let log = File::create(self.dir.path().join("redis.log")).expect("redis log");
        let conf = self.dir.path().join("redis.conf");
        if !conf.exists() {
            std::fs::write(&conf, self.conf.join("\n") + "\n").expect("write redis.conf");
        }
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf);
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some(certs) => {
                let d = self.dir.path();
                for (name, pem) in [
                    ("ca.pem", &certs.ca_pem),
                    ("server.pem", &certs.server_pem),
                    ("server.key", &certs.server_key_pem),
                ] {
                    std::fs::write(d.join(name), pem).expect("write TLS files");
                }
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(d.join("server.pem"))
                    .arg("--tls-key-file")
                    .arg(d.join("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(d.join("ca.pem"))
                    .args(["--tls-auth-clients", "no"])
            }
        };
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args([
                "--appendonly",
                if self.persistent { "yes" } else { "no" },
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let url = self.test_url();
        let up = wait_for(SECS(5), || {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return true; // exited (port taken): stop waiting
            }
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
        let alive = matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)));
        if !(up && alive) {
            self.stop();
        }
        up && alive
    }

    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}/0", self.port),
            Some(_) => format!("rediss://127.0.0.1:{}/0", self.port),
        }
    }

    /// The CA a client must trust (TLS servers only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|c| c.ca_pem.as_str())
    }

    /// The URL the test's own connections use (no certificate check: the
    /// gateway's is what is under test).
    fn test_url(&self) -> String {
        match self.tls {
            None => self.url(),
            Some(_) => format!("rediss://127.0.0.1:{}/0#insecure", self.port),
        }
    }

    pub fn con(&self) -> redis::Connection {
        let c = redis::Client::open(self.test_url())
            .unwrap()
            .get_connection_with_timeout(SECS(2))
            .unwrap();
        c.set_read_timeout(Some(SECS(5))).unwrap();
        c
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (data is gone: no persistence).
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            wait_for(SECS(10), || self.spawn()),
            "redis-server did not restart on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a channel config and announces it.
pub fn put_channel(con: &mut redis::Connection, channel_id: &str, config: &Value) {
    redis::cmd("HSET")
        .arg("at:channel:config:feishu")
        .arg(channel_id)
        .arg(config.to_string())
        .query::<()>(con)
        .unwrap();
    publish(con, channel_id);
}

pub fn put_raw_channel(con: &mut redis::Connection, channel_id: &str, raw: &str) {
    redis::cmd("HSET")
        .arg("at:channel:config:feishu")
        .arg(channel_id)
        .arg(raw)
        .query::<()>(con)
        .unwrap();
    publish(con, channel_id);
}

pub fn remove_channel(con: &mut redis::Connection, channel_id: &str) {
    redis::cmd("HDEL").arg("at:channel:config:feishu").arg(channel_id).query::<()>(con).unwrap();
    publish(con, channel_id);
}

pub fn publish(con: &mut redis::Connection, channel_id: &str) {
    redis::cmd("PUBLISH")
        .arg("at:channel:config:feishu:changed")
        .arg(channel_id)
        .query::<()>(con)
        .unwrap();
}

/// A channel config object for an app.
pub fn channel(channel_id: &str, app_id: &str, secret: &str) -> Value {
    serde_json::json!({
        "schema": "at.channel.config", "v": 1, "ts": 1,
        "channel_id": channel_id, "agent_id": "agent_x1", "project_id": "proj_7",
        "enabled": true, "app_id": app_id, "app_secret": secret,
    })
}

/// Every item on the inbound list, oldest first.
pub fn inbound(con: &mut redis::Connection) -> Vec<Value> {
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg("at:channel:inbound")
        .arg(0)
        .arg(-1)
        .query(con)
        .unwrap_or_default();
    items.iter().rev().map(|s| serde_json::from_str(s).expect("inbound item is JSON")).collect()
}

/// A channel's status key, parsed.
pub fn status(con: &mut redis::Connection, channel_id: &str) -> Option<Value> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("at:channel:status:feishu:{channel_id}"))
        .query(con)
        .ok()
        .flatten();
    raw.map(|s| serde_json::from_str(&s).expect("status is JSON"))
}

pub fn state(con: &mut redis::Connection, channel_id: &str) -> Option<String> {
    status(con, channel_id).and_then(|s| s["state"].as_str().map(str::to_owned))
}

/// The simulator with test-friendly timing (pings every 2 s, redelivery after 1 s).
pub fn sim() -> Sim {
    Sim::start(SimOptions {
        ping_interval: 2,
        redelivery_after: Duration::from_millis(1000),
        max_deliveries: 30,
        ..SimOptions::default()
    })
}

/// The gateway binary running as a child process.
pub struct Gateway {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts the gateway binary `bin` against `redis_url` and the simulator.
    pub fn start(
        bin: &std::path::Path,
        redis_url: &str,
        sim: &Sim,
        instance: &str,
        extra: &[(&str, &str)],
    ) -> Gateway {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REDIS_URL", redis_url)
            .env("FEISHU_BASE_URL", sim.base_url())
            .env("GATEWAY_INSTANCE_ID", instance)
            .env("STATUS_TTL", "3")
            .env("CONFIG_REFRESH_INTERVAL", "30")
            .env("RUST_LOG", "debug");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Gateway::spawn(cmd, "Feishu Gateway running", SECS(10))
    }

    /// Starts any long-running program (the gateway, or the official-SDK
    /// bridge the benchmark compares it with) with stdout and stderr in a
    /// log file, and waits until `ready` appears there.
    pub fn spawn(mut cmd: Command, ready: &str, timeout: Duration) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("gateway.log");
        let file = File::create(&log).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let gw = Gateway { child, log, _dir: dir };
        assert!(gw.wait_log(ready, timeout), "{cmd:?} did not start:\n{}", gw.log());
        gw
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.log().contains(needle))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_for(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An outbound item as AskTable Server would queue it.
pub fn answer(id: &str, channel_id: &str, message_id: &str, chat_id: &str, text: &str) -> Value {
    serde_json::json!({
        "schema": "at.channel.outbound", "v": 1, "id": id, "ts": 1,
        "channel_id": channel_id, "in_reply_to": format!("q-{message_id}"),
        "target": {"message_id": message_id, "chat_id": chat_id, "reply_in_thread": false},
        "kind": "final", "status": "ok",
        "content": {"text": text, "attachments": []}, "error": null,
    })
}

/// Queues an outbound item (LPUSH, as the server does).
pub fn push_outbound(con: &mut redis::Connection, item: &str) {
    redis::cmd("LPUSH").arg("at:channel:outbound:feishu").arg(item).query::<()>(con).unwrap();
}

/// The dead-letter list, newest first.
pub fn dead_letters(con: &mut redis::Connection) -> Vec<Value> {
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg("at:channel:outbound:feishu:dead")
        .arg(0)
        .arg(-1)
        .query(con)
        .unwrap_or_default();
    items.iter().map(|s| serde_json::from_str(s).expect("dead letter is JSON")).collect()
}

/// Length of a list.
pub fn llen(con: &mut redis::Connection, key: &str) -> usize {
    redis::cmd("LLEN").arg(key).query(con).unwrap_or(0)
}

/// Runs a command to completion, killing it after `timeout` (then panics).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let exited = wait_for(timeout, || child.try_wait().ok().flatten().is_some());
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("collect output");
    assert!(exited, "{cmd:?} did not finish within {timeout:?}");
    out
}

/// The master name the test Sentinels watch.
pub const SENTINEL_MASTER: &str = "mymaster";

/// A Redis Sentinel on loopback (`redis-server --sentinel`, which is what
/// Debian's redis-sentinel runs), watching [`SENTINEL_SENTINEL_MASTER`] with a 1 s
/// down-after and a 4 s failover timeout.
pub struct SentinelNode {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl SentinelNode {
    pub fn start(master_port: u16) -> SentinelNode {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\nsentinel failover-timeout {SENTINEL_MASTER} 4000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        // Debian's redis-sentinel is this binary in Sentinel mode.
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        SentinelNode { child, port, _dir: dir }
    }

    pub fn con(&self) -> Option<redis::Connection> {
        let c = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).ok()?;
        let con = c.get_connection_with_timeout(SECS(1)).ok()?;
        con.set_read_timeout(Some(SECS(2))).ok()?;
        Some(con)
    }

    /// The master's port as this Sentinel names it now.
    pub fn master_port(&self) -> Option<u16> {
        sentinel_master_port(&[self.port])
    }

    /// Sentinels and replicas this node knows of.
    pub fn peers(&self) -> (usize, usize) {
        let Some(mut con) = self.con() else { return (0, 0) };
        let count = |sub: &str, con: &mut redis::Connection| {
            redis::cmd("SENTINEL")
                .arg(sub)
                .arg(SENTINEL_MASTER)
                .query::<Vec<redis::Value>>(con)
                .map(|v| v.len())
                .unwrap_or(0)
        };
        (count("sentinels", &mut con), count("replicas", &mut con))
    }
}

impl Drop for SentinelNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The master's port as the first answering Sentinel on one of `ports`
/// names it (a real server finds the master this way too).
pub fn sentinel_master_port(ports: &[u16]) -> Option<u16> {
    ports.iter().find_map(|p| {
        let c = redis::Client::open(format!("redis://127.0.0.1:{p}/")).ok()?;
        let mut con = c.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
        con.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(SENTINEL_MASTER)
            .query(&mut con)
            .ok()?;
        addr.map(|(_, port)| port)
    })
}

/// Whether a replica's link to its master is up.
pub fn replica_linked(replica: &RedisServer) -> bool {
    let info: String =
        redis::cmd("INFO").arg("replication").query(&mut replica.con()).unwrap_or_default();
    info.contains("master_link_status:up")
}

/// Drops every packet to a local TCP port while it lives (iptables on the
/// loopback): a black-holed Redis, new connections and established ones.
pub struct BlackHole(u16);

impl BlackHole {
    pub fn new(port: u16) -> BlackHole {
        BlackHole::rule("-I", port);
        BlackHole(port)
    }

    fn rule(op: &str, port: u16) {
        let status = std::process::Command::new("iptables")
            .args([
                op,
                "INPUT",
                "-i",
                "lo",
                "-p",
                "tcp",
                "--dport",
                &port.to_string(),
                "-j",
                "DROP",
            ])
            .status()
            .expect("iptables (installed by .ci/install-deps; the tests run as root)");
        assert!(status.success(), "iptables {op} failed");
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        BlackHole::rule("-D", self.0);
    }
}
