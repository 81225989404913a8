//! asktable-feishu-gateway: connects Feishu/Lark bots to AskTable through Redis.
//!
//! See ARCHITECTURE.md for the code map and the invariants. Only what the
//! binary (`src/main.rs`), `tests/` and `fuzz/` use is public, each with the
//! reason; everything else is private, so the compiler reports dead code.

/// `bridge::contract`: tests and fuzz targets parse and build contract values.
pub mod bridge;
/// `GroupPolicy` and friends: tests build channel configs.
pub mod channel;
/// The operator commands, run by the binary.
pub mod cli;
mod clock;
/// `Config::from_env`, read by the binary; tests build one from a lookup.
pub mod config;
/// The codecs (frame, reassembly, event, crypto) for tests and fuzz targets;
/// `conn`'s session types for the supervisor test's substitute runner.
pub mod feishu;
mod inbound;
/// The log format, installed by the binary.
pub mod logging;
/// `serve` for the binary; `names` for the test that every metric is exported.
pub mod metrics;
mod outbound;
mod panics;
/// Markdown → Feishu parts, for the property tests and the render fuzz target.
pub mod render;
/// The main loop, run by the binary and by the supervisor test.
pub mod supervisor;
mod systemd;
