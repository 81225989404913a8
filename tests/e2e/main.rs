//! Every integration test, in one binary (ripgrep's `tests/tests.rs`
//! pattern): one link instead of eleven, and the suites share one test
//! runner. Each module is one behaviour area.

/// Helpers: the simulator crate's harness plus the gateway binary of this build.
mod support;

/// The architecture read from src/: layering, circles, docs, sizes, metrics.
mod architecture;
/// Channel lifecycle end to end: add, change, disable, remove, bad configs, replicas.
mod channels;
/// Chat events (the welcome message) and follow-up bubbles.
mod chats;
/// The operator commands (`check`, `status`, `channel`).
mod cli;
/// The contract as a server developer implements it: schemas, receipts, the reference server, env tables.
mod contract;
/// Hung apps and chats, panicking threads: isolation and supervision.
mod faults;
/// AskTable's troubleshooting guide, row by row, and the operator commands it leads to.
mod guide;
/// Honest health: Redis troubles named, /healthz under refusals and slow clients.
mod health;
/// Inbound end to end: events over the real protocol → Redis, acks, dedup, faults.
mod inbound;
/// The official Feishu Python SDK against the simulator, and the benchmark's bridge.
mod official_sdk;
/// Metrics, health and graceful shutdown.
mod ops;
/// Outbound end to end: Redis → Feishu replies, exactly once, under faults.
mod outbound;
/// Property tests of the pure codecs and the renderer.
mod properties;
/// Every secret through every output.
mod secrets;
/// Redis Sentinel: failovers mid-traffic.
mod sentinel;
/// Progress answers streaming into CardKit cards, past every limit.
mod streaming;
/// The supervisor in-process with a substitute runner (panic isolation).
mod supervisor;
/// The systemd unit and sd_notify.
mod systemd;
/// https:// and wss:// end to end with the simulator's private CA.
mod tls;
