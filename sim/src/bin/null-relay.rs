//! The benchmark's floor: the least a relay can do on this machine. It
//! opens one long connection (endpoint call, WebSocket), then for every data
//! frame LPUSHes the payload to `at:channel:inbound` and acks it — no
//! parsing, no dedup, no pings, no batching, no error handling. Whatever
//! the gateway adds above this is its own cost (docs/BENCHMARKS.md).
//!
//! Usage: null-relay <base_url> <redis_url> <app_id> <app_secret>
//! Prints READY once connected.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use feishu_sim::pb::Frame;
use std::io::{Read, Write};
use std::net::TcpStream;
use tungstenite::Message;

/// POSTs the endpoint call over plain HTTP/1.1 and returns the WebSocket URL.
fn endpoint(base_url: &str, app_id: &str, secret: &str) -> String {
    let host = base_url.strip_prefix("http://").expect("an http:// base URL").trim_end_matches('/');
    let body = serde_json::json!({"AppID": app_id, "AppSecret": secret}).to_string();
    let mut tcp = TcpStream::connect(host).expect("connect to the simulator");
    write!(
        tcp,
        "POST /callback/ws/endpoint HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write the endpoint call");
    let mut response = String::new();
    tcp.read_to_string(&mut response).expect("read the endpoint answer");
    let json = response.split_once("\r\n\r\n").map(|(_, b)| b).expect("an HTTP answer");
    let v: serde_json::Value = serde_json::from_str(json).expect("a JSON endpoint answer");
    v["data"]["URL"].as_str().expect("data.URL").to_owned()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base_url, redis_url, app_id, secret] = &args[..] else {
        eprintln!("usage: null-relay <base_url> <redis_url> <app_id> <app_secret>");
        std::process::exit(2);
    };
    let mut redis = redis::Client::open(redis_url.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect to Redis");
    let (mut ws, _) = tungstenite::connect(endpoint(base_url, app_id, secret)).expect("WebSocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_nodelay(true).expect("nodelay");
    }
    println!("READY");
    loop {
        let Message::Binary(bytes) = ws.read().expect("read a frame") else { continue };
        let Some(mut frame) = Frame::from_bytes(&bytes) else { continue };
        if frame.method != 1 {
            continue; // control frames (pongs)
        }
        let _: () = redis::cmd("LPUSH")
            .arg("at:channel:inbound")
            .arg(&frame.payload)
            .query(&mut redis)
            .expect("LPUSH");
        frame.payload = br#"{"code":200}"#.to_vec();
        ws.send(Message::Binary(frame.to_bytes().into())).expect("ack");
    }
}
