//! What the Feishu developer console and the tenant admin decide, as the
//! diagnostics APIs report it (shared/feishu-protocol.md §14): the app's
//! scopes and their grant status (`GET /open-apis/application/v6/scopes`),
//! the app's own info (`GET /open-apis/application/v6/applications/:id`,
//! which needs `application:application:self_manage`), and the chats the
//! bot is in (`GET /open-apis/im/v1/chats/:chat_id/members/is_in_chat`).
//! Tests set these to produce each misconfiguration of the guide.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

/// A scope's grant status as the tenant sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Granted,
    /// Requested by the app, not (yet) granted by the tenant.
    Requested,
}

/// The scopes a well set-up AskTable bot has.
pub const DEFAULT_SCOPES: &[&str] = &[
    "im:message.p2p_msg:readonly",
    "im:message.group_at_msg:readonly",
    "im:message:send_as_bot",
    "im:message:update",
    "im:message.reactions:write_only",
    "im:chat:readonly",
    "application:application:self_manage",
    "cardkit:card:write",
];

/// One app's console settings.
#[derive(Debug, Clone)]
pub struct Console {
    pub scopes: BTreeMap<String, Grant>,
    /// `false`: the app is not installed in the tenant (code 212100).
    pub installed: bool,
    /// A version submitted and not yet approved/published.
    pub unpublished_version: Option<String>,
    pub online_version: Option<String>,
    pub subscribed_events: Vec<String>,
    /// Events through the long connection (`false`: a request URL).
    pub long_connection: bool,
    pub chats: HashSet<String>,
}

impl Default for Console {
    fn default() -> Console {
        Console {
            scopes: DEFAULT_SCOPES.iter().map(|s| (s.to_string(), Grant::Granted)).collect(),
            installed: true,
            unpublished_version: None,
            online_version: Some("oav_1".into()),
            subscribed_events: vec!["im.message.receive_v1".into()],
            long_connection: true,
            chats: HashSet::new(),
        }
    }
}

impl Console {
    pub(crate) fn granted(&self, scope: &str) -> bool {
        self.scopes.get(scope) == Some(&Grant::Granted)
    }

    /// `GET /open-apis/application/v6/scopes`.
    pub(crate) fn scopes_reply(&self) -> Value {
        if !self.installed {
            return json!({"code": 212100, "msg": "app is not installed in this tenant"});
        }
        let scopes: Vec<Value> = self
            .scopes
            .iter()
            .map(|(name, g)| {
                json!({"scope_name": name, "scope_type": "tenant",
                       "grant_status": if *g == Grant::Granted { 1 } else { 2 }})
            })
            .collect();
        json!({"code": 0, "msg": "success", "data": {"scopes": scopes}})
    }

    /// `GET /open-apis/application/v6/applications/:app_id`.
    pub(crate) fn app_reply(&self, app_id: &str) -> Value {
        if !self.granted("application:application:self_manage")
            && !self.granted("admin:app.info:readonly")
        {
            return json!({"code": 99991672, "msg": format!(
                "Access denied. One of the following scopes is required: [application:application:self_manage, admin:app.info:readonly]. https://open.feishu.cn/app/{app_id}/auth?q=application:application:self_manage&op_from=openapi&token_type=tenant")});
        }
        json!({"code": 0, "msg": "success", "data": {"app": {
            "app_id": app_id, "status": 1,
            "online_version_id": self.online_version.clone().unwrap_or_default(),
            "unaudit_version_id": self.unpublished_version.clone().unwrap_or_default(),
            "event": {
                "subscription_type": if self.long_connection { "websocket" } else { "webhook" },
                "request_url": if self.long_connection { "" } else { "https://example.invalid/feishu/events" },
                "subscribed_events": self.subscribed_events,
            },
        }}})
    }

    /// `GET /open-apis/im/v1/chats/:chat_id/members/is_in_chat`.
    pub(crate) fn in_chat_reply(&self, chat_id: &str) -> Value {
        if !self.granted("im:chat:readonly") && !self.granted("im:chat") {
            return json!({"code": 99991672, "msg": "Access denied. One of the following scopes is required: [im:chat, im:chat:readonly]"});
        }
        json!({"code": 0, "msg": "success", "data": {"is_in_chat": self.chats.contains(chat_id)}})
    }
}
