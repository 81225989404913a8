//! Feishu REST calls made with a tenant access token: the token cache and
//! the bot's identity.
//!
//! Tokens are cached per (base URL, app) and refreshed well before expiry; a
//! call that Feishu answers with an invalid-token code evicts the token,
//! fetches a new one and is replayed once.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::event::is_feishu_id;
use super::http::{Http, HttpError, Reply};
use crate::channel::Secret;

/// What identifies an app to Feishu's REST API.
#[derive(Debug, Clone)]
pub struct AppCreds {
    pub base_url: String,
    pub app_id: String,
    pub app_secret: Secret,
}

/// A failed REST call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The request did not get a JSON answer.
    Http(HttpError),
    /// Feishu answered a non-zero `code`.
    Feishu { status: u16, code: i64, msg: String, rate_limit_reset: Option<u64> },
    /// An id that would go into a URL path does not have Feishu's shape
    /// (never sent; shown cut to 64 characters).
    InvalidId(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Http(e) => write!(f, "{e}"),
            ApiError::InvalidId(id) => write!(f, "\"{id}\" is not a Feishu id; not sent"),
            ApiError::Feishu { status, code, msg, .. } => {
                write!(f, "feishu api: HTTP {status}, code {code}: {msg}")
            }
        }
    }
}

impl std::error::Error for ApiError {}

/// What a failed call means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again later; wait at least this long when Feishu said so.
    Transient(Option<Duration>),
    /// The message replied to is gone or cannot be replied to: send to the chat.
    TargetGone,
    /// The group does not support replying in a thread: reply normally.
    NoThreads,
    /// Feishu refused the card: send text instead.
    CardRejected,
    /// The content is over Feishu's size limit.
    TooLarge,
    /// Retrying will not help (permissions, bot not in chat, …).
    Permanent,
}

/// Refuses an id that would change the URL it goes into (a `/`, `?`, `..`,
/// …): it comes from Redis (the server's items, the reply and typing keys)
/// or from Feishu, and neither is trusted with a path.
pub(crate) fn path_id(id: &str) -> Result<(), ApiError> {
    if is_feishu_id(id) {
        Ok(())
    } else {
        Err(ApiError::InvalidId(
            id.chars().take(64).collect::<String>().escape_default().to_string(),
        ))
    }
}

impl ApiError {
    /// Classifies the error by Feishu's documented codes.
    pub fn failure(&self) -> Failure {
        match self {
            ApiError::Http(HttpError::Transport(_)) => Failure::Transient(None),
            ApiError::Http(HttpError::NotJson { status }) if *status >= 500 || *status == 429 => {
                Failure::Transient(None)
            }
            ApiError::Http(HttpError::NotJson { .. }) | ApiError::InvalidId(_) => {
                Failure::Permanent
            }
            ApiError::Feishu { status, code, rate_limit_reset, .. } => {
                let reset = rate_limit_reset.map(Duration::from_secs);
                match code {
                    // 230020 is a rate limit (not "target gone"), 11232
                    // send flow control: both are retried later.
                    99_991_400 | 230_020 | 11_232 | 1_000_004 | 1_000_005 => {
                        Failure::Transient(reset.or(Some(Duration::from_secs(1))))
                    }
                    // CardKit: internal error, element not found/schema
                    // (retried with the same sequence and uuid).
                    300_120 | 300_313..=300_315 => Failure::Transient(None),
                    230_049 => Failure::Transient(Some(Duration::from_secs(1))),
                    c if TOKEN_INVALID.contains(c) => Failure::Transient(None),
                    230_011 | 231_003 | 230_050 | 230_054 | 230_111 => Failure::TargetGone,
                    230_071 | 230_072 | 230_019 => Failure::NoThreads,
                    230_099 => Failure::CardRejected,
                    230_025 | 200_860 => Failure::TooLarge,
                    _ if *status == 429 => {
                        Failure::Transient(reset.or(Some(Duration::from_secs(1))))
                    }
                    _ if *status >= 500 => Failure::Transient(None),
                    _ => Failure::Permanent,
                }
            }
        }
    }

    /// Feishu's error code, or 0 when the call got no answer.
    pub fn code(&self) -> i64 {
        match self {
            ApiError::Feishu { code, .. } => *code,
            ApiError::Http(_) | ApiError::InvalidId(_) => 0,
        }
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A reply to a message, optionally in its thread.
    Reply { message_id: &'a str, in_thread: bool },
    /// A new message in a chat.
    Chat { chat_id: &'a str },
}

/// Codes meaning "the tenant token is not (any longer) valid".
const TOKEN_INVALID: [i64; 3] = [99_991_661, 99_991_663, 99_991_665];

/// The bot's identity as `/bot/v3/info` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotInfo {
    pub open_id: String,
    pub name: String,
}

struct Token {
    value: Secret,
    refresh_at: Instant,
}

/// A REST client shared by every thread; holds the token cache.
pub struct Api {
    http: Http,
    tokens: Mutex<HashMap<(String, String), Token>>,
}

impl Api {
    pub fn new(http: Http) -> Api {
        Api { http, tokens: Mutex::new(HashMap::new()) }
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &Http {
        &self.http
    }

    pub(super) fn url(creds: &AppCreds, path: &str) -> String {
        format!("{}{}", creds.base_url.trim_end_matches('/'), path)
    }

    /// A valid tenant token for the app, from the cache when fresh.
    pub fn tenant_token(&self, creds: &AppCreds) -> Result<Secret, ApiError> {
        let key = (creds.base_url.clone(), creds.app_id.clone());
        if let Some(t) = self.tokens.lock().expect("token cache lock").get(&key)
            && Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        let body = json!({ "app_id": creds.app_id, "app_secret": creds.app_secret.expose() });
        let reply = self.http.post(
            &Self::url(creds, "/open-apis/auth/v3/tenant_access_token/internal"),
            &body,
            None,
        );
        let reply = check(reply)?;
        let token =
            reply.body.get("tenant_access_token").and_then(Value::as_str).unwrap_or_default();
        if token.is_empty() {
            return Err(ApiError::Feishu {
                status: reply.status,
                code: -1,
                msg: "token reply without tenant_access_token".into(),
                rate_limit_reset: None,
            });
        }
        crate::metrics::inc(crate::metrics::TOKEN_REFRESHES, &[]);
        let expire = reply.body.get("expire").and_then(Value::as_u64).unwrap_or(7200);
        // Feishu issues a new token only when the old one has < 30 min left:
        // refresh then, or at half-life for short-lived tokens.
        let refresh_in = if expire > 3600 { expire - 1800 } else { expire / 2 };
        let value = Secret::new(token);
        let refresh_at = Instant::now() + Duration::from_secs(refresh_in);
        self.tokens
            .lock()
            .expect("token cache lock")
            .insert(key, Token { value: value.clone(), refresh_at });
        Ok(value)
    }

    fn forget_token(&self, creds: &AppCreds) {
        self.tokens
            .lock()
            .expect("token cache lock")
            .remove(&(creds.base_url.clone(), creds.app_id.clone()));
    }

    /// Runs a call with the app's token; replays it once with a fresh token
    /// when Feishu says the token is invalid.
    pub fn with_token(
        &self,
        creds: &AppCreds,
        call: impl Fn(&Http, &str) -> Result<Reply, HttpError>,
    ) -> Result<Reply, ApiError> {
        for attempt in 0..2 {
            let token = self.tenant_token(creds)?;
            match check(call(&self.http, token.expose())) {
                Err(ApiError::Feishu { code, .. })
                    if attempt == 0 && TOKEN_INVALID.contains(&code) =>
                {
                    log::info!(
                        "[{}] tenant token rejected (code {code}); fetching a new one",
                        creds.app_id
                    );
                    self.forget_token(creds);
                }
                other => return other,
            }
        }
        unreachable!("the second attempt always returns")
    }

    /// Sends one message (`msg_type`, `content` JSON string) with an
    /// idempotency `uuid`; returns the new message's id. Feishu accepts one
    /// send per uuid within an hour, so a replay never posts twice.
    pub fn send(
        &self,
        creds: &AppCreds,
        dest: Destination,
        msg_type: &str,
        content: &str,
        uuid: &str,
    ) -> Result<String, ApiError> {
        if let Destination::Reply { message_id, .. } = &dest {
            path_id(message_id)?;
        }
        let (url, body) = match dest {
            Destination::Reply { message_id, in_thread } => (
                Self::url(creds, &format!("/open-apis/im/v1/messages/{message_id}/reply")),
                json!({ "msg_type": msg_type, "content": content, "reply_in_thread": in_thread, "uuid": uuid }),
            ),
            Destination::Chat { chat_id } => (
                Self::url(creds, "/open-apis/im/v1/messages?receive_id_type=chat_id"),
                json!({ "receive_id": chat_id, "msg_type": msg_type, "content": content, "uuid": uuid }),
            ),
        };
        let reply = self.with_token(creds, |http, token| http.post(&url, &body, Some(token)))?;
        Ok(data_str(&reply, "message_id"))
    }

    /// Replaces the content of a card the bot sent (`PATCH`).
    pub fn update_card(
        &self,
        creds: &AppCreds,
        message_id: &str,
        content: &str,
    ) -> Result<(), ApiError> {
        path_id(message_id)?;
        let url = Self::url(creds, &format!("/open-apis/im/v1/messages/{message_id}"));
        let body = json!({ "content": content });
        self.with_token(creds, |http, token| http.patch(&url, &body, token)).map(|_| ())
    }

    /// Adds an emoji reaction; returns its id.
    pub fn add_reaction(
        &self,
        creds: &AppCreds,
        message_id: &str,
        emoji: &str,
    ) -> Result<String, ApiError> {
        path_id(message_id)?;
        let url = Self::url(creds, &format!("/open-apis/im/v1/messages/{message_id}/reactions"));
        let body = json!({ "reaction_type": { "emoji_type": emoji } });
        let reply = self.with_token(creds, |http, token| http.post(&url, &body, Some(token)))?;
        Ok(data_str(&reply, "reaction_id"))
    }

    /// Removes a reaction the bot added.
    pub fn delete_reaction(
        &self,
        creds: &AppCreds,
        message_id: &str,
        reaction_id: &str,
    ) -> Result<(), ApiError> {
        path_id(message_id)?;
        path_id(reaction_id)?;
        let url = Self::url(
            creds,
            &format!("/open-apis/im/v1/messages/{message_id}/reactions/{reaction_id}"),
        );
        self.with_token(creds, |http, token| http.delete(&url, token)).map(|_| ())
    }

    /// The bot's own open_id and name (`GET /open-apis/bot/v3/info`).
    pub fn bot_info(&self, creds: &AppCreds) -> Result<BotInfo, ApiError> {
        let url = Self::url(creds, "/open-apis/bot/v3/info");
        let reply = self.with_token(creds, |http, token| http.get(&url, Some(token)))?;
        let bot =
            reply.body.get("bot").or_else(|| reply.body.get("data").and_then(|d| d.get("bot")));
        let field = |k: &str| {
            bot.and_then(|b| b.get(k)).and_then(Value::as_str).unwrap_or_default().to_owned()
        };
        let open_id = field("open_id");
        if open_id.is_empty() {
            return Err(ApiError::Feishu {
                status: reply.status,
                code: -1,
                msg: "bot info without open_id (is the bot capability enabled and published?)"
                    .into(),
                rate_limit_reset: None,
            });
        }
        Ok(BotInfo { open_id, name: field("app_name") })
    }
}

pub(super) fn data_str(reply: &Reply, key: &str) -> String {
    reply
        .body
        .get("data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Turns a reply with a non-zero code into an error.
fn check(reply: Result<Reply, HttpError>) -> Result<Reply, ApiError> {
    let reply = reply.map_err(ApiError::Http)?;
    if reply.code() == 0 && reply.status < 400 {
        return Ok(reply);
    }
    Err(ApiError::Feishu {
        status: reply.status,
        code: reply.code(),
        msg: reply.msg(),
        rate_limit_reset: reply.rate_limit_reset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by an independent fault harness (issue 11): ids went
    /// unvalidated into REST paths. Ids from Redis (reply and typing keys)
    /// and from Feishu are checked at the one place URLs are built.
    #[test]
    fn ids_that_would_change_the_url_are_not_sent() {
        let api = Api::new(Http::new(Duration::from_secs(1)));
        let creds = AppCreds {
            base_url: "http://127.0.0.1:9".into(),
            app_id: "cli_a".into(),
            app_secret: Secret::new("s".to_owned()),
        };
        for bad in ["om_1/../../chats", "om_1?x=1", "", "om 1", "om_\u{0}"] {
            let e = api.update_card(&creds, bad, "{}").unwrap_err();
            assert!(matches!(e, ApiError::InvalidId(_)), "{bad:?}: {e}");
            assert_eq!(e.failure(), Failure::Permanent);
            let e = api.delete_reaction(&creds, "om_1", bad).unwrap_err();
            assert!(matches!(e, ApiError::InvalidId(_)), "{bad:?}: {e}");
            let dest = Destination::Reply { message_id: bad, in_thread: false };
            assert!(matches!(
                api.send(&creds, dest, "text", "{}", "u"),
                Err(ApiError::InvalidId(_))
            ));
            assert!(matches!(api.add_reaction(&creds, bad, "OK"), Err(ApiError::InvalidId(_))));
        }
    }
}
