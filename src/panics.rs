//! Panics in long-lived threads: [`keep_running`] restarts a thread's body
//! after a panic (logged at error, counted for
//! `feishu_gateway_thread_restarts_total`), and [`inject`] is the failpoint
//! the fault tests and the soak use to cause one. A leaf: `metrics` reads
//! the counts from here.
//!
//! Failpoints are armed only by `GATEWAY_FAULTS` (a test setting, see
//! docs/RELIABILITY.md): `GATEWAY_FAULTS=panic:reply,panic:typing` makes each
//! named point panic once, the first time it is reached. Unset, a failpoint
//! costs one relaxed atomic load.

use std::any::Any;
use std::collections::{BTreeMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long a restarted thread waits before running again.
const RESTART_DELAY: Duration = Duration::from_millis(500);

/// The text of a panic payload.
pub fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Counts and logs a panic caught in thread `name`.
pub fn caught(name: &str, payload: &(dyn Any + Send), what: &str) {
    record(name);
    log::error!("thread {name} panicked ({}); {what}", message(payload));
}

fn counts() -> &'static Mutex<BTreeMap<String, u64>> {
    static COUNTS: OnceLock<Mutex<BTreeMap<String, u64>>> = OnceLock::new();
    COUNTS.get_or_init(Default::default)
}

/// Counts a panic in thread `name` (exported as
/// `feishu_gateway_thread_restarts_total`).
pub fn record(name: &str) {
    *counts().lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_owned()).or_default() += 1;
}

/// Panics caught so far, by thread name.
pub fn restarts() -> BTreeMap<String, u64> {
    counts().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Runs `body` until it returns. After a panic it runs it again (after a
/// short pause), so the thread survives; `body` must pick up where it was.
pub fn keep_running(name: &str, mut body: impl FnMut()) {
    loop {
        match catch_unwind(AssertUnwindSafe(&mut body)) {
            Ok(()) => return,
            Err(p) => {
                caught(name, p.as_ref(), "restarting it");
                std::thread::sleep(RESTART_DELAY);
            }
        }
    }
}

static ARMED: AtomicBool = AtomicBool::new(true);

fn armed() -> &'static Mutex<HashSet<String>> {
    static POINTS: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let spec = std::env::var("GATEWAY_FAULTS").unwrap_or_default();
        let points: HashSet<String> = spec
            .split(',')
            .filter_map(|p| p.trim().strip_prefix("panic:"))
            .map(str::to_owned)
            .collect();
        ARMED.store(!points.is_empty(), Ordering::Relaxed);
        Mutex::new(points)
    })
}

/// Panics if the failpoint `name` is armed (once: it disarms itself).
pub fn inject(name: &str) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let hit = armed().lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    if hit {
        panic!("fault injected at {name} (GATEWAY_FAULTS)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_body_runs_again_until_it_returns() {
        let mut runs = 0;
        keep_running("t", || {
            runs += 1;
            if runs < 3 {
                panic!("boom {runs}");
            }
        });
        assert_eq!(runs, 3);
        assert_eq!(restarts().get("t"), Some(&2));
    }

    #[test]
    fn payload_text() {
        assert_eq!(message(&"a"), "a");
        assert_eq!(message(&String::from("b")), "b");
        assert_eq!(message(&5u8), "unknown panic");
    }

    #[test]
    fn unarmed_points_do_nothing() {
        // GATEWAY_FAULTS is not set for unit tests.
        inject("reply");
        inject("reply");
    }
}
