//! The four subjects of `make bench` and how each is started: the gateway,
//! the bridges on the official Node and Python SDKs (sim/official/), and the
//! null relay (the floor: sim/src/bin/null-relay.rs).

use feishu_sim::Sim;
use feishu_sim::harness::{Gateway, RedisServer};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// What is measured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Gateway,
    /// The same gateway as shipped: the static musl binary of `make static`.
    Static,
    Node,
    Python,
    Floor,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::Static => "gateway, static (as shipped)",
            Kind::Node => "Node SDK bridge",
            Kind::Python => "Python SDK bridge",
            Kind::Floor => "null relay (floor)",
        }
    }

    /// Whether it replies (the floor only relays inbound).
    pub fn replies(self) -> bool {
        self != Kind::Floor
    }
}

/// Where the subjects live.
pub struct Subjects {
    pub gateway: PathBuf,
    pub static_gateway: PathBuf,
    pub python: PathBuf,
    pub node_modules: PathBuf,
    pub null_relay: PathBuf,
    pub official: PathBuf,
    pub script: PathBuf,
}

/// How long a subject may take to say it is ready (a bridge connecting 1000
/// apps one after the other takes a while).
const READY_WITHIN: Duration = Duration::from_secs(600);

impl Subjects {
    /// Starts one subject against `redis` and `sim`. All do the same work
    /// per message: the gateway's typing reaction is off, since the bridges
    /// have none. `ca`: a CA file to trust (the simulator's TLS front).
    /// The floor needs the one app it relays for.
    pub fn start(
        &self,
        kind: Kind,
        redis: &RedisServer,
        sim: &Sim,
        ca: Option<&str>,
        floor_app: (&str, &str),
    ) -> Gateway {
        let mut cmd = match kind {
            Kind::Gateway | Kind::Static => {
                let bin = if kind == Kind::Static { &self.static_gateway } else { &self.gateway };
                let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
                let mut words = wrap.split_whitespace();
                let mut c = match words.next() {
                    Some(first) => {
                        let mut c = Command::new(first);
                        c.args(words).arg(bin);
                        c
                    }
                    None => Command::new(bin),
                };
                c.env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("REDIS_URL", redis.url())
                    .env("FEISHU_BASE_URL", sim.base_url())
                    .env("GATEWAY_INSTANCE_ID", "bench")
                    .env(
                        "RUST_LOG",
                        std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
                    )
                    .env("TYPING_REACTION", "");
                return spawn(c, ca, "Feishu Gateway running");
            }
            Kind::Node => {
                let mut c = Command::new("node");
                c.env("NODE_PATH", &self.node_modules).arg(self.official.join("node_bridge.js"));
                c
            }
            Kind::Python => {
                let mut c = Command::new(&self.python);
                c.arg(self.official.join("lark_bridge.py"));
                c
            }
            Kind::Floor => {
                let mut c = Command::new(&self.null_relay);
                c.arg(sim.base_url()).arg(redis.url()).arg(floor_app.0).arg(floor_app.1);
                return spawn(c, ca, "READY");
            }
        };
        cmd.arg(sim.base_url()).arg(redis.url()).arg(&self.script);
        spawn(cmd, ca, "READY")
    }
}

fn spawn(mut cmd: Command, ca: Option<&str>, ready: &str) -> Gateway {
    if let Some(ca) = ca {
        // Each runtime's way to trust a private CA.
        cmd.env("SSL_CERT_FILE", ca).env("NODE_EXTRA_CA_CERTS", ca).env("REQUESTS_CA_BUNDLE", ca);
    }
    Gateway::spawn(cmd, ready, READY_WITHIN)
}
