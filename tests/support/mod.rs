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
