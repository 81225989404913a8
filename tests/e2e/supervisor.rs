//! The supervisor in-process, with a substitute channel runner: a panic in
//! one channel's thread restarts that channel only.

use crate::support;

use asktable_feishu_gateway::config::Config;
use asktable_feishu_gateway::feishu::api::Api;
use asktable_feishu_gateway::feishu::conn::{InboundStore, Session, Stop, Tuning, Update};
use asktable_feishu_gateway::supervisor::{Signal, Supervisor};
use std::sync::Mutex;
use support::*;

static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn calls(channel: &str) -> usize {
    CALLS.lock().unwrap().iter().filter(|c| *c == channel).count()
}

/// Panics the first time it runs for `ch_panic`; otherwise "connects" and
/// waits for the stop request like the real runner.
fn runner(
    session: &Session,
    _: &Api,
    _: &mut dyn InboundStore,
    stop: &Stop,
    report: &dyn Fn(Update),
) {
    CALLS.lock().unwrap().push(session.channel_id.clone());
    if session.channel_id == "ch_panic" && calls("ch_panic") == 1 {
        panic!("injected failure");
    }
    report(Update::Connected);
    let _ = stop.wait(std::time::Duration::from_secs(60));
}

#[test]
fn a_panicking_channel_is_restarted_alone() {
    let redis = RedisServer::start();
    let mut con = redis.con();
    put_channel(&mut con, "ch_ok", &channel("ch_ok", "cli_ok", "s1"));
    put_channel(&mut con, "ch_panic", &channel("ch_panic", "cli_panic", "s2"));
    let url = redis.url();
    let cfg = Config::from_lookup(|k| match k {
        "REDIS_URL" => Some(url.clone()),
        "GATEWAY_INSTANCE_ID" => Some("gw-sup".into()),
        "STATUS_TTL" => Some("3".into()),
        _ => None,
    })
    .unwrap();
    let sup = Supervisor::new(cfg, Tuning::default()).unwrap().with_runner(runner);
    let (sig_tx, sig_rx) = crossbeam_channel::bounded(1);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        sup.run(sig_rx);
        let _ = done_tx.send(());
    });
    assert!(
        wait_for(SECS(10), || calls("ch_panic") == 2),
        "not restarted: {:?}",
        CALLS.lock().unwrap()
    );
    assert!(wait_for(SECS(5), || state(&mut con, "ch_panic").as_deref() == Some("connected")));
    assert_eq!(state(&mut con, "ch_ok").as_deref(), Some("connected"));
    assert_eq!(calls("ch_ok"), 1, "the healthy channel was not touched");
    sig_tx.send(Signal::Terminate).unwrap();
    assert!(done_rx.recv_timeout(SECS(10)).is_ok(), "supervisor did not stop");
    assert_eq!(state(&mut con, "ch_ok").as_deref(), Some("disconnected"));
}
