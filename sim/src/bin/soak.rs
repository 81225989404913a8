//! `make soak`: conversations flow through two gateway replicas on a
//! Redis master, a replica and three Sentinels while faults are injected
//! at random; at the end every question must have been stored exactly once
//! and every answer shown exactly once (but answers a panicking worker
//! dead-lettered, which are counted), every bad value dead-lettered, and
//! no secret logged. Black-holing needs iptables (root).
//!
//! SOAK_SECONDS (default 600) sets the duration of the fault phase.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use feishu_sim::events::MessageEvent;
use feishu_sim::harness::{
    BlackHole, Gateway, RedisServer, SENTINEL_MASTER, SentinelNode, answer, channel, dead_letters,
    llen, put_channel, put_raw_channel, replica_linked, rss_kib, sentinel_master_port, threads,
    wait_for,
};
use feishu_sim::{Fault, Route, Sim, SimOptions, rand_u64};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const APPS: usize = 3;
const RESPONDER_PROCESSING: &str = "soak:responder:processing";
const SECRET_PREFIX: &str = "soak-secret-";
/// Outbound items the server might get wrong; each must be dead-lettered.
const MALFORMED: [&str; 5] = [
    "{malformed",
    r#"{"schema":"at.channel.outbound","v":99,"id":"bad-v","channel_id":"ch_0"}"#,
    r#"{"schema":"at.channel.outbound","v":1,"id":"bad-target","channel_id":"ch_0","target":{},"kind":"final","status":"ok","content":{"text":"x"}}"#,
    r#"{"schema":"at.channel.outbound","v":1,"id":"bad-kind","channel_id":"ch_0","target":{"chat_id":"oc_x"},"kind":"shout","status":"ok","content":{"text":"x"}}"#,
    "[1,2,3]",
];

fn app(i: usize) -> String {
    format!("cli_50a{i:013}")
}

fn pick(n: usize) -> usize {
    (rand_u64() % n as u64) as usize
}

struct Replica {
    name: &'static str,
    gw: Option<Gateway>,
    logs: Vec<String>,
}

fn main() -> ExitCode {
    let secs: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let bin: PathBuf =
        std::env::current_exe().expect("exe").with_file_name("asktable-feishu-gateway");
    let mut servers = [RedisServer::start_persistent(), RedisServer::start_persistent()];
    let first = servers[0].port;
    servers[1] = RedisServer::start_replica_of(first);
    assert!(wait_for(Duration::from_secs(15), || replica_linked(&servers[1])), "replica");
    let sentinels: Vec<SentinelNode> = (0..3).map(|_| SentinelNode::start(first)).collect();
    assert!(
        wait_for(Duration::from_secs(30), || sentinels.iter().all(|s| s.peers() == (2, 1))),
        "the Sentinels did not find each other"
    );
    let sentinel_ports: Vec<u16> = sentinels.iter().map(|s| s.port).collect();
    let nodes: Vec<String> = sentinel_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let nodes = nodes.join(",");
    let sim = Arc::new(Sim::start(SimOptions {
        ping_interval: 2,
        redelivery_after: Duration::from_secs(2),
        max_deliveries: 1000,
        ..SimOptions::default()
    }));
    let master = |servers: &[RedisServer; 2]| {
        let port = sentinel_master_port(&sentinel_ports).expect("a Sentinel answers");
        servers.iter().position(|r| r.port == port).expect("the master is one of ours")
    };
    let mut con = servers[0].con();
    for i in 0..APPS {
        sim.add_app(&app(i), &format!("{SECRET_PREFIX}{i}"));
        put_channel(
            &mut con,
            &format!("ch_{i}"),
            &channel(&format!("ch_{i}"), &app(i), &format!("{SECRET_PREFIX}{i}")),
        );
    }
    // Poison config entries affect only themselves.
    put_raw_channel(&mut con, "ch_poison", "{\"app_id\": 1, \"app_secret\": [\"soak-secret-x\"]}");
    redis::cmd("HSET")
        .arg("at:channel:config:feishu")
        .arg(&b"ch\xff\x00bad"[..])
        .arg("{}")
        .query::<()>(&mut con)
        .expect("HSET");
    // Redis is found through the Sentinels; REDIS_URL's host is not used.
    let url = "redis://127.0.0.1:1/0".to_owned();
    let env_owned: Vec<(&str, String)> = vec![
        ("RUST_LOG", "info".into()),
        ("OUTBOUND_RETRY_WINDOW", "120".into()),
        ("REDIS_SENTINELS", nodes.clone()),
        ("REDIS_SENTINEL_MASTER", SENTINEL_MASTER.into()),
    ];
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut panicky = env.clone();
    panicky
        .push(("GATEWAY_FAULTS", "panic:reply,panic:outbound-pop,panic:typing,panic:config-watch"));
    let start = |name: &'static str| Gateway::start(&bin, &url, &sim, name, &env);
    let mut replicas = [
        Replica { name: "gw-a", gw: Some(start("gw-a")), logs: Vec::new() },
        Replica { name: "gw-b", gw: Some(start("gw-b")), logs: Vec::new() },
    ];
    assert!(wait_for(Duration::from_secs(20), || (0..APPS).all(|i| sim.connections(&app(i)) == 2)));
    println!("soak: {APPS} apps, 2 replicas, {secs}s of faults");

    let stop = Arc::new(AtomicBool::new(false));
    let questions: Arc<Mutex<Vec<MessageEvent>>> = Arc::default();
    let stored: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let malformed = Arc::new(AtomicUsize::new(0));
    let malformed_tried = Arc::new(AtomicUsize::new(0));

    // Users ask questions; sometimes Feishu sends one twice.
    let driver = {
        let (sim, stop, questions) = (sim.clone(), stop.clone(), questions.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let a = app(pick(APPS));
                let mut ev = MessageEvent::text(&a, &format!("question {}", rand_u64() % 100_000));
                if pick(3) == 0 {
                    let bot = sim.bot_open_id(&a).unwrap_or_default();
                    ev = MessageEvent::text(&a, "@_user_1 group question")
                        .in_group(&format!("oc_group_{}", pick(4)))
                        .mention("@_user_1", &bot, "AskBot");
                }
                sim.push_event(&a, &ev.json());
                if pick(10) == 0 {
                    sim.push_event(&a, &ev.json());
                }
                questions.lock().unwrap().push(ev);
                thread::sleep(Duration::from_millis(40));
            }
        })
    };

    // The stand-in for AskTable Server: answers each stored question once
    // (sometimes streaming), and now and then queues a malformed item.
    let responder_stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let stop = responder_stop.clone();
        let (_, stored, malformed, ports) =
            (stop.clone(), stored.clone(), malformed.clone(), sentinel_ports.clone());
        let malformed_tried = malformed_tried.clone();
        thread::spawn(move || {
            let mut con: Option<redis::Connection> = None;
            let mut counted: HashSet<String> = HashSet::new();
            // Inbound ids whose answers a replica confirmed: a server
            // de-duplicates on the inbound id (PROTOCOL.md), durably; this
            // process's memory outlives every failover here.
            let mut answered: HashSet<String> = HashSet::new();
            while !stop.load(Ordering::SeqCst) {
                let c = match con.as_mut() {
                    Some(c) => c,
                    None => {
                        // A real server follows the master through Sentinel too.
                        con = sentinel_master_port(&ports)
                            .and_then(|p| {
                                redis::Client::open(format!("redis://127.0.0.1:{p}/0")).ok()
                            })
                            .and_then(|c| {
                                c.get_connection_with_timeout(Duration::from_secs(1)).ok()
                            });
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
                // Reliable consumption, as a real server does it: BLMOVE into a
                // processing list, LREM once answered; an item whose reply was
                // lost (Redis restarted mid-call) is handled again.
                let leftover: Option<String> =
                    redis::cmd("LINDEX").arg(RESPONDER_PROCESSING).arg(-1).query(c).ok().flatten();
                let item = match leftover {
                    Some(item) => item,
                    None => {
                        let moved: redis::RedisResult<Option<String>> = redis::cmd("BLMOVE")
                            .arg("at:channel:inbound")
                            .arg(RESPONDER_PROCESSING)
                            .arg("RIGHT")
                            .arg("LEFT")
                            .arg(1)
                            .query(c);
                        match moved {
                            Ok(Some(item)) => item,
                            Ok(None) => continue,
                            Err(_) => {
                                con = None;
                                continue;
                            }
                        }
                    }
                };
                let v: serde_json::Value =
                    serde_json::from_str(&item).expect("inbound item is JSON");
                let mid = v["message"]["message_id"].as_str().unwrap_or_default().to_owned();
                // Counted once per stored item, whichever way it was taken
                // (a leftover may be one whose BLMOVE reply was lost); the
                // gateway storing a message twice shows as two items.
                if counted.insert(item.clone()) {
                    *stored.lock().unwrap().entry(mid.clone()).or_default() += 1;
                }
                let (ch, chat, id) = (
                    v["channel_id"].as_str().unwrap_or_default(),
                    v["chat"]["chat_id"].as_str().unwrap_or_default(),
                    v["id"].as_str().unwrap_or_default(),
                );
                if answered.contains(id) {
                    // Seen again: a failover rolled back a question that had
                    // been refused to Feishu (never acknowledged) after this
                    // server had read it. Answered once already.
                    let _ = redis::cmd("LREM")
                        .arg(RESPONDER_PROCESSING)
                        .arg(1)
                        .arg(&item)
                        .query::<()>(c);
                    continue;
                }
                let mut answers = Vec::new();
                if pick(4) == 0 {
                    let mut p = answer(&format!("p-{mid}"), ch, &mid, chat, "正在查询…");
                    p["kind"] = "progress".into();
                    p["in_reply_to"] = id.into();
                    answers.push(p.to_string());
                }
                let mut f =
                    answer(&format!("a-{mid}"), ch, &mid, chat, &format!("**answer** to {mid}"));
                f["in_reply_to"] = id.into();
                answers.push(f.to_string());
                let with_malformed = pick(20) == 0;
                if with_malformed {
                    answers.push(MALFORMED[pick(MALFORMED.len())].to_owned());
                    malformed_tried.fetch_add(1, Ordering::SeqCst);
                }
                // The answers, confirmed by a replica, before the question
                // is let go: a failover then loses neither (an answer queued
                // twice is shown once: its uuid).
                let mut pipe = redis::pipe();
                pipe.atomic();
                for a in &answers {
                    pipe.cmd("LPUSH").arg("at:channel:outbound:feishu").arg(a).ignore();
                }
                let replicated = pipe.query::<()>(c).is_ok()
                    && redis::cmd("WAIT").arg(1).arg(1000).query::<i64>(c).is_ok_and(|n| n >= 1);
                if replicated {
                    answered.insert(id.to_owned());
                    // Confirmed by a replica: it must come back as a dead
                    // letter. One whose write was not confirmed may or may
                    // not exist (a failover can drop it); the question is
                    // then handled again and rolls its answers anew.
                    if with_malformed {
                        malformed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if !replicated
                    || redis::cmd("LREM")
                        .arg(RESPONDER_PROCESSING)
                        .arg(1)
                        .arg(&item)
                        .query::<()>(c)
                        .is_err()
                {
                    con = None; // handled again after reconnecting; uuids keep answers single
                }
            }
        })
    };

    // Faults.
    let t0 = Instant::now();
    let mut faults: HashMap<&str, usize> = HashMap::new();
    let mut max_threads = 0;
    let mut max_rss_kib = 0;
    let (mut poison, mut poison_tried) = (0, 0);
    // Faults are dealt from a shuffled deck, so that even a short run sees
    // every kind (14 kinds, one every 2–5 s).
    let mut deck: Vec<usize> = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_millis(2000 + (rand_u64() % 3000)));
        let a = app(pick(APPS));
        if deck.is_empty() {
            deck = (0..14).collect();
            for i in (1..deck.len()).rev() {
                deck.swap(i, pick(i + 1));
            }
        }
        let fault = match deck.pop().expect("dealt") {
            0 => {
                let r = &mut replicas[pick(2)];
                if let Some(mut gw) = r.gw.take() {
                    gw.kill9();
                    r.logs.push(gw.log());
                }
                r.gw = Some(Gateway::start(&bin, &url, &sim, r.name, &env));
                "SIGKILL + restart of a replica"
            }
            1 => {
                let m = master(&servers);
                servers[m].restart();
                "Redis master restart"
            }
            2 => {
                sim.drop_connections(&a);
                "abrupt connection drop"
            }
            3 => {
                sim.silence_connections(&a);
                "silent connection"
            }
            4 => {
                for _ in 0..5 {
                    sim.inject(Route::AnyMessage, Fault::rate_limited(1));
                    sim.inject(Route::AnyCard, Fault::code(429, 230020, "chat rate limit"));
                }
                "429 burst"
            }
            5 => {
                sim.invalidate_tokens();
                "token invalidation"
            }
            6 => {
                for _ in 0..3 {
                    sim.inject(Route::AnyMessage, Fault::Delay(Duration::from_secs(2)));
                    sim.inject(Route::AnyCard, Fault::Delay(Duration::from_secs(2)));
                }
                "slow Feishu responses"
            }
            7 => {
                let garbage: Vec<u8> = (0..1 + pick(300)).map(|_| rand_u64() as u8).collect();
                sim.send_raw(&a, &garbage);
                sim.send_text(&a, "not a frame");
                "garbage frames"
            }
            8 => {
                for _ in 0..3 {
                    sim.inject(Route::AnyMessage, Fault::server_error());
                    sim.inject(Route::AnyCard, Fault::code(500, 300120, "internal error"));
                }
                "HTTP 500s"
            }
            9 => {
                if let Some(mut s) = sentinels[pick(3)].con() {
                    let _ = redis::cmd("SENTINEL")
                        .arg("FAILOVER")
                        .arg(SENTINEL_MASTER)
                        .query::<()>(&mut s);
                }
                "Sentinel failover"
            }
            10 => {
                let hole = BlackHole::new(servers[master(&servers)].port);
                thread::sleep(Duration::from_secs(3));
                drop(hole);
                "Redis master black-holed 3 s"
            }
            11 => {
                let hole = BlackHole::new(sim.ws_url_port());
                thread::sleep(Duration::from_secs(4));
                drop(hole);
                "Feishu half-open 4 s"
            }
            12 => {
                let mut c = servers[master(&servers)].con();
                let huge = vec![b'x'; (1 << 20) + 1];
                for bad in [&b"\xff\xfe poison"[..], &huge[..]] {
                    // Like a malformed answer: only a write a replica confirmed
                    // must come back as a dead letter; one a failover dropped
                    // (with the gateway's dead letter of it) may not.
                    poison_tried += 1;
                    if redis::cmd("LPUSH")
                        .arg("at:channel:outbound:feishu")
                        .arg(bad)
                        .query::<()>(&mut c)
                        .is_ok()
                        && redis::cmd("WAIT")
                            .arg(1)
                            .arg(1000)
                            .query::<i64>(&mut c)
                            .is_ok_and(|n| n >= 1)
                    {
                        poison += 1;
                    }
                }
                "poison outbound values"
            }
            _ => {
                let r = &mut replicas[pick(2)];
                if let Some(mut gw) = r.gw.take() {
                    gw.kill9();
                    r.logs.push(gw.log());
                }
                r.gw = Some(Gateway::start(&bin, &url, &sim, r.name, &panicky));
                "restart with panicking threads"
            }
        };
        *faults.entry(fault).or_default() += 1;
        for r in &replicas {
            if let Some(gw) = &r.gw {
                max_threads = max_threads.max(threads(gw.pid()));
                max_rss_kib = max_rss_kib.max(rss_kib(gw.pid()));
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = driver.join();
    println!("soak: faults stopped; waiting for the system to settle…");

    // Settle: every question acknowledged, stored and answered.
    let asked: Vec<MessageEvent> = questions.lock().unwrap().clone();
    let ids: HashSet<String> = asked.iter().map(|e| e.message_id.clone()).collect();
    // Answers a panicking worker dead-lettered (by design: the item that
    // made it panic is not retried) need not be shown.
    let excused = |servers: &[RedisServer; 2]| -> HashSet<String> {
        let mut con = servers[master(servers)].con();
        dead_letters(&mut con)
            .iter()
            .filter(|d| d["reason"].as_str().unwrap_or("").contains("internal error"))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d["item"].as_str()?).ok())
            .filter_map(|item| item["target"]["message_id"].as_str().map(str::to_owned))
            .collect()
    };
    let settled = wait_for(Duration::from_secs(180), || {
        let stored_all = ids.iter().all(|m| stored.lock().unwrap().contains_key(m));
        let shown: HashSet<String> =
            sim.messages().iter().filter_map(|m| m.reply_to.clone()).collect();
        let excused = excused(&servers);
        stored_all && ids.iter().all(|m| shown.contains(m) || excused.contains(m))
    });
    responder_stop.store(true, Ordering::SeqCst);
    let _ = responder.join();
    let mut con = servers[master(&servers)].con();
    let quiet = wait_for(Duration::from_secs(60), || {
        llen(&mut con, "at:channel:outbound:feishu") == 0
            && llen(&mut con, "at:channel:outbound:feishu:processing:gw-a") == 0
            && llen(&mut con, "at:channel:outbound:feishu:processing:gw-b") == 0
    });

    let mut violations = Vec::new();
    if !settled || !quiet {
        violations
            .push(format!(
                "did not settle (answers all shown: {settled}, queues empty: {quiet}; inbound {}, outbound {}, processing gw-a {}, gw-b {})",
                llen(&mut con, "at:channel:inbound"),
                llen(&mut con, "at:channel:outbound:feishu"),
                llen(&mut con, "at:channel:outbound:feishu:processing:gw-a"),
                llen(&mut con, "at:channel:outbound:feishu:processing:gw-b"),
            ));
    }
    let stored = stored.lock().unwrap().clone();
    // A question stored twice is a violation, but for one kind of case that
    // asynchronous replication makes possible: a question refused to Feishu
    // (no replica confirmed it) that the server had already read, rolled
    // back by a failover and stored again from Feishu's redelivery. The
    // server answers it once (it de-duplicates on the inbound id).
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    let failovers = ["Sentinel failover", "Redis master black-holed 3 s", "Redis master restart"]
        .iter()
        .map(|f| faults.get(f).copied().unwrap_or(0))
        .sum::<usize>();
    if !twice.is_empty() && (failovers == 0 || twice.len() > failovers) {
        violations.push(format!("{} question(s) stored more than once", twice.len()));
    }
    let missing: Vec<&String> = ids.iter().filter(|m| !stored.contains_key(*m)).collect();
    if !missing.is_empty() {
        let detail: Vec<String> = missing
            .iter()
            .take(5)
            .map(|m| {
                let ev = asked.iter().find(|e| &e.message_id == *m).expect("asked");
                let dedup: bool = redis::cmd("EXISTS")
                    .arg(format!("at:channel:dedup:feishu:{}:{m}", ev.app_id))
                    .query(&mut con)
                    .unwrap_or(false);
                format!("{m} (dedup key: {dedup}, chat {})", ev.chat_type)
            })
            .collect();
        violations.push(format!("{} question(s) never stored, e.g. {detail:?}", missing.len()));
    }
    let mut shown: HashMap<String, usize> = HashMap::new();
    let mut finals: HashSet<String> = HashSet::new();
    for m in sim.messages() {
        // A card whose final answer had to go as a new reply says so: it
        // is not a second answer.
        if m.text().contains("完整回答见下一条消息") {
            continue;
        }
        if let Some(to) = m.reply_to.clone().or(m.chat_id.clone()) {
            if m.text().contains(&format!("to {to}")) {
                finals.insert(to.clone());
            }
            *shown.entry(to).or_default() += 1;
        }
    }
    let excused_now = excused(&servers);
    let unfinished: Vec<&String> = ids
        .iter()
        .filter(|m| shown.contains_key(*m) && !finals.contains(*m) && !excused_now.contains(*m))
        .collect();
    if !unfinished.is_empty() {
        violations.push(format!(
            "{} answer(s) whose final text never became visible, e.g. {:?}",
            unfinished.len(),
            unfinished.iter().take(3).collect::<Vec<_>>()
        ));
    }
    let doubled = ids.iter().filter(|m| shown.get(*m).copied().unwrap_or(0) > 1).count();
    if doubled > 0 {
        let example: Vec<String> = sim
            .messages()
            .iter()
            .filter(|m| m.reply_to.as_ref().is_some_and(|r| shown.get(r).copied().unwrap_or(0) > 1))
            .take(4)
            .map(|m| {
                format!(
                    "{} {} {:?} updates={}",
                    m.reply_to.clone().unwrap_or_default(),
                    m.msg_type,
                    m.text(),
                    m.updates
                )
            })
            .collect();
        violations.push(format!("{doubled} answer(s) shown more than once, e.g. {example:?}"));
    }
    let dead = dead_letters(&mut con);
    let reason = |d: &serde_json::Value| d["reason"].as_str().unwrap_or("").to_owned();
    let dead_malformed = dead
        .iter()
        .filter(|d| MALFORMED.contains(&d["item"].as_str().unwrap_or("")) && !reason(d).is_empty())
        .count();
    let dead_poison =
        dead.iter().filter(|d| d["item_escaped"] == true || d.get("item_bytes").is_some()).count();
    let dead_panic = dead.iter().filter(|d| reason(d).contains("internal error")).count();
    let panic_restarts = faults.get("restart with panicking threads").copied().unwrap_or(0);
    let (confirmed, tried) =
        (malformed.load(Ordering::SeqCst), malformed_tried.load(Ordering::SeqCst));
    if dead_malformed < confirmed
        || dead_malformed > tried
        || dead_poison < poison
        || dead_poison > poison_tried
        || dead_panic > panic_restarts
        || dead.len() != dead_malformed + dead_poison + dead_panic
    {
        violations.push(format!(
            "dead letters: {} in all, {dead_malformed} malformed of {confirmed} confirmed ({tried} written or tried), {dead_poison} poison of {poison} confirmed ({poison_tried} tried), {dead_panic} after panics (at most {panic_restarts}): {:?}",
            dead.len(),
            dead.iter().map(reason).collect::<Vec<_>>()
        ));
    }
    if max_threads > 40 {
        violations.push(format!("a replica reached {max_threads} threads (bound 40)"));
    }
    if max_rss_kib > 64 * 1024 {
        violations.push(format!("a replica reached {max_rss_kib} KiB RSS (bound 64 MiB)"));
    }
    let mut logs: Vec<String> = replicas.iter().flat_map(|r| r.logs.clone()).collect();
    logs.extend(replicas.iter().filter_map(|r| r.gw.as_ref().map(Gateway::log)));
    let mut secrets: Vec<String> = (0..APPS).map(|i| format!("{SECRET_PREFIX}{i}")).collect();
    secrets.push(format!("{SECRET_PREFIX}x"));
    secrets.extend(sim.issued_secrets());
    let leaked = secrets.iter().filter(|s| logs.iter().any(|l| l.contains(s.as_str()))).count();
    if leaked > 0 {
        violations.push(format!("{leaked} secret(s) appeared in a log"));
    }

    println!("\nsoak summary ({secs}s of faults)");
    println!("  questions asked        {}", ids.len());
    println!("  stored exactly once    {}", stored.values().filter(|n| **n == 1).count());
    println!("  read again after a failover rollback {} (answered once)", twice.len());
    println!(
        "  answers shown          {}",
        ids.iter().filter(|m| shown.get(*m) == Some(&1)).count()
    );
    println!(
        "  malformed dead-lettered {dead_malformed} (confirmed written {confirmed}, tried {tried})"
    );
    println!(
        "  poison dead-lettered   {dead_poison} (confirmed written {poison}, tried {poison_tried})"
    );
    println!("  answers lost to panics {dead_panic} (dead-lettered, by design)");
    println!("  max threads / RSS      {max_threads} / {} MiB", max_rss_kib / 1024);
    let mut f: Vec<_> = faults.into_iter().collect();
    f.sort();
    for (name, n) in f {
        println!("  fault: {name:<32} ×{n}");
    }
    if !violations.is_empty() {
        // The replicas' logs, for whoever looks into the failure.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/soak-logs");
        let _ = std::fs::create_dir_all(&dir);
        for (i, l) in logs.iter().enumerate() {
            let _ = std::fs::write(dir.join(format!("gateway-{i}.log")), l);
        }
        println!("\nsoak: the gateways' logs are in {}", dir.display());
    }
    if violations.is_empty() {
        println!("\nsoak: OK");
        ExitCode::SUCCESS
    } else {
        for v in &violations {
            println!("VIOLATION: {v}");
        }
        ExitCode::FAILURE
    }
}
