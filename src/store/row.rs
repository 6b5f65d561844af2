//! Rows to records: what both stores read from a `jobs` or `deliveries` row, column by
//! column as stored, and the one checked step that makes it a [`Job`] or a [`Delivery`].
//! A value that does not read (a status this version does not know, options or a
//! transcript that are not what was written) is [`StorageError::Corrupt`], naming the job and
//! the column: never a default.

use serde::de::DeserializeOwned;

use super::StorageError;
use crate::job::{Delivery, Failure, Job, Priority};

/// A JSON column: text in SQLite, `jsonb` (already parsed) in PostgreSQL.
pub(super) enum Json {
    Text(String),
    Value(serde_json::Value),
}

impl Json {
    fn decode<T: DeserializeOwned>(
        self,
        id: &str,
        column: &'static str,
    ) -> Result<T, StorageError> {
        match self {
            Json::Text(t) => serde_json::from_str(&t),
            Json::Value(v) => serde_json::from_value(v),
        }
        .map_err(|e| corrupt(id, column, e))
    }
}

pub(super) fn corrupt(id: &str, column: &'static str, reason: impl ToString) -> StorageError {
    StorageError::Corrupt {
        id: id.to_string(),
        column,
        reason: reason.to_string(),
    }
}

/// A `jobs` row as stored.
pub(super) struct JobRow {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub sha256: String,
    pub size: i64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub external_id: Option<String>,
    pub source: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub language: Option<String>,
    pub duration: Option<f64>,
    pub transcript: Option<Json>,
    pub options: Json,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    pub callback_url: Option<String>,
    pub client: Option<String>,
    pub fetch: Option<Json>,
}

impl JobRow {
    /// The record, or [`StorageError::Corrupt`].
    pub fn decode(self) -> Result<Job, StorageError> {
        let id = self.id;
        let status = self.status.parse().map_err(|e| corrupt(&id, "status", e))?;
        let priority =
            Priority::from_i32(self.priority).map_err(|e| corrupt(&id, "priority", e))?;
        let options = self.options.decode(&id, "options")?;
        let result = match self.transcript {
            Some(t) => Some(t.decode(&id, "transcript")?),
            None => None,
        };
        let failure = self
            .error_code
            .map(|code| Failure::read(&id, &code, self.error_message));
        Ok(Job {
            created_at: self.created_at,
            updated_at: self.updated_at,
            sha256: self.sha256,
            size: u64::try_from(self.size).map_err(|e| corrupt(&id, "size", e))?,
            content_type: self.content_type,
            filename: self.filename,
            external_id: self.external_id,
            source: self.source,
            status,
            attempts: u32::try_from(self.attempts).map_err(|e| corrupt(&id, "attempts", e))?,
            failure,
            language: self.language,
            duration: self.duration,
            result,
            options,
            priority,
            idempotency_key: self.idempotency_key,
            callback_url: self.callback_url,
            client: self.client,
            fetch: match self.fetch {
                Some(f) => Some(f.decode(&id, "fetch_source")?),
                None => None,
            },
            id,
        })
    }
}

/// A `deliveries` row as stored.
pub(super) struct DeliveryRow {
    pub id: String,
    pub job_id: String,
    pub url: String,
    pub event: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

impl DeliveryRow {
    /// The delivery, or [`StorageError::Corrupt`] (named by its job).
    pub fn decode(self) -> Result<Delivery, StorageError> {
        let job = &self.job_id;
        Ok(Delivery {
            event: self
                .event
                .parse()
                .map_err(|e| corrupt(job, "deliveries.event", e))?,
            status: self
                .status
                .parse()
                .map_err(|e| corrupt(job, "deliveries.status", e))?,
            attempts: u32::try_from(self.attempts)
                .map_err(|e| corrupt(job, "deliveries.attempts", e))?,
            id: self.id,
            job_id: self.job_id,
            url: self.url,
            last_error: self.last_error,
        })
    }
}

/// A piece's transcript as stored.
pub(super) fn piece(
    id: &str,
    start: i64,
    end: i64,
    t: Json,
) -> Result<crate::job::Piece, StorageError> {
    Ok(crate::job::Piece {
        start: usize::try_from(start).map_err(|e| corrupt(id, "pieces.start_sample", e))?,
        end: usize::try_from(end).map_err(|e| corrupt(id, "pieces.end_sample", e))?,
        transcript: t.decode(id, "pieces.transcript")?,
    })
}

/// A bot reply's columns as read, with its job's status (`None` when it has no job or the
/// job is gone).
pub(super) struct ReplyRow {
    pub id: String,
    pub job_id: Option<String>,
    pub chat_id: i64,
    pub reply_to: Option<i64>,
    pub language: String,
    pub text: Option<String>,
    pub typing: bool,
    pub status: String,
    pub parts_sent: i64,
    pub attempts: i64,
    pub job_status: Option<String>,
}

impl ReplyRow {
    /// The reply, or [`StorageError::Corrupt`] (named by the reply).
    pub fn decode(self) -> Result<crate::job::Reply, StorageError> {
        let id = &self.id;
        Ok(crate::job::Reply {
            status: self
                .status
                .parse()
                .map_err(|e| corrupt(id, "replies.status", e))?,
            parts_sent: u32::try_from(self.parts_sent)
                .map_err(|e| corrupt(id, "replies.parts_sent", e))?,
            attempts: u32::try_from(self.attempts)
                .map_err(|e| corrupt(id, "replies.attempts", e))?,
            job_status: self
                .job_status
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| corrupt(id, "jobs.status", e))?,
            job_id: self.job_id,
            chat_id: self.chat_id,
            reply_to: self.reply_to,
            language: self.language,
            text: self.text,
            typing: self.typing,
            id: self.id,
        })
    }
}
