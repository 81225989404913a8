//! End to end over TLS: the simulator behind its TLS front (a private CA),
//! so that the gateway's `https://` and `wss://` paths, certificate
//! verification included, run as they do against the real Feishu.

use crate::support;

use support::*;

const APP: &str = "cli_7150000000000001";
const SECRET: &str = "tls-secret";

fn tls_sim() -> Sim {
    let sim = Sim::start(SimOptions {
        tls: true,
        poll: std::time::Duration::from_millis(2),
        ..SimOptions::default()
    });
    sim.add_app(APP, SECRET);
    sim
}

#[test]
fn questions_and_answers_cross_https_and_wss_with_the_operators_ca() {
    let redis = RedisServer::start();
    let sim = tls_sim();
    assert!(sim.base_url().starts_with("https://"));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, sim.ca_pem().unwrap()).unwrap();
    let mut con = redis.con();
    put_channel(&mut con, "ch_tls", &channel("ch_tls", APP, SECRET));
    let gw = start_gateway(
        &redis.url(),
        &sim,
        "gw-tls",
        &[("SSL_CERT_FILE", ca.to_str().unwrap()), ("TYPING_REACTION", "")],
    );
    assert!(sim.wait_connections(APP, 1, SECS(15)), "{}", gw.log());
    assert!(wait_for(SECS(10), || state(&mut con, "ch_tls").as_deref() == Some("connected")));

    let ev = MessageEvent::text(APP, "加密通道里的问题");
    let push = sim.push_event(APP, &ev.json());
    assert!(sim.wait_acked(push, SECS(10)), "{}", gw.log());
    let items = inbound(&mut con);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["question"], "加密通道里的问题");

    let a = answer("tls-a1", "ch_tls", &ev.message_id, &ev.chat_id, "**答案** over TLS");
    push_outbound(&mut con, &a.to_string());
    assert!(sim.wait_messages(1, SECS(10)), "{}", gw.log());
    assert_eq!(sim.messages()[0].reply_to.as_deref(), Some(ev.message_id.as_str()));

    // An idle TLS connection waits in the kernel (a peek), not in SSL_read:
    // after a quiet spell the next event still arrives whole, and a stop
    // (the read side shut under the peek) closes the connection at once.
    std::thread::sleep(SECS(1));
    // Larger than a read buffer and a TLS record's first read: the rest comes
    // from what OpenSSL holds decrypted, with no peek in between.
    let long = "第二个问题 ".repeat(400);
    let ev2 = MessageEvent::text(APP, &long);
    let push = sim.push_event(APP, &ev2.json());
    assert!(sim.wait_acked(push, SECS(10)), "{}", gw.log());
    let items = inbound(&mut con);
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["question"], long.trim_end());
    let mut disabled = channel("ch_tls", APP, SECRET);
    disabled["enabled"] = serde_json::json!(false);
    put_channel(&mut con, "ch_tls", &disabled);
    assert!(sim.wait_connections(APP, 0, SECS(5)), "{}", gw.log());
    assert!(wait_for(SECS(5), || gw.log().contains("long connection closed")), "{}", gw.log());
    assert!(!gw.log().contains(SECRET));
}

#[test]
fn an_untrusted_certificate_is_reported_and_nothing_is_sent() {
    let redis = RedisServer::start();
    let sim = tls_sim();
    let mut con = redis.con();
    put_channel(&mut con, "ch_tls", &channel("ch_tls", APP, SECRET));
    // No SSL_CERT_FILE: the system's CAs do not know the simulator's.
    let gw = start_gateway(&redis.url(), &sim, "gw-tls", &[]);
    assert!(
        wait_for(SECS(15), || status(&mut con, "ch_tls")
            .is_some_and(|s| s["last_error"]["message"].as_str().is_some_and(|m| !m.is_empty()))),
        "{}",
        gw.log()
    );
    let st = status(&mut con, "ch_tls").unwrap();
    assert_eq!(st["state"], "error", "{st}");
    assert_eq!(st["last_error"]["code"], "tls_untrusted", "{st}");
    let msg = st["last_error"]["message"].as_str().unwrap();
    assert!(msg.contains("not trusted") && msg.contains("SSL_CERT_FILE"), "{msg}");
    assert!(gw.log().contains("SSL_CERT_FILE"), "the operator reads it in the journal");
    assert_eq!(sim.endpoint_calls(APP), 0, "the App Secret never reached an untrusted server");
    assert_eq!(sim.connections(APP), 0);
    assert!(!gw.log().contains(SECRET));

    // `check` says the same, with the fix.
    let out = output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"))
            .arg("check")
            .env_clear()
            .env("REDIS_URL", redis.url())
            .env("FEISHU_BASE_URL", sim.base_url()),
        SECS(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("not trusted") && text.contains("SSL_CERT_FILE=/path/to/ca-bundle.pem"),
        "{text}"
    );
}

/// `rediss://` end to end (issue 11, item 7): a TLS-only redis-server with a
/// certificate of a private CA, trusted through SSL_CERT_FILE.
#[test]
fn redis_over_tls_with_a_private_ca() {
    let redis = RedisServer::start_tls();
    assert!(redis.url().starts_with("rediss://"));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("redis-ca.pem");
    std::fs::write(&ca, redis.ca_pem().unwrap()).unwrap();
    let sim = sim();
    sim.add_app(APP, SECRET);
    let mut con = redis.con();
    put_channel(&mut con, "ch_rt", &channel("ch_rt", APP, SECRET));
    let env = [("SSL_CERT_FILE", ca.to_str().unwrap()), ("TYPING_REACTION", "")];
    let gw = start_gateway(&redis.url(), &sim, "gw-rtls", &env);
    assert!(sim.wait_connections(APP, 1, SECS(15)), "{}", gw.log());
    let ev = MessageEvent::text(APP, "TLS 上的 Redis");
    assert!(sim.wait_acked(sim.push_event(APP, &ev.json()), SECS(10)), "{}", gw.log());
    assert_eq!(inbound(&mut con)[0]["question"], "TLS 上的 Redis");
    let a = answer("rt-a1", "ch_rt", &ev.message_id, &ev.chat_id, "答案");
    push_outbound(&mut con, &a.to_string());
    assert!(sim.wait_messages(1, SECS(10)), "{}", gw.log());
    assert!(wait_for(SECS(10), || state(&mut con, "ch_rt").as_deref() == Some("connected")));
    let run = |env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_asktable-feishu-gateway"));
        c.env_clear().env("REDIS_URL", redis.url()).arg("check");
        c.env("FEISHU_BASE_URL", sim.base_url());
        for (k, v) in env {
            c.env(k, v);
        }
        let out = output_within(&mut c, SECS(30));
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    // The first heartbeat has been written.
    assert!(wait_for(SECS(5), || redis::cmd("EXISTS")
        .arg("at:channel:gateway:feishu:gw-rtls")
        .query::<bool>(&mut con)
        .unwrap()));
    let ok = run(&[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    assert!(ok.contains("✔  redis") && ok.contains("✔  gateway"), "{ok}\n{}", gw.log());
    // Without the CA: the TLS failure is named, with the fix.
    let bad = run(&[]);
    assert!(bad.contains("TLS handshake failed") && bad.contains("SSL_CERT_FILE"), "{bad}");
}

/// Behind a proxy (issue 11, item 8): the long connection honours
/// HTTPS_PROXY (HTTP CONNECT, with Basic credentials from the URL) and
/// NO_PROXY, as the REST calls do; the credentials appear nowhere.
#[test]
fn the_long_connection_goes_through_the_operators_proxy() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let proxy =
        feishu_sim::proxy::ConnectProxy::start(Some(format!("Basic {}", b64("gw:p@ss:w0rd"))));
    let redis = RedisServer::start();
    let sim = tls_sim();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, sim.ca_pem().unwrap()).unwrap();
    let mut con = redis.con();
    put_channel(&mut con, "ch_px", &channel("ch_px", APP, SECRET));
    let url = format!("http://gw:p%40ss%3Aw0rd@127.0.0.1:{}", proxy.port);
    let ca_path = ca.to_str().unwrap();
    let env = [("SSL_CERT_FILE", ca_path), ("TYPING_REACTION", ""), ("HTTPS_PROXY", url.as_str())];
    let gw = start_gateway(&redis.url(), &sim, "gw-px", &env);
    assert!(sim.wait_connections(APP, 1, SECS(15)), "{}", gw.log());
    let ev = MessageEvent::text(APP, "经代理的问题");
    assert!(sim.wait_acked(sim.push_event(APP, &ev.json()), SECS(10)), "{}", gw.log());
    let a = answer("px-a1", "ch_px", &ev.message_id, &ev.chat_id, "经代理的答案");
    push_outbound(&mut con, &a.to_string());
    assert!(sim.wait_messages(1, SECS(10)), "{}", gw.log());
    let ws_port = sim.ws_url_port();
    let tunnels = proxy.tunnels();
    assert!(
        tunnels.iter().any(|t| t.ends_with(&format!(":{ws_port}"))),
        "the long connection did not use the proxy: {tunnels:?}"
    );
    assert_eq!(proxy.refused(), 0);
    for secret in ["p@ss:w0rd", "p%40ss%3Aw0rd", &b64("gw:p@ss:w0rd")] {
        assert!(!gw.log().contains(secret), "proxy credentials in the log");
    }
    drop(gw);

    // NO_PROXY names the host: straight there, nothing through the proxy.
    let before = proxy.tunnels().len();
    let env = [
        ("SSL_CERT_FILE", ca_path),
        ("TYPING_REACTION", ""),
        ("HTTPS_PROXY", url.as_str()),
        ("NO_PROXY", "localhost,127.0.0.1"),
    ];
    let gw = start_gateway(&redis.url(), &sim, "gw-px2", &env);
    assert!(sim.wait_connections(APP, 1, SECS(15)), "{}", gw.log());
    assert_eq!(proxy.tunnels().len(), before, "NO_PROXY was not honoured");
    drop(gw);

    // Wrong credentials: refused, said so, and nothing secret shown.
    let bad = format!("http://gw:wrong-pass@127.0.0.1:{}", proxy.port);
    let env = [("SSL_CERT_FILE", ca_path), ("TYPING_REACTION", ""), ("HTTPS_PROXY", bad.as_str())];
    let gw = start_gateway(&redis.url(), &sim, "gw-px3", &env);
    assert!(wait_for(SECS(15), || proxy.refused() > 0));
    assert!(gw.wait_log("407", SECS(10)), "{}", gw.log());
    assert!(!gw.log().contains("wrong-pass"), "{}", gw.log());
}
