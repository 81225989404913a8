//! The diagnostics APIs `check` uses (shared/feishu-protocol.md §14): the
//! tenant's grant status of the app's scopes, the app's own info (version,
//! event subscription), and whether the bot is in a chat. Scopes are judged
//! per capability ("any of these scopes"), because scope names drift.

use serde_json::Value;

use super::api::{Api, ApiError, AppCreds, path_id};

/// What the gateway needs from the app, and the scopes that give it.
pub struct Capability {
    pub name: &'static str,
    pub any_of: &'static [&'static str],
}

/// Every capability `check` looks at (the typing reaction only when
/// `TYPING_REACTION` is on).
pub const CAPABILITIES: &[Capability] = &[
    Capability {
        name: "receive one-on-one messages",
        any_of: &["im:message.p2p_msg:readonly", "im:message.p2p_msg", "im:message"],
    },
    Capability {
        name: "receive group @-messages",
        any_of: &[
            "im:message.group_at_msg:readonly",
            "im:message.group_at_msg",
            "im:message.group_msg",
            "im:message",
        ],
    },
    Capability {
        name: "reply as the bot",
        any_of: &["im:message:send_as_bot", "im:message:send", "im:message"],
    },
    Capability { name: "update answer cards", any_of: &["im:message:update", "im:message"] },
];

/// The typing reaction's capability.
pub const REACTIONS: Capability = Capability {
    name: "typing reaction",
    any_of: &["im:message.reactions:write_only", "im:message.reactions", "im:message"],
};

/// The scope CardKit streaming needs.
pub const CARDKIT: &str = "cardkit:card:write";

/// The scope that lets `check` read the app's own info.
pub const SELF_MANAGE: &str = "application:application:self_manage";

/// A capability's state in the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Granted,
    /// The app asks for a scope that gives it; the tenant has not granted it.
    Requested,
    NotRequested,
}

/// Judges a capability from the tenant's scopes `(name, granted)`.
pub fn grant(cap: &Capability, scopes: &[(String, bool)]) -> Grant {
    let listed = |s: &&(String, bool)| cap.any_of.contains(&s.0.as_str());
    if scopes.iter().filter(listed).any(|s| s.1) {
        Grant::Granted
    } else if scopes.iter().any(|s| listed(&s)) {
        Grant::Requested
    } else {
        Grant::NotRequested
    }
}

/// The developer console page that grants `scope` to the app.
pub fn grant_link(base_url: &str, app_id: &str, scope: &str) -> String {
    let console = if base_url.contains("larksuite") {
        "https://open.larksuite.com"
    } else if base_url.contains("open.feishu.cn") {
        "https://open.feishu.cn"
    } else {
        base_url.trim_end_matches('/')
    };
    format!("{console}/app/{app_id}/auth?q={scope}&token_type=tenant")
}

/// The app's info as `check` uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppInfo {
    pub online_version: String,
    /// A version submitted and not yet published.
    pub unpublished_version: String,
    pub subscription_type: String,
    pub request_url: String,
    pub events: Vec<String>,
}

impl AppInfo {
    /// Events come through the long connection (not a request URL).
    pub fn long_connection(&self) -> bool {
        self.request_url.is_empty()
            && !self.subscription_type.to_ascii_lowercase().contains("webhook")
    }
}

fn data(reply: &super::http::Reply) -> &Value {
    reply.body.get("data").unwrap_or(&Value::Null)
}

/// The tenant's grant status of the app's scopes: `(scope, granted)`.
pub fn scopes(api: &Api, creds: &AppCreds) -> Result<Vec<(String, bool)>, ApiError> {
    let url = format!("{}/open-apis/application/v6/scopes", creds.base_url.trim_end_matches('/'));
    let reply = api.with_token(creds, |http, token| http.get(&url, Some(token)))?;
    Ok(data(&reply)["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some((s["scope_name"].as_str()?.to_owned(), s["grant_status"].as_i64() == Some(1)))
        })
        .collect())
}

/// The app's own info (needs [`SELF_MANAGE`]).
pub fn app_info(api: &Api, creds: &AppCreds) -> Result<AppInfo, ApiError> {
    path_id(&creds.app_id)?;
    let url = format!(
        "{}/open-apis/application/v6/applications/{}?lang=zh_cn",
        creds.base_url.trim_end_matches('/'),
        creds.app_id
    );
    let reply = api.with_token(creds, |http, token| http.get(&url, Some(token)))?;
    let app = &data(&reply)["app"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Ok(AppInfo {
        online_version: s(&app["online_version_id"]),
        unpublished_version: s(&app["unaudit_version_id"]),
        subscription_type: s(&app["event"]["subscription_type"]),
        request_url: s(&app["event"]["request_url"]),
        events: app["event"]["subscribed_events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect(),
    })
}

/// Whether the bot is a member of `chat_id`.
pub fn is_in_chat(api: &Api, creds: &AppCreds, chat_id: &str) -> Result<bool, ApiError> {
    path_id(chat_id)?;
    let url = format!(
        "{}/open-apis/im/v1/chats/{chat_id}/members/is_in_chat",
        creds.base_url.trim_end_matches('/')
    );
    let reply = api.with_token(creds, |http, token| http.get(&url, Some(token)))?;
    Ok(data(&reply)["is_in_chat"].as_bool().unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_any_of_their_scopes() {
        let cap = &CAPABILITIES[1];
        let s = |v: &[(&str, bool)]| v.iter().map(|(n, g)| (n.to_string(), *g)).collect::<Vec<_>>();
        assert_eq!(grant(cap, &s(&[("im:message.group_msg", true)])), Grant::Granted);
        assert_eq!(
            grant(cap, &s(&[("im:message.group_at_msg:readonly", false), ("im:message", true)])),
            Grant::Granted
        );
        assert_eq!(
            grant(cap, &s(&[("im:message.group_at_msg:readonly", false)])),
            Grant::Requested
        );
        assert_eq!(grant(cap, &s(&[("im:chat", true)])), Grant::NotRequested);
    }

    #[test]
    fn grant_links_point_at_the_right_console() {
        assert_eq!(
            grant_link("https://open.feishu.cn", "cli_a", "im:message"),
            "https://open.feishu.cn/app/cli_a/auth?q=im:message&token_type=tenant"
        );
        assert!(
            grant_link("https://open.larksuite.com", "cli_a", "x")
                .starts_with("https://open.larksuite.com/app/")
        );
    }
}
