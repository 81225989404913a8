//! AskTable's troubleshooting guide, row by row (README "Troubleshooting"):
//! each misconfiguration made in the simulator (or in Redis) gives a ✘
//! line of `check` that names it and says what to do, or a line of
//! `status` / `trace` that answers the row. Plus the operator commands a
//! new user tries: `trace`, `dead list|requeue`, `channel put` on an
//! existing channel, `status | head`, `check --json`, `check --chat`.

use crate::support;

use feishu_sim::console::Grant;
use serde_json::{Value, json};
use support::*;

const APP: &str = "cli_9u1de0000000000a";
const SECRET: &str = "guide-secret-never-printed";

/// `check` against the simulator: (exit code, output).
fn check(url: &str, sim: &Sim, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = run_cli(url, Some(sim), &all, &[], "");
    (out.status.code(), out_text(&out))
}

/// The one line of `check`'s table whose CHECK column is `what`.
fn row<'a>(out: &'a str, what: &str) -> Option<&'a str> {
    out.lines().find(|l| {
        let mut chars = l.chars();
        chars.next();
        chars.as_str().trim_start().starts_with(&format!("{what} "))
    })
}

fn failed(out: &str, what: &str, says: &[&str]) {
    let line = row(out, what).unwrap_or_else(|| panic!("no line {what:?}:\n{out}"));
    assert!(line.starts_with('✘'), "{what} should fail:\n{out}");
    for s in says {
        assert!(line.contains(s), "{what} should say {s:?}:\n{line}");
    }
}

fn passed(out: &str, what: &str) {
    let line = row(out, what).unwrap_or_else(|| panic!("no line {what:?}:\n{out}"));
    assert!(line.starts_with('✔'), "{what} should pass:\n{out}");
}

/// Guide: "The channel stays disconnected" — gateway running, App ID and
/// Secret, app published, `im.message.receive_v1` subscribed (and through
/// the long connection), connected but silent; "Credential changes do not
/// take effect" — the status line names the error.
#[test]
fn the_channel_stays_disconnected() {
    let (redis, sim, mut con) = world(&[("ch_g", APP, SECRET)]);
    let url = redis.url();
    // No gateway running on this Redis.
    let (code, out) = check(&url, &sim, &[]);
    assert_eq!(code, Some(1));
    failed(&out, "gateway", &["no running gateway", "REDIS_URL"]);
    failed(&out, "ch_g: status", &["no status key"]);
    passed(&out, "ch_g: credentials");
    passed(&out, "ch_g: events");
    assert!(!out.contains(SECRET));

    // Unpublished version, event not subscribed, then webhook mode.
    sim.console(APP, |c| {
        c.unpublished_version = Some("oav_2".into());
        c.subscribed_events.clear();
    });
    let (_, out) = check(&url, &sim, &[]);
    failed(&out, "ch_g: app version", &["oav_2", "waiting to be published", "publish"]);
    failed(&out, "ch_g: events", &["im.message.receive_v1 is not subscribed", "Add events"]);
    sim.console(APP, |c| {
        c.subscribed_events = vec!["im.message.receive_v1".into()];
        c.long_connection = false;
    });
    let (_, out) = check(&url, &sim, &[]);
    failed(&out, "ch_g: events", &["request URL", "persistent connection"]);
    failed(&out, "ch_g: long connection", &["long connection", "persistent connection"]);
    // Without the self-manage scope these are not verified, and check says how.
    sim.console(APP, |c| {
        c.scopes.remove("application:application:self_manage");
    });
    let (_, out) = check(&url, &sim, &[]);
    let line = row(&out, "ch_g: version and events").expect(&out);
    assert!(line.starts_with('·') && line.contains("application:application:self_manage"), "{out}");
    assert!(line.contains(&format!("/app/{APP}/auth?q=application:application:self_manage")));

    // Connected for an hour and no event ever: flagged (a status key as a
    // gateway writes it).
    let since = feishu_sim::now_ms() - 3_600_000;
    let st = json!({"schema": "at.channel.status", "v": 1, "channel_id": "ch_g", "state": "connected",
        "since": since, "last_event_at": null, "instance_id": "gw-x", "last_error": null, "ts": since});
    redis::cmd("SET")
        .arg("at:channel:status:feishu:ch_g")
        .arg(st.to_string())
        .query::<()>(&mut con)
        .unwrap();
    let (_, out) = check(&url, &sim, &[]);
    passed(&out, "ch_g: status");
    failed(
        &out,
        "ch_g: events",
        &["connected for 60 minutes and no event received", "another process"],
    );

    // A running gateway with a wrong secret: status says why, check once.
    redis::cmd("DEL").arg("at:channel:status:feishu:ch_g").query::<()>(&mut con).unwrap();
    sim.set_secret(APP, "rotated-in-the-console");
    let gw = start_gateway(&url, &sim, "gw-g", &[]);
    assert!(
        wait_for(SECS(10), || state(&mut con, "ch_g").as_deref() == Some("error")),
        "{}",
        gw.log()
    );
    let (_, out) = check(&url, &sim, &[]);
    passed(&out, "gateway");
    failed(&out, "ch_g: credentials", &["App Secret is wrong"]);
    failed(&out, "ch_g: status", &["error", "App Secret does not match"]);
    assert!(row(&out, "ch_g: bot").is_none(), "skipped, not failed:\n{out}");
}

/// Guide: "Feishu receives messages but AskTable does not reply" — the
/// app may reply as a bot (scope requested but not granted, or not
/// requested), no reply API errors (dead letters), the agent answers
/// (unanswered questions), the user sent text (`trace`).
#[test]
fn messages_arrive_but_asktable_does_not_reply() {
    let (redis, sim, mut con) = world(&[("ch_r", APP, SECRET)]);
    let url = redis.url();
    let gw = start_gateway(&url, &sim, "gw-r", &[("ANSWER_TIMEOUT", "2"), ("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    sim.console(APP, |c| {
        c.scopes.insert("im:message:send_as_bot".into(), Grant::Requested);
    });
    let (_, out) = check(&url, &sim, &[]);
    failed(&out, "ch_r: reply as the bot", &["requested but not granted", "tenant admin"]);
    sim.console(APP, |c| {
        c.scopes.remove("im:message:send_as_bot");
    });
    let (_, out) = check(&url, &sim, &[]);
    failed(
        &out,
        "ch_r: reply as the bot",
        &["not requested", "im:message:send_as_bot", "/auth?q="],
    );

    // A question nobody answers: unanswered after ANSWER_TIMEOUT.
    let q = MessageEvent::text(APP, "what were last month's sales?");
    assert!(sim.wait_acked(sim.push_event(APP, &q.json()), SECS(5)));
    assert!(sim.wait_messages(1, SECS(15)), "{}", gw.log());
    let (_, out) = check(&url, &sim, &[]);
    failed(
        &out,
        "ch_r: unanswered",
        &["1 question(s) got no answer within ANSWER_TIMEOUT", "trace"],
    );
    // An answer that Feishu refuses: dead-lettered, named by check.
    sim.inject(
        feishu_sim::Route::Reply,
        feishu_sim::Fault::code(400, 230002, "bot is not in the chat"),
    );
    push_outbound(
        &mut con,
        &answer("late-1", "ch_r", &q.message_id, &q.chat_id, "late").to_string(),
    );
    assert!(wait_for(SECS(10), || dead_letters(&mut con).len() == 1), "{}", gw.log());
    let (_, out) = check(&url, &sim, &[]);
    failed(&out, "answers", &["1 answer(s) dead-lettered", "230002", "dead list"]);
    // trace tells the whole story.
    let t = out_text(&run_cli(&url, None, &["trace", &q.message_id], &[], ""));
    for says in [
        "received",
        "by instance gw-r on channel ch_r",
        "stored in at:channel:inbound",
        "waiting in at:channel:inbound",
        "dead-lettered",
        "230002",
        "no answer within ANSWER_TIMEOUT",
        "the user was told",
    ] {
        assert!(t.contains(says), "trace should say {says:?}:\n{t}");
    }
    // The user sent an image: trace says so.
    let img = MessageEvent::of_type(APP, "image", json!({"image_key": "img_1"}));
    assert!(sim.wait_acked(sim.push_event(APP, &img.json()), SECS(5)));
    assert!(wait_for(SECS(5), || out_text(&run_cli(
        &url,
        None,
        &["trace", &img.message_id],
        &[],
        ""
    ))
    .contains("not text (image)")));
    // A message no gateway received.
    let none = run_cli(&url, None, &["trace", "om_neverseen"], &[], "");
    assert_eq!(none.status.code(), Some(1));
    assert!(out_text(&none).contains("im.message.receive_v1"), "{}", out_text(&none));
    assert_eq!(run_cli(&url, None, &["trace", "om_1/../x"], &[], "").status.code(), Some(2));
}

/// Guide: "No response in a group chat" — the bot is in the group, the
/// app may receive group @-messages, its availability covers the members,
/// and what the group policy does with a message there.
#[test]
fn no_response_in_a_group_chat() {
    let (redis, sim, mut con) = world(&[("ch_grp", APP, SECRET)]);
    let url = redis.url();
    let gw = start_gateway(&url, &sim, "gw-grp", &[("TYPING_REACTION", "")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    let (_, out) = check(&url, &sim, &["--chat", "oc_team"]);
    failed(&out, "ch_grp: chat oc_team", &["not in this chat", "Add bot"]);
    sim.console(APP, |c| {
        c.chats.insert("oc_team".into());
    });
    let (code, out) = check(&url, &sim, &["--chat", "oc_team"]);
    assert_eq!(code, Some(0), "{out}");
    let line = row(&out, "ch_grp: chat oc_team").unwrap();
    assert!(line.contains("the bot is in this chat") && line.contains("@-mention"), "{out}");
    sim.console(APP, |c| {
        c.scopes.insert("im:message.group_at_msg:readonly".into(), Grant::Requested);
    });
    let (_, out) = check(&url, &sim, &[]);
    failed(&out, "ch_grp: receive group @-messages", &["requested but not granted"]);
    // A group message without an @-mention: trace explains the policy.
    let ev = MessageEvent::text(APP, "hello all").in_group("oc_team");
    assert!(sim.wait_acked(sim.push_event(APP, &ev.json()), SECS(5)));
    assert!(
        wait_for(SECS(5), || {
            let t = out_text(&run_cli(&url, None, &["trace", &ev.message_id], &[], ""));
            t.contains("does not @-mention the bot") && t.contains("group_policy")
        }),
        "{}",
        gw.log()
    );
    // Not installed for these users (availability).
    sim.console(APP, |c| c.installed = false);
    let (_, out) = check(&url, &sim, &[]);
    failed(&out, "ch_grp: availability", &["not installed in this organisation", "availability"]);
    // --json for scripts and AskTable's console.
    let j = run_cli(&url, Some(&sim), &["check", "--json"], &[], "");
    assert_eq!(j.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let avail = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "ch_grp: availability")
        .unwrap();
    assert_eq!(avail["state"], "fail");
    assert!(avail["hint"].as_str().unwrap().contains("availability"));
    assert_eq!(
        run_cli(&url, Some(&sim), &["check", "--chat", "../x"], &[], "").status.code(),
        Some(2)
    );
    let _ = &mut con;
}

/// Issue 13, item 11: with Feishu unreachable, one ✘ for the cause and
/// nothing with a wrong hint; `status | head` ends quietly.
#[test]
fn feishu_unreachable_is_one_cause_and_a_closed_pipe_is_no_panic() {
    let (redis, sim, mut con) =
        world(&[("ch_1", APP, SECRET), ("ch_2", "cli_9u1de0000000000b", "s2")]);
    let url = redis.url();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = run_cli(&url, None, &["check"], &[("FEISHU_BASE_URL", &dead)], "");
    let out = out_text(&out);
    // Feishu once; the gateway and the two statuses are other causes.
    assert_eq!(out.matches('✘').count(), 4, "{out}");
    failed(&out, "feishu", &["cannot reach", "HTTPS_PROXY"]);
    assert!(!out.contains("App Secret") && !out.contains("publish"), "no wrong hints:\n{out}");
    assert!(row(&out, "ch_2: feishu app").is_some_and(|l| l.starts_with('·')), "{out}");
    let _ = (&sim, &mut con);
    // `status | head -1`: the reader closes the pipe early.
    for i in 0..300 {
        put_channel(
            &mut con,
            &format!("ch_many_{i:03}"),
            &channel(&format!("ch_many_{i:03}"), APP, SECRET),
        );
    }
    let bin = env!("CARGO_BIN_EXE_asktable-feishu-gateway");
    let sh = format!("REDIS_URL={url} {bin} status | head -1; echo \"exit=${{PIPESTATUS[0]}}\"");
    let o = std::process::Command::new("bash").args(["-c", &sh]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("exit=0"), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

/// Issue 13, item 5: a question not answered within ANSWER_TIMEOUT is
/// logged once, counted, its typing reaction removed and its user told; a
/// late answer is still delivered; an answered one gets no notice; with
/// NO_ANSWER_HINT empty nothing is said but the reaction still goes.
#[test]
fn unanswered_questions_are_told_once_and_late_answers_still_arrive() {
    let (redis, sim, mut con) = world(&[("ch_u", APP, SECRET)]);
    let url = redis.url();
    let gw = start_gateway(&url, &sim, "gw-u", &[("ANSWER_TIMEOUT", "3")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    let slow = MessageEvent::text(APP, "a long analysis");
    let quick = MessageEvent::text(APP, "a quick one");
    for q in [&slow, &quick] {
        assert!(sim.wait_acked(sim.push_event(APP, &q.json()), SECS(5)));
    }
    push_outbound(
        &mut con,
        &answer("quick-1", "ch_u", &quick.message_id, &quick.chat_id, "42").to_string(),
    );
    assert!(
        sim.wait_until(SECS(15), |s| s
            .messages()
            .iter()
            .any(|m| m.reply_to.as_deref() == Some(&slow.message_id))),
        "{}",
        gw.log()
    );
    let notice = sim
        .messages()
        .into_iter()
        .find(|m| m.reply_to.as_deref() == Some(&slow.message_id))
        .unwrap();
    assert!(
        notice.text().contains("No answer from AskTable yet")
            && notice.text().contains("暂时没有回答"),
        "{}",
        notice.text()
    );
    assert!(
        sim.wait_until(SECS(5), |s| s
            .reactions()
            .iter()
            .any(|r| r.message_id == slow.message_id && r.deleted)),
        "typing removed"
    );
    std::thread::sleep(SECS(4));
    let msgs = sim.messages();
    assert_eq!(
        msgs.iter().filter(|m| m.reply_to.as_deref() == Some(&quick.message_id)).count(),
        1,
        "answered in time: no notice"
    );
    assert_eq!(
        msgs.iter().filter(|m| m.reply_to.as_deref() == Some(&slow.message_id)).count(),
        1,
        "told once"
    );
    assert_eq!(
        gw.log().matches(&format!("question {} got no answer", slow.message_id)).count(),
        1,
        "{}",
        gw.log()
    );
    let rows: Value =
        serde_json::from_str(&out_text(&run_cli(&url, None, &["status", "--json"], &[], "")))
            .unwrap();
    assert_eq!(rows[0]["unanswered"]["count"], 1, "{rows}");
    let table = out_text(&run_cli(&url, None, &["status"], &[], ""));
    assert!(table.contains("UNANSWERED") && table.contains("1 (last"), "{table}");
    // The late answer is delivered normally.
    push_outbound(
        &mut con,
        &answer("slow-1", "ch_u", &slow.message_id, &slow.chat_id, "the analysis").to_string(),
    );
    assert!(
        sim.wait_until(SECS(10), |s| s.messages().iter().any(|m| m.text() == "the analysis")),
        "{}",
        gw.log()
    );
    let trace = || out_text(&run_cli(&url, None, &["trace", &slow.message_id], &[], ""));
    assert!(wait_for(SECS(5), || trace().contains("answered by item slow-1")), "{}", trace());
    assert!(trace().contains("the user was told"), "{}", trace());

    // NO_ANSWER_HINT empty: nothing said, the reaction still removed.
    drop(gw);
    let gw = start_gateway(&url, &sim, "gw-u2", &[("ANSWER_TIMEOUT", "2"), ("NO_ANSWER_HINT", "")]);
    assert!(sim.wait_connections(APP, 1, SECS(10)));
    let before = sim.messages().len();
    let q = MessageEvent::text(APP, "silent timeout");
    assert!(sim.wait_acked(sim.push_event(APP, &q.json()), SECS(5)));
    assert!(
        sim.wait_until(SECS(15), |s| s
            .reactions()
            .iter()
            .any(|r| r.message_id == q.message_id && r.deleted)),
        "{}",
        gw.log()
    );
    assert!(gw.wait_log("NO_ANSWER_HINT is off", SECS(5)));
    std::thread::sleep(SECS(1));
    assert_eq!(sim.messages().len(), before, "nothing said");
}

/// Issue 13, item 11: `dead list` shows the reasons, `dead requeue` sends
/// one again once its cause is fixed; `channel put` on an existing channel
/// keeps what it does not set.
#[test]
fn dead_letters_are_listed_and_requeued_and_channel_put_keeps_fields() {
    let (redis, sim, mut con) = world(&[]);
    sim.add_app(APP, SECRET);
    let url = redis.url();
    // Nothing configured on this Redis: is AskTable Server using it?
    let (_, out) = check(&url, &sim, &[]);
    failed(&out, "channel config", &["is empty", "compare REDIS_URL"]);
    let mut cfg = channel("ch_d", APP, SECRET);
    cfg["agent_id"] = json!("agent_7");
    cfg["project_id"] = json!("proj_3");
    cfg["group_policy"] = json!("all");
    cfg["enabled"] = json!(false);
    cfg["display_name"] = json!("Sales bot");
    put_channel(&mut con, "ch_d", &cfg);
    let gw = start_gateway(&url, &sim, "gw-d", &[("TYPING_REACTION", "")]);
    // A disabled channel: its answer is dead-lettered.
    let q = MessageEvent::text(APP, "q");
    push_outbound(
        &mut con,
        &answer("d-1", "ch_d", &q.message_id, &q.chat_id, "the answer").to_string(),
    );
    assert!(wait_for(SECS(10), || dead_letters(&mut con).len() == 1), "{}", gw.log());
    let list = out_text(&run_cli(&url, None, &["dead", "list"], &[], ""));
    assert!(
        list.contains("d-1") && list.contains("ch_d") && list.contains("unknown channel ch_d"),
        "{list}"
    );
    assert!(list.contains("dead requeue"), "{list}");
    let j: Value = serde_json::from_slice(
        &run_cli(&url, None, &["dead", "list", "--json", "5"], &[], "").stdout,
    )
    .unwrap();
    assert_eq!(j[0]["id"], "d-1");
    // Rotate the secret and enable it: agent, project, policy, extra fields kept.
    sim.set_secret(APP, "new-secret");
    let put = run_cli(&url, None, &["channel", "put", "ch_d", "--enabled"], &[], "new-secret\n");
    assert!(put.status.success(), "{}", out_text(&put));
    let raw: String =
        redis::cmd("HGET").arg("at:channel:config:feishu").arg("ch_d").query(&mut con).unwrap();
    let saved: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        (saved["agent_id"].as_str(), saved["project_id"].as_str()),
        (Some("agent_7"), Some("proj_3"))
    );
    assert_eq!(
        (saved["group_policy"].as_str(), saved["display_name"].as_str()),
        (Some("all"), Some("Sales bot"))
    );
    assert_eq!(
        (saved["app_secret"].as_str(), saved["enabled"].as_bool()),
        (Some("new-secret"), Some(true))
    );
    assert!(sim.wait_connections(APP, 1, SECS(10)), "{}", gw.log());
    // Nothing given keeps the secret; a new channel needs --app-id.
    let keep = run_cli(&url, None, &["channel", "put", "ch_d", "--agent-id", "agent_8"], &[], "");
    assert!(keep.status.success(), "{}", out_text(&keep));
    let raw: String =
        redis::cmd("HGET").arg("at:channel:config:feishu").arg("ch_d").query(&mut con).unwrap();
    assert!(raw.contains("new-secret") && raw.contains("agent_8"));
    let new = run_cli(&url, None, &["channel", "put", "ch_new"], &[], "s\n");
    assert_eq!(new.status.code(), Some(2));
    assert!(out_text(&new).contains("--app-id is required"));
    // Requeue: delivered now that the channel runs.
    let r = run_cli(&url, None, &["dead", "requeue", "d-1"], &[], "");
    assert!(r.status.success(), "{}", out_text(&r));
    assert!(
        sim.wait_until(SECS(10), |s| s.messages().iter().any(|m| m.text() == "the answer")),
        "{}",
        gw.log()
    );
    assert!(dead_letters(&mut con).is_empty());
    assert_eq!(run_cli(&url, None, &["dead", "requeue", "d-1"], &[], "").status.code(), Some(2));
    assert_eq!(run_cli(&url, None, &["dead", "list", "0"], &[], "").status.code(), Some(2));
}

/// README's guide table and the code agree: every check a row names is a
/// line `check` prints and a test above makes fail (or skip).
#[test]
fn every_row_of_the_readme_guide_table_is_a_check_that_a_test_produces() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let start = readme.find("| guide item |").expect("the guide table");
    let table: Vec<&str> =
        readme[start..].lines().take_while(|l| l.starts_with('|')).skip(2).collect();
    let cli: String = ["cli/check.rs", "cli/check_app.rs", "feishu/diag.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("{root}/src/{f}")).unwrap())
        .collect();
    let tests: String = ["guide.rs", "cli.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("{root}/tests/e2e/{f}")).unwrap())
        .collect();
    let mut labels = Vec::new();
    for row in &table {
        for mark in ["✘ `", "· `"] {
            for span in row.split(mark).skip(1) {
                let span = span.split('`').next().unwrap();
                let label = span.split("  ").next().unwrap().trim_start_matches("<ch>: ");
                // `chat oc_…`: the chat id is the operator's.
                labels.push(label.trim_end_matches(" oc_…").to_owned());
            }
        }
    }
    assert!(labels.len() >= 12, "{labels:?}");
    for label in &labels {
        let printed = [format!("\"{label}\""), format!("}}: {label}\""), format!("}}: {label} {{")]
            .iter()
            .any(|p| cli.contains(p.as_str()));
        assert!(printed, "README's guide row names check {label:?}, which check never prints");
        let tested = [
            format!(": {label}\""),
            format!("\"{label}\""),
            format!("  {label}"),
            format!(": {label} oc_"),
        ]
        .iter()
        .any(|p| tests.contains(p.as_str()));
        assert!(tested, "no test in guide.rs or cli.rs produces the check {label:?}");
    }
    // Every guide item of AskTable's list has a row.
    for item in [
        "the gateway is running",
        "`REDIS_URL` is the Redis AskTable uses",
        "App ID and App Secret are correct",
        "the app is published and approved",
        "`im.message.receive_v1` is subscribed",
        "the app may reply as a bot",
        "the user sent text",
        "the agent works in the console",
        "no outbound or reply API errors",
        "the bot is in the group",
        "the group lets the bot receive messages",
        "the app's availability covers the members",
        "republished after changes",
        "**Credential changes do not take effect**",
    ] {
        assert!(table.iter().any(|r| r.starts_with(&format!("| {item} |"))), "no row for {item:?}");
    }
}
