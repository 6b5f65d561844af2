//! A chat reply owed for a job: the bot's outbox row. A messenger (Telegram) files one when a
//! note arrives; its sender posts the job's text when the job ends, and marks each part it
//! sent, so a restart goes on from where it stopped and never posts a part twice (bar the one
//! in flight when the process died). A reply with fixed text (a refusal, "too large") has no
//! job and is sent at once.

use serde::Serialize;

use super::UnknownName;

stored_names! {
    /// Where a reply stands.
    ReplyStatus, "reply status" {
        /// Not sent yet, or to be tried again.
        Pending => "pending",
        Sent => "sent",
        /// Given up: the chat refused it (the bot was blocked, the chat is gone).
        Failed => "failed",
    }
}

/// A reply to file.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReply {
    /// Unique per reply: filing the same one twice (an update seen again after a restart)
    /// files it once.
    pub id: String,
    /// The job whose end it reports; `None` for a reply with fixed `text`.
    pub job_id: Option<String>,
    /// The chat to post in.
    pub chat_id: i64,
    /// The message to reply to (`None`: a plain post, as in the operators' chat).
    pub reply_to: Option<i64>,
    /// The reader's language (`ru`, `en`).
    pub language: String,
    /// A line put before the job's text (who sent it, when, how long), or the fixed text.
    pub text: Option<String>,
    /// Whether a "typing" status is shown in the chat while the job runs.
    pub typing: bool,
}

/// A filed reply, as the sender reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub id: String,
    pub job_id: Option<String>,
    pub chat_id: i64,
    pub reply_to: Option<i64>,
    pub language: String,
    pub text: Option<String>,
    pub typing: bool,
    pub status: ReplyStatus,
    /// Parts already posted (a long text goes in several messages).
    pub parts_sent: u32,
    pub attempts: u32,
    /// The job's status when read (`None`: no job, or the job was deleted).
    pub job_status: Option<super::Status>,
}

impl Reply {
    /// Whether it can be sent now: fixed text, or its job has ended (or is gone).
    pub fn ready(&self) -> bool {
        self.job_id.is_none() || self.job_status.is_none_or(|s| s.is_finished())
    }
}
