//! Everything that talks to Redis: the contract (keys and JSON), the
//! connection wrapper with the gateway's operations, and the config watcher.
//! No other module touches Redis.

pub mod contract;
pub mod store;
pub mod watch;
