//! The one list of machine-readable error codes.
//!
//! Every error a client can see carries one of these: the HTTP API's `{"error":{"code"}}`
//! and a failed job's stored `error.code` (the CLI prints the message). The
//! library's errors (`DecodeError::code`, `EngineError::code`) return them, the job store keeps
//! their names, and the HTTP layer turns them into statuses. A new error is a variant here, and
//! the compiler then asks where it belongs in [`ErrorCode::http_status`] and
//! [`ErrorCode::is_bad_input`].

use serde::{Deserialize, Serialize};

/// Defines the enum, its names and [`ErrorCode::ALL`] from one list.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A stable, machine-readable error code (serialized as its snake_case name).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ErrorCode {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        /// Its schema in `/openapi.json`: a string, one of the names (written here rather
        /// than derived, since a derive does not see a name that comes from this macro).
        impl utoipa::PartialSchema for ErrorCode {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some("A stable, machine-readable error code."))
                    .enum_values(Some([$($name,)*]))
                    .into()
            }
        }

        impl utoipa::ToSchema for ErrorCode {}

        impl ErrorCode {
            /// Every code (for tests and documentation).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The name, as serialized and stored.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }
        }
    };
}

error_codes! {
    // The audio (decoder).
    Empty => "empty",
    NotAudio => "not_audio",
    UnsupportedCodec => "unsupported_codec",
    NoAudioTrack => "no_audio_track",
    Corrupt => "corrupt",
    TooLarge => "too_large",
    TooLong => "too_long",
    // The engine.
    InvalidLanguage => "invalid_language",
    ModelNotFound => "model_not_found",
    ModelLoadFailed => "model_load_failed",
    InferenceFailed => "inference_failed",
    GpuUnavailable => "gpu_unavailable",
    Cancelled => "cancelled",
    // A job that failed for a reason that is not the input's.
    TranscriptionFailed => "transcription_failed",
    StorageError => "storage_error",
    /// The process died while transcribing the note, on each of its attempts.
    CrashedWorker => "crashed_worker",
    /// The database or the object store could not be reached: retry later.
    StorageUnavailable => "storage_unavailable",
    // A job that fetches its own audio (`source`).
    /// The file is over the byte cap (or Telegram's 20 MB for bots).
    SourceTooLarge => "source_too_large",
    /// The file is gone: a 404 or 410, or a Telegram file id Telegram no longer knows.
    SourceExpired => "source_expired",
    /// The file's host refused earshot's credentials (401, 403; a refused bot token).
    SourceAuth => "source_auth",
    /// The file's host could not be reached, or answered otherwise, after the retries.
    SourceUnreachable => "source_unreachable",
    /// A source URL on a host not in `--fetch-allow-host`.
    HostNotAllowed => "host_not_allowed",
    /// A `source` that does not read.
    InvalidSource => "invalid_source",
    // The request.
    InvalidRequest => "invalid_request",
    InvalidValue => "invalid_value",
    InvalidBody => "invalid_body",
    InvalidMultipart => "invalid_multipart",
    MissingFile => "missing_file",
    UnsupportedMediaType => "unsupported_media_type",
    InvalidApiKey => "invalid_api_key",
    InvalidCallbackUrl => "invalid_callback_url",
    IdempotencyKeyReused => "idempotency_key_reused",
    NotFound => "not_found",
    JobNotFound => "job_not_found",
    JobRunning => "job_running",
    NotRetryable => "not_retryable",
    MethodNotAllowed => "method_not_allowed",
    BodyTimeout => "body_timeout",
    RangeNotSatisfiable => "range_not_satisfiable",
    /// Any other refusal of the HTTP layer.
    HttpError => "http_error",
    // The service's state.
    TooManyConnections => "too_many_connections",
    Overloaded => "overloaded",
    QueueFull => "queue_full",
    ShuttingDown => "shutting_down",
    NotReady => "not_ready",
    InsufficientStorage => "insufficient_storage",
    InternalError => "internal_error",
}

impl ErrorCode {
    /// A stored name back to its code; `None` for a name this version does not know.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    /// Whether a job that failed with this code failed because of what was sent (the client
    /// can fix it), rather than because of the service.
    pub fn is_bad_input(self) -> bool {
        use ErrorCode::*;
        match self {
            Empty | NotAudio | UnsupportedCodec | NoAudioTrack | Corrupt | TooLarge | TooLong
            | InvalidLanguage => true,
            SourceTooLarge | SourceExpired | HostNotAllowed | InvalidSource => true,
            SourceAuth | SourceUnreachable => false,
            ModelNotFound | ModelLoadFailed | InferenceFailed | GpuUnavailable | Cancelled
            | TranscriptionFailed | StorageError | CrashedWorker | StorageUnavailable
            | InternalError => false,
            InvalidRequest | InvalidValue | InvalidBody | InvalidMultipart | MissingFile
            | UnsupportedMediaType | InvalidApiKey | InvalidCallbackUrl | IdempotencyKeyReused
            | NotFound | JobNotFound | JobRunning | NotRetryable | MethodNotAllowed
            | BodyTimeout | RangeNotSatisfiable | HttpError => true,
            Overloaded | QueueFull | ShuttingDown | NotReady | InsufficientStorage
            | TooManyConnections => false,
        }
    }

    /// The HTTP status a response with this code has.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            Empty | NotAudio | UnsupportedCodec | NoAudioTrack | Corrupt | TooLong
            | InvalidLanguage | InvalidRequest | InvalidValue | InvalidBody | InvalidMultipart
            | MissingFile | InvalidCallbackUrl | HttpError | InvalidSource | SourceExpired => 400,
            HostNotAllowed => 403,
            SourceAuth | SourceUnreachable => 502,
            InvalidApiKey => 401,
            NotFound | JobNotFound | ModelNotFound => 404,
            MethodNotAllowed => 405,
            BodyTimeout => 408,
            JobRunning | NotRetryable | NotReady => 409,
            TooLarge | SourceTooLarge => 413,
            UnsupportedMediaType => 415,
            RangeNotSatisfiable => 416,
            IdempotencyKeyReused => 422,
            QueueFull => 429,
            Overloaded | ShuttingDown | GpuUnavailable | Cancelled | TooManyConnections
            | StorageUnavailable => 503,
            InsufficientStorage => 507,
            ModelLoadFailed | InferenceFailed | TranscriptionFailed | StorageError
            | CrashedWorker | InternalError => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The `type` of an error body for an HTTP status (OpenAI's names).
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        400 | 403 | 404 | 405 | 408 | 409 | 413 | 415 | 416 | 422 => "invalid_request_error",
        429 => "rate_limit_error",
        503 => "service_unavailable",
        _ => "server_error",
    }
}

/// The one JSON error body, OpenAI's shape: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A sentence a person can act on.
    pub message: String,
    /// OpenAI's class of the status: `invalid_request_error`, `authentication_error`,
    /// `rate_limit_error`, `service_unavailable` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The field or parameter at fault, when one is.
    pub param: Option<String>,
    /// The machine-readable code.
    pub code: ErrorCode,
}

/// The error body for `status` (the HTTP layer's `ApiError` and the accept loop's refusal
/// both write it).
pub fn error_body(
    status: u16,
    code: ErrorCode,
    message: &str,
    param: Option<&str>,
) -> serde_json::Value {
    serde_json::to_value(ErrorBody {
        error: ErrorDetail {
            message: message.to_string(),
            kind: error_type(status).to_string(),
            param: param.map(str::to_string),
            code,
        },
    })
    .expect("an error body serializes")
}

/// At most `max` characters of `s`, with "…" when cut: user input quoted in a message.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_parse() {
        use ErrorCode::*;
        let names: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "every name is different");
        for &c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str(), "{c:?}");
            // snake_case of the variant, as the API has always spelled them.
            assert_eq!(
                format!("{c:?}")
                    .chars()
                    .enumerate()
                    .flat_map(|(i, ch)| {
                        let sep = (i > 0 && ch.is_uppercase()).then_some('_');
                        sep.into_iter().chain(ch.to_lowercase())
                    })
                    .collect::<String>(),
                c.as_str()
            );
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert!((400..600).contains(&c.http_status()));
        }
        // A job that failed on its input is the client's to fix; one that failed on the
        // service is not.
        for c in [Empty, NotAudio, Corrupt, TooLarge, TooLong, InvalidLanguage] {
            assert!(c.is_bad_input(), "{c:?}");
        }
        for c in [InferenceFailed, StorageError, Cancelled, ModelLoadFailed] {
            assert!(!c.is_bad_input(), "{c:?}");
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    /// docs/api.md's error table names every code in the row of its status, so no code can
    /// be missing from it (issue #40, item 11).
    #[test]
    fn the_docs_error_table_names_every_code_under_its_status() {
        let doc = include_str!("../docs/api.md");
        let mut missing = Vec::new();
        for &c in ErrorCode::ALL {
            let row = format!("| {} |", c.http_status());
            let named = doc
                .lines()
                .filter(|l| l.starts_with(&row))
                .any(|l| l.contains(&format!("`{}`", c.as_str())));
            if !named {
                missing.push(format!("{} {}", c.http_status(), c.as_str()));
            }
        }
        assert!(
            missing.is_empty(),
            "docs/api.md's error table lacks {missing:?}"
        );
    }
}
