//! Durable storage: the job records ([`Jobs`]) and the audio ([`Blobs`]), the seam that the
//! job service, the workers, the webhook sender and the inbox go through. The records live
//! in SQLite by default (`sqlite`, its migrations in `sqlite_schema`) or in PostgreSQL for
//! several nodes (`postgres`, `postgres_schema`); the audio in a folder (`blobs_fs`).
//! `conformance` holds the behaviour both record stores must show, run against each.
//!
//! The write order is the promise: an upload is streamed to a temp file while hashed,
//! fsynced, renamed to `audio/ab/cd/<sha256>`, and the folder fsynced; only then is the row
//! inserted, and only after the insert commits (SQLite: WAL, `synchronous=FULL`) does anyone
//! answer 2xx. Identical audio is stored once; rows point at blobs by hash. Nothing is
//! deleted except by an explicit delete. Both stores are synchronous calls (rusqlite on one
//! connection behind a mutex; the `postgres` client on an r2d2 pool), made from worker
//! threads and the blocking pool, and through [`OffRuntime`] (both are wrapped in it) on the
//! async runtime.
//!
//! This module holds the two traits and the types both sides and their callers share.

mod blobs_fs;
mod blobs_s3;
#[cfg(test)]
mod conformance;
mod postgres;
mod postgres_schema;
mod sqlite;
mod sqlite_schema;

use std::io;

use serde::Serialize;

pub use blobs_fs::FsBlobs;
pub use blobs_s3::{parse_url as parse_s3_url, S3Blobs, S3Options};
pub use postgres::Postgres;
pub use sqlite::Sqlite;

/// The words of a search, at most 16, with ё folded to е (as the indexes store it); every
/// one must match.
pub fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| w.replace('ё', "е").replace('Ё', "Е"))
        .collect()
}

/// The job records: jobs, the webhook outbox and the finished pieces of long jobs. Every
/// state change is one transaction; calls block, so async callers run them on the blocking
/// pool.
pub trait Jobs: Send + Sync {
    /// Insert a record (status `queued`). With an idempotency key already used, returns the
    /// existing record instead (`Ok((job, false))`).
    fn insert(&self, n: NewJob) -> Result<(Job, bool), StorageError>;

    /// A record by id.
    fn get(&self, id: &str) -> Result<Option<Job>, StorageError>;

    /// Records matching `f`, newest first.
    fn list(&self, f: &ListFilter) -> Result<Vec<Job>, StorageError>;

    /// How many records are in each status (metrics).
    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StorageError>;

    /// Jobs waiting for a worker; with `Some(p)`, only those of priority `p` (0: synchronous).
    fn queued_count(&self, priority: Option<i32>) -> Result<i64, StorageError>;

    /// Claim the next job for a worker: synchronous requests first, then jobs that waited
    /// longer than `max_wait_ms` (oldest first), then the smallest file (a short voice note
    /// is not stuck behind a long one). Also reclaims `running` jobs whose lease expired.
    /// A job whose lease expired after `max_attempts` claims fails as `crashed_worker`
    /// instead (see [`Jobs::recover_running`]).
    fn claim(
        &self,
        lease_ms: i64,
        max_wait_ms: i64,
        max_attempts: u32,
    ) -> Result<Option<Job>, StorageError>;

    /// Extend a running job's lease (the worker's heartbeat).
    fn heartbeat(&self, id: &str, lease_ms: i64) -> Result<(), StorageError>;

    /// Record a transcript; queues the webhook (if any) in the same transaction. Only a job
    /// still queued or running is finished: a worker that lost its lease and finishes late,
    /// after another node finished the job, changes nothing (a transcript is written once,
    /// and its webhook queued once).
    fn finish_done(
        &self,
        id: &str,
        language: &str,
        duration: f64,
        transcript: &serde_json::Value,
    ) -> Result<(), StorageError>;

    /// Record a failure; queues the webhook (if any) in the same transaction. As
    /// [`Jobs::finish_done`], only for a job still queued or running.
    fn finish_failed(
        &self,
        id: &str,
        code: crate::error::ErrorCode,
        message: &str,
    ) -> Result<(), StorageError>;

    /// Deliveries due now, oldest first.
    fn due_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StorageError>;

    /// The newest delivery of a job, if it has one.
    fn latest_delivery(&self, job_id: &str) -> Result<Option<Delivery>, StorageError>;

    /// A delivery went through.
    fn delivery_done(&self, id: &str) -> Result<(), StorageError>;

    /// A delivery failed; try again at `next_at` (ms since the epoch).
    fn delivery_retry(&self, id: &str, error: &str, next_at: i64) -> Result<(), StorageError>;

    /// A delivery failed for the last time.
    fn delivery_gave_up(&self, id: &str, error: &str) -> Result<(), StorageError>;

    /// Keep a finished piece of a running job (samples `start..end` of its audio).
    fn save_piece(
        &self,
        id: &str,
        start: usize,
        end: usize,
        transcript: &serde_json::Value,
    ) -> Result<(), StorageError>;

    /// The pieces kept for a job: `(start, end, transcript)`.
    fn pieces(&self, id: &str) -> Result<Vec<(usize, usize, serde_json::Value)>, StorageError>;

    /// Put a job back in the queue (an explicit retry, or a failure worth retrying), its
    /// attempts counted from zero when `reset_attempts`; whether the job exists.
    fn requeue(&self, id: &str, reset_attempts: bool) -> Result<bool, StorageError>;

    /// At start-up: jobs left `running` by a previous process. Each claim counted an attempt,
    /// so a job found here after `max_attempts` claims has been running every time its
    /// process died: it fails as `crashed_worker` (its audio kept, retryable by hand) instead
    /// of killing every restart. The others go back to the queue. Returns (requeued, failed).
    fn recover_running(&self, max_attempts: u32) -> Result<(usize, usize), StorageError>;

    /// Put a job that this process interrupted (shutdown) back in the queue, without
    /// counting the attempt: it did not crash anything.
    fn requeue_interrupted(&self, id: &str) -> Result<bool, StorageError>;

    /// Delete a record; returns its blob hash when no other record uses that blob any more.
    fn delete(&self, id: &str) -> Result<Option<Option<String>>, StorageError>;

    /// Finished jobs created more than `days` days ago (the operator's retention policy).
    fn expired(&self, days: u64) -> Result<Vec<String>, StorageError>;

    /// Whether any record points at this blob.
    fn sha_in_use(&self, sha: &str) -> Result<bool, StorageError>;

    /// Whether a write goes through (readiness).
    fn writable(&self) -> bool;

    /// Hold the lock under which the audio `sha` and the rows that point at it change
    /// together (an upload stores the file then its row; a delete removes the row then the
    /// file when no row is left), for every process on this store, until the lock is
    /// dropped. One process on SQLite needs none beyond the job service's own mutex.
    fn lock_audio(&self, _sha: &str) -> Result<AudioLock, StorageError> {
        Ok(AudioLock(None))
    }

    /// Call `wake` whenever a job is queued by any process on this store (a new job, a
    /// retry, a job taken back), from a thread of the store's own, until the process ends.
    /// One process on SQLite wakes its workers itself, so there is nothing to listen to.
    fn on_queued(&self, _wake: Box<dyn Fn() + Send>) {}
}

/// See [`Jobs::lock_audio`]: released when dropped.
pub struct AudioLock(#[allow(dead_code)] Option<Box<dyn Send>>);

/// A [`Jobs`] whose calls block (on SQLite's one connection while a worker writes, on the
/// network for PostgreSQL), made safe to call from the async handlers as well as from worker
/// threads: on a runtime thread each call runs under
/// `tokio::task::block_in_place`, which moves that thread's other tasks elsewhere meanwhile.
/// (The synchronous `postgres` client runs a runtime of its own, and starting one on a
/// runtime thread would panic.)
pub struct OffRuntime<J>(pub J);

pub(crate) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl<J: Jobs> Jobs for OffRuntime<J> {
    fn insert(&self, n: NewJob) -> Result<(Job, bool), StorageError> {
        off_runtime(|| self.0.insert(n))
    }

    fn get(&self, id: &str) -> Result<Option<Job>, StorageError> {
        off_runtime(|| self.0.get(id))
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Job>, StorageError> {
        off_runtime(|| self.0.list(f))
    }

    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StorageError> {
        off_runtime(|| self.0.count_by_status())
    }

    fn queued_count(&self, priority: Option<i32>) -> Result<i64, StorageError> {
        off_runtime(|| self.0.queued_count(priority))
    }

    fn claim(
        &self,
        lease_ms: i64,
        max_wait_ms: i64,
        max_attempts: u32,
    ) -> Result<Option<Job>, StorageError> {
        off_runtime(|| self.0.claim(lease_ms, max_wait_ms, max_attempts))
    }

    fn heartbeat(&self, id: &str, lease_ms: i64) -> Result<(), StorageError> {
        off_runtime(|| self.0.heartbeat(id, lease_ms))
    }

    fn finish_done(
        &self,
        id: &str,
        language: &str,
        duration: f64,
        transcript: &serde_json::Value,
    ) -> Result<(), StorageError> {
        off_runtime(|| self.0.finish_done(id, language, duration, transcript))
    }

    fn finish_failed(
        &self,
        id: &str,
        code: crate::error::ErrorCode,
        message: &str,
    ) -> Result<(), StorageError> {
        off_runtime(|| self.0.finish_failed(id, code, message))
    }

    fn due_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StorageError> {
        off_runtime(|| self.0.due_deliveries(limit))
    }

    fn latest_delivery(&self, job_id: &str) -> Result<Option<Delivery>, StorageError> {
        off_runtime(|| self.0.latest_delivery(job_id))
    }

    fn delivery_done(&self, id: &str) -> Result<(), StorageError> {
        off_runtime(|| self.0.delivery_done(id))
    }

    fn delivery_retry(&self, id: &str, error: &str, next_at: i64) -> Result<(), StorageError> {
        off_runtime(|| self.0.delivery_retry(id, error, next_at))
    }

    fn delivery_gave_up(&self, id: &str, error: &str) -> Result<(), StorageError> {
        off_runtime(|| self.0.delivery_gave_up(id, error))
    }

    fn save_piece(
        &self,
        id: &str,
        start: usize,
        end: usize,
        transcript: &serde_json::Value,
    ) -> Result<(), StorageError> {
        off_runtime(|| self.0.save_piece(id, start, end, transcript))
    }

    fn pieces(&self, id: &str) -> Result<Vec<(usize, usize, serde_json::Value)>, StorageError> {
        off_runtime(|| self.0.pieces(id))
    }

    fn requeue(&self, id: &str, reset_attempts: bool) -> Result<bool, StorageError> {
        off_runtime(|| self.0.requeue(id, reset_attempts))
    }

    fn recover_running(&self, max_attempts: u32) -> Result<(usize, usize), StorageError> {
        off_runtime(|| self.0.recover_running(max_attempts))
    }

    fn requeue_interrupted(&self, id: &str) -> Result<bool, StorageError> {
        off_runtime(|| self.0.requeue_interrupted(id))
    }

    fn delete(&self, id: &str) -> Result<Option<Option<String>>, StorageError> {
        off_runtime(|| self.0.delete(id))
    }

    fn expired(&self, days: u64) -> Result<Vec<String>, StorageError> {
        off_runtime(|| self.0.expired(days))
    }

    fn sha_in_use(&self, sha: &str) -> Result<bool, StorageError> {
        off_runtime(|| self.0.sha_in_use(sha))
    }

    fn writable(&self) -> bool {
        off_runtime(|| self.0.writable())
    }

    fn lock_audio(&self, sha: &str) -> Result<AudioLock, StorageError> {
        off_runtime(|| self.0.lock_audio(sha))
    }

    fn on_queued(&self, wake: Box<dyn Fn() + Send>) {
        self.0.on_queued(wake)
    }
}

/// The audio, stored once per content (by SHA-256). An upload is spooled to a local file
/// while it is hashed ([`PendingBlob`]), then made durable by [`Blobs::commit`]; only after
/// that may a record point at it.
pub trait Blobs: Send + Sync {
    /// Start spooling an upload.
    fn begin(&self) -> io::Result<PendingBlob>;

    /// The slow part of a commit, done before it and outside any lock: the folder fsyncs the
    /// spooled bytes, a bucket receives them. Returns whether this call stored the bytes under
    /// their hash (false for a folder, whose commit moves them into place, and for bytes a
    /// bucket already holds).
    fn stage(&self, p: &mut PendingBlob) -> io::Result<bool> {
        use std::io::Write;
        p.file.flush()?;
        p.file.sync_all()?;
        Ok(false)
    }

    /// Make the upload durable under its hash; returns (sha256, size). Bytes already stored
    /// are kept, and the spool goes. Correct without [`Blobs::stage`], and quick after it.
    fn commit(&self, p: PendingBlob) -> io::Result<(String, u64)>;

    /// The stored bytes.
    fn read(&self, sha: &str) -> io::Result<Vec<u8>>;

    /// Remove stored bytes (none stored is not an error).
    fn remove(&self, sha: &str) -> io::Result<()>;

    /// Whether the store answers (readiness): a folder that is there, a bucket that lists.
    fn check(&self) -> io::Result<()>;
}

/// An upload being spooled to a local temp file: hash and size accumulate as chunks arrive.
/// Dropped without a commit (refused or failed), it leaves nothing behind.
pub struct PendingBlob {
    file: std::fs::File,
    tmp: std::path::PathBuf,
    hasher: sha2::Sha256,
    size: u64,
}

impl PendingBlob {
    /// A new spool file in `dir`.
    fn create(dir: &std::path::Path) -> io::Result<PendingBlob> {
        use sha2::Digest;
        let tmp = dir.join(uuid::Uuid::now_v7().to_string());
        Ok(PendingBlob {
            file: std::fs::File::create(&tmp)?,
            tmp,
            hasher: sha2::Sha256::new(),
            size: 0,
        })
    }

    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        use sha2::Digest;
        use std::io::Write;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The SHA-256 of the bytes written so far (hex).
    pub fn sha256(&self) -> String {
        use sha2::Digest;
        hex::encode(self.hasher.clone().finalize())
    }
}

impl Drop for PendingBlob {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// How old a spool file must be to count as left by a crash.
const STALE_SPOOL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Make the spool folder, and clear the temp files a crash left in it: never referenced by a
/// row, but only those an hour old, since nodes sharing the folder may be spooling into it
/// right now.
fn open_spool(dir: &std::path::Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for e in std::fs::read_dir(dir)?.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_SPOOL);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// Whether a finishing update changed a row (`n`); when not, the job had already been
/// finished elsewhere, which is logged.
fn finished_now(n: usize, id: &str) -> bool {
    if n == 0 {
        tracing::warn!(id, "the job was already finished (its lease ran out and another worker took it); this result is dropped");
    }
    n > 0
}

/// Free disk (MiB) below which uploads are refused, by default (`--min-free-disk-mb`).
pub const MIN_FREE_DISK_MB: u64 = 512;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("database: {0}")]
    Pool(#[from] r2d2::Error),
}

impl StorageError {
    /// Whether the store could not be reached or refused (the object store, or no free
    /// database connection in time): nothing was stored, and the same request may succeed
    /// later, so the caller answers 503, not 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StorageError::Io(e) => e
                .get_ref()
                .is_some_and(|inner| inner.is::<blobs_s3::StoreUnavailable>()),
            StorageError::Pool(_) => true,
            StorageError::Db(_) | StorageError::Postgres(_) => false,
        }
    }

    /// Whether the disk (or the quota) is full: the caller answers 507, not 500.
    pub fn is_full(&self) -> bool {
        match self {
            StorageError::Io(e) => io_is_full(e),
            StorageError::Db(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StorageError::Db(_) | StorageError::Pool(_) => false,
            StorageError::Postgres(e) => e.code() == Some(&::postgres::error::SqlState::DISK_FULL),
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
    /// At most [`LIST_MAX`].
    pub limit: usize,
}

/// The most jobs one list query returns: the API's largest page (1000) and one more, which
/// tells whether another page follows.
pub const LIST_MAX: usize = 1001;
