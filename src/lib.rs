//! asktable-feishu-gateway: connects Feishu/Lark bots to AskTable through Redis.
//!
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod bridge;
pub mod channel;
pub mod cli;
pub mod clock;
pub mod config;
pub mod feishu;
pub mod inbound;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod render;
pub mod supervisor;
pub mod systemd;
