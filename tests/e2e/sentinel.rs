//! Redis Sentinel (issue 11, item 7): a master, a replica and three
//! Sentinels on loopback; two failovers mid-traffic (one by demotion,
//! which answers READONLY on the connections the gateway holds, one by
//! killing the master). Nothing is lost, nothing doubled, and the gateway
//! follows the new master each time.

use crate::support;

use std::collections::HashSet;
use support::*;

const APP: &str = "cli_5e171ne100000000a";
const SECRET: &str = "sentinel-secret";

fn con_to(port: u16) -> redis::Connection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let con = c.get_connection_with_timeout(SECS(2)).unwrap();
    con.set_read_timeout(Some(SECS(5))).unwrap();
    con
}

fn linked(replica: &RedisServer) -> bool {
    replica_linked(replica)
}

/// Asks `n` questions 100 ms apart, running `mid` after the first third.
fn ask(sim: &Sim, n: usize, tag: &str, mid: impl FnOnce()) -> Vec<(u64, MessageEvent)> {
    let mut mid = Some(mid);
    let mut pushed = Vec::new();
    for i in 0..n {
        let ev = MessageEvent::text(APP, &format!("{tag} {i}"));
        pushed.push((sim.push_event(APP, &ev.json()), ev));
        std::thread::sleep(std::time::Duration::from_millis(100));
        if i == n / 3 {
            (mid.take().unwrap())();
        }
    }
    pushed
}

#[test]
fn failovers_mid_traffic_lose_and_double_nothing() {
    let a = RedisServer::start();
    let b = RedisServer::start_replica_of(a.port);
    let mut a = Some(a);
    assert!(wait_for(SECS(10), || linked(&b)), "the replica did not sync");
    let sentinels: Vec<SentinelNode> =
        (0..3).map(|_| SentinelNode::start(a.as_ref().unwrap().port)).collect();
    assert!(
        wait_for(SECS(20), || sentinels.iter().all(|s| s.peers() == (2, 1))),
        "the Sentinels did not find each other and the replica"
    );
    let sim = Sim::start(SimOptions {
        redelivery_after: SECS(1),
        max_deliveries: 60,
        ..SimOptions::default()
    });
    sim.add_app(APP, SECRET);
    put_channel(&mut a.as_ref().unwrap().con(), "ch_s", &channel("ch_s", APP, SECRET));
    assert!(wait_for(SECS(5), || {
        redis::cmd("HLEN").arg("at:channel:config:feishu").query::<i64>(&mut b.con()).unwrap_or(0)
            == 1
    }));
    let nodes: Vec<String> = sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
    let nodes = nodes.join(",");
    // REDIS_URL's host and port are not used with Sentinel.
    let env = [
        ("REDIS_SENTINELS", nodes.as_str()),
        ("REDIS_SENTINEL_MASTER", SENTINEL_MASTER),
        ("TYPING_REACTION", ""),
    ];
    let gw = start_gateway("redis://127.0.0.1:1/0", &sim, "gw-sent", &env);
    assert!(sim.wait_connections(APP, 1, SECS(15)), "{}", gw.log());

    // 1: a failover by demotion: the gateway's connections to the old
    // master now answer READONLY.
    let old = a.as_ref().unwrap().port;
    let mut pushed = ask(&sim, 30, "demoted", || {
        let mut s = sentinels[0].con().unwrap();
        redis::cmd("SENTINEL").arg("FAILOVER").arg(SENTINEL_MASTER).query::<()>(&mut s).unwrap();
    });
    assert!(
        wait_for(SECS(20), || sentinels.iter().all(|s| s.master_port() == Some(b.port))),
        "no failover to the replica"
    );
    for (push, _) in &pushed {
        assert!(sim.wait_acked(*push, SECS(30)), "an event was never stored:\n{}", gw.log());
    }
    let a_port = old;
    // The demoted server follows the new master; then the new master dies.
    assert!(wait_for(SECS(20), || linked(a.as_ref().unwrap())), "the old master did not resync");
    let mut b = Some(b);
    pushed.extend(ask(&sim, 30, "killed", || drop(b.take())));
    assert!(
        wait_for(SECS(30), || sentinels.iter().all(|s| s.master_port() == Some(a_port))),
        "no failover after the kill"
    );
    // Questions wait (refused, redelivered) until a replica can confirm
    // them: the operator replaces the dead server.
    let c = RedisServer::start_replica_of(a_port);
    assert!(wait_for(SECS(15), || linked(&c)), "the new replica did not sync");
    for (push, _) in &pushed {
        assert!(sim.wait_acked(*push, SECS(40)), "an event was never stored:\n{}", gw.log());
    }
    let mut con = con_to(a_port);
    let items = inbound(&mut con);
    let ids: Vec<String> =
        items.iter().map(|i| i["message"]["message_id"].as_str().unwrap().to_owned()).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a question was stored twice");
    let lost: Vec<String> = pushed
        .iter()
        .filter(|(_, e)| !unique.contains(&e.message_id))
        .map(|(push, e)| {
            format!(
                "{} acks {:?}",
                e.json()
                    .split("\\\"text\\\":\\\"")
                    .nth(1)
                    .unwrap_or("?")
                    .chars()
                    .take(12)
                    .collect::<String>(),
                sim.acks(*push).iter().map(|a| a.code).collect::<Vec<_>>()
            )
        })
        .collect();
    assert!(lost.is_empty(), "questions lost: {lost:?}\n{}", gw.log());

    // Answers flow on the new master, once each.
    for (i, (_, ev)) in pushed.iter().enumerate().take(10) {
        push_outbound(
            &mut con,
            &answer(&format!("s{i}"), "ch_s", &ev.message_id, &ev.chat_id, &format!("a{i}"))
                .to_string(),
        );
    }
    assert!(sim.wait_messages(10, SECS(20)), "{}", gw.log());
    std::thread::sleep(SECS(1));
    assert_eq!(sim.messages().len(), 10);
    assert!(gw.log().contains("via Sentinel"), "{}", gw.log());
    drop(a.take());
}
