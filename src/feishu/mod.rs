//! Everything that talks to Feishu, and the pure codecs behind it.
//!
//! `frame`, `reassembly`, `event`, `chat_event` and `crypto` do no I/O; `http`, `endpoint`,
//! `api` and `conn` are the only code that reaches Feishu.

/// `Api` appears in the supervisor test's substitute runner.
pub mod api;
pub(crate) mod cardkit;
pub(crate) mod chat_event;
/// `Session`, `Tuning`, `Update`, `InboundStore`, `Stop`: the runner's signature.
pub mod conn;
/// `encrypt`: the simulator-side tests build encrypted events with it.
pub mod crypto;
pub(crate) mod diag;
pub(crate) mod endpoint;
/// Parsed by the fuzz targets and property tests.
pub mod event;
/// Parsed by the fuzz targets and property tests.
pub mod frame;
pub(crate) mod http;
/// Driven by the fuzz targets and property tests.
pub mod reassembly;
