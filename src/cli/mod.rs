//! The operator commands: `check`, `status`, `channel put|rm|list`.
//!
//! They print for people (tables) or scripts (`--json`), read settings from
//! the same environment as the daemon, and never print a secret.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command line prints

/// `println!` that ends the command quietly (exit 0) when stdout is a
/// closed pipe (`status | head`) instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::write_out(format_args!("\n"))
    };
    ($($t:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($t)*)))
    };
}

mod channel;
mod check;
mod check_app;
mod dead;
mod health;
mod server;
mod status;
mod trace;

use std::process::ExitCode;

use crate::bridge::store::{self, RedisError, Store};
use crate::config::Config;

pub use channel::channel;
pub use check::check;
pub use dead::dead;
pub use health::health;
pub use status::status;
pub use trace::trace;

/// Exit code for bad usage or configuration.
pub(crate) const USAGE_ERROR: u8 = 2;

/// Writes to stdout; a closed pipe ends the process with status 0 (what
/// the reader wanted is printed), any other write error with status 1.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("asktable-feishu-gateway: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

pub(crate) fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("asktable-feishu-gateway: {msg}");
    ExitCode::from(USAGE_ERROR)
}

pub(crate) fn store(cfg: &Config) -> Result<Store, RedisError> {
    Ok(Store::new(store::target(cfg)?))
}

/// Formats ms since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn utc(ms: u64) -> String {
    let c = crate::clock::civil(ms as i64);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let width = |s: &str| s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum::<usize>();
    let mut w: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(width(c));
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{}", " ".repeat(w[i] - width(c))))
            .collect();
        outln!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_764_000_000_000), "2025-11-24 16:00:00");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
