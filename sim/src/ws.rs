//! The WebSocket side: the handshake (with Feishu's refusal headers), one
//! thread per client reading frames (pings, acks, garbage) and writing
//! what the dispatcher and the tests queue for it.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::handshake::server::{ErrorResponse, Request as WsRequest, Response as WsResponse};

use serde_json::Value;

use crate::pb;
use crate::rest::query_param;
use crate::state::{Ack, Cmd, Conn, Inner};

pub(crate) fn refuse(
    status: u16,
    handshake_status: i64,
    auth_code: Option<i64>,
    msg: &str,
) -> ErrorResponse {
    let mut b = tungstenite::http::Response::builder()
        .status(status)
        .header("Handshake-Status", handshake_status.to_string())
        .header("Handshake-Msg", msg);
    if let Some(code) = auth_code {
        b = b.header("Handshake-Autherrcode", code.to_string());
    }
    b.body(Some(msg.to_owned())).expect("valid response")
}

pub(crate) fn accept_ws(inner: Arc<Inner>, listener: TcpListener) {
    for stream in listener.incoming() {
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let i = inner.clone();
        let _ = thread::Builder::new().name("sim-ws".into()).spawn(move || serve_ws(i, stream));
    }
}

#[allow(clippy::result_large_err)] // tungstenite's callback signature fixes the error type
pub(crate) fn serve_ws(inner: Arc<Inner>, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    let raw = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut app_id = String::new();
    let callback = |req: &WsRequest, resp: WsResponse| -> Result<WsResponse, ErrorResponse> {
        let query = req.uri().query().unwrap_or_default();
        let ticket = query_param(query, "ticket").unwrap_or_default();
        let mut st = inner.lock();
        let Some(app) = st.tickets.remove(&ticket) else {
            return Err(refuse(401, 514, Some(1_000_040_344), "invalid ticket"));
        };
        if st.conns.iter().filter(|c| c.app_id == app).count() >= inner.opts.conn_limit {
            return Err(refuse(
                400,
                514,
                Some(1_000_040_350),
                "the number of connections exceeded the limit",
            ));
        }
        app_id = app;
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else { return };
    let _ = raw.set_read_timeout(Some(inner.opts.poll));
    let (tx, rx) = mpsc::channel();
    let silent = Arc::new(AtomicBool::new(false));
    let id = {
        let mut st = inner.lock();
        st.next_conn += 1;
        let id = st.next_conn;
        st.conns.push(Conn { id, app_id: app_id.clone(), tx, silent: silent.clone() });
        *st.connects.entry(app_id.clone()).or_default() += 1;
        id
    };
    inner.changed.notify_all();
    // Outgoing frames wait here; at most a batch is written before the
    // client's acks are read again, so neither side can block the other.
    let mut queue: std::collections::VecDeque<Cmd> = std::collections::VecDeque::new();
    'conn: loop {
        queue.extend(rx.try_iter());
        if !queue.is_empty() {
            let _ = raw.set_nonblocking(false);
        }
        for _ in 0..64 {
            let Some(cmd) = queue.pop_front() else { break };
            if silent.load(Ordering::SeqCst) && !matches!(cmd, Cmd::Abort) {
                continue;
            }
            let sent = match cmd {
                Cmd::Send(b) => ws.send(Message::Binary(b.into())),
                Cmd::Event(push, b) => {
                    let at = Instant::now();
                    let r = ws.send(Message::Binary(b.into()));
                    if r.is_ok()
                        && let Some(p) = inner.lock().pushes.get_mut(push as usize)
                    {
                        p.sent_at.get_or_insert(at);
                    }
                    r
                }
                Cmd::Text(t) => ws.send(Message::Text(t.into())),
                Cmd::Abort => {
                    let _ = raw.shutdown(Shutdown::Both);
                    break 'conn;
                }
            };
            if sent.is_err() {
                break 'conn;
            }
        }
        if inner.stop.load(Ordering::SeqCst) {
            break;
        }
        if silent.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        // With frames still queued, only take what the client already sent:
        // non-blocking reads (a tiny read timeout would round up to a jiffy).
        let _ = raw.set_nonblocking(!queue.is_empty());
        loop {
            match ws.read() {
                Ok(Message::Binary(b)) => on_client_frame(&inner, &app_id, id, &mut ws, &b),
                Ok(Message::Close(_)) => {
                    let _ = ws.flush();
                    break 'conn;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(_) => break 'conn,
            }
        }
    }
    inner.lock().conns.retain(|c| c.id != id);
    inner.changed.notify_all();
}

pub(crate) fn on_client_frame(
    inner: &Inner,
    app_id: &str,
    conn: u64,
    ws: &mut tungstenite::WebSocket<TcpStream>,
    b: &[u8],
) {
    let Some(frame) = pb::Frame::from_bytes(b) else {
        inner.lock().invalid_frames += 1;
        return;
    };
    match (frame.method, frame.header("type")) {
        (0, Some("ping")) => {
            *inner.lock().pings.entry(app_id.into()).or_default() += 1;
            let pong = pb::Frame {
                seq_id: 0,
                log_id: 0,
                service: frame.service,
                method: 0,
                headers: vec![("type".into(), "pong".into())],
                payload: inner.client_config().to_string().into_bytes(),
            };
            let _ = ws.send(Message::Binary(pong.to_bytes().into()));
        }
        (1, _) => {
            let code = serde_json::from_slice::<Value>(&frame.payload)
                .ok()
                .and_then(|v| v.get("code").and_then(Value::as_i64))
                .unwrap_or(-1);
            let mut st = inner.lock();
            let Some(&push) = frame.header("message_id").and_then(|m| st.frame_to_push.get(m))
            else {
                st.invalid_frames += 1;
                return;
            };
            if code == 200 {
                st.pushes[push as usize].acked = true;
            }
            st.acks.push(Ack {
                push,
                code,
                headers: frame.headers.clone(),
                conn,
                at: Instant::now(),
            });
        }
        _ => inner.lock().invalid_frames += 1,
    }
    inner.changed.notify_all();
}
