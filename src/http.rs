//! `earshot serve`: the HTTP shell over storage, the job queue and the engine.
//!
//! Routes: OpenAI's `/v1/audio/transcriptions` and `/translations` (synchronous, but every
//! request is also a durable job), `/v1/jobs` (queued jobs), `/v1/models`, `/healthz`,
//! `/readyz`, `/metrics`. Errors use OpenAI's `{"error":{message,type,param,code}}` shape.
//! Uploads are streamed to disk with a hard size limit; audio is fsynced before any 2xx.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::ServeConfig;
use crate::error::ErrorCode;
use crate::jobs::{JobOptions, JobResult, Queue};
use crate::output::{self, Format};
use crate::storage::{Job, ListFilter, NewJob, PendingBlob, Status};

/// Shared state of the running service.
pub struct AppState {
    pub cfg: ServeConfig,
    pub queue: Arc<Queue>,
    pub model_name: String,
    requests: Mutex<HashMap<(String, u16), u64>>,
    /// Key for signed audio URLs (see [`AppState::audio_url`]).
    url_key: [u8; 32],
    /// Synchronous requests admitted and not yet answered (see [`SyncSlot`]).
    sync_slots: AtomicUsize,
}

/// One admitted synchronous request. Taken atomically *before* the body is read, so slow
/// uploaders cannot all slip past the limit; given back when the request is answered.
struct SyncSlot(Shared);

impl SyncSlot {
    /// One worker's job running and one waiting per worker: more would only wait longer
    /// than a client should hold a connection open.
    fn reserve(s: &Shared) -> Option<SyncSlot> {
        let cap = 2 * s.queue.workers.max(1);
        s.sync_slots
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| SyncSlot(s.clone()))
    }
}

impl Drop for SyncSlot {
    fn drop(&mut self) {
        self.0.sync_slots.fetch_sub(1, Ordering::SeqCst);
    }
}

pub type Shared = Arc<AppState>;

/// An API error in OpenAI's shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: ErrorCode,
    message: String,
    param: Option<&'static str>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        let kind = match status.as_u16() {
            401 => "authentication_error",
            400 | 404 | 405 | 408 | 409 | 413 | 415 | 416 | 422 => "invalid_request_error",
            429 => "rate_limit_error",
            503 => "service_unavailable",
            _ => "server_error",
        };
        ApiError {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }
    fn param(mut self, p: &'static str) -> Self {
        self.param = Some(p);
        self
    }
    fn retry_after(mut self, s: u64) -> Self {
        self.retry_after = Some(s);
        self
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            format!("internal error: {e}"),
        )
    }
}

/// Storage failures: a full disk (or quota) is 507 `insufficient_storage`, anything else 500.
impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        if e.is_full() {
            disk_full()
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::from(crate::storage::StorageError::Io(e))
    }
}

fn disk_full() -> ApiError {
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        ErrorCode::InsufficientStorage,
        "the server's disk is full, so nothing was stored; retry later",
    )
    .retry_after(60)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}});
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Build the router.
pub fn router(state: Shared) -> Router {
    let limit = state.cfg.max_upload_bytes as usize + 1024 * 1024;
    let v1 = Router::new()
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/audio/translations", post(translations))
        .route("/v1/jobs", post(create_job).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job).delete(delete_job))
        .route("/v1/jobs/{id}/audio", get(get_audio))
        .route("/v1/jobs/{id}/transcript", get(get_transcript))
        .route("/v1/jobs/{id}/retry", post(retry_job))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(v1)
        .merge(crate::web::routes())
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such route; the API is under /v1 (see docs/api.md)",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(json_errors))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("a request handler panicked").into_response()
            },
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Every 4xx/5xx leaves in the `{"error":{…}}` shape, including what axum answers by itself
/// (a query string that does not parse, a bad multipart boundary, a wrong method): its
/// plain-text reason becomes the message, and the status gives the code.
async fn json_errors(req: Request, next: Next) -> Response {
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

impl AppState {
    pub fn new(cfg: ServeConfig, queue: Arc<Queue>, model_name: String) -> Shared {
        Arc::new(AppState {
            url_key: url_key(&cfg.api_keys),
            cfg,
            queue,
            model_name,
            requests: Mutex::new(HashMap::new()),
            sync_slots: AtomicUsize::new(0),
        })
    }

    /// Where a job's audio can be fetched. With API keys set, an `<audio>` element or a
    /// download link cannot send a Bearer header, so the URL carries its own permission:
    /// `expires` (24 to 25 h ahead, whole hours, so a URL stays the same for an hour) and
    /// `sig`, an HMAC-SHA256 of the job id and expiry keyed by a hash of the API keys. It
    /// opens that one job's audio, and stops working when it expires or the keys change.
    pub fn audio_url(&self, id: &str) -> String {
        if self.cfg.api_keys.is_empty() {
            return format!("/v1/jobs/{id}/audio");
        }
        let hour = crate::storage::now_ms() / 1000 / 3600;
        let expires = (hour + 25) * 3600;
        let sig = hex::encode(self.url_mac(id, expires).finalize().into_bytes());
        format!("/v1/jobs/{id}/audio?expires={expires}&sig={sig}")
    }

    fn url_mac(&self, id: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.url_key).expect("HMAC takes keys of any length");
        mac.update(format!("{id}\n{expires}").as_bytes());
        mac
    }

    /// Whether `path?query` is a valid, unexpired signed audio URL.
    fn signed_audio_ok(&self, path: &str, query: Option<&str>) -> bool {
        let Some(id) = path
            .strip_prefix("/v1/jobs/")
            .and_then(|p| p.strip_suffix("/audio"))
            .filter(|id| !id.is_empty() && !id.contains('/'))
        else {
            return false;
        };
        let (mut expires, mut sig) = (None, None);
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse::<i64>().ok(),
                Some(("sig", v)) => sig = hex::decode(v).ok(),
                _ => {}
            }
        }
        match (expires, sig) {
            (Some(e), Some(sig)) if e > crate::storage::now_ms() / 1000 => {
                self.url_mac(id, e).verify_slice(&sig).is_ok()
            }
            _ => false,
        }
    }
}

fn url_key(keys: &[String]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"earshot signed audio URL\n");
    for k in keys {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    h.finalize().into()
}

async fn count_requests(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let r = next.run(req).await;
    *s.requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((route, r.status().as_u16()))
        .or_default() += 1;
    r
}

async fn auth(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if s.cfg.api_keys.is_empty() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(k)
            if s.cfg
                .api_keys
                .iter()
                .any(|key| constant_time_eq(key.as_bytes(), k.trim().as_bytes())) =>
        {
            next.run(req).await
        }
        _ if (req.method() == Method::GET || req.method() == Method::HEAD)
            && s.signed_audio_ok(req.uri().path(), req.uri().query()) =>
        {
            next.run(req).await
        }
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidApiKey,
            "missing or invalid API key: send Authorization: Bearer <key>",
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuse early, from Content-Length, before reading an oversize body.
fn check_length(s: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match len {
        Some(n) if n > s.cfg.max_upload_bytes + 64 * 1024 => Err(too_large(s)),
        _ => Ok(()),
    }
}

/// Refuse an upload while free disk is below `--min-free-disk-mb` (counting the announced
/// body), before anything is read: 507, so a client retries later rather than gives up.
fn check_disk(s: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let incoming_mb = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .div_ceil(1024 * 1024);
    match free_disk_mb(&s.cfg.data_dir) {
        Some(free) if free < s.cfg.min_free_disk_mb + incoming_mb => Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::InsufficientStorage,
            format!(
                "the server's disk is nearly full ({free} MiB free, {} MiB kept free); nothing was stored, retry later",
                s.cfg.min_free_disk_mb
            ),
        )
        .retry_after(60)),
        _ => Ok(()),
    }
}

/// Longest file name kept (bytes); a longer one is cut at a character boundary.
const MAX_FILENAME_BYTES: usize = 255;
/// Longest `external_id`, `source` and `Idempotency-Key` accepted (bytes).
const MAX_ID_BYTES: usize = 256;

/// A client's file name as stored: at most [`MAX_FILENAME_BYTES`], cut at a character.
fn cap_filename(name: String) -> String {
    if name.len() <= MAX_FILENAME_BYTES {
        return name;
    }
    let mut end = MAX_FILENAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// Refuse an identifier longer than [`MAX_ID_BYTES`].
fn check_id_len(what: &'static str, v: Option<&String>) -> ApiResult<()> {
    match v {
        Some(v) if v.len() > MAX_ID_BYTES => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidValue,
            format!(
                "{what} is {} bytes long; at most {MAX_ID_BYTES} are accepted",
                v.len()
            ),
        )
        .param(what)),
        _ => Ok(()),
    }
}

fn too_large(s: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooLarge,
        format!(
            "upload is larger than the limit of {} bytes",
            s.cfg.max_upload_bytes
        ),
    )
}

/// A stored upload plus its form fields.
struct Upload {
    blob: PendingBlob,
    filename: Option<String>,
    content_type: Option<String>,
    fields: HashMap<String, String>,
}

fn spool(s: &AppState, blob: &mut PendingBlob, chunk: &[u8]) -> ApiResult<()> {
    if blob.size() + chunk.len() as u64 > s.cfg.max_upload_bytes {
        return Err(too_large(s));
    }
    // Small synchronous writes to a local temp file; the fsync happens once, in commit.
    blob.write(chunk).map_err(ApiError::from)
}

async fn read_multipart(s: &AppState, mut mp: Multipart) -> ApiResult<Upload> {
    let mut upload: Option<(PendingBlob, Option<String>, Option<String>)> = None;
    let mut fields = HashMap::new();
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(s)
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidMultipart,
                format!("could not read the multipart body: {e}"),
            )
        }
    };
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let mut blob = s.queue.blobs.begin().map_err(ApiError::from)?;
            let filename = field.file_name().map(|f| cap_filename(f.to_string()));
            let ct = field.content_type().map(str::to_string);
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                spool(s, &mut blob, &chunk)?;
            }
            upload = Some((blob, filename, ct));
        } else {
            let value = field.text().await.map_err(bad)?;
            let key = name.trim_end_matches("[]").to_string();
            fields
                .entry(key)
                .and_modify(|v: &mut String| {
                    v.push(',');
                    v.push_str(&value)
                })
                .or_insert(value);
        }
    }
    let (blob, filename, content_type) = upload.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MissingFile,
            "the multipart field 'file' is required",
        )
        .param("file")
    })?;
    if blob.size() == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Empty,
            "the uploaded file is empty",
        )
        .param("file"));
    }
    Ok(Upload {
        blob,
        filename,
        content_type,
        fields,
    })
}

/// Validated decoding options (as stored with the job) and the response format.
fn parse_options(
    s: &AppState,
    f: &HashMap<String, String>,
    translate: bool,
) -> ApiResult<(JobOptions, Format)> {
    if let Some(m) = f.get("model") {
        if m != "whisper-1" && m != &s.model_name {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::ModelNotFound,
                format!(
                    "the model '{m}' does not exist here; use 'whisper-1' or '{}'",
                    s.model_name
                ),
            )
            .param("model"));
        }
    }
    let format = match f.get("response_format").map(String::as_str) {
        None | Some("") => Format::Json,
        Some("text") => Format::Txt,
        Some(x) => x
            .parse::<Format>()
            .ok()
            .filter(|f| *f != Format::Txt)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidValue,
                    format!(
                        "response_format must be json, text, srt, verbose_json or vtt, not '{x}'"
                    ),
                )
                .param("response_format")
            })?,
    };
    let mut opts = JobOptions {
        translate,
        ..JobOptions::default()
    };
    // An explicit "auto" is kept: it overrides the service's --language.
    if f.get("language")
        .is_some_and(|l| l.eq_ignore_ascii_case("auto"))
    {
        opts.language = Some("auto".into());
    } else if let Some(l) = f.get("language").filter(|l| !l.is_empty()) {
        let Some(code) = crate::engine::language::code(l) else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidLanguage,
                format!(
                    "unknown language '{}'; use an ISO 639-1 code such as ru or en",
                    clip(l, 40)
                ),
            )
            .param("language"));
        };
        opts.language = Some(code.to_string());
    }
    if let Some(p) = f.get("prompt") {
        if p.contains('\0') {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidValue,
                "prompt must not contain NUL bytes",
            )
            .param("prompt"));
        }
        opts.prompt = Some(p.clone());
    }
    if let Some(t) = f.get("temperature").filter(|t| !t.is_empty()) {
        let t: f64 = t
            .parse()
            .ok()
            .filter(|t: &f64| (0.0..=1.0).contains(t))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidValue,
                    "temperature must be a number between 0 and 1",
                )
                .param("temperature")
            })?;
        opts.temperature = Some(t);
    }
    match f.get("accurate").map(|a| a.trim()) {
        None | Some("" | "false" | "0") => {}
        Some("true" | "1") => opts.accurate = true,
        Some(x) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidValue,
                format!("accurate must be true or false, not '{x}'"),
            )
            .param("accurate"))
        }
    }
    if let Some(g) = f.get("timestamp_granularities") {
        for part in g.split(',') {
            match part.trim() {
                "word" => opts.word_timestamps = true,
                "segment" | "" => {}
                x => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::InvalidValue,
                        format!("timestamp_granularities[] takes word or segment, not '{x}'"),
                    )
                    .param("timestamp_granularities[]"))
                }
            }
        }
    }
    Ok((opts, format))
}

/// At most `max` characters of `s`, with "…" when cut: user input quoted in a message.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// What a record says beside its audio and options.
#[derive(Default)]
struct Meta {
    external_id: Option<String>,
    source: Option<String>,
    idempotency_key: Option<String>,
    callback_url: Option<String>,
}

/// Durably store an upload and insert its record.
/// Returns the record, whether it is new, and the hash of the bytes just stored.
async fn store(
    s: &Shared,
    up: Upload,
    opts: JobOptions,
    priority: i32,
    meta: Meta,
) -> ApiResult<(Job, bool, String)> {
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || {
        s2.queue.store(up.blob, |sha256, size| NewJob {
            sha256,
            size,
            content_type: up.content_type,
            filename: up.filename,
            external_id: meta.external_id,
            source: meta.source,
            options: opts.to_stored(),
            priority,
            idempotency_key: meta.idempotency_key,
            callback_url: meta.callback_url,
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from)
}

async fn transcriptions(State(s): State<Shared>, headers: HeaderMap, mp: Multipart) -> Response {
    sync_request(s, headers, mp, false)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn translations(State(s): State<Shared>, headers: HeaderMap, mp: Multipart) -> Response {
    sync_request(s, headers, mp, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn sync_request(
    s: Shared,
    headers: HeaderMap,
    mp: Multipart,
    translate: bool,
) -> ApiResult<Response> {
    check_length(&s, &headers)?;
    check_disk(&s, &headers)?;
    // Back-pressure: a slot is reserved before the body is read; with every slot taken,
    // say so now, before storing anything.
    let overloaded = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Overloaded,
            "all workers are busy; retry shortly or use POST /v1/jobs",
        )
        .retry_after(5)
    };
    let _slot = SyncSlot::reserve(&s).ok_or_else(overloaded)?;
    // Also when every worker is taken and stored synchronous jobs (their clients may have
    // gone) already wait for each of them.
    let busy = s.queue.stats.busy.load(Ordering::SeqCst);
    let waiting_sync = s.queue.db.queued_count(Some(0))? as usize;
    if busy >= s.queue.workers && waiting_sync >= s.queue.workers {
        return Err(overloaded());
    }
    let up = read_multipart(&s, mp).await?;
    let (opts, format) = parse_options(&s, &up.fields, translate)?;
    let mut finished = s.queue.finished.subscribe();
    let (job, _, _) = store(
        &s,
        up,
        opts,
        0,
        Meta {
            source: Some("openai".into()),
            ..Meta::default()
        },
    )
    .await?;
    s.queue.notify();
    tracing::info!(id = %job.id, size = job.size, "synchronous transcription accepted");
    // The job runs to the end even if this client goes away; it stays retrievable by id.
    loop {
        let job_now = s.queue.db.get(&job.id).map_err(ApiError::from)?;
        if let Some(j) = job_now.filter(|j| matches!(j.status, Status::Done | Status::Failed)) {
            let mut r = match j.status {
                Status::Done => render_transcript(&j, format)?,
                _ => job_error(&j).into_response(),
            };
            r.headers_mut().insert(
                "x-earshot-job-id",
                HeaderValue::from_str(&j.id).map_err(ApiError::internal)?,
            );
            return Ok(r);
        }
        if s.queue.is_stopping()
            && s.queue
                .db
                .get(&job.id)?
                .is_some_and(|j| j.status == Status::Queued)
        {
            let mut r = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ShuttingDown,
                format!("the service is restarting; job {} is stored and will run after it, see GET /v1/jobs/{}", job.id, job.id),
            )
            .retry_after(10)
            .into_response();
            r.headers_mut().insert(
                "x-earshot-job-id",
                HeaderValue::from_str(&job.id).map_err(ApiError::internal)?,
            );
            return Ok(r);
        }
        match tokio::time::timeout(Duration::from_secs(2), finished.recv()).await {
            Ok(Ok(_)) | Err(_) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) => return Err(ApiError::internal("the worker pool stopped")),
        }
    }
}

fn job_error(j: &Job) -> ApiError {
    // What the input did wrong keeps its code (400); a failure of the service is
    // `transcription_failed` (500) with the stored message.
    let code = j
        .error_code
        .as_deref()
        .and_then(ErrorCode::parse)
        .filter(|c| c.is_bad_input())
        .unwrap_or(ErrorCode::TranscriptionFailed);
    let status = if code == ErrorCode::TranscriptionFailed {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(
        status,
        code,
        j.error_message
            .clone()
            .unwrap_or_else(|| "transcription failed".into()),
    )
    .param("file")
}

fn render_transcript(j: &Job, format: Format) -> ApiResult<Response> {
    let result = JobResult::of(j)
        .ok_or_else(|| ApiError::internal("the stored transcript is unreadable"))?;
    let mut t = result.transcript.clone();
    // Words are always stored (the inbox seeks by them); the API returns them when asked.
    let opts = JobOptions::of(j);
    if !opts.word_timestamps {
        t.words = None;
    }
    let task = opts.task();
    Ok(match format {
        Format::Json | Format::VerboseJson => {
            let mut v = output::to_json(&t, format, task).unwrap_or_default();
            if format == Format::VerboseJson && !result.warnings.is_empty() {
                v["warnings"] = json!(result.warnings);
            }
            Json(v).into_response()
        }
        Format::Txt => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            output::render(&t, format, task),
        )
            .into_response(),
        Format::Srt => (
            [(header::CONTENT_TYPE, "application/x-subrip; charset=utf-8")],
            output::render(&t, format, task),
        )
            .into_response(),
        Format::Vtt => (
            [(header::CONTENT_TYPE, "text/vtt; charset=utf-8")],
            output::render(&t, format, task),
        )
            .into_response(),
    })
}

/// A job as the API shows it, with its webhook's delivery state.
fn job_view(s: &AppState, j: &Job) -> Value {
    let mut v = crate::jobs::job_json(j, s.queue.db.latest_delivery(&j.id).ok().flatten().as_ref());
    v["audio_url"] = Value::String(s.audio_url(&j.id));
    v
}

#[derive(serde::Deserialize)]
struct CreateQuery {
    external_id: Option<String>,
    callback_url: Option<String>,
    source: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    translate: Option<bool>,
    accurate: Option<String>,
}

async fn create_job(
    State(s): State<Shared>,
    Query(q): Query<CreateQuery>,
    req: Request,
) -> ApiResult<Response> {
    let headers = req.headers().clone();
    check_length(&s, &headers)?;
    check_disk(&s, &headers)?;
    let queued = s.queue.db.queued_count(None).map_err(ApiError::from)?;
    if queued as usize >= s.cfg.queue_limit {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::QueueFull,
            format!(
                "the queue holds {queued} jobs (limit {}); retry later",
                s.cfg.queue_limit
            ),
        )
        .retry_after(30));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut up = if ct.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(req, &s).await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidMultipart,
                e.body_text(),
            )
        })?;
        read_multipart(&s, mp).await?
    } else if ct.starts_with("audio/")
        || ct.starts_with("video/")
        || ct == "application/ogg"
        || ct == "application/octet-stream"
    {
        let mut blob = s.queue.blobs.begin().map_err(ApiError::from)?;
        let mut stream = req.into_body().into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if e.to_string().contains("length limit") {
                    too_large(&s)
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::InvalidBody,
                        format!("could not read the body: {e}"),
                    )
                }
            })?;
            spool(&s, &mut blob, &chunk)?;
        }
        if blob.size() == 0 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Empty,
                "the request body is empty",
            ));
        }
        let filename = headers
            .get(header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("filename=").nth(1))
            .map(|f| cap_filename(f.trim_matches('"').to_string()));
        Upload {
            blob,
            filename,
            content_type: Some(ct.clone()),
            fields: HashMap::new(),
        }
    } else {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::UnsupportedMediaType, "send multipart/form-data with a 'file' field, or the audio itself with an audio/* Content-Type"));
    };
    // Query parameters fill in what form fields did not say.
    for (k, v) in [
        ("external_id", q.external_id),
        ("callback_url", q.callback_url),
        ("source", q.source),
        ("language", q.language),
        ("prompt", q.prompt),
        ("accurate", q.accurate),
    ] {
        if let Some(v) = v {
            up.fields.entry(k.to_string()).or_insert(v);
        }
    }
    let translate = up
        .fields
        .get("translate")
        .map(|t| t == "true")
        .or(q.translate)
        .unwrap_or(false);
    let (opts, _) = parse_options(&s, &up.fields, translate)?;
    let idem = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    check_id_len("idempotency-key", idem.as_ref())?;
    check_id_len("external_id", up.fields.get("external_id"))?;
    check_id_len("source", up.fields.get("source"))?;
    if up
        .fields
        .get("callback_url")
        .is_some_and(|u| u.len() > 2048)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidCallbackUrl,
            "callback_url is longer than 2048 bytes",
        )
        .param("callback_url"));
    }
    let callback_url = up
        .fields
        .get("callback_url")
        .filter(|u| !u.is_empty())
        .cloned();
    if let Some(url) = &callback_url {
        let (url, allow) = (url.clone(), s.cfg.webhook_allow_private);
        tokio::task::spawn_blocking(move || crate::webhooks::check_url(&url, allow))
            .await
            .map_err(ApiError::internal)?
            .map_err(|m| {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidCallbackUrl, m)
                    .param("callback_url")
            })?;
    }
    let meta = Meta {
        external_id: up.fields.get("external_id").cloned(),
        source: up.fields.get("source").cloned(),
        idempotency_key: idem,
        callback_url,
    };
    let (job, created, sha) = store(&s, up, opts, 1, meta).await?;
    let mut r = (StatusCode::ACCEPTED, Json(job_view(&s, &job))).into_response();
    if created {
        s.queue.notify();
        tracing::info!(id = %job.id, size = job.size, "job queued");
    } else if job.sha256 == sha {
        // Same Idempotency-Key, same bytes: a replay gets the same job.
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    } else {
        // Same key, other bytes: refuse, and drop the bytes just stored unless another
        // record uses the same audio.
        s.queue.discard_if_unused(&sha).map_err(ApiError::from)?;
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::IdempotencyKeyReused,
            format!(
                "this Idempotency-Key was used for job {} with different audio",
                job.id
            ),
        ));
    }
    r.headers_mut().insert(
        "x-earshot-job-id",
        HeaderValue::from_str(&job.id).map_err(ApiError::internal)?,
    );
    Ok(r)
}

#[derive(serde::Deserialize)]
struct ListQuery {
    status: Option<String>,
    external_id: Option<String>,
    limit: Option<usize>,
    before: Option<String>,
    /// Full-text search: every word, as a prefix, in the transcript, file name or external id.
    q: Option<String>,
    /// `needed`: finished jobs a person should listen to; `ok`: the others.
    review: Option<String>,
}

async fn list_jobs(State(s): State<Shared>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(x) => Some(Status::parse(x).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidValue,
                "status must be queued, running, done or failed",
            )
            .param("status")
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidValue,
            format!("limit must be from 1 to 1000, not {limit}"),
        )
        .param("limit"));
    }
    if let Some(b) = q
        .before
        .as_deref()
        .filter(|b| uuid::Uuid::parse_str(b).is_err())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidValue,
            format!(
                "before must be a job id (from a previous page), not '{}'",
                clip(b, 40)
            ),
        )
        .param("before"));
    }
    let review_needed = match q.review.as_deref() {
        None | Some("") => None,
        Some("needed") => Some(true),
        Some("ok") => Some(false),
        Some(x) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidValue,
                format!("review must be needed or ok, not '{}'", clip(x, 40)),
            )
            .param("review"))
        }
    };
    let jobs = s
        .queue
        .db
        .list(&ListFilter {
            status,
            external_id: q.external_id,
            before: q.before,
            search: q.q,
            review_needed,
            limit,
        })
        .map_err(ApiError::from)?;
    let has_more = jobs.len() == limit;
    Ok(Json(
        json!({"object": "list", "data": jobs.iter().map(|j| job_view(&s, j)).collect::<Vec<_>>(), "has_more": has_more}),
    ))
}

fn find(s: &AppState, id: &str) -> ApiResult<Job> {
    s.queue.db.get(id).map_err(ApiError::from)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::JobNotFound,
            format!("no job with id '{id}'"),
        )
    })
}

async fn get_job(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(job_view(&s, &find(&s, &id)?)))
}

#[derive(serde::Deserialize)]
struct TranscriptQuery {
    format: Option<String>,
}

async fn get_transcript(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<TranscriptQuery>,
) -> ApiResult<Response> {
    let j = find(&s, &id)?;
    let format = q
        .format
        .as_deref()
        .unwrap_or("json")
        .parse::<Format>()
        .map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidValue, e).param("format")
        })?;
    match j.status {
        Status::Done => render_transcript(&j, format),
        Status::Failed => Err(job_error(&j)),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NotReady,
            format!("job {id} is {}; poll GET /v1/jobs/{id}", j.status.as_str()),
        )),
    }
}

/// The original bytes, with the original Content-Type, a safe Content-Disposition and
/// single-range support (players seek with it).
async fn get_audio(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let j = find(&s, &id)?;
    let path = s.queue.blobs.path(&j.sha256);
    let data = tokio::fs::read(&path).await.map_err(ApiError::from)?;
    let total = data.len() as u64;
    let ct = j
        .content_type
        .clone()
        .filter(|c| HeaderValue::from_str(c).is_ok())
        .unwrap_or_else(|| "application/octet-stream".into());
    let name = j
        .filename
        .clone()
        .unwrap_or_else(|| format!("{}.bin", j.id));
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| parse_range(r, total));
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, ct)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("x-earshot-job-id", j.id.as_str());
    let body = match range {
        Some(Ok((a, b))) => {
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{total}"));
            data[a as usize..=b as usize].to_vec()
        }
        Some(Err(())) => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                .body(Body::empty())
                .map_err(ApiError::internal)
        }
        None => data,
    };
    builder.body(Body::from(body)).map_err(ApiError::internal)
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive range; `Err` when unsatisfiable.
fn parse_range(r: &str, total: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = r.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multiple ranges: answer with the whole body
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (total.saturating_sub(n), total.saturating_sub(1))
        }
        (a, "") => (a.parse().ok()?, total.saturating_sub(1)),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(total.saturating_sub(1)),
        ),
    };
    Some(if total == 0 || start > end || start >= total {
        Err(())
    } else {
        Ok((start, end))
    })
}

async fn retry_job(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let j = find(&s, &id)?;
    if j.status == Status::Running || j.status == Status::Queued {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NotRetryable,
            format!("job {id} is {}", j.status.as_str()),
        ));
    }
    s.queue.db.requeue(&id, true).map_err(ApiError::from)?;
    s.queue.notify();
    Ok((StatusCode::ACCEPTED, Json(job_view(&s, &find(&s, &id)?))).into_response())
}

async fn delete_job(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let j = find(&s, &id)?;
    if j.status == Status::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::JobRunning,
            format!("job {id} is running; delete it when it is done"),
        ));
    }
    s.queue.delete(&id).map_err(ApiError::from)?;
    Ok(Json(
        json!({"id": id, "object": "transcription.job", "deleted": true}),
    ))
}

async fn models(State(s): State<Shared>) -> Json<Value> {
    let m = |id: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": "earshot"});
    Json(json!({"object": "list", "data": [m("whisper-1"), m(&s.model_name)]}))
}

fn free_disk_mb(path: &std::path::Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.to_str()?).ok()?;
    // SAFETY: statvfs fills the zeroed struct for a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64 / (1024 * 1024))
}

async fn readyz(State(s): State<Shared>) -> Response {
    let db_ok = s.queue.db.writable();
    let free = free_disk_mb(&s.cfg.data_dir);
    let disk_ok = free.is_some_and(|f| f >= s.cfg.min_free_disk_mb);
    let body = json!({
        "status": if db_ok && disk_ok { "ready" } else { "not_ready" },
        "model": {"loaded": true, "name": s.model_name, "path": s.queue.engine.model_path(), "backend": s.queue.engine.backend().name, "gpu": s.queue.engine.backend().device, "flash_attn": s.queue.engine.backend().flash_attn},
        "database": {"writable": db_ok},
        "disk": {"free_mb": free, "min_free_mb": s.cfg.min_free_disk_mb, "ok": disk_ok},
        "workers": s.queue.workers,
    });
    let status = if db_ok && disk_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    use std::fmt::Write;
    let mut out = String::new();
    out.push_str("# HELP earshot_http_requests_total HTTP requests by route and status.\n# TYPE earshot_http_requests_total counter\n");
    for ((route, status), n) in s.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(
            out,
            "earshot_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
        );
    }
    out.push_str("# HELP earshot_jobs Jobs by status.\n# TYPE earshot_jobs gauge\n");
    let counts: HashMap<String, i64> = s
        .queue
        .db
        .count_by_status()
        .unwrap_or_default()
        .into_iter()
        .collect();
    for st in ["queued", "running", "done", "failed"] {
        let _ = writeln!(
            out,
            "earshot_jobs{{status=\"{st}\"}} {}",
            counts.get(st).copied().unwrap_or(0)
        );
    }
    out.push_str("# HELP earshot_review_needed_total Finished jobs a person should listen to, since start.\n# TYPE earshot_review_needed_total counter\n");
    let _ = writeln!(
        out,
        "earshot_review_needed_total {}",
        s.queue.stats.review_needed.load(Ordering::Relaxed)
    );
    out.push_str("# HELP earshot_review_reasons_total Finished jobs by review reason, since start.\n# TYPE earshot_review_reasons_total counter\n");
    for (i, r) in crate::engine::review::Reason::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "earshot_review_reasons_total{{reason=\"{}\"}} {}",
            r.code(),
            s.queue.stats.review_reasons[i].load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP earshot_queue_depth Jobs waiting for a worker.\n# TYPE earshot_queue_depth gauge\nearshot_queue_depth {}", counts.get("queued").copied().unwrap_or(0));
    let _ = writeln!(out, "# HELP earshot_workers_busy Workers transcribing now.\n# TYPE earshot_workers_busy gauge\nearshot_workers_busy {}", s.queue.stats.busy.load(Ordering::SeqCst));
    let audio = s.queue.stats.audio_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let took = s.queue.stats.processing_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let _ = writeln!(out, "# HELP earshot_audio_seconds_total Audio transcribed.\n# TYPE earshot_audio_seconds_total counter\nearshot_audio_seconds_total {audio}");
    let _ = writeln!(
        out,
        "# HELP earshot_real_time_factor Audio seconds per processing second, since start.\n# TYPE earshot_real_time_factor gauge\nearshot_real_time_factor {}",
        if took > 0.0 { audio / took } else { 0.0 }
    );
    out.push_str("# HELP earshot_processing_seconds Time to decode and transcribe one job.\n# TYPE earshot_processing_seconds histogram\n");
    let h = s
        .queue
        .stats
        .histogram
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut cum = 0u64;
    for (i, b) in crate::jobs::BUCKETS_S.iter().enumerate() {
        cum += h.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "earshot_processing_seconds_bucket{{le=\"{b}\"}} {cum}");
    }
    cum += h.get(crate::jobs::BUCKETS_S.len()).copied().unwrap_or(0);
    let _ = writeln!(out, "earshot_processing_seconds_bucket{{le=\"+Inf\"}} {cum}\nearshot_processing_seconds_sum {took}\nearshot_processing_seconds_count {cum}");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
