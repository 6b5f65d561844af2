//! One error type for every handler, OpenAI's `{"error":{message,type,param,code}}` shape,
//! and the middleware that puts axum's own refusals in that shape too.

use super::*;

/// An API error in OpenAI's shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    param: Option<&'static str>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// An error with its code's own status ([`ErrorCode::http_status`]).
    pub fn of(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(code.http_status())
            .expect("ErrorCode::http_status gives valid statuses");
        ApiError::new(status, code, message)
    }

    pub(super) fn param(mut self, p: &'static str) -> Self {
        self.param = Some(p);
        self
    }
    pub(super) fn retry_after(mut self, s: u64) -> Self {
        self.retry_after = Some(s);
        self
    }
    pub(super) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::of(ErrorCode::InternalError, format!("internal error: {e}"))
    }
}

/// Storage failures: a full disk (or quota) is 507 `insufficient_storage`, a store that
/// cannot be reached 503 `storage_unavailable`, anything else 500 `storage_error` (the
/// database's or the store's own words go to the log, not to the client).
impl From<crate::store::StorageError> for ApiError {
    fn from(e: crate::store::StorageError) -> Self {
        if let crate::store::StorageError::Corrupt { .. } = e {
            tracing::error!(error = %e, "a stored record does not read");
            ApiError::of(ErrorCode::StorageError, e.to_string())
        } else if e.is_full() {
            disk_full()
        } else if e.is_unavailable() {
            tracing::error!(error = %e, "storage unavailable");
            ApiError::of(
                ErrorCode::StorageUnavailable,
                "the service's storage did not answer, so nothing was stored; retry later",
            )
            .retry_after(30)
        } else {
            tracing::error!(error = %e, "storage failed");
            ApiError::of(
                ErrorCode::StorageError,
                "the service's storage failed, so nothing was stored; retry later",
            )
        }
    }
}

/// A form field that does not hold what it should: 400 with its code and the field named.
impl From<crate::job::FormError> for ApiError {
    fn from(e: crate::job::FormError) -> Self {
        ApiError::of(e.code, e.message).param(e.param)
    }
}

/// The job service's refusals, each with its code; storage failures as above.
impl From<crate::jobs::JobError> for ApiError {
    fn from(e: crate::jobs::JobError) -> Self {
        match e {
            crate::jobs::JobError::Storage(e) => ApiError::from(e),
            crate::jobs::JobError::Stopped | crate::jobs::JobError::Internal(_) => {
                ApiError::internal(e)
            }
            e => ApiError::of(e.code(), e.to_string()),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::from(crate::store::StorageError::Io(e))
    }
}

pub(super) fn disk_full() -> ApiError {
    ApiError::of(
        ErrorCode::InsufficientStorage,
        "the server's disk is full, so nothing was stored; retry later",
    )
    .retry_after(60)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            crate::error::error_body(self.status.as_u16(), self.code, &self.message, self.param);
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// Every 4xx/5xx leaves in the `{"error":{…}}` shape, including what axum answers by itself
/// (a query string that does not parse, a bad multipart boundary, a wrong method): its
/// plain-text reason becomes the message, and the status gives the code.
pub(super) async fn json_errors(req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    let status = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let code = match status.as_u16() {
        400 => ErrorCode::InvalidRequest,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::BodyTimeout,
        413 => ErrorCode::TooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        416 => ErrorCode::RangeNotSatisfiable,
        422 => ErrorCode::InvalidRequest,
        _ if status.is_server_error() => ErrorCode::InternalError,
        _ => ErrorCode::HttpError,
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        clip(&text, 300)
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

pub(super) use crate::error::clip;

pub(super) fn job_error(j: &Job) -> ApiError {
    // What the input did wrong keeps its code, answered 400 whatever the code's own status
    // (a stored file found too large at decoding is not an upload refused at 413); a failure
    // of the service keeps its code too (`crashed_worker`, `storage_error`...), answered
    // with its own 5xx status, or 500.
    let (code, message) = match &j.failure {
        Some(f) => (f.code, f.message.clone()),
        None => (
            ErrorCode::TranscriptionFailed,
            "transcription failed".into(),
        ),
    };
    let status = if code.is_bad_input() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::from_u16(code.http_status())
            .ok()
            .filter(|s| s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    };
    ApiError::new(status, code, message).param("file")
}
