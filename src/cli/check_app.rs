//! `check`'s lines for one channel's Feishu app: credentials (tenant
//! token), the long connection's endpoint, the bot, the app's permissions
//! per capability, its version and event subscription, and with `--chat`
//! whether the bot is in that chat. A failure that everything after it
//! depends on (Feishu unreachable, wrong credentials) is reported once and
//! the rest is skipped, not failed with wrong hints.

use std::collections::HashMap;

use crate::bridge::contract;
use crate::channel::{ChannelConfig, GroupPolicy};
use crate::feishu::api::{Api, ApiError, AppCreds};
use crate::feishu::diag::{self, Grant};
use crate::feishu::endpoint::{self, ConnectError};
use crate::feishu::http::{Http, HttpError};

/// A line's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Ok,
    Fail,
    /// Not verified (it depends on something that failed, or needs a scope).
    Skip,
}

/// One line of the `check` report.
pub struct Line {
    pub mark: Mark,
    pub what: String,
    pub detail: String,
    pub hint: String,
}

impl Line {
    pub fn ok(what: impl Into<String>, detail: impl Into<String>) -> Line {
        Line { mark: Mark::Ok, what: what.into(), detail: detail.into(), hint: String::new() }
    }
    pub fn fail(
        what: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Line {
        Line { mark: Mark::Fail, what: what.into(), detail: detail.into(), hint: hint.into() }
    }
    pub fn skip(what: impl Into<String>, detail: impl Into<String>) -> Line {
        Line { mark: Mark::Skip, what: what.into(), detail: detail.into(), hint: String::new() }
    }
    pub fn of(ok: bool, what: &str, detail: String, hint: &str) -> Line {
        if ok { Line::ok(what, detail) } else { Line::fail(what, detail, hint) }
    }
}

/// What the per-channel checks share.
pub struct AppCheck<'a> {
    pub api: &'a Api,
    pub http: &'a Http,
    /// Base URLs found unreachable, with the error (reported once).
    pub unreachable: HashMap<String, String>,
    pub typing: bool,
    pub chat: Option<String>,
    /// `CARDKIT_STREAMING`.
    pub cardkit: bool,
    /// Why the gateway stopped streaming for this app, if it did (Redis).
    pub cardkit_off: Option<String>,
}

fn console_hint(e: &str) -> &'static str {
    if e.contains("certificate verify failed") {
        "set SSL_CERT_FILE=/path/to/ca-bundle.pem in the gateway's environment when a proxy re-signs TLS; else check the clock"
    } else {
        "check outbound HTTPS from this host to Feishu (HTTPS_PROXY, firewall, DNS)"
    }
}

impl AppCheck<'_> {
    /// Appends the lines of channel `id`.
    pub fn lines(&mut self, out: &mut Vec<Line>, id: &str, c: &ChannelConfig, base: String) {
        let what = |w: &str| format!("{id}: {w}");
        if let Some(e) = self.unreachable.get(&base) {
            out.push(Line::skip(
                what("feishu app"),
                format!("not checked: {base} is unreachable ({e}), see above"),
            ));
            return;
        }
        let creds = AppCreds {
            base_url: base.clone(),
            app_id: c.app_id.clone(),
            app_secret: c.app_secret.clone(),
        };
        // 1. Credentials: everything else needs a token.
        match self.api.tenant_token(&creds) {
            Ok(_) => out.push(Line::ok(
                what("credentials"),
                format!("App ID {} and App Secret accepted (tenant token obtained)", c.app_id),
            )),
            Err(ApiError::Http(HttpError::Transport(e))) => {
                out.push(Line::fail(
                    "feishu",
                    format!("cannot reach {base}: {e}"),
                    console_hint(&e),
                ));
                out.push(Line::skip(
                    what("feishu app"),
                    "not checked: Feishu is unreachable (above)",
                ));
                self.unreachable.insert(base, e);
                return;
            }
            Err(e) => {
                out.push(Line::fail(
                    what("credentials"),
                    e.to_string(),
                    "App ID or App Secret is wrong: copy both from the developer console (Credentials & Basic Info) into AskTable, save, then `status`",
                ));
                out.push(Line::skip(what("feishu app"), "not checked: needs valid credentials"));
                return;
            }
        }
        // 2. The long connection's endpoint.
        match endpoint::fetch(self.http, &base, &c.app_id, c.app_secret.expose()) {
            Ok(ep) => out.push(Line::ok(
                what("long connection"),
                format!("endpoint OK ({})", endpoint::safe_url(&ep.url)),
            )),
            Err(e) => {
                let hint = match &e {
                    ConnectError::Untrusted(m) | ConnectError::Network(m) => console_hint(m),
                    e if e.needs_operator() => {
                        "in the developer console: Events & Callbacks → 'Receive events through persistent connection', then publish a new app version"
                    }
                    _ => {
                        "Feishu refused for now; retry, and see `journalctl -u asktable-feishu-gateway`"
                    }
                };
                out.push(Line::fail(what("long connection"), e.to_string(), hint));
            }
        }
        // 3. The bot.
        match self.api.bot_info(&creds) {
            Ok(bot) => {
                out.push(Line::ok(what("bot"), format!("\"{}\" ({})", bot.name, bot.open_id)))
            }
            Err(e) => out.push(Line::fail(
                what("bot"),
                e.to_string(),
                "developer console → Features → Bot: enable it, then publish a new app version",
            )),
        }
        // 4. Permissions, per capability.
        let scopes = match diag::scopes(self.api, &creds) {
            Ok(s) => s,
            Err(e) if e.code() == 212_100 => {
                out.push(Line::fail(
                    what("availability"),
                    "the app is not installed in this organisation (212100)",
                    "developer console → Version Management & Release: set the availability to cover the users who ask, publish, and have the tenant admin approve it",
                ));
                return;
            }
            Err(e) => {
                out.push(Line::fail(
                    what("permissions"),
                    format!("cannot read the app's scopes: {e}"),
                    "retry; see the error",
                ));
                return;
            }
        };
        let mut caps: Vec<&diag::Capability> = diag::CAPABILITIES.iter().collect();
        if self.typing {
            caps.push(&diag::REACTIONS);
        }
        for cap in caps {
            let scope = cap.any_of[0];
            let link = diag::grant_link(&base, &c.app_id, scope);
            out.push(match diag::grant(cap, &scopes) {
                Grant::Granted => Line::ok(what(cap.name), "granted"),
                Grant::Requested => Line::fail(
                    what(cap.name),
                    "requested but not granted by the organisation",
                    format!("publish the app version that requests it and have the tenant admin approve it: {link}"),
                ),
                Grant::NotRequested => Line::fail(
                    what(cap.name),
                    format!("not requested (needs one of {})", cap.any_of.join(", ")),
                    format!("add {scope} at {link}, then publish a new app version"),
                ),
            });
        }
        out.push(self.streaming_line(&what("stream answers"), &base, &c.app_id, &scopes));
        // 5. Version and events, when the app may read its own info.
        let self_manage = scopes
            .iter()
            .any(|(s, g)| *g && (s == diag::SELF_MANAGE || s == "admin:app.info:readonly"));
        if !self_manage {
            out.push(Line::skip(
                what("version and events"),
                format!(
                    "not verified: whether a new app version awaits publishing, whether im.message.receive_v1 is subscribed and arrives through the long connection. To check them, grant {} ({})",
                    diag::SELF_MANAGE,
                    diag::grant_link(&base, &c.app_id, diag::SELF_MANAGE)
                ),
            ));
        } else {
            match diag::app_info(self.api, &creds) {
                Ok(info) => self.version_lines(out, id, &info),
                Err(e) => out.push(Line::fail(
                    what("version and events"),
                    format!("cannot read the app's info: {e}"),
                    "retry; see the error",
                )),
            }
        }
        // 6. One chat, when asked.
        if let Some(chat) = self.chat.clone() {
            out.push(self.chat_line(id, c, &creds, &chat));
        }
    }

    /// Streaming into CardKit cards: a missing scope is not a failure
    /// (progress then updates a message card), but it is said.
    fn streaming_line(&self, what: &str, base: &str, app: &str, scopes: &[(String, bool)]) -> Line {
        let link = diag::grant_link(base, app, diag::CARDKIT);
        let granted = scopes.iter().any(|(s, g)| *g && s == diag::CARDKIT);
        match (&self.cardkit_off, granted) {
            _ if !self.cardkit => Line::skip(
                what,
                "CARDKIT_STREAMING=off: progress answers update a message card about once a second",
            ),
            (Some(why), _) => Line::skip(
                what,
                format!(
                    "the gateway stopped streaming for this app ({why}); progress answers update a message card until it tries again (within {} min)",
                    contract::CARDKIT_OFF_TTL / 60
                ),
            ),
            (None, true) => Line::ok(what, "progress answers stream into CardKit cards"),
            (None, false) => Line::skip(
                what,
                format!(
                    "{} not granted: progress answers update a message card about once a second instead of typing out; to stream, add it at {link} and publish a new app version",
                    diag::CARDKIT
                ),
            ),
        }
    }

    fn version_lines(&self, out: &mut Vec<Line>, id: &str, info: &diag::AppInfo) {
        let what = |w: &str| format!("{id}: {w}");
        out.push(if info.unpublished_version.is_empty() {
            Line::ok(what("app version"), format!("published ({})", if info.online_version.is_empty() { "?" } else { &info.online_version }))
        } else {
            Line::fail(
                what("app version"),
                format!("version {} is waiting to be published or approved: its changes (permissions, events) are not in effect", info.unpublished_version),
                "developer console → Version Management & Release: publish it, and have the tenant admin approve it",
            )
        });
        let subscribed = info.events.iter().any(|e| e == "im.message.receive_v1");
        out.push(if !subscribed {
            Line::fail(
                what("events"),
                "im.message.receive_v1 is not subscribed: Feishu sends no messages",
                "developer console → Events & Callbacks → Add events → Receive messages (im.message.receive_v1), then publish a new version",
            )
        } else if !info.long_connection() {
            Line::fail(
                what("events"),
                format!("events go to a request URL ({}), not to the long connection", info.request_url),
                "developer console → Events & Callbacks → Subscription mode: 'Receive events through persistent connection', then publish",
            )
        } else {
            Line::ok(what("events"), "im.message.receive_v1 through the long connection")
        });
    }

    fn chat_line(&self, id: &str, c: &ChannelConfig, creds: &AppCreds, chat: &str) -> Line {
        let what = format!("{id}: chat {chat}");
        let policy = match c.routing.group_policy {
            GroupPolicy::Mention => {
                "group_policy mention: only messages that @-mention the bot are answered"
            }
            GroupPolicy::All => {
                "group_policy all: every message there is answered (Feishu sends them only with the im:message.group_msg scope)"
            }
        };
        match diag::is_in_chat(self.api, creds, chat) {
            Ok(true) => Line::ok(what, format!("the bot is in this chat; {policy}")),
            Ok(false) => Line::fail(
                what,
                "the bot is not in this chat: nothing said there reaches the gateway",
                "group settings → Group bots → Add bot; also check the group allows bots to receive messages",
            ),
            Err(e) if e.code() == 99_991_672 => Line::skip(
                what,
                format!(
                    "not verified: needs im:chat:readonly ({}); {policy}",
                    diag::grant_link(&creds.base_url, &c.app_id, "im:chat:readonly")
                ),
            ),
            Err(e) => Line::fail(what, e.to_string(), "is the chat id right (oc_…)?"),
        }
    }
}

impl Mark {
    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Ok => "✔",
            Mark::Fail => "✘",
            Mark::Skip => "·",
        }
    }
}
