//! `POST /callback/ws/endpoint`: trades App ID and App Secret for a one-time
//! WebSocket URL and the server's `ClientConfig`; plus the classification of
//! everything that can go wrong while opening a long connection.
//!
//! One call, one attempt: the retry policy belongs to `conn`.

use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

use super::http::{Http, HttpError};

/// The server's connection settings (seconds on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Negative = retry forever. Informational: the gateway always retries.
    pub reconnect_count: i64,
    pub reconnect_interval: Duration,
    pub reconnect_nonce: Duration,
    pub ping_interval: Duration,
}

impl Default for ClientConfig {
    /// The official SDKs' values before the server sends any.
    fn default() -> Self {
        ClientConfig {
            reconnect_count: -1,
            reconnect_interval: Duration::from_secs(120),
            reconnect_nonce: Duration::from_secs(30),
            ping_interval: Duration::from_secs(120),
        }
    }
}

impl ClientConfig {
    /// Applies the keys present in a `ClientConfig` JSON object. Missing,
    /// non-integer or non-positive values leave the current value alone.
    pub fn apply(&mut self, v: &Value) {
        let secs =
            |key: &str| v.get(key).and_then(Value::as_i64).filter(|s| *s > 0 && *s <= 86_400);
        if let Some(n) = v.get("ReconnectCount").and_then(Value::as_i64) {
            self.reconnect_count = n;
        }
        if let Some(s) = secs("ReconnectInterval") {
            self.reconnect_interval = Duration::from_secs(s as u64);
        }
        if let Some(s) = secs("ReconnectNonce") {
            self.reconnect_nonce = Duration::from_secs(s as u64);
        }
        if let Some(s) = secs("PingInterval") {
            self.ping_interval = Duration::from_secs(s as u64);
        }
    }
}

/// A usable long-connection endpoint.
pub struct Endpoint {
    /// The `wss://…` URL. Its query holds `ticket` and `access_key`: never log it.
    pub url: String,
    pub config: ClientConfig,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &safe_url(&self.url))
            .field("config", &self.config)
            .finish()
    }
}

/// Feishu's documented connection error codes.
pub const CODE_SYSTEM_BUSY: i64 = 1;
pub const CODE_FORBIDDEN: i64 = 403;
pub const CODE_AUTH_FAILED: i64 = 514;
pub const CODE_INTERNAL_ERROR: i64 = 1_000_040_343;
pub const CODE_EXCEED_CONN_LIMIT: i64 = 1_000_040_350;

/// Why a long connection could not be opened or was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Network, TLS or timeout failure reaching Feishu.
    Network(String),
    /// The server's TLS certificate was not trusted: a proxy re-signing
    /// TLS, a wrong clock, or a missing CA bundle. Needs the operator.
    Untrusted(String),
    /// The endpoint call answered a non-200 HTTP status or no JSON.
    Http(String),
    /// Feishu answered a code it documents as temporary (busy, internal error).
    Busy { code: i64, msg: String },
    /// Feishu refused the app: wrong credentials, app not published, long
    /// connection not enabled… Retrying helps only after the operator acts.
    Rejected { code: i64, msg: String },
    /// The WebSocket upgrade was refused.
    Handshake { http: u16, status: Option<i64>, auth_code: Option<i64>, msg: String },
    /// The endpoint's URL or the server's frames make no sense.
    Protocol(String),
}

impl ConnectError {
    /// A failure to reach Feishu, told apart when it is an untrusted
    /// certificate (OpenSSL says "certificate verify failed").
    pub fn network(e: impl Into<String>) -> ConnectError {
        let e = e.into();
        if e.contains("certificate verify failed") {
            ConnectError::Untrusted(e)
        } else {
            ConnectError::Network(e)
        }
    }

    /// True when retrying cannot help until the operator fixes something
    /// (the gateway still retries, slowly).
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            ConnectError::Rejected { .. }
                | ConnectError::Untrusted(_)
                | ConnectError::Handshake { status: Some(CODE_FORBIDDEN), .. }
                | ConnectError::Handshake {
                    status: Some(CODE_AUTH_FAILED),
                    auth_code: Some(CODE_EXCEED_CONN_LIMIT),
                    ..
                }
        )
    }

    /// A short, stable code for the status key's `last_error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::Network(_) => "network",
            ConnectError::Untrusted(_) => "tls_untrusted",
            ConnectError::Http(_) => "endpoint_http",
            ConnectError::Busy { .. } => "feishu_busy",
            ConnectError::Rejected { code: 1_000_040_345 | 1_000_040_346, .. } => {
                "invalid_credentials"
            }
            ConnectError::Rejected { code: 1_000_040_351, .. } => "wrong_domain",
            ConnectError::Rejected { .. } => "app_rejected",
            ConnectError::Handshake { status: Some(CODE_FORBIDDEN), .. } => "app_forbidden",
            ConnectError::Handshake { auth_code: Some(CODE_EXCEED_CONN_LIMIT), .. } => {
                "connection_limit"
            }
            ConnectError::Handshake { .. } => "handshake_failed",
            ConnectError::Protocol(_) => "protocol",
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Network(e) => write!(f, "cannot reach Feishu: {e}"),
            ConnectError::Untrusted(e) => write!(
                f,
                "the TLS certificate presented for Feishu is not trusted ({e}): check the clock; if a proxy re-signs TLS, set SSL_CERT_FILE to its CA bundle in the service's environment"
            ),
            ConnectError::Http(e) => write!(f, "long-connection endpoint failed: {e}"),
            ConnectError::Busy { code, msg } => {
                write!(f, "Feishu is busy (code {code}: {msg}); retrying")
            }
            ConnectError::Rejected { code, msg } => {
                write!(f, "Feishu refused the app (code {code}: {msg})")?;
                let hint = match code {
                    1_000_040_345 => {
                        "the App Secret does not match the App ID; copy both again from the app's Credentials page"
                    }
                    1_000_040_346 => {
                        "no app has this App ID; check app_id in the channel configuration"
                    }
                    1_000_040_351 => {
                        "the app belongs to the other platform; set domain to \"feishu\" or \"lark\" accordingly"
                    }
                    _ => {
                        "check App ID and App Secret, that the app is a published self-built app, and that events are received via long connection"
                    }
                };
                write!(f, ": {hint}")
            }
            ConnectError::Handshake { http, status, auth_code, msg } => {
                match (status, auth_code) {
                    (_, Some(CODE_EXCEED_CONN_LIMIT)) => write!(
                        f,
                        "Feishu refused the connection: too many long connections for this app (another gateway or a developer's test client is connected)"
                    )?,
                    (Some(CODE_FORBIDDEN), _) => write!(
                        f,
                        "Feishu refused the connection: the app is forbidden (banned or disabled)"
                    )?,
                    _ => write!(
                        f,
                        "WebSocket handshake refused (HTTP {http}, status {status:?}, auth code {auth_code:?})"
                    )?,
                }
                if !msg.is_empty() {
                    write!(f, ": {msg}")?;
                }
                Ok(())
            }
            ConnectError::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Asks Feishu for a WebSocket URL.
pub fn fetch(
    http: &Http,
    base_url: &str,
    app_id: &str,
    app_secret: &str,
) -> Result<Endpoint, ConnectError> {
    let url = format!("{}/callback/ws/endpoint", base_url.trim_end_matches('/'));
    let reply = http
        .post(&url, &json!({ "AppID": app_id, "AppSecret": app_secret }), None)
        .map_err(|e| match e {
            HttpError::Transport(t) => ConnectError::network(t),
            other => ConnectError::Http(other.to_string()),
        })?;
    let code = reply.code();
    if reply.status != 200 && code <= 0 {
        return Err(ConnectError::Http(format!("HTTP {}", reply.status)));
    }
    match code {
        0 => {}
        CODE_SYSTEM_BUSY | CODE_INTERNAL_ERROR => {
            return Err(ConnectError::Busy { code, msg: reply.msg() });
        }
        _ => return Err(ConnectError::Rejected { code, msg: reply.msg() }),
    }
    let data = reply.body.get("data").cloned().unwrap_or(Value::Null);
    let url = data.get("URL").and_then(Value::as_str).filter(|u| !u.is_empty());
    let url = url
        .ok_or_else(|| ConnectError::Protocol("endpoint reply has no data.URL".into()))?
        .to_owned();
    let mut config = ClientConfig::default();
    if let Some(cc) = data.get("ClientConfig") {
        config.apply(cc);
    }
    Ok(Endpoint { url, config })
}

/// The `service_id` query parameter of the WebSocket URL (0 when absent).
pub fn service_id(url: &str) -> i32 {
    query_param(url, "service_id").and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The `device_id` query parameter: Feishu's connection id, safe to log.
pub fn device_id(url: &str) -> String {
    query_param(url, "device_id").unwrap_or_default().to_owned()
}

fn query_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// The URL without its query string (which carries secrets): safe to log.
pub fn safe_url(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "wss://msg-frontier.feishu.cn/ws/v2?fpid=493&aid=552564&device_id=7677&access_key=SECRET&service_id=33554678&ticket=T1";

    #[test]
    fn url_parts() {
        assert_eq!(service_id(URL), 33554678);
        assert_eq!(device_id(URL), "7677");
        assert_eq!(safe_url(URL), "wss://msg-frontier.feishu.cn/ws/v2");
        assert_eq!(service_id("wss://x/ws"), 0);
        assert_eq!(service_id("wss://x/ws?service_id=abc"), 0);
        let shown = format!("{:?}", Endpoint { url: URL.into(), config: ClientConfig::default() });
        assert!(!shown.contains("SECRET") && !shown.contains("T1"), "{shown}");
    }

    #[test]
    fn client_config_updates_only_sane_present_keys() {
        let mut c = ClientConfig::default();
        c.apply(&serde_json::json!({"PingInterval": 90, "ReconnectInterval": 0, "ReconnectNonce": "x", "ReconnectCount": 7}));
        assert_eq!(c.ping_interval, Duration::from_secs(90));
        assert_eq!(c.reconnect_interval, Duration::from_secs(120));
        assert_eq!(c.reconnect_nonce, Duration::from_secs(30));
        assert_eq!(c.reconnect_count, 7);
        c.apply(&serde_json::json!({"PingInterval": null}));
        assert_eq!(c.ping_interval, Duration::from_secs(90));
    }

    #[test]
    fn classification() {
        let rejected = ConnectError::Rejected {
            code: 1_000_040_345,
            msg: "app_id or app_secret is invalid".into(),
        };
        assert!(rejected.needs_operator());
        assert_eq!(rejected.code(), "invalid_credentials");
        assert!(rejected.to_string().contains("App Secret does not match"));
        let limit = ConnectError::Handshake {
            http: 400,
            status: Some(514),
            auth_code: Some(CODE_EXCEED_CONN_LIMIT),
            msg: String::new(),
        };
        assert!(limit.needs_operator());
        assert_eq!(limit.code(), "connection_limit");
        let auth = ConnectError::Handshake {
            http: 400,
            status: Some(514),
            auth_code: Some(1),
            msg: String::new(),
        };
        assert!(!auth.needs_operator());
        assert!(!ConnectError::Busy { code: 1, msg: String::new() }.needs_operator());
        assert!(!ConnectError::network("Connection refused (os error 111)").needs_operator());
        let untrusted = ConnectError::network(
            "native-tls: error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed",
        );
        assert_eq!(untrusted.code(), "tls_untrusted");
        assert!(untrusted.needs_operator());
        let forbidden = ConnectError::Handshake {
            http: 403,
            status: Some(403),
            auth_code: None,
            msg: String::new(),
        };
        assert!(forbidden.needs_operator());
    }
}
