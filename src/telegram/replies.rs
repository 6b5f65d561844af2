//! The sender: posts each filed reply once its job has ended, part by part, paced per chat
//! (a chat that must wait is skipped until a later tick, so others are served meanwhile);
//! waits out a 429's `retry_after` and sends again, never dropping; shows "typing" in the
//! chat while a job runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::api::{ApiError, BotApi, MAX_TEXT};
use super::{text, Settings};
use crate::job::{Job, Reply};
use crate::store::{now_ms, Store};
use crate::web::word;

/// How often the outbox is read.
const TICK: Duration = Duration::from_millis(300);
/// A typing status lasts about five seconds in the app; sent again after this.
const TYPING_EVERY: Duration = Duration::from_millis(4500);

/// Least time between two messages in one chat: about one a second in a private chat, 20 a
/// minute in a group (Telegram's limits).
fn gap(chat: i64) -> Duration {
    if chat < 0 {
        Duration::from_millis(3100)
    } else {
        Duration::from_millis(1050)
    }
}

pub struct Sender {
    api: Arc<BotApi>,
    settings: Arc<Settings>,
    db: Arc<dyn Store>,
    /// When each chat was last posted to.
    last_post: HashMap<i64, Instant>,
    /// When each chat last got "typing".
    last_typing: HashMap<i64, Instant>,
    /// Chats Telegram asked to wait for (429), until when.
    hold: HashMap<i64, Instant>,
}

impl Sender {
    pub fn new(api: Arc<BotApi>, settings: Arc<Settings>, db: Arc<dyn Store>) -> Sender {
        Sender {
            api,
            settings,
            db,
            last_post: HashMap::new(),
            last_typing: HashMap::new(),
            hold: HashMap::new(),
        }
    }

    /// Send until the process ends.
    pub fn run(mut self) {
        loop {
            match self.db.due_replies(100) {
                Ok(due) => {
                    for r in due {
                        self.one(r);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "Telegram: reading the replies to send failed")
                }
            }
            std::thread::sleep(TICK);
        }
    }

    fn held(&self, chat: i64) -> bool {
        self.hold.get(&chat).is_some_and(|t| Instant::now() < *t)
    }

    fn one(&mut self, r: Reply) {
        let chat = r.chat_id;
        if self.held(chat) {
            return;
        }
        if !r.ready() {
            if r.typing
                && self
                    .last_typing
                    .get(&chat)
                    .is_none_or(|t| t.elapsed() >= TYPING_EVERY)
            {
                self.last_typing.insert(chat, Instant::now());
                if let Err(e) = self.api.send_typing(chat) {
                    self.note_error(chat, &e);
                }
            }
            return;
        }
        // Paced: a chat posted to less than its gap ago waits for a later tick.
        if self
            .last_post
            .get(&chat)
            .is_some_and(|t| t.elapsed() < gap(chat))
        {
            return;
        }
        let job = match &r.job_id {
            None => None,
            Some(id) => match self.db.get(id) {
                Ok(Some(job)) => Some(job),
                Ok(None) => {
                    let _ = self
                        .db
                        .reply_failed(&r.id, "the job was deleted before it ended");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Telegram: reading a job to answer failed");
                    return;
                }
            },
        };
        let body = self.body(&r, job.as_ref());
        let parts = text::split(&body, MAX_TEXT);
        // One part per visit: the next part goes at a later tick, once the chat's gap has
        // passed, and other chats are served meanwhile.
        let i = r.parts_sent as usize;
        if let Some(part) = parts.get(i) {
            // Only the first part replies to the note; the rest follow it.
            let reply_to = if i == 0 { r.reply_to } else { None };
            let sent = self.api.send_message(chat, part, reply_to);
            self.last_post.insert(chat, Instant::now());
            if let Err(e) = sent {
                self.note_error(chat, &e);
                let error = e.to_string();
                let stored = if let Some(s) = e.retry_after() {
                    self.db
                        .reply_retry(&r.id, &error, now_ms() + s as i64 * 1000)
                } else if e.is_transient() {
                    self.db.reply_retry(
                        &r.id,
                        &error,
                        now_ms() + crate::webhooks::backoff_ms(r.attempts),
                    )
                } else {
                    tracing::warn!(chat, error = %e, "Telegram: the chat refused the reply; given up");
                    self.db.reply_failed(&r.id, &error)
                };
                if let Err(e) = stored {
                    tracing::error!(error = %e, "Telegram: recording a reply's failure failed");
                }
                return;
            }
            if let Err(e) = self.db.reply_progress(&r.id, i as u32 + 1) {
                tracing::error!(error = %e, "Telegram: recording a sent reply failed");
                return;
            }
            if i + 1 < parts.len() {
                return;
            }
        }
        if let Err(e) = self.db.reply_sent(&r.id) {
            tracing::error!(error = %e, "Telegram: recording a sent reply failed");
        }
        if let Some(job) = &job {
            tracing::info!(id = %job.id, chat, parts = parts.len(), "Telegram: answered");
        }
    }

    /// A 429 holds the chat for its `retry_after`; other errors are logged by the caller.
    fn note_error(&mut self, chat: i64, e: &ApiError) {
        if let Some(s) = e.retry_after() {
            tracing::warn!(
                chat,
                retry_after_s = s,
                "Telegram: too many messages; waiting as asked"
            );
            self.hold
                .insert(chat, Instant::now() + Duration::from_secs(s));
        }
    }

    fn body(&self, r: &Reply, job: Option<&Job>) -> String {
        let Some(job) = job else {
            return r.text.clone().unwrap_or_default();
        };
        let link = (r.reply_to.is_none())
            .then(|| {
                self.settings
                    .public_url
                    .as_ref()
                    .map(|u| format!("{}/#job={}", u.trim_end_matches('/'), job.id))
            })
            .flatten();
        let body = text::job_reply(job, &r.language, r.text.as_deref(), link.as_deref());
        if body.trim().is_empty() {
            word(&r.language, "no_speech")
        } else {
            body
        }
    }
}
