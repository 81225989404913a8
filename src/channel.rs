//! What the gateway knows about one configured channel (one Feishu bot app).
//!
//! These are plain values: parsing them from Redis JSON lives in
//! `bridge::contract`, using them lives in `feishu` and `supervisor`.

use std::fmt;

/// A secret string. Its `Debug` and `Display` never show the value, so a
/// secret cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Which Feishu Open Platform a channel's app lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    /// https://open.feishu.cn
    Feishu,
    /// https://open.larksuite.com
    Lark,
    /// A private deployment's absolute `https://` base URL (no trailing slash).
    Custom(String),
}

impl Domain {
    pub fn base_url(&self) -> &str {
        match self {
            Domain::Feishu => "https://open.feishu.cn",
            Domain::Lark => "https://open.larksuite.com",
            Domain::Custom(url) => url,
        }
    }
}

/// Which group messages are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPolicy {
    /// Only group messages that @-mention the bot.
    Mention,
    /// Every group message the app receives.
    All,
}

/// The parts of a channel that may change without reconnecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub agent_id: Option<String>,
    pub project_id: Option<String>,
    pub group_policy: GroupPolicy,
    /// `welcome_message`: sent when the bot is added to a group or a user
    /// first opens the one-on-one chat (`None`: no welcome).
    pub welcome: Option<String>,
}

/// One channel as configured by AskTable Server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    pub channel_id: String,
    pub enabled: bool,
    pub app_id: String,
    pub app_secret: Secret,
    pub encrypt_key: Secret,
    pub verification_token: Secret,
    pub domain: Domain,
    pub routing: Routing,
}

impl ChannelConfig {
    /// True when a change from `self` to `other` needs a new connection
    /// (credentials, keys or domain changed).
    pub fn needs_reconnect(&self, other: &ChannelConfig) -> bool {
        self.app_id != other.app_id
            || self.app_secret != other.app_secret
            || self.encrypt_key != other.encrypt_key
            || self.verification_token != other.verification_token
            || self.domain != other.domain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "\"***\" \"***\"");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }
}
