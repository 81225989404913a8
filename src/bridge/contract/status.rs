//! What the gateway reports (PROTOCOL.md "Status" and "Heartbeat"): a
//! channel's [`State`], the status key's JSON and the heartbeat's JSON.
use serde_json::json;

use super::VERSION;

/// A channel's reported state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Connected,
    Disconnected,
    Error,
    Disabled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Disconnected => "disconnected",
            State::Error => "error",
            State::Disabled => "disabled",
        }
    }
}

/// Everything in a status key.
pub struct Status<'a> {
    pub channel_id: &'a str,
    pub app_id: Option<&'a str>,
    pub state: State,
    pub since: u64,
    pub last_event_at: Option<u64>,
    /// `(code, message)`.
    pub last_error: Option<(&'a str, &'a str)>,
    pub instance_id: &'a str,
    pub now_ms: u64,
}

pub fn status_json(s: &Status) -> String {
    json!({
        "schema": "at.channel.status", "v": VERSION, "ts": s.now_ms,
        "channel_id": s.channel_id, "app_id": s.app_id,
        "state": s.state.as_str(), "since": s.since,
        "last_event_at": s.last_event_at,
        "last_error": s.last_error.map(|(code, message)| json!({"code": code, "message": message})),
        "instance_id": s.instance_id, "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string()
}

/// The heartbeat value of this instance.
pub fn heartbeat_json(
    instance_id: &str,
    pid: u32,
    started_at: u64,
    channels: &[&str],
    now_ms: u64,
) -> String {
    json!({
        "schema": "at.channel.gateway", "v": VERSION, "ts": now_ms,
        "instance_id": instance_id, "version": env!("CARGO_PKG_VERSION"),
        "pid": pid, "started_at": started_at, "channels": channels,
    })
    .to_string()
}
