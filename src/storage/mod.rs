//! Durable storage, embedded: audio blobs in a folder, job records in SQLite.
//!
//! The write order is the promise: an upload is streamed to a temp file while hashed,
//! fsynced, renamed to `audio/ab/cd/<sha256>`, and the folder fsynced; only then is the row
//! inserted, and only after the insert commits (WAL, `synchronous=FULL`) does anyone answer
//! 2xx. Identical audio is stored once; rows point at blobs by hash. Nothing is deleted
//! except by an explicit delete. SQLite is used through rusqlite: synchronous calls that
//! the server runs on its blocking pool, with no async driver or connection pool to carry.
//!
//! [`BlobStore`] (`blobs`) keeps the audio files, [`Db`] (`db`, its schema in `schema`) the
//! records; this module holds the types both sides and their callers share.

mod blobs;
mod db;
mod schema;

use std::io;

use serde::Serialize;

pub use blobs::{BlobStore, PendingBlob};
pub use db::{fts_query, Db};

/// Free disk (MiB) below which uploads are refused, by default (`--min-free-disk-mb`).
pub const MIN_FREE_DISK_MB: u64 = 512;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
}

impl StorageError {
    /// Whether the disk (or the quota) is full: the caller answers 507, not 500.
    pub fn is_full(&self) -> bool {
        match self {
            StorageError::Io(e) => io_is_full(e),
            StorageError::Db(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StorageError::Db(_) => false,
        }
    }
}

/// Whether an I/O error means "no space left" (ENOSPC) or "quota exceeded" (EDQUOT).
pub fn io_is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
/// A job's life: `queued` → `running` → `done` | `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Done,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "queued" => Status::Queued,
            "running" => Status::Running,
            "done" => Status::Done,
            "failed" => Status::Failed,
            _ => return None,
        })
    }
}

/// One voice note.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    pub created_at: i64,
    pub sha256: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub external_id: Option<String>,
    pub source: Option<String>,
    pub status: Status,
    pub attempts: u32,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub language: Option<String>,
    pub duration: Option<f64>,
    /// The result (`jobs::JobResult`) as JSON, once done.
    pub transcript: Option<serde_json::Value>,
    /// Decoding options as JSON (language, prompt, translate, temperature...).
    pub options: serde_json::Value,
    /// 0 for synchronous requests (served first), 1 for queued jobs.
    pub priority: i32,
    pub idempotency_key: Option<String>,
    pub callback_url: Option<String>,
    pub updated_at: i64,
}
/// A webhook delivery in the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: String,
    pub job_id: String,
    pub url: String,
    pub event: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}
/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
/// A new record, before insertion.
pub struct NewJob {
    pub sha256: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub external_id: Option<String>,
    pub source: Option<String>,
    pub options: serde_json::Value,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    pub callback_url: Option<String>,
}

/// Filters for listing jobs.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub external_id: Option<String>,
    pub before: Option<String>,
    /// Words that must all occur (as prefixes) in the transcript, file name or external id.
    pub search: Option<String>,
    /// Only finished jobs whose review verdict is this (`review.needed` in the transcript).
    pub review_needed: Option<bool>,
    pub limit: usize,
}
