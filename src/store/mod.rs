//! Durable storage: the job records ([`Store`]: [`Records`], [`Queue`], [`Outbox`],
//! [`Pieces`]) and the audio ([`Blobs`]), the seam that the job service, the workers and the
//! webhook sender go through. The records live in SQLite by default (`sqlite`) or in
//! PostgreSQL for several nodes (`postgres`); the audio in a folder (`blobs_fs`) or a bucket
//! (`blobs_s3`). `row` turns a stored row into a typed record, for both. `conformance` holds the behaviour both record stores must show, run against each.
//!
//! The write order is the promise: an upload is streamed to a temp file while hashed,
//! fsynced, renamed to `audio/ab/cd/<sha256>`, and the folder fsynced; only then is the row
//! inserted, and only after the insert commits (SQLite: WAL, `synchronous=FULL`) does anyone
//! answer 2xx. Identical audio is stored once; rows point at blobs by hash. Nothing is
//! deleted except by an explicit delete. Both stores are synchronous calls (rusqlite on one
//! connection behind a mutex; the `postgres` client on an r2d2 pool, which must not run on a
//! runtime thread), made from worker threads and, for the async handlers, from the blocking
//! pool (`jobs::Service` is the one bridge).
//!
//! The fair share (issue #39), in both stores: start-time fair queuing over audio seconds.
//! - Each client has a virtual time (`clients.vtime`): the audio seconds it has been served.
//! - A claim takes the job of the client with the least virtual time (a client not seen yet
//!   counts as 0).
//! - A claim adds the job's estimated audio ([`BYTES_PER_AUDIO_S`]) to its client's virtual
//!   time; finishing it replaces the estimate with its real duration.
//! - A client that had nothing queued starts, with its first queued job, at no less than the
//!   least virtual time of the clients that are waiting: a client idle for a day comes back
//!   level with the others, with no credit saved up.
//! - A claim writes one row, its client's; an insert reads the waiting clients' rows only
//!   when its client had nothing queued.
//!
//! This module holds the traits, and the helpers both record stores share; the record types
//! are in [`crate::job`].

mod blobs_fs;
mod blobs_s3;
#[cfg(test)]
pub(crate) mod conformance;
mod postgres;
mod row;
mod sqlite;

use std::io;

pub use blobs_fs::FsBlobs;
pub use blobs_s3::{parse_url as parse_s3_url, S3Blobs, S3Options};
pub use postgres::Postgres;
pub use sqlite::Sqlite;

use crate::engine::Transcript;
use crate::error::ErrorCode;
use crate::job::{
    Deleted, Delivery, Inserted, Job, JobResult, ListFilter, NewJob, NewReply, Piece, Priority,
    Reply, Status,
};

/// The words of a search, at most 16, with ё folded to е (as the indexes store it); every
/// one must match.
pub fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| w.replace('ё', "е").replace('Ё', "Е"))
        .collect()
}

/// Everything a node keeps about its jobs: [`Records`], [`Queue`], [`Outbox`], [`Pieces`] and
/// [`Chats`], each bound where it is used (the job service holds a `Store`; the workers use its
/// queue and pieces, the webhook sender its outbox, the Telegram bot its chats). Both record
/// stores are one.
pub trait Store: Records + Queue + Outbox + Pieces + Chats + Fetches {}

impl<T: Records + Queue + Outbox + Pieces + Chats + Fetches> Store for T {}

/// The job records. Every state change is one transaction. Calls block (on SQLite's one
/// connection while a worker writes, on the network for PostgreSQL): they are made from
/// worker threads, and from the async handlers only through `jobs::Service`, which runs
/// each on the blocking pool.
pub trait Records: Send + Sync {
    /// Insert a record (status `queued`). With an idempotency key already used, the
    /// existing record instead. With a [`QueueLimit`](crate::job::QueueLimit), the queued
    /// jobs are counted in the inserting transaction (under a lock every node takes), so
    /// concurrent inserts cannot pass the limit together.
    fn insert(&self, n: NewJob) -> Result<Inserted, StorageError>;

    /// A record by id.
    fn get(&self, id: &str) -> Result<Option<Job>, StorageError>;

    /// Records matching `f`, newest first. A row that does not read is left out, and logged:
    /// one corrupt row does not hide the others ([`Records::get`] names it).
    fn list(&self, f: &ListFilter) -> Result<Vec<Job>, StorageError>;

    /// How many records are in each status (metrics).
    fn count_by_status(&self) -> Result<Vec<(Status, i64)>, StorageError>;

    /// Delete a record (and its webhook deliveries and pieces); what became of its audio.
    fn delete(&self, id: &str) -> Result<Deleted, StorageError>;

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
}

/// The queue: which job runs next, and how a run ends.
pub trait Queue: Send + Sync {
    /// Jobs waiting for a worker; with `Some(p)`, only those of priority `p`.
    fn queued_count(&self, priority: Option<Priority>) -> Result<i64, StorageError>;

    /// Claim the next job for a worker: synchronous requests first; then the client that is
    /// furthest behind in its share (fair share, by audio seconds: see the module's doc), and
    /// within that client's jobs, those that waited longer than `max_wait_ms` (oldest first),
    /// then the smallest file (a short voice note is not stuck behind a long one). Also
    /// reclaims `running` jobs whose lease expired.
    /// A job whose lease expired after `max_attempts` claims fails as `crashed_worker`
    /// instead (see [`Queue::recover_running`]). A job whose row does not read fails as
    /// `storage_error` in the same step, and the claim returns [`StorageError::Corrupt`]:
    /// it is never run with default options, and never claimed again.
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
    fn finish_done(&self, id: &str, result: &JobResult) -> Result<(), StorageError>;

    /// Record a failure; queues the webhook (if any) in the same transaction. As
    /// [`Queue::finish_done`], only for a job still queued or running.
    fn finish_failed(&self, id: &str, code: ErrorCode, message: &str) -> Result<(), StorageError>;

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

    /// Call `wake` whenever a job is queued by any process on this store (a new job, a
    /// retry, a job taken back), from a thread of the store's own, until the process ends.
    /// One process on SQLite wakes its workers itself, so there is nothing to listen to.
    fn on_queued(&self, _wake: Box<dyn Fn() + Send>) {}
}

/// The webhook outbox: a delivery is queued in the transaction that finishes its job
/// ([`Queue::finish_done`], [`Queue::finish_failed`]), then sent and retried from here. The
/// sender reads the job it sends through [`Records`].
pub trait Outbox: Records {
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
}

/// Jobs that fetch their own audio (`source` on `POST /v1/jobs`): claimed for a fetch under a
/// lease, so that a node that dies mid-download leaves the job to be claimed again, then
/// stored (`queued`) or failed (`Queue::finish_failed`).
pub trait Fetches: Send + Sync {
    /// A `fetching` job due now, leased for `lease_ms`, its attempt counted.
    fn claim_fetch(&self, lease_ms: i64) -> Result<Option<Job>, StorageError>;
    /// Its audio is stored: `queued`, with the audio's hash and size, its attempts reset.
    /// `false` when it is no longer `fetching` (deleted or failed meanwhile).
    fn fetched(&self, id: &str, sha256: &str, size: u64) -> Result<bool, StorageError>;
    /// Try again at `at_ms` (this node's clock).
    fn fetch_later(&self, id: &str, at_ms: i64) -> Result<(), StorageError>;
}

/// What a chat bot keeps: how far it has read its updates, and the replies it owes (an
/// outbox, as [`Outbox`] is for webhooks). Filing a reply twice files it once.
pub trait Chats: Send + Sync {
    /// The first update the bot `bot` has not handled yet (0 for a bot never seen).
    fn bot_offset(&self, bot: &str) -> Result<i64, StorageError>;
    /// Record that every update before `offset` is handled.
    fn set_bot_offset(&self, bot: &str, offset: i64) -> Result<(), StorageError>;
    /// The job made with this idempotency key, if any (a note seen before is not fetched
    /// again).
    fn job_by_key(&self, key: &str) -> Result<Option<String>, StorageError>;
    /// File a reply; `false` when one with its id was filed before (nothing changes).
    fn file_reply(&self, r: &NewReply) -> Result<bool, StorageError>;
    /// Pending replies due now, with their jobs' status: those ready to send first (fixed
    /// text, or a job that ended), then those still waiting; oldest first within each.
    fn due_replies(&self, limit: usize) -> Result<Vec<Reply>, StorageError>;
    /// `parts` parts of the reply are posted.
    fn reply_progress(&self, id: &str, parts: u32) -> Result<(), StorageError>;
    /// The whole reply is posted.
    fn reply_sent(&self, id: &str) -> Result<(), StorageError>;
    /// Try again at `next_at` (ms since the epoch, this node's clock).
    fn reply_retry(&self, id: &str, error: &str, next_at: i64) -> Result<(), StorageError>;
    /// Given up: the chat refused it.
    fn reply_failed(&self, id: &str, error: &str) -> Result<(), StorageError>;
}

/// The finished pieces of a long job, kept while it runs so that a job cut short by a crash
/// or a restart goes on from them; they go when the job finishes.
pub trait Pieces: Send + Sync {
    /// Keep a finished piece of a running job (samples `start..end` of its audio).
    fn save_piece(
        &self,
        id: &str,
        start: usize,
        end: usize,
        transcript: &Transcript,
    ) -> Result<(), StorageError>;

    /// The pieces kept for a job, in order.
    fn pieces(&self, id: &str) -> Result<Vec<Piece>, StorageError>;
}

/// Bytes of a stored file taken as one second of audio until it is decoded: a voice note's
/// Opus at 32 kbit/s.
pub const BYTES_PER_AUDIO_S: f64 = 4000.0;

/// See [`Records::lock_audio`]: released when dropped.
pub struct AudioLock(#[allow(dead_code)] Option<Box<dyn Send>>);

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

/// The records that read, each one that does not logged (see [`Records::list`]).
fn readable(rows: impl Iterator<Item = Result<Job, StorageError>>) -> Vec<Job> {
    rows.filter_map(|r| {
        r.map_err(
            |e| tracing::error!(error = %e, "a job left out of a list: its row does not read"),
        )
        .ok()
    })
    .collect()
}

/// Whether an insert under `limit` by `client` is refused, given `count` (queued jobs in
/// all with `None`, of one client with its name), counted in the inserting transaction.
fn over_limit<E>(
    limit: crate::job::QueueLimit,
    client: Option<&str>,
    mut count: impl FnMut(Option<&str>) -> Result<usize, E>,
) -> Result<Option<crate::job::QueueFull>, E> {
    let queued = count(None)?;
    if queued >= limit.total {
        return Ok(Some(crate::job::QueueFull {
            queued,
            limit: limit.total,
            client: false,
        }));
    }
    if let (Some(max), Some(name)) = (limit.per_client, client) {
        let mine = count(Some(name))?;
        if mine >= max {
            return Ok(Some(crate::job::QueueFull {
                queued: mine,
                limit: max,
                client: true,
            }));
        }
    }
    Ok(None)
}

/// Counts by stored status name, each name read (an unknown one is a corrupt row).
fn counts(rows: Vec<(String, i64)>) -> Result<Vec<(Status, i64)>, StorageError> {
    rows.into_iter()
        .map(|(s, n)| {
            Ok((
                s.parse()
                    .map_err(|e| row::corrupt("(count)", "status", e))?,
                n,
            ))
        })
        .collect()
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
    /// A stored value that does not read as what was written.
    #[error("job {id}: the stored {column} does not read: {reason}")]
    Corrupt {
        id: String,
        column: &'static str,
        reason: String,
    },
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
            StorageError::Db(_) | StorageError::Postgres(_) | StorageError::Corrupt { .. } => false,
        }
    }

    /// Whether the disk (or the quota) is full: the caller answers 507, not 500.
    pub fn is_full(&self) -> bool {
        match self {
            StorageError::Io(e) => io_is_full(e),
            StorageError::Db(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StorageError::Db(_) | StorageError::Pool(_) | StorageError::Corrupt { .. } => false,
            StorageError::Postgres(e) => e.code() == Some(&::postgres::error::SqlState::DISK_FULL),
        }
    }
}

/// Whether an I/O error means "no space left" (ENOSPC) or "quota exceeded" (EDQUOT).
pub fn io_is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
