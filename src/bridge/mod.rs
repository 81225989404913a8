//! Everything that talks to Redis: the contract (keys and JSON), the
//! connection wrapper with the gateway's operations, and the config watcher.
//! No other module touches Redis.

mod connect;
/// Public for tests and fuzz targets (parsers, keys, JSON builders).
pub mod contract;
mod error;
pub(crate) mod questions;
mod statuses;
pub(crate) mod store;
pub(crate) mod streams;
pub(crate) mod watch;
