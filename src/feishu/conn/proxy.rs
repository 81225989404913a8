//! The long connection through an HTTP proxy (`CONNECT`), chosen from the
//! environment the way the REST client (ureq) chooses it: the first of
//! `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` (or their lower-case forms) for
//! every scheme, unless `NO_PROXY` names the host (`*`, an exact host,
//! `.suffix`/`*suffix`, `prefix.`/`prefix*`; case-insensitive). Only
//! `http://` proxies; the proxy's credentials (`http://user:pass@host:port`)
//! go into `Proxy-Authorization` and never into a log line or an error.

use base64::Engine;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// A proxy to tunnel through.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `Basic …`, from the URL's user info.
    authorization: Option<String>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({}:{})", self.host, self.port)
    }
}

/// The proxy for `host`, from the environment read through `get`.
/// `Err` names a setting that cannot be used (without its credentials).
pub fn from_env(host: &str, get: impl Fn(&str) -> Option<String>) -> Result<Option<Proxy>, String> {
    let var = ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]
        .into_iter()
        .find_map(|name| get(name).filter(|v| !v.trim().is_empty()).map(|v| (name, v)));
    let Some((name, url)) = var else { return Ok(None) };
    let no_proxy = get("NO_PROXY").or_else(|| get("no_proxy")).unwrap_or_default();
    if no_proxy.split(',').map(str::trim).any(|entry| bypasses(entry, host)) {
        return Ok(None);
    }
    parse(&url).map(Some).map_err(|problem| format!("{name}: {problem}"))
}

/// Whether a `NO_PROXY` entry names `host`.
fn bypasses(entry: &str, host: &str) -> bool {
    let (entry, host) = (entry.to_ascii_lowercase(), host.to_ascii_lowercase());
    if entry.is_empty() {
        return false;
    }
    if entry == "*" {
        return true;
    }
    if let Some(suffix) = entry.strip_prefix('*') {
        return host.ends_with(suffix);
    }
    if entry.starts_with('.') {
        return host.ends_with(&entry);
    }
    if let Some(prefix) = entry.strip_suffix('*') {
        return host.starts_with(prefix);
    }
    if entry.ends_with('.') {
        return host.starts_with(&entry);
    }
    entry == host
}

/// `http://[user:pass@]host[:port][/]` or `host:port`.
fn parse(url: &str) -> Result<Proxy, String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!("{scheme}:// proxies are not supported (use an http:// proxy)"));
        }
        None => url,
    };
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| "the proxy's port is not a number".to_owned())?)
        }
        _ => (hostport, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err("not a proxy URL (http://host:port)".into());
    }
    let authorization = userinfo.map(|u| {
        let decoded = percent_decode(u);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(decoded))
    });
    Ok(Proxy { host: host.to_owned(), port, authorization })
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|c| (*c as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Connects to the proxy and opens a tunnel to `host:port`, all within
/// `timeout`. The error says what the proxy answered (not its credentials).
pub fn tunnel(proxy: &Proxy, host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let mut last =
        io::Error::new(io::ErrorKind::NotFound, format!("proxy {} has no address", proxy.host));
    let mut tcp = None;
    for addr in (proxy.host.as_str(), proxy.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut tcp = tcp.ok_or_else(|| {
        io::Error::new(last.kind(), format!("proxy {}:{}: {last}", proxy.host, proxy.port))
    })?;
    tcp.set_write_timeout(Some(timeout))?;
    let target =
        if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.authorization {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes())?;
    // The answer's head, byte by byte so that nothing of the tunnel is read.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || head.len() > 8192 {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "proxy did not answer CONNECT"));
        }
        tcp.set_read_timeout(Some(left))?;
        if tcp.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "proxy closed the connection",
            ));
        }
        head.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        let why =
            if code == "407" { " (check the user and password in the proxy URL)" } else { "" };
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "proxy {}:{} refused CONNECT {target}: {status_line}{why}",
                proxy.host, proxy.port
            ),
        ));
    }
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_proxy_is_chosen_like_the_rest_client_does() {
        assert_eq!(from_env("open.feishu.cn", env(&[])), Ok(None));
        let p = from_env("open.feishu.cn", env(&[("HTTPS_PROXY", "http://10.0.0.1:3128")]))
            .unwrap()
            .unwrap();
        assert_eq!((p.host.as_str(), p.port, p.authorization.is_none()), ("10.0.0.1", 3128, true));
        // ALL_PROXY first, then HTTPS_PROXY, then HTTP_PROXY.
        let both = env(&[("HTTP_PROXY", "http://h:1"), ("https_proxy", "s:2")]);
        assert_eq!(from_env("x", both).unwrap().unwrap().host, "s");
        let p =
            from_env("x", env(&[("HTTP_PROXY", "http://u%40corp:p%3Aw@proxy/")])).unwrap().unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy", 80));
        let want =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("u@corp:p:w"));
        assert_eq!(p.authorization.as_deref(), Some(want.as_str()));
        assert_eq!(format!("{p:?}"), "Proxy(proxy:80)", "credentials never shown");
    }

    #[test]
    fn no_proxy_entries() {
        let with = |no: &str, host: &str| {
            from_env(host, env(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", no)]))
                .unwrap()
                .is_none()
        };
        assert!(with("*", "open.feishu.cn"));
        assert!(with("localhost, open.feishu.cn", "OPEN.feishu.cn"));
        assert!(with(".feishu.cn", "open.feishu.cn"));
        assert!(with("*feishu.cn", "open.feishu.cn"));
        assert!(with("10.*", "10.1.2.3"));
        assert!(!with("feishu.cn", "open.feishu.cn"));
        assert!(!with("", "open.feishu.cn"));
        assert!(!with(".larksuite.com", "open.feishu.cn"));
    }

    #[test]
    fn unusable_proxies_are_named_without_credentials() {
        let e = from_env("x", env(&[("HTTPS_PROXY", "https://u:secret@p:1")])).unwrap_err();
        assert!(
            e.contains("HTTPS_PROXY") && e.contains("not supported") && !e.contains("secret"),
            "{e}"
        );
        let e = from_env("x", env(&[("ALL_PROXY", "http://u:secret@p:port")])).unwrap_err();
        assert!(e.contains("port") && !e.contains("secret"), "{e}");
    }
}
