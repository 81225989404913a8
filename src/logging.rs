//! Log output: plain lines with a timestamp in the zone `TZ` names (or
//! `/etc/localtime`), with its offset written out, e.g.
//! `2026-12-02T20:52:12.928+08:00 INFO …` (containers, terminals);
//! `<N>`-prefixed lines (syslog priorities) when stderr goes to journald,
//! which stamps lines itself.
//!
//! Third-party crates are capped at `info` unless `RUST_LOG` names them:
//! their debug output can include URLs whose query strings hold secrets.

use log::{Level, LevelFilter};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::civil;

/// The zone of the timestamps: `TZ` (a zoneinfo name such as
/// `Asia/Shanghai`, or a POSIX rule), else `/etc/localtime`; `None` = UTC.
static ZONE: OnceLock<Option<tz::TimeZone>> = OnceLock::new();

fn zone() -> Option<&'static tz::TimeZone> {
    ZONE.get_or_init(|| match std::env::var("TZ") {
        Ok(name) if !name.trim().is_empty() => tz::TimeZone::from_posix_tz(name.trim()).ok(),
        _ => tz::TimeZone::local().ok(),
    })
    .as_ref()
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmm±HH:MM` in `zone` (`Z` for UTC).
pub fn stamp(t: SystemTime, zone: Option<&tz::TimeZone>) -> String {
    let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let offset = zone
        .and_then(|z| z.find_local_time_type(ms.div_euclid(1000)).ok())
        .map_or(0, |t| t.ut_offset());
    let c = civil(ms + i64::from(offset) * 1000);
    let zone = if offset == 0 {
        "Z".to_owned()
    } else {
        let (sign, a) = if offset < 0 { ('-', -offset) } else { ('+', offset) };
        format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{zone}",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

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
        b.format(|buf, r| {
            writeln!(buf, "{} {:5} {}", stamp(SystemTime::now(), zone()), r.level(), r.args())
        });
    }
    b.target(env_logger::Target::Stderr).init();
    if let Ok(name) = std::env::var("TZ")
        && !name.trim().is_empty()
        && zone().is_none()
    {
        log::warn!("TZ={name:?} is not a known time zone (no zoneinfo file?); log times are UTC");
    }
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
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn stamps_carry_the_zones_offset() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        assert_eq!(super::stamp(t, None), "2025-11-24T16:00:00.123Z");
        let shanghai = tz::TimeZone::from_posix_tz("CST-8").unwrap();
        assert_eq!(super::stamp(t, Some(&shanghai)), "2025-11-25T00:00:00.123+08:00");
        let ny = tz::TimeZone::from_posix_tz("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(super::stamp(t, Some(&ny)), "2025-11-24T11:00:00.123-05:00");
        let summer = UNIX_EPOCH + Duration::from_secs(1_751_371_200); // 2025-07-01 12:00Z
        assert_eq!(super::stamp(summer, Some(&ny)), "2025-07-01T08:00:00.000-04:00");
    }

    #[test]
    fn priorities() {
        use log::Level::*;
        assert_eq!([Error, Warn, Info, Debug, Trace].map(super::priority), [3, 4, 6, 7, 7]);
    }
}
