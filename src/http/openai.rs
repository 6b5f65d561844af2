//! OpenAI's `/v1/audio/transcriptions` and `/translations` (synchronous, each also a durable
//! job), and `/v1/models`.

use super::*;

pub(super) async fn transcriptions(
    State(s): State<Shared>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    mp: Multipart,
) -> Response {
    sync_request(s, caller, headers, mp, false)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn translations(
    State(s): State<Shared>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    mp: Multipart,
) -> Response {
    sync_request(s, caller, headers, mp, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn sync_request(
    s: Shared,
    caller: Caller,
    headers: HeaderMap,
    mp: Multipart,
    translate: bool,
) -> ApiResult<Response> {
    check_length(&s, &headers)?;
    check_disk(&s, &headers)?;
    // Admission by expected wait, before the body is read: while the work ahead (admitted
    // requests, and stored synchronous jobs whose clients may have gone) would keep this one
    // from a worker for longer than --sync-max-wait, say so now, with when to come back.
    let estimate = &s.queue.stats.estimate;
    let work_s = estimate.job_s(content_length(&headers).unwrap_or(0));
    let stored_s = estimate.jobs_s(s.queue.queued(Some(Priority::Sync)).await?);
    let _slot = SyncSlot::admit(&s, work_s, stored_s).map_err(|later_s| {
        ApiError::of(
            ErrorCode::Overloaded,
            format!(
                "the workers have about {:.0} s of work ahead of this request, over the {} s this service keeps a request waiting; retry after the Retry-After seconds, or use POST /v1/jobs",
                later_s + s.cfg.sync_max_wait.as_secs_f64(),
                s.cfg.sync_max_wait.as_secs()
            ),
        )
        .retry_after(retry_after_s(later_s))
    })?;
    let up = read_multipart(&s, mp).await?;
    let (opts, format) = parse_options(&s, &up.fields, translate)?;
    let job = match store(
        &s,
        &caller,
        up,
        opts,
        Priority::Sync,
        None,
        Meta {
            source: Some("openai".into()),
            ..Meta::default()
        },
    )
    .await?
    {
        // No Idempotency-Key here, so every request is a new job.
        Submitted::Created(job) | Submitted::Replayed(job) | Submitted::KeyReused(job) => job,
        // No limit is asked for a synchronous request: it was admitted by its expected wait.
        Submitted::QueueFull(full) => {
            return Err(ApiError::internal(format!(
                "a synchronous request was refused as over a queue limit ({full:?})"
            )))
        }
    };
    tracing::info!(id = %job.id, size = job.size, "synchronous transcription accepted");
    // The job runs to the end even if this client goes away; it stays retrievable by id.
    let mut r = match s.queue.wait(&job.id).await? {
        Waited::Finished(j) if j.status == Status::Done => render_transcript(&j, format)?,
        Waited::Finished(j) => job_error(&j).into_response(),
        Waited::Stopped(j) => ApiError::of(
            ErrorCode::ShuttingDown,
            format!(
                "the service is restarting; job {} is stored and will run after it, see GET /v1/jobs/{}",
                j.id, j.id
            ),
        )
        .retry_after(10)
        .into_response(),
    };
    r.headers_mut().insert(
        "x-earshot-job-id",
        HeaderValue::from_str(&job.id).map_err(ApiError::internal)?,
    );
    Ok(r)
}

pub(super) async fn models(State(s): State<Shared>) -> Json<super::openapi::ModelList> {
    let m = |id: &str| super::openapi::Model {
        id: id.to_string(),
        object: "model".into(),
        created: 0,
        owned_by: "earshot".into(),
    };
    Json(super::openapi::ModelList {
        object: "list".into(),
        data: vec![m("whisper-1"), m(&s.model_name)],
    })
}
