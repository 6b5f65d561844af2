//! The Telegram Bot API, as the bot uses it: the methods it calls, the objects it reads, and
//! the one place the token goes into a URL. [`BotApi`]'s `Debug` and `Display` show the
//! server, never the token; an [`ApiError`] never holds a URL, and its text is scrubbed of
//! the token before it is made.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// The server Telegram runs (`--telegram-api-url`'s default).
pub const CLOUD_API: &str = "https://api.telegram.org";
/// The largest file the cloud Bot API hands to bots.
pub const CLOUD_MAX_FILE: u64 = 20 * 1024 * 1024;
/// How long `getUpdates` waits for an update before answering empty.
pub const POLL_TIMEOUT_S: u64 = 50;
/// Longest message text.
pub const MAX_TEXT: usize = 4096;

/// A bot token: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token as BotFather gives it (`123456:ABC-...`); anything else is refused, with a
    /// message that does not repeat it.
    pub fn parse(s: &str) -> Result<Token, &'static str> {
        let s = s.trim();
        let (id, secret) = s
            .split_once(':')
            .ok_or("a bot token looks like 123456789:AA... (the id, a colon, the secret)")?;
        let ok = !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && secret.len() >= 8
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Token(s.to_string()))
        } else {
            Err("a bot token looks like 123456789:AA... (digits, a colon, then letters, digits, '_' and '-')")
        }
    }

    /// The bot's numeric id, the part before the colon (public: it is the bot's user id).
    pub fn bot_id(&self) -> &str {
        self.0.split(':').next().unwrap_or("")
    }

    /// Remove the token from a text (an error that might quote a URL).
    pub fn scrub(&self, text: &str) -> String {
        text.replace(&self.0, "<token>")
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a call failed. Holds no URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// No answer: the server could not be reached, or the connection broke.
    #[error("the Telegram Bot API could not be reached ({method}): {detail}")]
    Transport {
        method: &'static str,
        detail: String,
    },
    /// The server answered `ok: false`.
    #[error("the Telegram Bot API refused {method}: {code} {description}")]
    Refused {
        method: &'static str,
        code: u16,
        description: String,
        /// Seconds to wait (on 429).
        retry_after: Option<u64>,
    },
    /// An answer that does not read as the documented object.
    #[error("the Telegram Bot API's answer to {method} does not read: {detail}")]
    Decode {
        method: &'static str,
        detail: String,
    },
    /// A download over the byte cap.
    #[error("the file is larger than {max} bytes")]
    TooLarge { max: u64 },
}

impl ApiError {
    /// Seconds Telegram asks to wait before the next call (a 429).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Refused {
                code: 429,
                retry_after,
                ..
            } => Some(retry_after.unwrap_or(5)),
            _ => None,
        }
    }

    /// Whether trying again later may work: no answer, a 5xx, a 429.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Transport { .. } | ApiError::Decode { .. } => true,
            ApiError::Refused { code, .. } => *code == 429 || *code >= 500,
            ApiError::TooLarge { .. } => false,
        }
    }
}

/// The Bot API of one bot, on one server.
pub struct BotApi {
    base: String,
    token: Token,
    agent: ureq::Agent,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BotApi({}, bot {})", self.base, self.token.bot_id())
    }
}

impl std::fmt::Display for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (bot {})", self.base, self.token.bot_id())
    }
}

/// `ok`, `result`, and on failure `error_code`, `description` and `parameters`.
#[derive(Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
}

impl BotApi {
    /// The API at `base` (no trailing slash needed) for the bot with `token`.
    pub fn new(base: &str, token: Token) -> BotApi {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .max_redirects(0)
            .http_status_as_error(false)
            .build();
        BotApi {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// The bot's id (public).
    pub fn bot_id(&self) -> &str {
        self.token.bot_id()
    }

    fn transport(&self, method: &'static str, e: ureq::Error) -> ApiError {
        let detail = match e {
            ureq::Error::Timeout(_) => "timed out".to_string(),
            ureq::Error::HostNotFound => "host not found".to_string(),
            ureq::Error::Io(e) => e.to_string(),
            ureq::Error::ConnectionFailed => "connection failed".to_string(),
            e => e.to_string(),
        };
        ApiError::Transport {
            method,
            detail: self.token.scrub(&detail),
        }
    }

    /// Call `method` with JSON `params`; the whole call may take `timeout`.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        params: &Value,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let url = format!("{}/bot{}/{method}", self.base, self.token.0);
        let mut resp = self
            .agent
            .post(&url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("content-type", "application/json")
            .send(&serde_json::to_vec(params).expect("JSON values serialize")[..])
            .map_err(|e| self.transport(method, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| self.transport(method, e))?;
        let env: Envelope<T> = serde_json::from_str(&body).map_err(|e| ApiError::Decode {
            method,
            detail: if status >= 400 {
                format!("HTTP {status}")
            } else {
                self.token.scrub(&e.to_string())
            },
        })?;
        match (env.ok, env.result) {
            (true, Some(r)) => Ok(r),
            (true, None) => Err(ApiError::Decode {
                method,
                detail: "ok without a result".into(),
            }),
            (false, _) => Err(ApiError::Refused {
                method,
                code: env.error_code.unwrap_or(status),
                description: self
                    .token
                    .scrub(&env.description.unwrap_or_default())
                    .chars()
                    .take(300)
                    .collect(),
                retry_after: env.parameters.and_then(|p| p.retry_after),
            }),
        }
    }

    pub fn get_me(&self) -> Result<User, ApiError> {
        self.call("getMe", &json!({}), Duration::from_secs(30))
    }

    /// Long polling only works without a webhook; pending updates are kept.
    pub fn delete_webhook(&self) -> Result<bool, ApiError> {
        self.call(
            "deleteWebhook",
            &json!({"drop_pending_updates": false}),
            Duration::from_secs(30),
        )
    }

    /// Updates from `offset` on, waiting up to `timeout_s` for one.
    pub fn get_updates(&self, offset: i64, timeout_s: u64) -> Result<Vec<Update>, ApiError> {
        self.call(
            "getUpdates",
            &json!({
                "offset": offset,
                "timeout": timeout_s,
                "allowed_updates": ["message", "business_message"],
            }),
            Duration::from_secs(timeout_s + 20),
        )
    }

    pub fn get_file(&self, file_id: &str) -> Result<File, ApiError> {
        self.call(
            "getFile",
            &json!({ "file_id": file_id }),
            Duration::from_secs(30),
        )
    }

    pub fn get_business_connection(&self, id: &str) -> Result<BusinessConnection, ApiError> {
        self.call(
            "getBusinessConnection",
            &json!({ "business_connection_id": id }),
            Duration::from_secs(30),
        )
    }

    /// Post `text` in `chat`, as a reply to `reply_to` when given (sent even if that message
    /// is gone).
    pub fn send_message(
        &self,
        chat: i64,
        text: &str,
        reply_to: Option<i64>,
    ) -> Result<Message, ApiError> {
        let mut p = json!({
            "chat_id": chat,
            "text": text,
            "link_preview_options": {"is_disabled": true},
        });
        if let Some(m) = reply_to {
            p["reply_parameters"] = json!({"message_id": m, "allow_sending_without_reply": true});
        }
        self.call("sendMessage", &p, Duration::from_secs(30))
    }

    pub fn send_typing(&self, chat: i64) -> Result<bool, ApiError> {
        self.call(
            "sendChatAction",
            &json!({"chat_id": chat, "action": "typing"}),
            Duration::from_secs(30),
        )
    }

    /// Download the file at `file_path` (from [`BotApi::get_file`]) into `sink`, refusing
    /// more than `max` bytes; the whole download may take two minutes.
    pub fn download(
        &self,
        file_path: &str,
        max: u64,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, ApiError> {
        const METHOD: &str = "file download";
        let url = format!("{}/file/bot{}/{}", self.base, self.token.0, file_path);
        let mut resp = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .call()
            .map_err(|e| self.transport(METHOD, e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(ApiError::Refused {
                method: METHOD,
                code: status,
                description: "the file could not be downloaded".into(),
                retry_after: None,
            });
        }
        let mut reader = resp
            .body_mut()
            .with_config()
            .limit(max.saturating_add(1))
            .reader();
        crate::net::copy_capped(&mut reader, max, sink).map_err(|e| match e {
            crate::net::Capped::TooLarge => ApiError::TooLarge { max },
            crate::net::Capped::Read(e) => ApiError::Transport {
                method: METHOD,
                detail: self.token.scrub(&e.to_string()),
            },
            crate::net::Capped::Write(e) => ApiError::Transport {
                method: METHOD,
                detail: format!("storing the file: {e}"),
            },
        })
    }
}

/// A Telegram user or bot.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub language_code: Option<String>,
    /// `getMe` only: `false` is privacy mode (in groups, the bot sees commands and replies to
    /// it only).
    pub can_read_all_group_messages: Option<bool>,
}

impl User {
    /// "First Last (@username)".
    pub fn display(&self) -> String {
        let mut s = self.first_name.clone();
        if let Some(l) = &self.last_name {
            s.push(' ');
            s.push_str(l);
        }
        if let Some(u) = &self.username {
            s.push_str(&format!(" (@{u})"));
        }
        s.trim().to_string()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// An update, with the kinds the bot asks for; others are skipped.
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    pub update_id: i64,
    pub message: Option<Message>,
    pub business_message: Option<Message>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub message_id: i64,
    /// Unix time, seconds.
    pub date: i64,
    pub chat: Chat,
    pub from: Option<User>,
    pub business_connection_id: Option<String>,
    pub text: Option<String>,
    pub voice: Option<Attachment>,
    pub audio: Option<Attachment>,
    pub video_note: Option<Attachment>,
    pub document: Option<Attachment>,
}

/// A voice note, audio file, round video or document: the fields the bot reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    pub file_id: String,
    pub file_unique_id: String,
    pub file_size: Option<u64>,
    /// Seconds (voice, audio, round video).
    pub duration: Option<u64>,
    pub mime_type: Option<String>,
    pub file_name: Option<String>,
}

/// `getFile`'s answer.
#[derive(Debug, Clone, Deserialize)]
pub struct File {
    pub file_id: String,
    pub file_unique_id: String,
    pub file_size: Option<u64>,
    /// Relative on the cloud API; absolute on a local Bot API server (`--local`).
    pub file_path: Option<String>,
}

/// A shop owner's account connected to the bot (Telegram Business).
#[derive(Debug, Clone, Deserialize)]
pub struct BusinessConnection {
    pub id: String,
    pub user: User,
    pub user_chat_id: i64,
    #[serde(default)]
    pub is_enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_never_prints() {
        let t = Token::parse("123456:AAbbCC_dd-EEffGG").unwrap();
        assert_eq!(format!("{t} {t:?}"), "<redacted> <redacted>");
        assert_eq!(t.bot_id(), "123456");
        let api = BotApi::new("http://127.0.0.1:1/", t.clone());
        let shown = format!("{api} {api:?}");
        assert!(!shown.contains("AAbbCC"), "{shown}");
        assert_eq!(
            t.scrub("x/bot123456:AAbbCC_dd-EEffGG/getMe"),
            "x/bot<token>/getMe"
        );
        for bad in [
            "",
            "123456",
            "abc:AAbbCCddEE",
            "123:short",
            "123:AAbb CCddEE",
        ] {
            let e = Token::parse(bad).unwrap_err();
            assert!(!e.contains("AAbb"), "{e}");
        }
    }

    #[test]
    fn an_unreachable_server_is_an_error_without_the_token() {
        let t = Token::parse("123456:AAbbCC_dd-EEffGG").unwrap();
        // A port nothing listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let api = BotApi::new(&format!("http://127.0.0.1:{port}"), t);
        let e = api.get_me().unwrap_err();
        assert!(matches!(e, ApiError::Transport { .. }), "{e:?}");
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("AAbbCC"), "{shown}");
        assert!(e.is_transient());
    }
}
