//! The Telegram bot (`earshot serve --telegram`): voice notes sent to the bot, or to a shop
//! owner's account connected to it (Telegram Business), become ordinary jobs of this
//! service, and their text goes back where the operators read it.
//!
//! Two threads, both on blocking calls:
//! - the poller (`bot`) long-polls `getUpdates`, turns each voice note, audio file, round
//!   video or audio document of an allowed chat into a job (`source` `telegram`,
//!   `external_id` `tg:<chat>:<message>`, deduplicated by the file's `file_unique_id`) and
//!   files the reply it owes ([`crate::store::Chats`]); only then does the stored offset pass
//!   the update, so a restart neither loses an update nor makes a second job of it;
//! - the sender (`replies`) posts each reply when its job ends, in parts of at most 4096
//!   characters, marking each part sent, paced per chat, waiting out a 429's `retry_after`
//!   (never dropping), and shows "typing" while a job runs.
//!
//! The token is a [`Token`]: it reaches a URL only inside [`BotApi`], and no error, log line
//! or stored row holds one (files are kept by `file_id`, never by their download URL).

mod api;
mod bot;
mod files;
mod replies;
mod text;

use std::path::PathBuf;
use std::sync::Arc;

pub use api::{ApiError, BotApi, Token, CLOUD_API, CLOUD_MAX_FILE};
pub use files::{download, FileError};

use crate::jobs::Service;
use crate::store::Store;

/// What `--telegram` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub token: Token,
    /// The Bot API server (`--telegram-api-url`).
    pub api_url: String,
    /// Chats served (`--telegram-allow-chat`); for Telegram Business, the owner's chat with
    /// the bot (their user id).
    pub allow_chats: Vec<i64>,
    /// The operators' chat that business notes are posted to.
    pub forward_chat: Option<i64>,
    /// A local Bot API server's file folder (`--local` mode): files are read from there,
    /// with no 20 MB limit.
    pub local_files: Option<PathBuf>,
    /// Where the inbox page is reached, for links in the operators' chat.
    pub public_url: Option<String>,
    /// The webhook of every job the bot makes.
    pub callback_url: Option<String>,
}

/// Why the bot did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Telegram refused the bot token ({0}): check EARSHOT_TELEGRAM_BOT_TOKEN or --telegram-bot-token-file")]
    Token(ApiError),
    #[error("starting the Telegram bot's threads: {0}")]
    Thread(#[from] std::io::Error),
}

/// Start the bot: ask Telegram who it is (a token it refuses stops the start; an unreachable
/// server does not, the poller keeps trying), then run the poller and the sender. Blocks on
/// the network: call it off the async runtime. `rt` is the runtime the job service's async
/// methods run on. Returns the bot's API, for jobs whose `source` is a Telegram file.
pub fn start(
    settings: Settings,
    service: Arc<Service>,
    db: Arc<dyn Store>,
    rt: tokio::runtime::Handle,
) -> Result<Arc<BotApi>, StartError> {
    let api = Arc::new(BotApi::new(&settings.api_url, settings.token.clone()));
    let me = match api.get_me() {
        Ok(me) => Some(me),
        Err(
            e @ ApiError::Refused {
                code: 401 | 404, ..
            },
        ) => return Err(StartError::Token(e)),
        Err(e) => {
            tracing::warn!(api = %api, error = %e, "Telegram is not reachable now; the bot keeps trying");
            None
        }
    };
    if let Some(me) = &me {
        bot::check_privacy(me);
        tracing::info!(bot = %me.username.as_deref().unwrap_or(""), id = me.id, "Telegram bot started");
    }
    let settings = Arc::new(settings);
    {
        let (api, settings, db) = (api.clone(), settings.clone(), db.clone());
        std::thread::Builder::new()
            .name("earshot-telegram".into())
            .spawn(move || bot::Poller::new(api, settings, service, db, rt, me.is_some()).run())?;
    }
    {
        let api = api.clone();
        std::thread::Builder::new()
            .name("earshot-telegram-replies".into())
            .spawn(move || replies::Sender::new(api, settings, db).run())?;
    }
    Ok(api)
}
