//! Opening the WebSocket: TCP connect with a timeout, TLS, the WebSocket
//! handshake, and the mapping of every failure to a [`ConnectError`] (the
//! handshake's Feishu headers included). Also the socket-mode switches the
//! session needs. Refuses `ws://` unless the operator allowed it. Goes
//! through the HTTP proxy of the environment, if any ([`proxy`]).
//!
//! TLS is OpenSSL's, with one context for every connection and
//! `SSL_MODE_RELEASE_BUFFERS`: an idle connection keeps no read or write
//! buffer (about 34 KiB each; it waits for the next record in the kernel,
//! not inside `SSL_read`, which would hold its buffer while it waits), and
//! no copy of the CA bundle of its own.

use openssl::ssl::{SslConnector, SslMethod, SslMode, SslStream};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{HandshakeError, WebSocket};

use super::super::endpoint::ConnectError;
use super::{Transport, Tuning, proxy};

/// The long connection's socket.
pub type Socket = WebSocket<Stream>;

/// TCP, or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => {
                // Wait for the next record in the kernel, not in SSL_read:
                // a read blocked inside OpenSSL holds its 17 KiB record buffer
                // for as long as the connection is idle. Nothing decrypted is
                // left over (`pending`) and, with read-ahead off, OpenSSL holds
                // no raw bytes between records, so the peek cannot miss data.
                // A peek that returns 0 (the end, or the read side shut by a
                // stop) lets OpenSSL report the end as it should.
                if s.ssl().pending() == 0 {
                    s.get_ref().peek(&mut [0u8; 1])?;
                }
                s.read(buf)
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub fn io_to_connect(e: io::Error) -> ConnectError {
    ConnectError::network(e.to_string())
}

pub fn open_socket(
    url: &str,
    tuning: Tuning,
    transport: Transport,
) -> Result<Socket, ConnectError> {
    let uri: tungstenite::http::Uri = url
        .parse()
        .map_err(|_| ConnectError::Protocol("endpoint returned an unparsable URL".into()))?;
    let host =
        uri.host().ok_or_else(|| ConnectError::Protocol("endpoint URL has no host".into()))?;
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") if transport == Transport::AllowPlain => false,
        Some("ws") => {
            return Err(ConnectError::Protocol(
                "endpoint offered an unencrypted ws:// URL; refused (allowed only with FEISHU_BASE_URL)".into(),
            ));
        }
        _ => return Err(ConnectError::Protocol("endpoint URL is not ws:// or wss://".into())),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let via = proxy::from_env(host, |k| std::env::var(k).ok())
        .map_err(|problem| ConnectError::Protocol(format!("proxy setting: {problem}")))?;
    let tcp = match &via {
        Some(p) => proxy::tunnel(p, host, port, tuning.connect_timeout).map_err(io_to_connect)?,
        None => connect_direct(host, port, tuning.connect_timeout)?,
    };
    tcp.set_read_timeout(Some(tuning.connect_timeout)).map_err(io_to_connect)?;
    tcp.set_write_timeout(Some(tuning.connect_timeout)).map_err(io_to_connect)?;
    tcp.set_nodelay(true).map_err(io_to_connect)?;
    // Small buffers that grow on demand: an idle connection should cost little memory.
    let config = WebSocketConfig::default()
        .read_buffer_size(2048)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20));
    let stream =
        if tls { Stream::Tls(Box::new(tls_handshake(host, tcp)?)) } else { Stream::Plain(tcp) };
    let (mut socket, _) = tungstenite::client::client_with_config(url, stream, Some(config))
        .map_err(|e| match e {
            HandshakeError::Failure(tungstenite::Error::Http(resp)) => {
                let header = |k: &str| {
                    resp.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_owned)
                };
                ConnectError::Handshake {
                    http: resp.status().as_u16(),
                    status: header("handshake-status").and_then(|v| v.trim().parse().ok()),
                    auth_code: header("handshake-autherrcode").and_then(|v| v.trim().parse().ok()),
                    msg: header("handshake-msg").unwrap_or_default(),
                }
            }
            HandshakeError::Failure(tungstenite::Error::Io(e)) => io_to_connect(e),
            HandshakeError::Failure(other) => {
                ConnectError::Protocol(format!("WebSocket handshake: {other}"))
            }
            HandshakeError::Interrupted(_) => {
                ConnectError::Network("WebSocket handshake timed out".into())
            }
        })?;
    set_read_timeout(&mut socket, tuning.max_wait).map_err(io_to_connect)?;
    Ok(socket)
}

/// OpenSSL 3.5's default groups (`DEFAULT_GROUPS` there), with a key share
/// for X25519 alone (`*`).
const PQ_OFFERED_X25519_SHARED: &str =
    "?X25519MLKEM768/?*X25519:?secp256r1/?X448:?secp384r1:?secp521r1/?ffdhe2048:?ffdhe3072";

/// The TLS context shared by every long connection (the CA files are read
/// once: `SSL_CERT_FILE`, `SSL_CERT_DIR` or OpenSSL's default paths).
fn shared_tls() -> Result<&'static SslConnector, &'static str> {
    static TLS: std::sync::LazyLock<Result<SslConnector, String>> =
        std::sync::LazyLock::new(|| {
            // native-tls finds the host's CA bundle for a static build (the
            // REST calls use it); creating one first makes OpenSSL look there too.
            let _ = native_tls::TlsConnector::new();
            let mut b =
                SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
            b.set_mode(SslMode::RELEASE_BUFFERS);
            if openssl::version::number() >= 0x3050_0000 {
                // OpenSSL 3.5+ sends key shares for X25519MLKEM768 and X25519
                // and keeps both for the connection's life (6.7 KiB): send
                // X25519's only, still offering the hybrid group first (a
                // server that prefers it asks for its share, one round trip).
                b.set_groups_list(PQ_OFFERED_X25519_SHARED).map_err(|e| e.to_string())?;
            }
            Ok(b.build())
        });
    TLS.as_ref().map_err(String::as_str)
}

/// The TLS handshake, bounded by the socket's timeouts (set before).
fn tls_handshake(host: &str, tcp: TcpStream) -> Result<SslStream<TcpStream>, ConnectError> {
    let connector = shared_tls().map_err(|e| ConnectError::network(format!("TLS: {e}")))?;
    let config = connector.configure().map_err(|e| ConnectError::network(format!("TLS: {e}")))?;
    config.connect(host, tcp).map_err(|e| match e {
        openssl::ssl::HandshakeError::WouldBlock(_) => {
            ConnectError::Network("TLS handshake timed out".into())
        }
        other => ConnectError::network(format!("TLS: {other}")),
    })
}

fn connect_direct(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in (host, port).to_socket_addrs().map_err(io_to_connect)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(io_to_connect(last))
}

/// The TCP socket under the WebSocket (and TLS).
pub fn tcp_of(socket: &Socket) -> &TcpStream {
    match socket.get_ref() {
        Stream::Plain(s) => s,
        Stream::Tls(s) => s.get_ref(),
    }
}

pub fn set_read_timeout(socket: &mut Socket, d: Duration) -> io::Result<()> {
    tcp_of(socket).set_read_timeout(Some(d))
}

pub fn set_nonblocking(socket: &mut Socket, on: bool) -> io::Result<()> {
    tcp_of(socket).set_nonblocking(on)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_websocket_needs_the_override() {
        let err =
            open_socket("ws://127.0.0.1:9/ws/v2?ticket=t", Tuning::default(), Transport::TlsOnly)
                .err();
        assert!(
            matches!(err, Some(ConnectError::Protocol(ref m)) if m.contains("unencrypted")),
            "{err:?}"
        );
        let err =
            open_socket("http://127.0.0.1:9/", Tuning::default(), Transport::AllowPlain).err();
        assert!(matches!(err, Some(ConnectError::Protocol(_))), "{err:?}");
    }
}
