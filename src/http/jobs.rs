//! `/v1/jobs`: create (queued, with an optional webhook), list and search, get, the transcript,
//! the audio (with Range), retry and delete.

use super::*;
use crate::job::Source;

pub(super) async fn create_job(
    State(s): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<Vec<(String, String)>>,
    req: Request,
) -> ApiResult<Response> {
    let headers = req.headers().clone();
    check_length(&s, &headers)?;
    check_disk(&s, &headers)?;
    // A first look before the body is read; the insert counts again, in its transaction.
    let queued = s.queue.queued(None).await?;
    if queued >= s.cfg.queue_limit {
        return Err(queue_full(
            &s,
            QueueFull {
                queued,
                limit: s.cfg.queue_limit,
                client: false,
            },
        ));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if ct.starts_with("application/json") {
        return create_from_source(s, caller, headers, req).await;
    }
    let mut up = if ct.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(req, &s)
            .await
            .map_err(|e| ApiError::of(ErrorCode::InvalidMultipart, e.body_text()))?;
        read_multipart(&s, mp).await?
    } else if ct.starts_with("audio/")
        || ct.starts_with("video/")
        || ct == "application/ogg"
        || ct == "application/octet-stream"
    {
        let mut blob = s.queue.begin_upload()?;
        let mut stream = req.into_body().into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if e.to_string().contains("length limit") {
                    too_large(&s)
                } else {
                    ApiError::of(
                        ErrorCode::InvalidBody,
                        format!("could not read the body: {e}"),
                    )
                }
            })?;
            spool(&s, &mut blob, &chunk)?;
        }
        if blob.size() == 0 {
            return Err(ApiError::of(ErrorCode::Empty, "the request body is empty"));
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
        return Err(ApiError::of(ErrorCode::UnsupportedMediaType, "send multipart/form-data with a 'file' field, or the audio itself with an audio/* Content-Type"));
    };
    // Query parameters fill in what form fields did not say: every option can be either.
    // As in a form, `name[]` is `name`, and a repeated parameter's values are joined
    // (`timestamp_granularities[]=word&timestamp_granularities[]=segment`).
    let mut asked: HashMap<String, String> = HashMap::new();
    for (k, v) in query {
        let k = k.trim_end_matches("[]").to_string();
        asked
            .entry(k)
            .and_modify(|x| {
                x.push(',');
                x.push_str(&v)
            })
            .or_insert(v);
    }
    for (k, v) in asked {
        up.fields.entry(k).or_insert(v);
    }
    let (opts, meta) = read_meta(&s, &headers, &up.fields).await?;
    let limit = QueueLimit {
        total: s.cfg.queue_limit,
        per_client: s.cfg.client_queue_limit,
    };
    let stored = store(&s, &caller, up, opts, Priority::Queued, Some(limit), meta).await?;
    if let Submitted::Created(job) = &stored {
        tracing::info!(id = %job.id, size = job.size, "job queued");
    }
    accepted(&s, &caller, stored, "different audio").await
}

/// `POST /v1/jobs`'s answer: 202 with the job (a replayed one as it is now: it may have
/// finished, its webhook sent), `Idempotent-Replayed` and `X-Earshot-Job-Id`; or the refusal
/// of a reused key (`other`: what differed) or of a full queue.
async fn accepted(
    s: &Shared,
    caller: &Caller,
    submitted: Submitted,
    other: &str,
) -> ApiResult<Response> {
    let (job, replayed) = match submitted {
        Submitted::Created(job) => (job, false),
        Submitted::Replayed(job) => (job, true),
        Submitted::KeyReused(job) => {
            return Err(ApiError::of(
                ErrorCode::IdempotencyKeyReused,
                format!(
                    "this Idempotency-Key was used for job {} with {other}",
                    job.id
                ),
            ))
        }
        Submitted::QueueFull(full) => return Err(queue_full(s, full)),
    };
    let shown = if replayed {
        s.queue.get(&job.id, &caller.scope()).await?
    } else {
        Shown {
            job,
            delivery: None,
        }
    };
    let mut r = (StatusCode::ACCEPTED, Json(job_view(s, &shown))).into_response();
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r.headers_mut().insert(
        "x-earshot-job-id",
        HeaderValue::from_str(&shown.job.id).map_err(ApiError::internal)?,
    );
    Ok(r)
}

/// What a job's fields and headers ask besides its audio: the options, the Idempotency-Key
/// (header), `external_id`, `source` and `callback_url` (checked: form and, unless private
/// targets are allowed, address).
async fn read_meta(
    s: &Shared,
    headers: &HeaderMap,
    fields: &HashMap<String, String>,
) -> ApiResult<(JobOptions, Meta)> {
    let translate = crate::job::flag(fields, "translate")?;
    let (opts, _) = parse_options(s, fields, translate)?;
    let idem = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    check_id_len("idempotency-key", idem.as_ref())?;
    check_id_len("external_id", fields.get("external_id"))?;
    check_id_len("source", fields.get("source"))?;
    if fields.get("callback_url").is_some_and(|u| u.len() > 2048) {
        return Err(ApiError::of(
            ErrorCode::InvalidCallbackUrl,
            "callback_url is longer than 2048 bytes",
        )
        .param("callback_url"));
    }
    let callback_url = fields
        .get("callback_url")
        .filter(|u| !u.is_empty())
        .cloned();
    if let Some(url) = &callback_url {
        let url = url.clone();
        let addresses =
            crate::webhooks::Addresses::unless_private_allowed(s.cfg.webhook_allow_private);
        tokio::task::spawn_blocking(move || crate::webhooks::check_url(&url, addresses))
            .await
            .map_err(ApiError::internal)?
            .map_err(|m| ApiError::of(ErrorCode::InvalidCallbackUrl, m).param("callback_url"))?;
    }
    let meta = Meta {
        external_id: fields.get("external_id").cloned(),
        source: fields.get("source").cloned(),
        idempotency_key: idem,
        callback_url,
    };
    Ok((opts, meta))
}

/// `POST /v1/jobs` with a JSON body naming a `source` (a Telegram file of the configured bot,
/// or an https URL on an allowed host) and, beside it, the fields a form takes. The job is
/// recorded `fetching` and answered 202 at once; the fetch threads (`crate::fetch`) get its
/// audio, with retries, then it queues.
async fn create_from_source(
    s: Shared,
    caller: Caller,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<Response> {
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|_| {
            ApiError::of(
                ErrorCode::InvalidBody,
                "the JSON body could not be read, or is larger than 64 KiB",
            )
        })?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::of(ErrorCode::InvalidBody, format!("the body is not JSON: {e}")))?;
    let Some(obj) = body.as_object() else {
        return Err(ApiError::of(
            ErrorCode::InvalidBody,
            "the body must be a JSON object with a source",
        ));
    };
    let shape = r#"give {"telegram": {"file_id": "..."}} or {"url": "https://..."}"#;
    let source: Source = match obj.get("source") {
        None | Some(Value::Null) => {
            return Err(ApiError::of(
                ErrorCode::InvalidSource,
                format!("source is missing: {shape}"),
            )
            .param("source"))
        }
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            ApiError::of(
                ErrorCode::InvalidSource,
                format!("source does not read ({e}): {shape}"),
            )
            .param("source")
        })?,
    };
    match &source {
        Source::Url(url) => s
            .cfg
            .fetch_rules()
            .check(url)
            .map_err(|(code, m)| ApiError::of(code, m).param("source"))?,
        Source::Telegram { file_id } => {
            if !s.cfg.telegram {
                return Err(ApiError::of(
                    ErrorCode::InvalidSource,
                    "source.telegram: this service runs no Telegram bot (--telegram)",
                )
                .param("source"));
            }
            if file_id.is_empty() || file_id.len() > 256 {
                return Err(ApiError::of(
                    ErrorCode::InvalidSource,
                    "source.telegram.file_id must be 1 to 256 bytes",
                )
                .param("source"));
            }
        }
    }
    // The other fields, as a form gives them: strings, numbers and booleans as text, a list
    // of strings joined by commas.
    let mut fields = HashMap::new();
    for (k, v) in obj.iter().filter(|(k, _)| k.as_str() != "source") {
        let text = match v {
            Value::Null => continue,
            Value::String(t) => t.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            _ => {
                return Err(ApiError::of(
                    ErrorCode::InvalidValue,
                    format!(
                        "{}: expected a string, a number, a boolean or a list of strings",
                        crate::error::clip(k, 64)
                    ),
                ))
            }
        };
        fields.insert(k.clone(), text);
    }
    let (opts, mut meta) = read_meta(&s, &headers, &fields).await?;
    let queued = s.queue.queued(None).await?;
    if queued >= s.cfg.queue_limit {
        return Err(queue_full(
            &s,
            QueueFull {
                queued,
                limit: s.cfg.queue_limit,
                client: false,
            },
        ));
    }
    let filename = match &source {
        Source::Url(url) => url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .filter(|n| !n.is_empty() && !n.contains(':'))
            .map(|n| cap_filename(n.to_string())),
        Source::Telegram { .. } => None,
    };
    let client = caller.name().map(str::to_string);
    let idempotency_key = match &caller {
        Caller::Client(name) => meta.idempotency_key.take().map(|k| format!("{name}:{k}")),
        Caller::Admin(_) => meta.idempotency_key.take(),
    };
    // The record's `source` label says where the audio came from (the body's `source` is the
    // reference itself).
    let label = match &source {
        Source::Url(_) => "url",
        Source::Telegram { .. } => "telegram",
    };
    let submitted = s
        .queue
        .submit_fetch(NewJob {
            sha256: String::new(),
            size: 0,
            content_type: None,
            filename,
            external_id: meta.external_id,
            source: Some(label.into()),
            options: opts,
            priority: Priority::Queued,
            idempotency_key,
            callback_url: meta.callback_url,
            client: client.clone(),
            limit: Some(QueueLimit {
                total: s.cfg.queue_limit,
                per_client: s.cfg.client_queue_limit,
            }),
            fetch: Some(source),
        })
        .await?;
    if let Submitted::Created(job) = &submitted {
        tracing::info!(id = %job.id, "job recorded; fetching its audio");
        s.count_submitted(client.as_deref());
    }
    accepted(&s, &caller, submitted, "another source").await
}

#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    external_id: Option<String>,
    limit: Option<usize>,
    before: Option<String>,
    /// Full-text search: every word, as a prefix, in the transcript, file name or external id.
    q: Option<String>,
    /// `needed`: finished jobs a person should listen to; `ok`: the others.
    review: Option<String>,
    /// Only this client's jobs (admin keys only).
    client: Option<String>,
}

/// 429 `queue_full`, with when a place should be free: the jobs over the limit, and this
/// one, done by the workers at the speed measured here (a client over its own limit waits
/// for its own jobs, which the fair share serves in turn with the others').
fn queue_full(s: &AppState, full: QueueFull) -> ApiError {
    let over = full.queued + 1 - full.limit.min(full.queued);
    let later_s = s.queue.stats.estimate.jobs_s(over) / s.queue.workers.max(1) as f64;
    let whose = if full.client {
        "this client's queued jobs"
    } else {
        "the queue"
    };
    ApiError::of(
        ErrorCode::QueueFull,
        format!(
            "{whose} holds {} jobs (limit {}); retry after the Retry-After seconds",
            full.queued, full.limit
        ),
    )
    .retry_after(retry_after_s(later_s))
}

pub(super) async fn list_jobs(
    State(s): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<JobList>> {
    // `?client=` narrows an admin's list; a client key sees its own jobs whatever it asks.
    if q.client.is_some() && !caller.is_admin() {
        return Err(ApiError::of(
            ErrorCode::InvalidValue,
            "client= lists another client's jobs, which only an admin key may",
        )
        .param("client"));
    }
    let status = match q.status.as_deref() {
        None => None,
        Some(x) => Some(x.parse::<Status>().map_err(|_| {
            ApiError::of(
                ErrorCode::InvalidValue,
                "status must be fetching, queued, running, done or failed",
            )
            .param("status")
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::of(
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
        return Err(ApiError::of(
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
            return Err(ApiError::of(
                ErrorCode::InvalidValue,
                format!("review must be needed or ok, not '{}'", clip(x, 40)),
            )
            .param("review"))
        }
    };
    let jobs = s
        .queue
        .list(
            ListFilter {
                status,
                external_id: q.external_id,
                before: q.before,
                search: q.q,
                review_needed,
                client: q.client,
                // One more than the page: whether there is a next page, exactly.
                limit: limit + 1,
            },
            &caller.scope(),
        )
        .await?;
    let has_more = jobs.len() > limit;
    let jobs = &jobs[..jobs.len().min(limit)];
    Ok(Json(JobList {
        object: "list".into(),
        data: jobs.iter().map(|j| job_view(&s, j)).collect(),
        has_more,
    }))
}

/// A page of jobs, newest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct JobList {
    /// Always `list`.
    #[schema(example = "list")]
    object: String,
    data: Vec<crate::jobs::JobView>,
    /// Whether another page follows (ask with `before` = the last id).
    has_more: bool,
}

pub(super) async fn find(s: &AppState, caller: &Caller, id: &str) -> ApiResult<Job> {
    Ok(s.queue.get(id, &caller.scope()).await?.job)
}

pub(super) async fn get_job(
    State(s): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::jobs::JobView>> {
    Ok(Json(job_view(
        &s,
        &s.queue.get(&id, &caller.scope()).await?,
    )))
}

#[derive(serde::Deserialize)]
pub(super) struct TranscriptQuery {
    format: Option<String>,
}

pub(super) async fn get_transcript(
    State(s): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<TranscriptQuery>,
) -> ApiResult<Response> {
    let j = find(&s, &caller, &id).await?;
    let format = q
        .format
        .as_deref()
        .unwrap_or("json")
        .parse::<Format>()
        .map_err(|e| ApiError::of(ErrorCode::InvalidValue, e).param("format"))?;
    match j.status {
        Status::Done => render_transcript(&j, format),
        Status::Failed => Err(job_error(&j)),
        _ => Err(ApiError::of(
            ErrorCode::NotReady,
            format!("job {id} is {}; poll GET /v1/jobs/{id}", j.status.as_str()),
        )),
    }
}

/// The original bytes, with the original Content-Type, a safe Content-Disposition and
/// single-range support (players seek with it).
pub(super) async fn get_audio(
    State(s): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let j = find(&s, &caller, &id).await?;
    if !j.has_audio() {
        return Err(ApiError::of(
            ErrorCode::NotFound,
            format!("job {} is still fetching its audio", j.id),
        ));
    }
    let data = s.queue.audio(&j.sha256).await?;
    let total = data.len() as u64;
    let ct = j
        .content_type
        .clone()
        .filter(|c| HeaderValue::from_str(c).is_ok())
        .unwrap_or_else(|| "application/octet-stream".into());
    let name = download_name(j.filename.as_deref(), &j.id);
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
pub(super) fn parse_range(r: &str, total: u64) -> Option<Result<(u64, u64), ()>> {
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

pub(super) async fn retry_job(
    State(s): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let shown = s.queue.retry(&id, &caller.scope()).await?;
    Ok((StatusCode::ACCEPTED, Json(job_view(&s, &shown))).into_response())
}

pub(super) async fn delete_job(
    State(s): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<super::openapi::DeletedJob>> {
    s.queue.delete(&id, &caller.scope()).await?;
    Ok(Json(super::openapi::DeletedJob {
        id,
        object: "transcription.job".into(),
        deleted: true,
    }))
}
/// The name a download is saved under: the file's own name less any folders, control
/// characters and leading dots, so that neither `filename` nor `filename*` (which clients
/// that follow RFC 6266 prefer) can name a path ("../../etc/passwd" is "passwd").
fn download_name(filename: Option<&str>, id: &str) -> String {
    let base = filename
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim_start_matches('.').trim();
    if clean.is_empty() {
        format!("{id}.bin")
    } else {
        clean.to_string()
    }
}
