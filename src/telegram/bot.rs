//! The poller: `getUpdates` in a loop, each update turned into a job and a filed reply before
//! the stored offset passes it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::api::{ApiError, Attachment, BotApi, Message, Update, User, POLL_TIMEOUT_S};
use super::files::FileError;
use super::{text, Settings, CLOUD_MAX_FILE};
use crate::job::{JobOptions, NewJob, NewReply, Priority};
use crate::jobs::{Service, Submitted};
use crate::store::Store;
use crate::web::word;

/// The name the bot's jobs carry as their client (the fair share counts them as one).
pub const CLIENT: &str = "telegram";

/// Warn once when the bot cannot see voice notes in groups.
pub fn check_privacy(me: &User) {
    if me.can_read_all_group_messages == Some(false) {
        tracing::warn!(
            bot = %me.username.as_deref().unwrap_or(""),
            "the bot is in privacy mode: in groups it sees only commands and replies to it, not voice notes. To transcribe a group's notes: in @BotFather, /setprivacy, choose the bot, Disable; then remove the bot from the group and add it again (or make it an admin of the group). Private chats and Telegram Business work either way"
        );
    }
}

/// Why a note got no job.
enum Refusal {
    /// Over the cloud API's 20 MB.
    TooLargeCloud,
    /// Over `--max-upload-bytes`.
    TooLarge,
    /// Telegram would not give the file.
    Unavailable,
}

/// What went wrong handling an update.
enum Trouble {
    /// The note gets a fixed answer instead of a job.
    Refused(Refusal),
    /// Try the update again later (Telegram or the store did not answer): the offset stays.
    Later(String),
}

impl From<crate::store::StorageError> for Trouble {
    fn from(e: crate::store::StorageError) -> Trouble {
        Trouble::Later(format!("storage: {e}"))
    }
}

pub struct Poller {
    api: Arc<BotApi>,
    settings: Arc<Settings>,
    service: Arc<Service>,
    db: Arc<dyn Store>,
    rt: tokio::runtime::Handle,
    started: bool,
    /// Whether the webhook was deleted (at start).
    polling: bool,
    /// Business connections seen, and whether each is an allowed owner's (`None`: not
    /// enabled or not allowed).
    connections: HashMap<String, Option<User>>,
    warned: HashSet<String>,
}

impl Poller {
    pub fn new(
        api: Arc<BotApi>,
        settings: Arc<Settings>,
        service: Arc<Service>,
        db: Arc<dyn Store>,
        rt: tokio::runtime::Handle,
        started: bool,
    ) -> Poller {
        Poller {
            api,
            settings,
            service,
            db,
            rt,
            started,
            polling: false,
            connections: HashMap::new(),
            warned: HashSet::new(),
        }
    }

    /// Poll until the service stops (checked between polls; a poll in flight is left to the
    /// process's end, which loses nothing: the offset moves only after an update is filed).
    pub fn run(mut self) {
        let mut failures = 0u32;
        while !self.service.is_stopping() {
            match self.round() {
                Ok(()) => failures = 0,
                Err(why) => {
                    failures += 1;
                    let wait = backoff(failures);
                    tracing::warn!(error = %why, retry_in_s = wait.as_secs(), "Telegram bot: trying again");
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// One `getUpdates` and its updates.
    fn round(&mut self) -> Result<(), String> {
        if !self.started {
            let me = self.api.get_me().map_err(|e| e.to_string())?;
            check_privacy(&me);
            self.started = true;
        }
        if !self.polling {
            // Long polling only works with no webhook set; updates waiting are kept.
            self.api.delete_webhook().map_err(|e| e.to_string())?;
            self.polling = true;
        }
        let bot = self.api.bot_id().to_string();
        let offset = self.db.bot_offset(&bot).map_err(|e| e.to_string())?;
        let updates = match self.api.get_updates(offset, POLL_TIMEOUT_S) {
            Ok(u) => u,
            Err(e @ ApiError::Refused { code: 409, .. }) => {
                // A webhook is set, or another process polls with this token.
                let _ = self.api.delete_webhook();
                return Err(format!(
                    "{e} (is another earshot polling with this bot token?)"
                ));
            }
            Err(e) => {
                if let Some(s) = e.retry_after() {
                    std::thread::sleep(Duration::from_secs(s));
                }
                return Err(e.to_string());
            }
        };
        for u in updates {
            if u.update_id < offset {
                continue; // a server that ignored the offset: handled before
            }
            let id = u.update_id;
            self.handle(u)
                .map_err(|why| format!("update {id}: {why}"))?;
            self.db
                .set_bot_offset(&bot, id + 1)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn handle(&mut self, u: Update) -> Result<(), String> {
        let r = match (u.message, u.business_message) {
            (Some(m), _) => self.chat_message(m),
            (None, Some(m)) => self.business_message(m),
            _ => Ok(()),
        };
        match r {
            Ok(()) => Ok(()),
            Err(Trouble::Later(why)) => Err(why),
            // Refusals are answered where they arise; one that got here has nothing left to do.
            Err(Trouble::Refused(_)) => Ok(()),
        }
    }

    /// A message in a chat with the bot, or in a group it is in.
    fn chat_message(&mut self, m: Message) -> Result<(), Trouble> {
        let chat = m.chat.id;
        let lang = m
            .from
            .as_ref()
            .and_then(|u| u.language_code.as_deref())
            .unwrap_or("en")
            .to_string();
        let reply = |id: String, text: Option<String>, job: Option<String>| NewReply {
            id,
            job_id: job,
            chat_id: chat,
            reply_to: Some(m.message_id),
            language: lang.clone(),
            text,
            typing: false,
        };
        if !self.settings.allow_chats.contains(&chat) {
            // One polite answer per chat, and nothing else: no download, no CPU.
            let words = word(&lang, "bot.refused").replace("{chat}", &chat.to_string());
            if self
                .db
                .file_reply(&reply(format!("tg:refusal:{chat}"), Some(words), None))?
            {
                tracing::info!(chat, "Telegram: a chat that is not allowed was refused");
            }
            return Ok(());
        }
        let id = format!("tg:{chat}:{}", m.message_id);
        let Some(att) = attachment(&m) else {
            if m.chat.kind == "private"
                && m.text
                    .as_deref()
                    .is_some_and(|t| t.starts_with("/start") || t.starts_with("/help"))
            {
                self.db
                    .file_reply(&reply(id, Some(word(&lang, "bot.help")), None))?;
            }
            return Ok(());
        };
        match self.note(&m, &att, &id) {
            Ok(job) => {
                let mut r = reply(id, None, Some(job));
                r.typing = true;
                self.db.file_reply(&r)?;
                Ok(())
            }
            Err(Trouble::Refused(why)) => {
                self.db
                    .file_reply(&reply(id, Some(self.refusal(&lang, why)), None))?;
                Ok(())
            }
            Err(later) => Err(later),
        }
    }

    /// A customer's message in a shop owner's chat (Telegram Business). Never answered
    /// there: that would post as the shop, to the customer. Posted to the operators' chat
    /// when there is one; else the job is only stored.
    fn business_message(&mut self, m: Message) -> Result<(), Trouble> {
        let Some(conn_id) = m.business_connection_id.clone() else {
            return Ok(());
        };
        let Some(owner) = self.owner(&conn_id)? else {
            return Ok(());
        };
        if m.from.as_ref().is_some_and(|f| f.id == owner.id) {
            return Ok(()); // the owner's own message, not a customer's
        }
        let Some(att) = attachment(&m) else {
            return Ok(());
        };
        let lang = owner.language_code.clone().unwrap_or_else(|| "ru".into());
        let id = format!("tg:{}:{}", m.chat.id, m.message_id);
        let who = m
            .from
            .as_ref()
            .map(User::display)
            .unwrap_or_else(|| m.chat.id.to_string());
        let header = text::header(&lang, &who, m.date, att.duration);
        let outcome = self.note(&m, &att, &id);
        let Some(forward) = self.settings.forward_chat else {
            return match outcome {
                Ok(_) | Err(Trouble::Refused(_)) => Ok(()),
                Err(later) => Err(later),
            };
        };
        let (job, text) = match outcome {
            Ok(job) => (Some(job), Some(header)),
            Err(Trouble::Refused(why)) => (
                None,
                Some(format!("{header}\n{}", self.refusal(&lang, why))),
            ),
            Err(later) => return Err(later),
        };
        self.db.file_reply(&NewReply {
            id: format!("{id}:forward"),
            job_id: job,
            chat_id: forward,
            reply_to: None,
            language: lang,
            text,
            typing: false,
        })?;
        Ok(())
    }

    /// The owner of a business connection, when it is enabled and the owner is allowed.
    fn owner(&mut self, conn_id: &str) -> Result<Option<User>, Trouble> {
        if let Some(o) = self.connections.get(conn_id) {
            return Ok(o.clone());
        }
        let c = match self.api.get_business_connection(conn_id) {
            Ok(c) => c,
            Err(e) if e.is_transient() => return Err(Trouble::Later(e.to_string())),
            Err(e) => {
                tracing::warn!(error = %e, "Telegram: a business connection that does not read; its messages are skipped");
                self.connections.insert(conn_id.to_string(), None);
                return Ok(None);
            }
        };
        let allowed = c.is_enabled
            && (self.settings.allow_chats.contains(&c.user_chat_id)
                || self.settings.allow_chats.contains(&c.user.id));
        if !allowed && self.warned.insert(c.id.clone()) {
            tracing::warn!(
                owner = c.user.id,
                "Telegram Business: an account that is not in --telegram-allow-chat connected the bot; its customers' messages are skipped"
            );
        }
        let owner = allowed.then_some(c.user);
        self.connections.insert(conn_id.to_string(), owner.clone());
        Ok(owner)
    }

    fn refusal(&self, lang: &str, why: Refusal) -> String {
        match why {
            Refusal::TooLargeCloud => word(lang, "bot.too_large_cloud"),
            Refusal::TooLarge => word(lang, "bot.too_large").replace(
                "{mb}",
                &(self.service.limits.max_bytes / (1024 * 1024)).to_string(),
            ),
            Refusal::Unavailable => word(lang, "bot.unavailable"),
        }
    }

    /// The job of a note: the one made before from the same file, or a new one from the file
    /// downloaded now.
    fn note(
        &mut self,
        m: &Message,
        att: &Attachment,
        external_id: &str,
    ) -> Result<String, Trouble> {
        let key = format!("{CLIENT}:{}", att.file_unique_id);
        if let Some(job) = self.db.job_by_key(&key)? {
            return Ok(job);
        }
        let max = self.service.limits.max_bytes;
        let local = self.settings.local_files.is_some();
        let size = att.file_size.unwrap_or(0);
        if !local && size > CLOUD_MAX_FILE {
            return Err(Trouble::Refused(Refusal::TooLargeCloud));
        }
        if size > max {
            return Err(Trouble::Refused(Refusal::TooLarge));
        }
        let mut tries = 0;
        let blob = loop {
            tries += 1;
            match self.fetch(att, max) {
                Ok(blob) => break blob,
                Err(Fetch::Refused(r)) => return Err(Trouble::Refused(r)),
                Err(Fetch::Transient(e)) if tries < 4 => {
                    let wait = e
                        .retry_after()
                        .map(Duration::from_secs)
                        .unwrap_or_else(|| backoff(tries));
                    tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "Telegram: downloading a note failed; trying again");
                    std::thread::sleep(wait);
                }
                Err(Fetch::Transient(e)) => return Err(Trouble::Later(e.to_string())),
                Err(Fetch::Store(e)) => return Err(Trouble::Later(e)),
            }
        };
        let (content_type, filename) = (
            att.mime_type.clone(),
            att.file_name
                .clone()
                .or_else(|| Some(default_name(m).into())),
        );
        let (external_id, defaults) = (external_id.to_string(), JobOptions::default());
        let callback_url = self.settings.callback_url.clone();
        let submitted = self
            .rt
            .block_on(self.service.submit(blob, move |sha256, size| NewJob {
                sha256,
                size,
                content_type,
                filename,
                external_id: Some(external_id),
                source: Some("telegram".into()),
                options: defaults,
                priority: Priority::Queued,
                idempotency_key: Some(key),
                callback_url,
                client: Some(CLIENT.into()),
                // A note Telegram delivered is taken whatever the queue: refusing it would
                // lose it (Telegram does not send it again).
                limit: None,
                fetch: None,
            }))
            .map_err(|e| Trouble::Later(e.to_string()))?;
        match submitted {
            Submitted::Created(job) => {
                tracing::info!(id = %job.id, size = job.size, source = "telegram", "job queued");
                Ok(job.id)
            }
            Submitted::Replayed(job) | Submitted::KeyReused(job) => Ok(job.id),
            Submitted::QueueFull(_) => Err(Trouble::Later("the queue is full".into())),
        }
    }

    /// The note's bytes, stored as an upload is.
    fn fetch(&self, att: &Attachment, max: u64) -> Result<crate::store::PendingBlob, Fetch> {
        let mut blob = self
            .service
            .begin_upload()
            .map_err(|e| Fetch::Store(e.to_string()))?;
        let local = self.settings.local_files.as_deref();
        let mut write = |chunk: &[u8]| blob.write(chunk);
        super::files::download(&self.api, local, &att.file_id, max, &mut write).map_err(
            |e| match e {
                FileError::TooLarge { cloud: true } => Fetch::Refused(Refusal::TooLargeCloud),
                FileError::TooLarge { cloud: false } => Fetch::Refused(Refusal::TooLarge),
                FileError::Gone(_) | FileError::Auth(_) => Fetch::Refused(Refusal::Unavailable),
                FileError::Transient(e) => Fetch::Transient(e),
                FileError::Store(e) => Fetch::Store(e),
            },
        )?;
        if blob.size() == 0 {
            return Err(Fetch::Refused(Refusal::Unavailable));
        }
        Ok(blob)
    }
}

enum Fetch {
    Refused(Refusal),
    Transient(ApiError),
    Store(String),
}

/// The note in a message: a voice note, an audio file, a round video, or a document whose
/// type is audio.
fn attachment(m: &Message) -> Option<Attachment> {
    m.voice
        .clone()
        .or_else(|| m.audio.clone())
        .or_else(|| m.video_note.clone())
        .or_else(|| {
            m.document.clone().filter(|d| {
                d.mime_type
                    .as_deref()
                    .is_some_and(|t| t.starts_with("audio/"))
            })
        })
}

/// A file name for a note that came without one.
fn default_name(m: &Message) -> &'static str {
    if m.video_note.is_some() {
        "round-video.mp4"
    } else if m.voice.is_some() {
        "voice.ogg"
    } else {
        "audio"
    }
}

/// 1 s, 2 s, 4 s, ... up to 30 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.saturating_sub(1).min(5)).min(30))
}
