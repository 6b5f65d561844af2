//! The Telegram bot's and the fetcher's settings (`--telegram*`, `--fetch-*`), as `earshot
//! serve` derives and prints them: the token read from its file or the environment and
//! checked for form, the URLs checked for scheme.

use super::{ConfigError, Secret, Settings};

/// Where the bot token is read from (never a flag's value).
pub const TELEGRAM_TOKEN_ENV: &str = "EARSHOT_TELEGRAM_BOT_TOKEN";

impl Settings {
    /// The rules for `source.url`.
    pub fn fetch_rules(&self) -> crate::fetch::UrlRules {
        crate::fetch::UrlRules {
            allow_hosts: self.fetch_allow_hosts.clone(),
            allow_private: self.fetch_allow_private,
            timeout: self.fetch_timeout,
        }
    }

    /// The Telegram bot's settings with `--telegram`, its token read (a file's wins over the
    /// environment's) and checked for form; `None` without `--telegram`.
    pub fn telegram(&self) -> Result<Option<crate::telegram::Settings>, ConfigError> {
        if !self.telegram {
            return Ok(None);
        }
        let (raw, from) = match (&self.telegram_bot_token_file, &self.telegram_token) {
            (Some(path), _) => (
                Secret::new(std::fs::read_to_string(path).map_err(|source| {
                    ConfigError::TelegramTokenFile {
                        path: path.clone(),
                        source,
                    }
                })?),
                format!("--telegram-bot-token-file {}", path.display()),
            ),
            (None, Some(t)) => (t.clone(), TELEGRAM_TOKEN_ENV.to_string()),
            (None, None) => return Err(ConfigError::TelegramNoToken),
        };
        let token = crate::telegram::Token::parse(raw.expose())
            .map_err(|why| ConfigError::TelegramToken { from, why })?;
        for (flag, url) in [
            ("telegram-api-url", Some(&self.telegram_api_url)),
            ("public-url", self.public_url.as_ref()),
            ("telegram-callback-url", self.telegram_callback_url.as_ref()),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::Url {
                        flag,
                        url: url.chars().take(80).collect(),
                    });
                }
            }
        }
        Ok(Some(crate::telegram::Settings {
            token,
            api_url: self.telegram_api_url.clone(),
            allow_chats: self.telegram_allow_chats.clone(),
            forward_chat: self.telegram_forward_chat,
            local_files: self.telegram_local_files.clone(),
            public_url: self.public_url.clone(),
            callback_url: self.telegram_callback_url.clone(),
        }))
    }

    /// The Telegram bot's line of the start-up printout, the token masked.
    pub(super) fn describe_bot(&self) -> String {
        if self.telegram {
            format!(
                "telegram=on token={} api_url={} allow_chats={} forward_chat={} local_files={} public_url={} callback_url={}",
                match (&self.telegram_bot_token_file, &self.telegram_token) {
                    (Some(f), _) => format!("file {} (masked)", f.display()),
                    (None, Some(_)) => format!("{TELEGRAM_TOKEN_ENV} (masked)"),
                    (None, None) => "MISSING".into(),
                },
                self.telegram_api_url,
                if self.telegram_allow_chats.is_empty() {
                    "none (every chat is refused)".into()
                } else {
                    self.telegram_allow_chats
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                },
                self.telegram_forward_chat
                    .map_or("none".into(), |c| c.to_string()),
                self.telegram_local_files
                    .as_ref()
                    .map_or("none".into(), |d| d.display().to_string()),
                self.public_url.as_deref().unwrap_or("none"),
                self.telegram_callback_url.as_deref().unwrap_or("none"),
            )
        } else {
            "telegram=off".into()
        }
    }

    /// The fetcher's line of the start-up printout.
    pub(super) fn describe_fetch(&self) -> String {
        format!(
            "fetch_allow_hosts={} fetch_allow_private={} fetch_timeout={}s",
            if self.fetch_allow_hosts.is_empty() {
                "none".into()
            } else {
                self.fetch_allow_hosts.join(",")
            },
            self.fetch_allow_private,
            self.fetch_timeout.as_secs()
        )
    }
}
