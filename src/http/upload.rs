//! Reading an upload: size and disk checks first, the multipart body streamed to disk, the
//! request's options parsed into [`JobOptions`], and the audio stored with its record.

use super::*;

/// Refuse early, from Content-Length, before reading an oversize body.
/// The announced body length, if any.
pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Refuse from `Content-Length`, before any of the body is read, an upload over
/// `--max-upload-bytes`: the body itself when it is the audio, by one byte or more (issue
/// #40, item 4); a multipart form with [`FORM_SLACK`] more, for its other fields and
/// boundaries (its file part is held to the limit as it streams).
pub(super) fn check_length(s: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/"));
    let slack = if multipart { FORM_SLACK } else { 0 };
    match content_length(headers) {
        Some(n) if n > s.cfg.limits.max_bytes + slack => Err(too_large(s)),
        _ => Ok(()),
    }
}

/// What a multipart form may carry besides its file (fields, boundaries, part headers).
pub(super) const FORM_SLACK: u64 = 64 * 1024;

/// Refuse an upload while free disk is below `--min-free-disk-mb` (counting the announced
/// body), before anything is read: 507, so a client retries later rather than gives up.
pub(super) fn check_disk(s: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let incoming_mb = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .div_ceil(1024 * 1024);
    match free_disk_mb(&s.cfg.data_dir) {
        Some(free) if free < s.cfg.min_free_disk_mb + incoming_mb => Err(ApiError::of(ErrorCode::InsufficientStorage,
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
pub(super) const MAX_FILENAME_BYTES: usize = 255;
/// Longest `external_id`, `source` and `Idempotency-Key` accepted (bytes).
pub(super) const MAX_ID_BYTES: usize = 256;

/// A client's file name as stored: at most [`MAX_FILENAME_BYTES`], cut at a character.
pub(super) fn cap_filename(name: String) -> String {
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
pub(super) fn check_id_len(what: &'static str, v: Option<&String>) -> ApiResult<()> {
    match v {
        Some(v) if v.len() > MAX_ID_BYTES => Err(ApiError::of(
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

pub(super) fn too_large(s: &AppState) -> ApiError {
    ApiError::of(
        ErrorCode::TooLarge,
        format!(
            "upload is larger than the limit of {} bytes",
            s.cfg.limits.max_bytes
        ),
    )
}

/// A stored upload plus its form fields.
pub(super) struct Upload {
    pub(super) blob: PendingBlob,
    pub(super) filename: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) fields: HashMap<String, String>,
}

pub(super) fn spool(s: &AppState, blob: &mut PendingBlob, chunk: &[u8]) -> ApiResult<()> {
    if blob.size() + chunk.len() as u64 > s.cfg.limits.max_bytes {
        return Err(too_large(s));
    }
    // Small synchronous writes to a local temp file; the fsync happens once, in commit.
    blob.write(chunk).map_err(ApiError::from)
}

pub(super) async fn read_multipart(s: &AppState, mut mp: Multipart) -> ApiResult<Upload> {
    let mut upload: Option<(PendingBlob, Option<String>, Option<String>)> = None;
    let mut fields = HashMap::new();
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(s)
        } else {
            ApiError::of(
                ErrorCode::InvalidMultipart,
                format!("could not read the multipart body: {e}"),
            )
        }
    };
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let mut blob = s.queue.begin_upload()?;
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
        ApiError::of(
            ErrorCode::MissingFile,
            "the multipart field 'file' is required",
        )
        .param("file")
    })?;
    if blob.size() == 0 {
        return Err(ApiError::of(ErrorCode::Empty, "the uploaded file is empty").param("file"));
    }
    Ok(Upload {
        blob,
        filename,
        content_type,
        fields,
    })
}

/// Validated decoding options (as stored with the job) and the response format.
pub(super) fn parse_options(
    s: &AppState,
    f: &HashMap<String, String>,
    translate: bool,
) -> ApiResult<(JobOptions, Format)> {
    if let Some(m) = f.get("model") {
        if m != "whisper-1" && m != &s.model_name {
            return Err(ApiError::of(
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
                ApiError::of(
                    ErrorCode::InvalidValue,
                    format!(
                        "response_format must be json, text, srt, verbose_json or vtt, not '{x}'"
                    ),
                )
                .param("response_format")
            })?,
    };
    Ok((JobOptions::from_form(f, translate)?, format))
}

/// What a record says beside its audio and options.
#[derive(Default)]
pub(super) struct Meta {
    pub(super) external_id: Option<String>,
    pub(super) source: Option<String>,
    pub(super) idempotency_key: Option<String>,
    pub(super) callback_url: Option<String>,
}

/// Durably store an upload and insert its record (see [`Service::submit`]) as `caller`'s,
/// under `limit`. A client key's Idempotency-Keys are its own: another client using the same
/// key makes its own job, and never learns of the first.
pub(super) async fn store(
    s: &Shared,
    caller: &Caller,
    up: Upload,
    opts: JobOptions,
    priority: Priority,
    limit: Option<QueueLimit>,
    meta: Meta,
) -> ApiResult<Submitted> {
    let client = caller.name().map(str::to_string);
    let idempotency_key = match caller {
        Caller::Client(name) => meta.idempotency_key.map(|k| format!("{name}:{k}")),
        Caller::Admin(_) => meta.idempotency_key,
    };
    let counted = client.clone();
    let submitted = s
        .queue
        .submit(up.blob, move |sha256, size| NewJob {
            sha256,
            size,
            content_type: up.content_type,
            filename: up.filename,
            external_id: meta.external_id,
            source: meta.source,
            options: opts,
            priority,
            idempotency_key,
            callback_url: meta.callback_url,
            client,
            limit,
            fetch: None,
        })
        .await
        .map_err(ApiError::from)?;
    if let Submitted::Created(_) = submitted {
        s.count_submitted(counted.as_deref());
    }
    Ok(submitted)
}

pub(super) fn free_disk_mb(path: &std::path::Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.to_str()?).ok()?;
    // SAFETY: statvfs fills the zeroed struct for a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64 / (1024 * 1024))
}
