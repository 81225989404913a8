//! Everything that talks to Feishu, and the pure codecs behind it.
//!
//! `frame`, `reassembly`, `event` and `crypto` do no I/O; `http`, `endpoint`,
//! `api` and `conn` are the only code that reaches Feishu.

pub mod api;
pub mod conn;
pub mod crypto;
pub mod endpoint;
pub mod event;
pub mod frame;
pub mod http;
pub mod reassembly;
