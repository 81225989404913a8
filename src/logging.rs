//! Log output: plain lines on a terminal, `<N>`-prefixed lines (syslog
//! priorities) when stderr goes to journald.
//!
//! Third-party crates are capped at `info` unless `RUST_LOG` names them:
//! their debug output can include URLs whose query strings hold secrets.

use log::{Level, LevelFilter};
use std::io::Write;

/// Installs the global logger. `RUST_LOG` defaults to `info`.
pub fn init() {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b = env_logger::Builder::new();
    b.filter_level(LevelFilter::Info);
    for noisy in ["tungstenite", "ureq", "ureq_proto", "redis", "native_tls"] {
        b.filter_module(noisy, LevelFilter::Info);
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    if journald {
        b.format(|buf, r| writeln!(buf, "<{}>{}", priority(r.level()), r.args()));
    } else {
        b.format(|buf, r| writeln!(buf, "{} {:5} {}", buf.timestamp_millis(), r.level(), r.args()));
    }
    b.target(env_logger::Target::Stderr).init();
}

/// The syslog priority journald reads from a `<N>` prefix.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn priorities() {
        use log::Level::*;
        assert_eq!([Error, Warn, Info, Debug, Trace].map(super::priority), [3, 4, 6, 7, 7]);
    }
}
