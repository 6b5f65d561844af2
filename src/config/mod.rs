//! Configuration: the flags, each with an `EARSHOT_*` environment variable behind it, and
//! what is derived from them. `model` holds the model and hardware flags (`transcribe` and
//! `serve`), `serve` the service's: clap reads [`ServeArgs`], and the service runs with the
//! plain [`Settings`] made from them ([`Settings::describe`] is what start-up prints, keys
//! masked); this module holds what they share: [`Secret`], and the core-count rule
//! ([`parallelism`], kept with the hardware in `engine`), and [`ConfigError`]. The
//! service-wide language and prompt live with the jobs ([`crate::job::Defaults`]). Nothing here imports the command
//! line; it imports this.

mod bot;
pub mod keys;
mod model;
mod serve;

pub use crate::engine::{cores, parallelism, Parallelism};
pub use keys::ApiKey;
pub use model::{LoadError, ModelArgs};
pub use serve::{AudioStore, Database, ServeArgs, Settings};

use std::path::PathBuf;

/// A setting the service cannot start with: a sentence for the operator, naming the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--database-url must start with sqlite: or postgres:// (got {0})")]
    DatabaseUrl(String),
    #[error("--audio-store file: needs a folder (file:PATH)")]
    AudioFolderMissing,
    #[error("--audio-store {0}")]
    AudioBucket(String),
    #[error("--audio-store must start with file: or s3:// (got {0})")]
    AudioStore(String),
    #[error("--language {0:?}: not a language Whisper knows (use an ISO 639-1 code such as ru or en, or auto)")]
    Language(String),
    #[error("--language: this model is English-only")]
    EnglishOnly,
    #[error("--glossary {path}: {source}")]
    GlossaryUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--glossary {0}: the file lists no names")]
    GlossaryEmpty(PathBuf),
    #[error("--glossary and --prompt together are {tokens} tokens; the model reads at most {max}. Shorten them (keep the names that are misheard most)")]
    PromptTooLong { tokens: usize, max: usize },
    #[error(transparent)]
    Prompt(#[from] crate::engine::EngineError),
    #[error(transparent)]
    KeysFile(#[from] keys::KeysFileError),
    #[error("--telegram needs the bot token: set EARSHOT_TELEGRAM_BOT_TOKEN, or name a file holding it with --telegram-bot-token-file (from @BotFather; never on the command line, where ps shows it)")]
    TelegramNoToken,
    #[error("the Telegram bot token ({from}): {why}")]
    TelegramToken { from: String, why: &'static str },
    #[error("--telegram-bot-token-file {path}: {source}")]
    TelegramTokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--{flag} {url:?}: give an http:// or https:// address")]
    Url { flag: &'static str, url: String },
}

/// A secret from the command line or the environment (an API key, the webhook secret).
/// `Debug` shows its length only, so the configuration can be logged whole; the value is
/// read with [`Secret::expose`] where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first 3 characters and the length: enough to tell keys apart in a log.
    pub fn masked(&self) -> String {
        let head: String = self.0.chars().take(3).collect();
        format!("{head}…({} chars)", self.0.chars().count())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} chars)", self.0.chars().count())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}
