//! A small HTTP `CONNECT` proxy for tests: it tunnels to any target,
//! optionally requires Basic credentials, and records what it tunnelled.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// A running proxy on 127.0.0.1; stops accepting when dropped.
pub struct ConnectProxy {
    pub port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
}

impl ConnectProxy {
    /// `auth`: the `Proxy-Authorization` value required (`Basic …`), if any.
    pub fn start(auth: Option<String>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (seen, refused) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r, st) = (seen.clone(), refused.clone(), stop.clone());
        thread::Builder::new()
            .name("sim-proxy".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if st.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (s, r, auth) = (s.clone(), r.clone(), auth.clone());
                    thread::spawn(move || serve(stream, auth, s, r));
                }
            })
            .expect("spawn proxy");
        ConnectProxy { port, seen, refused, stop }
    }

    /// The `CONNECT` targets tunnelled so far.
    pub fn tunnels(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests refused for missing or wrong credentials.
    pub fn refused(&self) -> usize {
        *self.refused.lock().unwrap()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    mut client: TcpStream,
    auth: Option<String>,
    seen: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<usize>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let first: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    let ["CONNECT", target, _] = first.as_slice() else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    let given = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_owned());
    if auth.is_some() && given != auth {
        *refused.lock().unwrap() += 1;
        let _ = client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"sim\"\r\ncontent-length: 0\r\n\r\n",
        );
        return;
    }
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    seen.lock().unwrap().push(target.to_string());
    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").is_err() {
        return;
    }
    let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let (mut client, mut upstream) = (client, upstream);
    thread::spawn(move || {
        let _ = std::io::copy(&mut u2, &mut c2);
        let _ = c2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut client, &mut upstream);
    let _ = upstream.shutdown(std::net::Shutdown::Write);
}
