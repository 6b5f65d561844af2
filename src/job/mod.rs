//! The job record: one voice note's job ([`Job`]), what it asks ([`JobOptions`]), what it
//! keeps once done ([`JobResult`]) or why it failed ([`Failure`]), and the webhook deliveries
//! of its end ([`Delivery`]).
//!
//! Typed here, below the stores and above the engine: `store` turns rows into these and back
//! (the JSON columns stay JSON in the database, so that search reads `$.text` and the review
//! filter `$.review.needed`), and a row that does not read is a storage error there, never a
//! record with defaults. `jobs` owns the rules that change them.
//!
//! Stored names are a compatibility boundary: a status, an event or a delivery status is
//! only ever added, with a migration. An error code that this version does not know (a newer
//! node wrote it to a shared database) reads as `transcription_failed`, its message kept,
//! with a warning: nodes on one database should run one version, and an older one still
//! shows the failure.

mod options;
mod result;

use serde::Serialize;

use crate::engine::Transcript;
use crate::error::ErrorCode;

pub use options::{flag, Defaults, FormError, JobOptions, MAX_BEAM};
pub use result::JobResult;

/// A stored name that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{name}'")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
}

/// Defines a small enum stored by name, with `as_str` and `FromStr`.
macro_rules! stored_names {
    ($(#[$doc:meta])* $ty:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $name:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $ty {
            $($(#[$vdoc])* #[serde(rename = $name)] $variant,)*
        }

        /// Its schema in `/openapi.json`: a string, one of the names.
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($name,)*]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $ty {}

        impl $ty {
            /// Every value.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];

            /// The name, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<$ty, UnknownName> {
                match s {
                    $($name => Ok($ty::$variant),)*
                    _ => Err(UnknownName { what: $what, name: s.to_string() }),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_names! {
    /// A job's life: (`fetching` →) `queued` → `running` → `done` | `failed`. A job whose
    /// audio is fetched from a `source` (a URL, a Telegram file) is `fetching` until it is
    /// stored.
    Status, "status" {
        Fetching => "fetching",
        Queued => "queued",
        Running => "running",
        Done => "done",
        Failed => "failed",
    }
}

stored_names! {
    /// What a webhook delivery announces.
    Event, "event" {
        Done => "job.done",
        Failed => "job.failed",
    }
}

stored_names! {
    /// Where a webhook delivery stands.
    DeliveryStatus, "delivery status" {
        /// Not sent yet, or to be tried again.
        Pending => "pending",
        Delivered => "delivered",
        /// Given up after the last attempt.
        Failed => "failed",
    }
}

mod reply;
pub use reply::{NewReply, Reply, ReplyStatus};

impl Status {
    /// Whether the job has ended (done or failed).
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Done | Status::Failed)
    }
}

/// Which jobs a worker takes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// A synchronous request: its client is waiting on the connection.
    Sync,
    /// A queued job (`POST /v1/jobs`).
    Queued,
}

impl Priority {
    /// As stored (the claim orders by it, smallest first).
    pub fn as_i32(self) -> i32 {
        match self {
            Priority::Sync => 0,
            Priority::Queued => 1,
        }
    }

    /// A stored value back.
    pub fn from_i32(n: i32) -> Result<Priority, UnknownName> {
        match n {
            0 => Ok(Priority::Sync),
            1 => Ok(Priority::Queued),
            _ => Err(UnknownName {
                what: "priority",
                name: n.to_string(),
            }),
        }
    }
}

/// Why a job failed: the code a client sees, and a sentence.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    /// A stored failure. A code this version does not know reads as `transcription_failed`
    /// (see the module's doc), with a warning; a failure stored without a message gets one.
    pub fn read(id: &str, code: &str, message: Option<String>) -> Failure {
        let message = message.unwrap_or_else(|| "transcription failed".into());
        match ErrorCode::parse(code) {
            Some(code) => Failure { code, message },
            None => {
                tracing::warn!(
                    id,
                    code,
                    "a failure code this version does not know; shown as transcription_failed"
                );
                Failure {
                    code: ErrorCode::TranscriptionFailed,
                    message,
                }
            }
        }
    }
}

/// One voice note's job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
    /// The audio's SHA-256 (hex): where its bytes are stored.
    pub sha256: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub external_id: Option<String>,
    pub source: Option<String>,
    pub status: Status,
    /// Claims so far (a retry by hand counts from zero).
    pub attempts: u32,
    /// Set when failed.
    pub failure: Option<Failure>,
    /// The transcript's language, once done.
    pub language: Option<String>,
    /// Seconds of audio, once done.
    pub duration: Option<f64>,
    /// Set when done.
    pub result: Option<JobResult>,
    pub options: JobOptions,
    pub priority: Priority,
    pub idempotency_key: Option<String>,
    pub callback_url: Option<String>,
    /// The name of the API key that created it (`None` when the service has no keys).
    pub client: Option<String>,
    /// Where its audio is fetched from, for a job made from a `source`.
    pub fetch: Option<Source>,
}

impl Job {
    /// Whether its audio is stored (a job made from a `source` has none until fetched).
    pub fn has_audio(&self) -> bool {
        !self.sha256.is_empty()
    }
}

/// Where a job's audio is fetched from (`source` on `POST /v1/jobs`), as JSON:
/// `{"telegram": {"file_id": "..."}}` or `{"url": "https://..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A file the configured Telegram bot can fetch (`getFile`, afresh at each attempt).
    Telegram { file_id: String },
    /// An `https` URL on a host in `--fetch-allow-host`.
    Url(String),
}

/// A new record, before insertion.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub sha256: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub external_id: Option<String>,
    pub source: Option<String>,
    pub options: JobOptions,
    pub priority: Priority,
    pub idempotency_key: Option<String>,
    pub callback_url: Option<String>,
    /// The name of the API key that sends it.
    pub client: Option<String>,
    /// Where to fetch the audio from: the job starts `fetching`, with no audio (`sha256`
    /// empty) until the store's `Fetches::fetched`.
    pub fetch: Option<Source>,
    /// The queue limits to check in the inserting transaction (`None`: none, as for a
    /// synchronous request, which is admitted by its expected wait instead).
    pub limit: Option<QueueLimit>,
}

/// How many queued jobs an insert may find before it is refused: in all, and of the
/// inserting client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimit {
    pub total: usize,
    pub per_client: Option<usize>,
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// A new record, queued.
    New(Job),
    /// The idempotency key was used before: that record.
    Existing(Job),
    /// Over a [`QueueLimit`]: nothing was inserted.
    Full(QueueFull),
}

impl Inserted {
    /// The record, new or existing; `None` when refused.
    pub fn into_job(self) -> Option<Job> {
        match self {
            Inserted::New(j) | Inserted::Existing(j) => Some(j),
            Inserted::Full(_) => None,
        }
    }

    /// Whether a new record was made.
    pub fn created(&self) -> bool {
        matches!(self, Inserted::New(_))
    }
}

/// A refused insert: how many were queued, against which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull {
    pub queued: usize,
    pub limit: usize,
    /// Whether it was the client's own limit (`--client-queue-limit`), not the service's.
    pub client: bool,
}

/// A webhook delivery in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub job_id: String,
    pub url: String,
    pub event: Event,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A finished piece of a long job: samples `start..end` of its audio, and their transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub start: usize,
    pub end: usize,
    pub transcript: Transcript,
}

/// What deleting a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// There was no such record.
    Missing,
    /// The record went; other records still point at its audio.
    AudioShared,
    /// The record went, and it was the last to point at this audio (its SHA-256): the
    /// caller removes the bytes.
    AudioUnused(String),
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
    /// Only the jobs of this client (API key name).
    pub client: Option<String>,
    /// At most [`LIST_MAX`].
    pub limit: usize,
}

/// The most jobs one list query returns: the API's largest page (1000) and one more, which
/// tells whether another page follows.
pub const LIST_MAX: usize = 1001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back_and_nothing_else_does() {
        for &s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        for &e in Event::ALL {
            assert_eq!(e.as_str().parse::<Event>(), Ok(e));
        }
        for &d in DeliveryStatus::ALL {
            assert_eq!(d.as_str().parse::<DeliveryStatus>(), Ok(d));
        }
        assert_eq!(
            "Queued".parse::<Status>().unwrap_err().to_string(),
            "unknown status 'Queued'"
        );
        assert!("".parse::<Status>().is_err());
        assert!("job.started".parse::<Event>().is_err());
        for p in [Priority::Sync, Priority::Queued] {
            assert_eq!(Priority::from_i32(p.as_i32()), Ok(p));
        }
        assert!(Priority::from_i32(7).is_err());
    }

    #[test]
    fn a_failure_code_from_a_newer_version_still_reads_as_a_failure() {
        let known = Failure::read("j", "crashed_worker", Some("died".into()));
        assert_eq!(known.code, ErrorCode::CrashedWorker);
        let unknown = Failure::read("j", "gpu_melted", Some("hot".into()));
        assert_eq!(
            unknown,
            Failure {
                code: ErrorCode::TranscriptionFailed,
                message: "hot".into()
            }
        );
        assert_eq!(
            Failure::read("j", "corrupt", None).message,
            "transcription failed"
        );
    }
}
