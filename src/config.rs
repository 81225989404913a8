//! The gateway's settings, read once from the environment and validated at
//! start. Every default of an operator setting (an environment variable)
//! lives here, with its unit; components keep their internal timings
//! beside their own structs (`feishu::conn::Tuning`, `render::Limits`).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Validated settings (see the environment table in README.md).
#[derive(Clone)]
pub struct Config {
    /// `REDIS_URL`, default `redis://127.0.0.1:6379/0`. May hold a password: never log it whole.
    pub redis_url: String,
    /// `GATEWAY_INSTANCE_ID`, default the host name.
    pub instance_id: String,
    /// `FEISHU_BASE_URL`: overrides every channel's Open Platform base URL.
    pub feishu_base_url: Option<String>,
    /// `CONFIG_REFRESH_INTERVAL`, default 10 s.
    pub config_refresh: Duration,
    /// `STATUS_TTL`, default 60 s.
    pub status_ttl: u64,
    /// `DEDUP_TTL`, default 86400 s.
    pub dedup_ttl: u64,
    /// `MAX_MESSAGE_AGE`, default 43200 s (12 h); zero turns the check off.
    /// Longer than Feishu's redelivery schedule (15 s, 5 min, 1 h, 6 h), so
    /// an event refused during an outage is still stored when it comes back,
    /// and at most `DEDUP_TTL`, so no redelivery is stored twice.
    pub max_message_age: Duration,
    /// `OUTBOUND_RETRY_WINDOW`, default 300 s.
    pub outbound_retry_window: Duration,
    /// `UNSUPPORTED_MESSAGE_HINT`; empty = no reply.
    pub unsupported_hint: String,
    /// `TYPING_REACTION`, default `Typing`; empty = off.
    pub typing_reaction: String,
    /// `ANSWER_TIMEOUT`, default 900 s; zero turns it off. A question
    /// stored and not answered for this long (progress shown restarts the
    /// wait) is counted, logged, and its user told (`NO_ANSWER_HINT`).
    pub answer_timeout: Option<Duration>,
    /// `NO_ANSWER_HINT`; empty = count and log only, nothing in the chat.
    pub no_answer_hint: String,
    /// `METRICS_ADDR`, default off.
    pub metrics_addr: Option<SocketAddr>,
    /// `CARDKIT_STREAMING`, default `on`: progress answers stream into
    /// CardKit cards; `off` updates message cards (PATCH) instead.
    pub cardkit: bool,
    /// `CARDKIT_REOPEN_AFTER`, default 500 s: streaming is turned on again
    /// after this long (Feishu closes it after about 600 s).
    pub stream_reopen: Duration,
    /// `REDIS_SENTINELS` (`host:port,host:port,…`) with
    /// `REDIS_SENTINEL_MASTER`: find the master through Redis Sentinel.
    pub redis_sentinels: Vec<(String, u16)>,
    pub redis_sentinel_master: String,
    /// `REDIS_SENTINEL_PASSWORD`: the Sentinels' own password (a secret).
    pub redis_sentinel_password: Option<String>,
}

/// Shows the settings with every credential redacted (the Redis URL's, the
/// Sentinel password).
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("redis", &self.redis_url_for_logs())
            .field("instance_id", &self.instance_id)
            .field("sentinel_password", &self.redis_sentinel_password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A bad environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";
pub const DEFAULT_HINT: &str = "目前仅支持文字消息。Only text messages are supported.";

/// `host:port` as an address: an IP literal, else a host name resolved
/// now (`localhost:9464`), the first address it has.
fn socket_addr(s: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    s.parse().ok().or_else(|| {
        s.rsplit_once(':').filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())?;
        s.to_socket_addrs().ok()?.next()
    })
}

/// `NO_ANSWER_HINT`'s default.
pub const DEFAULT_NO_ANSWER_HINT: &str = "AskTable 暂时没有回答这个问题，请稍后再试或联系管理员；如果稍后有回答，会继续发在这里。\nNo answer from AskTable yet: please try again later or ask your administrator. If the answer comes later, it will still appear here.";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let err = |var: &'static str, problem: String| ConfigError { var, problem };
        let secs = |var: &'static str, default: u64, min: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n >= min && n <= 365 * 86_400 => Ok(n),
                    Ok(n) => {
                        Err(err(var, format!("{n} is out of range ({min}..=31536000 seconds)")))
                    }
                    Err(_) => Err(err(var, format!("{v:?} is not a whole number of seconds"))),
                },
            }
        };
        let redis_url = get("REDIS_URL").unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned());
        if let Err(e) = redis::Client::open(redis_url.as_str()) {
            return Err(err(
                "REDIS_URL",
                format!("not a usable Redis URL ({})", url_error_kind(&e)),
            ));
        }
        let instance_id = match get("GATEWAY_INSTANCE_ID") {
            Some(id) => {
                let id = id.trim().to_owned();
                if id.is_empty()
                    || id.len() > 128
                    || id.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(err(
                        "GATEWAY_INSTANCE_ID",
                        "must be 1-128 characters without spaces".into(),
                    ));
                }
                id
            }
            None => host_name(),
        };
        let feishu_base_url =
            match get("FEISHU_BASE_URL").map(|s| s.trim().trim_end_matches('/').to_owned()) {
                None => None,
                Some(s) if s.is_empty() => None,
                Some(s) if valid_base_url(&s) => Some(s),
                Some(s) => {
                    return Err(err(
                        "FEISHU_BASE_URL",
                        format!("{s:?} is not an http:// or https:// base URL"),
                    ));
                }
            };
        let metrics_addr = match get("METRICS_ADDR").filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(s) => Some(socket_addr(s.trim()).ok_or_else(|| {
                err(
                    "METRICS_ADDR",
                    format!("{s:?} is not host:port (e.g. 127.0.0.1:9464 or localhost:9464)"),
                )
            })?),
        };
        let dedup_ttl = secs("DEDUP_TTL", 86_400, 1)?;
        let max_message_age = secs("MAX_MESSAGE_AGE", 43_200, 0)?;
        if max_message_age > dedup_ttl {
            return Err(err(
                "MAX_MESSAGE_AGE",
                format!(
                    "{max_message_age} s is longer than DEDUP_TTL ({dedup_ttl} s): a redelivered message could be stored twice"
                ),
            ));
        }
        let mut redis_sentinels = Vec::new();
        for node in get("REDIS_SENTINELS").unwrap_or_default().split(',') {
            let node = node.trim();
            if node.is_empty() {
                continue;
            }
            let parsed = node
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
                .filter(|(h, _): &(String, u16)| !h.is_empty());
            match parsed {
                Some(hp) => redis_sentinels.push(hp),
                None => {
                    return Err(err(
                        "REDIS_SENTINELS",
                        format!("{node:?} is not host:port (e.g. 10.0.0.5:26379)"),
                    ));
                }
            }
        }
        let redis_sentinel_master =
            get("REDIS_SENTINEL_MASTER").map(|s| s.trim().to_owned()).unwrap_or_default();
        if !redis_sentinels.is_empty() && redis_sentinel_master.is_empty() {
            return Err(err(
                "REDIS_SENTINEL_MASTER",
                "is required with REDIS_SENTINELS (the master's name in sentinel.conf, e.g. mymaster)"
                    .into(),
            ));
        }
        if redis_sentinels.is_empty() && !redis_sentinel_master.is_empty() {
            return Err(err("REDIS_SENTINELS", "is required with REDIS_SENTINEL_MASTER".into()));
        }
        Ok(Config {
            redis_sentinels,
            redis_sentinel_master,
            redis_sentinel_password: get("REDIS_SENTINEL_PASSWORD").filter(|p| !p.is_empty()),
            redis_url,
            instance_id,
            feishu_base_url,
            config_refresh: Duration::from_secs(secs("CONFIG_REFRESH_INTERVAL", 10, 1)?),
            status_ttl: secs("STATUS_TTL", 60, 3)?,
            dedup_ttl,
            max_message_age: Duration::from_secs(max_message_age),
            outbound_retry_window: Duration::from_secs(secs("OUTBOUND_RETRY_WINDOW", 300, 1)?),
            unsupported_hint: get("UNSUPPORTED_MESSAGE_HINT")
                .unwrap_or_else(|| DEFAULT_HINT.to_owned()),
            typing_reaction: get("TYPING_REACTION")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|| "Typing".into()),
            answer_timeout: Some(secs("ANSWER_TIMEOUT", 900, 0)?)
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            no_answer_hint: get("NO_ANSWER_HINT")
                .unwrap_or_else(|| DEFAULT_NO_ANSWER_HINT.to_owned()),
            metrics_addr,
            cardkit: match get("CARDKIT_STREAMING").as_deref().map(str::trim) {
                None | Some("on" | "1" | "true") => true,
                Some("off" | "0" | "false") => false,
                Some(v) => return Err(err("CARDKIT_STREAMING", format!("{v:?} is not on or off"))),
            },
            stream_reopen: Duration::from_secs(secs("CARDKIT_REOPEN_AFTER", 500, 1)?),
        })
    }

    /// The Redis URL with any password replaced by `***`, for logs.
    pub fn redis_url_for_logs(&self) -> String {
        let url = redact_url(&self.redis_url);
        if self.redis_sentinels.is_empty() {
            return url;
        }
        let nodes: Vec<String> =
            self.redis_sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        format!("{url} via Sentinel {} (master {})", nodes.join(","), self.redis_sentinel_master)
    }
}

fn valid_base_url(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) && !r.contains('?'))
}

/// Replaces every credential of a URL with `***`: the user-info part
/// (`user:password@`) and the `pass` / `password` query parameters that
/// `redis+unix://…?pass=…` URLs carry.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &base[..scheme_end], &base[at + 1..])
        }
        _ => base.to_owned(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if matches!(k.to_ascii_lowercase().as_str(), "pass" | "password") => {
                    format!("{k}=***")
                }
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// A Redis URL error's description without echoing the URL (which may hold a password).
fn url_error_kind(e: &redis::RedisError) -> String {
    let text = e.to_string();
    text.split(':').next().unwrap_or("invalid URL").trim().to_owned()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "gateway".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.redis_url, DEFAULT_REDIS_URL);
        assert_eq!(c.config_refresh, Duration::from_secs(10));
        assert_eq!((c.status_ttl, c.dedup_ttl), (60, 86_400));
        assert_eq!(c.max_message_age, Duration::from_secs(43_200));
        assert_eq!(c.typing_reaction, "Typing");
        assert_eq!(c.unsupported_hint, DEFAULT_HINT);
        assert!(c.feishu_base_url.is_none() && c.metrics_addr.is_none());
        assert!(!c.instance_id.is_empty());
    }

    #[test]
    fn values_are_read() {
        let c = with(&[
            ("REDIS_URL", "redis+unix:///tmp/r.sock"),
            ("GATEWAY_INSTANCE_ID", "gw-1"),
            ("FEISHU_BASE_URL", "http://127.0.0.1:8080/"),
            ("MAX_MESSAGE_AGE", "0"),
            ("METRICS_ADDR", "127.0.0.1:9464"),
            ("UNSUPPORTED_MESSAGE_HINT", ""),
        ])
        .unwrap();
        assert_eq!(c.instance_id, "gw-1");
        assert_eq!(c.feishu_base_url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(c.max_message_age, Duration::ZERO);
        assert_eq!(c.unsupported_hint, "");
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        let local = with(&[("METRICS_ADDR", "localhost:9464")]).unwrap();
        assert!(local.metrics_addr.is_some_and(|a| a.ip().is_loopback() && a.port() == 9464));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: [(&str, &str, &str); 9] = [
            ("STATUS_TTL", "abc", "not a whole number"),
            ("STATUS_TTL", "1", "out of range"),
            ("DEDUP_TTL", "-5", "not a whole number"),
            ("REDIS_URL", "mysql://x", "not a usable Redis URL"),
            ("FEISHU_BASE_URL", "ftp://x", "not an http"),
            ("METRICS_ADDR", "localhost", "not host:port"),
            ("GATEWAY_INSTANCE_ID", "a b", "without spaces"),
            ("CONFIG_REFRESH_INTERVAL", "0", "out of range"),
            ("MAX_MESSAGE_AGE", "90000", "longer than DEDUP_TTL"),
        ];
        for (var, value, want) in cases {
            let e = with(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.to_string().starts_with(&format!("invalid {var}: ")), "{e}");
            assert!(e.problem.contains(want), "{var}={value}: {e}");
        }
    }

    #[test]
    fn redis_password_is_hidden() {
        assert_eq!(redact_url("redis://:pw@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        // Found by an independent fault harness (issue 11): `?pass=` was printed whole.
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=2&pass=s3cret&user=gw"),
            "redis+unix:///run/redis.sock?db=2&pass=***&user=gw"
        );
        assert_eq!(
            redact_url("redis://u:pw@h:6379/0?Password=s3cret"),
            "redis://***@h:6379/0?Password=***"
        );
        // An `@` in the query is not user info.
        assert_eq!(redact_url("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
        let e = with(&[("REDIS_URL", "rediss://user:s3cret@")]).err();
        if let Some(e) = e {
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }
}
