//! Channel config entries (`at:channel:config:feishu`, PROTOCOL.md
//! "Channel configuration"): the JSON AskTable Server writes, parsed into a
//! [`ChannelConfig`], and the entry `channel put` writes.
use serde_json::{Value, json};

use super::{Invalid, VERSION, shown};
use crate::channel::{ChannelConfig, Domain, GroupPolicy, Routing, Secret};

/// A channel config entry as `channel put` writes it.
pub struct NewChannel<'a> {
    pub channel_id: &'a str,
    pub app_id: &'a str,
    pub app_secret: &'a str,
    pub encrypt_key: &'a str,
    pub verification_token: &'a str,
    pub agent_id: Option<&'a str>,
    pub project_id: Option<&'a str>,
    pub domain: &'a str,
    pub group_policy: &'a str,
    pub enabled: bool,
}

pub fn channel_config_json(c: &NewChannel, now_ms: u64) -> String {
    json!({
        "schema": "at.channel.config", "v": VERSION, "ts": now_ms,
        "channel_id": c.channel_id, "agent_id": c.agent_id, "project_id": c.project_id,
        "enabled": c.enabled, "app_id": c.app_id, "app_secret": c.app_secret,
        "encrypt_key": c.encrypt_key, "verification_token": c.verification_token,
        "domain": c.domain, "group_policy": c.group_policy,
    })
    .to_string()
}

/// Longest config entry accepted.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Longest App Secret, Encrypt Key or Verification Token accepted.
const MAX_SECRET: usize = 512;
/// Longest App ID (Feishu's are `cli_` and 16 hex digits).
const MAX_APP_ID: usize = 64;
/// Longest agent or project id, and domain URL.
const MAX_ID: usize = 128;
const MAX_DOMAIN: usize = 256;

/// The fields of a config object, read one by one so that an error names
/// the field and never shows its value (serde would quote it: a secret).
struct Fields<'a>(&'a serde_json::Map<String, Value>);

impl Fields<'_> {
    /// A string field, at most `max` bytes, without control characters.
    fn text(&self, name: &str, max: usize) -> Result<Option<String>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() > max => {
                Err(format!("{name} is longer than {max} bytes"))
            }
            Some(Value::String(s)) if s.chars().any(char::is_control) => {
                Err(format!("{name} holds control characters"))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{name} must be a string")),
        }
    }

    /// Text shown to users: may hold line breaks and tabs, no other
    /// control character.
    fn message(&self, name: &str, max: usize) -> Result<Option<String>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() > max => {
                Err(format!("{name} is longer than {max} bytes"))
            }
            Some(Value::String(s))
                if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
            {
                Err(format!("{name} holds control characters other than line breaks and tabs"))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{name} must be a string")),
        }
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("{name} must be true or false")),
        }
    }

    fn version(&self) -> Result<Option<i64>, String> {
        match self.0.get("v") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| "v must be a whole number".to_owned()),
        }
    }

    /// An id the server may send as a string or a number.
    fn id(&self, name: &str) -> Result<Option<String>, String> {
        match self.0.get(name) {
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            _ => Ok(self.text(name, MAX_ID)?.filter(|s| !s.is_empty())),
        }
    }
}

/// Parses one field of the config hash. Errors are operator-readable and
/// never contain a secret.
pub fn parse_channel_config(field: &str, raw: &[u8]) -> Result<ChannelConfig, Invalid> {
    parse(field, raw).map_err(Invalid)
}

/// Longest channel id accepted (it goes into key names, logs and a thread name).
const MAX_CHANNEL_ID: usize = 128;

/// The config hash's field name as the gateway handles it: the field
/// itself when it is UTF-8, else its bytes escaped (`\xff`), which
/// [`parse_channel_config`] then rejects, so one bad field affects only
/// its own entry.
pub fn field_name(field: &[u8]) -> String {
    match std::str::from_utf8(field) {
        Ok(s) => s.to_owned(),
        Err(_) => field.escape_ascii().to_string(),
    }
}

/// Whether a channel id is usable: 1 to [`MAX_CHANNEL_ID`] bytes, no
/// control character, no white space, no backslash.
pub(super) fn check_channel_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_CHANNEL_ID {
        return Err(format!("channel id must be 1 to {MAX_CHANNEL_ID} bytes long"));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        let shown = shown(id);
        return Err(format!(
            "channel id \"{shown}\" is not UTF-8 or holds control characters, white space or a backslash"
        ));
    }
    Ok(())
}

/// Longest `welcome_message` (bytes of UTF-8): one message's worth.
const MAX_WELCOME: usize = 4096;

fn parse(field: &str, raw: &[u8]) -> Result<ChannelConfig, String> {
    check_channel_id(field)?;
    if raw.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "config is {} bytes, over the {MAX_CONFIG_BYTES} byte limit",
            raw.len()
        ));
    }
    let text = std::str::from_utf8(raw).map_err(|_| "config is not UTF-8".to_owned())?;
    // Syntax errors name a line and column, never a value.
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!("config is not valid JSON (line {}, column {})", e.line(), e.column())
    })?;
    let Value::Object(map) = &value else {
        return Err("config is not a JSON object".into());
    };
    let f = Fields(map);
    if let Some(schema) = f.text("schema", MAX_ID)?.filter(|s| s != "at.channel.config") {
        let schema = shown(&schema);
        return Err(format!("unknown schema \"{schema}\" (expected \"at.channel.config\")"));
    }
    if let Some(v) = f.version()?.filter(|v| *v != VERSION) {
        return Err(format!(
            "unsupported contract version v={v} (this gateway speaks v={VERSION})"
        ));
    }
    let channel_id = f.text("channel_id", MAX_ID)?.unwrap_or_else(|| field.to_owned());
    if channel_id != field {
        let (ours, theirs) = (shown(&channel_id), shown(field));
        return Err(format!("channel_id \"{ours}\" differs from its hash field \"{theirs}\""));
    }
    let required = |v: Option<String>, name: &str| match v.map(|s| s.trim().to_owned()) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("{name} is missing or empty")),
    };
    let app_id = required(f.text("app_id", MAX_APP_ID)?, "app_id")?;
    if !app_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err("app_id holds characters other than ASCII letters, digits, '_' and '-'".into());
    }
    let app_secret = required(f.text("app_secret", MAX_SECRET)?, "app_secret")?;
    let encrypt_key = f.text("encrypt_key", MAX_SECRET)?.unwrap_or_default();
    let verification_token = f.text("verification_token", MAX_SECRET)?.unwrap_or_default();
    let domain_field = f.text("domain", MAX_DOMAIN)?;
    let group_policy_field = f.text("group_policy", MAX_ID)?;
    let domain = match domain_field.as_deref().map(str::trim) {
        None | Some("") | Some("feishu") => Domain::Feishu,
        Some("lark") => Domain::Lark,
        Some(url) if url.starts_with("https://") && url.len() > "https://".len() => {
            Domain::Custom(url.trim_end_matches('/').to_owned())
        }
        Some(other) => {
            let other = shown(other);
            return Err(format!(
                "domain \"{other}\" is not \"feishu\", \"lark\" or an https:// base URL"
            ));
        }
    };
    let group_policy = match group_policy_field.as_deref() {
        None | Some("") | Some("mention") => GroupPolicy::Mention,
        Some("all") => GroupPolicy::All,
        Some(other) => {
            let other = shown(other);
            return Err(format!("group_policy \"{other}\" is not \"mention\" or \"all\""));
        }
    };
    Ok(ChannelConfig {
        channel_id,
        enabled: f.flag("enabled")?.unwrap_or(true),
        app_id,
        app_secret: Secret::new(app_secret),
        encrypt_key: Secret::new(encrypt_key),
        verification_token: Secret::new(verification_token),
        domain,
        routing: Routing {
            agent_id: f.id("agent_id")?,
            project_id: f.id("project_id")?,
            group_policy,
            welcome: f.message("welcome_message", MAX_WELCOME)?.filter(|w| !w.trim().is_empty()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<ChannelConfig, String> {
        parse_channel_config("ch_1", json.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = cfg(r#"{"app_id":"cli_a","app_secret":"s"}"#).unwrap();
        assert!(c.enabled);
        assert_eq!(c.channel_id, "ch_1");
        assert_eq!(c.domain, Domain::Feishu);
        assert_eq!(c.routing.group_policy, GroupPolicy::Mention);
        assert!(c.encrypt_key.is_empty());
    }

    #[test]
    fn full_config() {
        let c = cfg(r#"{"schema":"at.channel.config","v":1,"ts":1,"channel_id":"ch_1","agent_id":"ag","project_id":7,
            "enabled":false,"app_id":"cli_a","app_secret":"s","encrypt_key":"e","verification_token":"t",
            "domain":"https://open.example.com/","group_policy":"all","extra":"ignored"}"#)
        .unwrap();
        assert!(!c.enabled);
        assert_eq!(c.domain, Domain::Custom("https://open.example.com".into()));
        assert_eq!(c.routing.project_id.as_deref(), Some("7"));
        assert_eq!(c.routing.group_policy, GroupPolicy::All);
        assert_eq!(c.routing.welcome, None);
        let w =
            cfg(r#"{"app_id":"a","app_secret":"s","welcome_message":"你好！\n问我数据"}"#).unwrap();
        assert_eq!(w.routing.welcome.as_deref(), Some("你好！\n问我数据"));
        let blank = cfg(r#"{"app_id":"a","app_secret":"s","welcome_message":"  "}"#).unwrap();
        assert_eq!(blank.routing.welcome, None, "blank is no welcome");
        let bad = cfg(r#"{"app_id":"a","app_secret":"s","welcome_message":"x\u0007"}"#);
        assert!(bad.unwrap_err().contains("welcome_message holds control characters"));
        let bad = cfg(r#"{"app_id":"a","app_secret":"s","welcome_message":5}"#);
        assert!(bad.unwrap_err().contains("welcome_message must be a string"));
        assert_eq!(
            cfg(r#"{"app_id":"a","app_secret":"s","domain":"lark"}"#).unwrap().domain,
            Domain::Lark
        );
    }

    #[test]
    fn bad_configs_say_what_is_wrong_without_secrets() {
        let cases = [
            (r#"{"app_id":"a""#, "not valid JSON"),
            (r#"{"app_id":"a"}"#, "app_secret is missing"),
            (r#"{"app_id":" ","app_secret":"topsecret"}"#, "app_id is missing"),
            (r#"{"app_id":"a","app_secret":"topsecret","v":2}"#, "v=2"),
            (r#"{"app_id":"a","app_secret":"topsecret","schema":"x"}"#, "unknown schema"),
            (r#"{"app_id":"a","app_secret":"topsecret","channel_id":"ch_2"}"#, "differs"),
            (r#"{"app_id":"a","app_secret":"topsecret","domain":"http://x"}"#, "domain"),
            (r#"{"app_id":"a","app_secret":"topsecret","group_policy":"some"}"#, "group_policy"),
            (r#"{"app_id":"a","app_secret":"topsecret","agent_id":[1]}"#, "agent_id"),
            (r#"{"app_id":5,"app_secret":"topsecret"}"#, "app_id must be a string"),
            // Found by an independent fault harness (issue 11): a field of
            // the wrong type echoed its value (a secret) into errors.
            (r#"{"app_id":"a","app_secret":"s","enabled":"topsecret"}"#, "enabled must be"),
            (
                r#"{"app_id":"a","app_secret":"s","encrypt_key":["topsecret"]}"#,
                "encrypt_key must be a string",
            ),
            (r#"{"app_id":"a","app_secret":"s","v":"topsecret"}"#, "v must be"),
            (
                r#"{"app_id":"a","app_secret":"s","verification_token":{"x":"topsecret"}}"#,
                "must be a string",
            ),
            (r#"{"app_id":"a","app_secret":"topsecret\u0001"}"#, "control characters"),
            (r#"{"app_id":"a/b","app_secret":"topsecret"}"#, "app_id holds"),
            (r#"["topsecret"]"#, "not a JSON object"),
            (r#"{"app_id":"a","app_secret":topsecret}"#, "line 1, column"),
        ];
        for (json, want) in cases {
            let err = cfg(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
            assert!(!err.contains("topsecret"), "{err}");
        }
        assert_eq!(
            parse_channel_config("c", &[0xff]).unwrap_err().to_string(),
            "config is not UTF-8"
        );
    }

    /// Found by an independent fault harness (issue 11): no value had a
    /// size cap (a 1 MB app_id made 1 MB log lines and status keys).
    #[test]
    fn every_value_has_a_size_cap() {
        let with = |field: &str, len: usize| {
            let mut v = serde_json::json!({"app_id": "a", "app_secret": "s"});
            v[field] = Value::String("x".repeat(len));
            cfg(&v.to_string())
        };
        for (field, max) in [
            ("app_id", 64),
            ("app_secret", 512),
            ("encrypt_key", 512),
            ("verification_token", 512),
            ("agent_id", 128),
            ("project_id", 128),
        ] {
            assert!(with(field, max).is_ok(), "{field} at {max}");
            let e = with(field, max + 1).unwrap_err();
            assert!(e.contains(field) && e.contains("longer than"), "{e}");
            assert!(e.len() < 100, "{e}");
        }
        let huge =
            format!(r#"{{"app_id":"a","app_secret":"s","x":"{}"}}"#, "y".repeat(MAX_CONFIG_BYTES));
        assert!(cfg(&huge).unwrap_err().contains("byte limit"));
    }

    #[test]
    fn unusable_channel_ids_reject_only_their_entry() {
        let ok = br#"{"app_id":"a","app_secret":"s"}"#;
        assert_eq!(field_name(b"ch_1"), "ch_1");
        assert_eq!(field_name(b"ch\xff1"), "ch\\xff1");
        for (field, want) in [
            (field_name(b"ch\xff1"), "not UTF-8"),
            ("ch\0nul".to_owned(), "control characters"),
            ("ch 1".to_owned(), "white space"),
            (String::new(), "1 to 128 bytes"),
            ("x".repeat(129), "1 to 128 bytes"),
        ] {
            let e = parse_channel_config(&field, ok).unwrap_err().to_string();
            assert!(e.contains(want), "{field:?}: {e}");
            assert!(!e.contains('\0') && e.len() < 300, "{e:?}");
        }
        assert!(parse_channel_config(&"x".repeat(128), ok).is_ok());
    }
}
