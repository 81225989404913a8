//! Operations: metrics and health, graceful shutdown with a reply in flight.

use crate::support;

use feishu_sim::{Fault, Route};
use support::*;

const APP: &str = "cli_0pe2a7100000000a";
const SECRET: &str = "ops-secret";

#[test]
fn metrics_move_with_traffic_and_health_follows_redis() {
    let (mut redis, sim, mut con) = world(&[("ch_m", APP, SECRET)]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let gw = start_gateway(
        &redis.url(),
        &sim,
        "gw-m",
        &[("METRICS_ADDR", &addr), ("ANSWER_TIMEOUT", "4")],
    );
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    assert!(gw.wait_log(&format!("metrics on http://{addr}/metrics"), SECS(5)));
    assert!(wait_for(SECS(5), || get(port, "/healthz").0 == 200));
    assert!(wait_for(SECS(5), || metric(
        &get(port, "/metrics").1,
        "feishu_gateway_channel_state{channel=\"ch_m\",state=\"connected\"}"
    ) == Some(1.0)));

    let q = MessageEvent::text(APP, "q");
    for _ in 0..2 {
        let p = sim.push_event(APP, &q.json());
        assert!(sim.wait_acked(p, SECS(5)));
    }
    let img = sim.push_event(
        APP,
        &MessageEvent::of_type(APP, "image", serde_json::json!({"image_key": "i"})).json(),
    );
    assert!(sim.wait_acked(img, SECS(5)));
    // Feishu fails the first reply once: one retry.
    sim.inject(Route::Reply, Fault::server_error());
    push_outbound(&mut con, &answer("m1", "ch_m", &q.message_id, &q.chat_id, "a").to_string());
    assert!(sim.wait_messages(2, SECS(10)));
    let body = get(port, "/metrics").1;
    let want = [
        ("feishu_gateway_inbound_events_total{channel=\"ch_m\",outcome=\"stored\"}", 1.0),
        ("feishu_gateway_inbound_events_total{channel=\"ch_m\",outcome=\"duplicate\"}", 1.0),
        ("feishu_gateway_inbound_events_total{channel=\"ch_m\",outcome=\"unsupported\"}", 1.0),
        ("feishu_gateway_acks_total{code=\"200\"}", 3.0),
    ];
    for (series, v) in want {
        assert_eq!(metric(&body, series), Some(v), "{series}\n{body}");
    }
    assert!(wait_for(SECS(5), || metric(
        &get(port, "/metrics").1,
        "feishu_gateway_outbound_items_total{outcome=\"delivered\"}"
    ) == Some(2.0)));
    assert!(body.contains("# TYPE feishu_gateway_acks_total counter"));
    assert!(
        metric(&body, "feishu_gateway_last_frame_age_seconds{channel=\"ch_m\"}")
            .is_some_and(|a| a < 5.0),
        "{body}"
    );
    assert!(metric(&body, "feishu_gateway_token_refreshes_total").is_some_and(|n| n >= 1.0));
    assert!(wait_for(SECS(5), || metric(
        &get(port, "/metrics").1,
        "feishu_gateway_outbound_retries_total"
    ) == Some(1.0)));
    assert!(
        gw.log().contains("outbound [ch_m]: item ") && gw.log().contains(" retrying in "),
        "retries name the channel: {}",
        gw.log()
    );
    assert!(wait_for(SECS(8), || metric(
        &get(port, "/metrics").1,
        "feishu_gateway_queue_length{queue=\"inbound\"}"
    ) == Some(1.0)));
    assert_eq!(get(port, "/nope").0, 404);
    // A question nobody answers is counted once ANSWER_TIMEOUT passes.
    let unanswered = MessageEvent::text(APP, "nobody answers this");
    assert!(sim.wait_acked(sim.push_event(APP, &unanswered.json()), SECS(5)));
    assert!(
        wait_for(SECS(15), || metric(
            &get(port, "/metrics").1,
            "feishu_gateway_unanswered_questions_total{channel=\"ch_m\"}"
        ) == Some(1.0)),
        "{}",
        gw.log()
    );
    // A lost connection is counted; then every declared metric has a series
    // (but thread restarts, which need a panic: supervisor::every_thread_…).
    sim.drop_connections(APP);
    assert!(wait_for(SECS(10), || metric(
        &get(port, "/metrics").1,
        "feishu_gateway_reconnects_total{channel=\"ch_m\"}"
    ) == Some(1.0)));
    let body = get(port, "/metrics").1;
    for name in asktable_feishu_gateway::metrics::names() {
        if name == "feishu_gateway_thread_restarts_total" {
            continue;
        }
        assert!(
            body.contains(&format!("\n# TYPE {name} ")),
            "{name} missing after traffic:\n{body}"
        );
    }

    redis.stop();
    assert!(
        wait_for(SECS(10), || get(port, "/healthz").0 == 503),
        "healthz stayed 200 with Redis down"
    );
    assert!(get(port, "/healthz").1.contains("Redis"));
    redis.restart();
    assert!(wait_for(SECS(10), || get(port, "/healthz").0 == 200));
}

#[test]
fn a_bad_metrics_address_is_reported() {
    let redis = RedisServer::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"))
            .env_clear()
            .env("REDIS_URL", redis.url())
            .env("METRICS_ADDR", &addr),
        SECS(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid METRICS_ADDR"));
}

#[test]
fn sigterm_finishes_the_reply_in_flight() {
    let (redis, sim, mut con) = world(&[("ch_t", APP, SECRET)]);
    let mut gw = start_gateway(&redis.url(), &sim, "gw-t", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    sim.inject(Route::Reply, Fault::Delay(SECS(2)));
    push_outbound(
        &mut con,
        &answer("slow", "ch_t", "om_slow", "oc_slow", "slow answer").to_string(),
    );
    assert!(sim.wait_messages(1, SECS(10)), "{}", gw.log());
    gw.signal("TERM");
    let status = gw.wait_exit(SECS(15)).expect("exited");
    assert!(status.success(), "{}", gw.log());
    let log = gw.log();
    assert!(log.contains("item slow delivered"), "{log}");
    assert_eq!(
        llen(&mut con, "at:channel:outbound:feishu:processing:gw-t"),
        0,
        "the item was finished, not left behind"
    );
    assert_eq!(sim.connections(APP), 0);
}
