//! A job as the API shows it: the body of `GET /v1/jobs/{id}` and of its webhook.

use crate::engine::review::Review;
use crate::job::{Delivery, DeliveryStatus, Event, Failure, Job, JobResult, Status};

/// A job as the API shows it: the body of `GET /v1/jobs/{id}`, of each item of
/// `GET /v1/jobs`, of `POST /v1/jobs`'s answer and of its webhook. Its schema in
/// `/openapi.json` is made from this type.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// The job's id (a UUIDv7: ordered by creation).
    pub id: String,
    /// Always `transcription.job`.
    #[schema(example = "transcription.job")]
    pub object: String,
    pub status: Status,
    /// Unix time, seconds.
    pub created_at: i64,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    /// Bytes of audio (0 while fetching).
    pub size: u64,
    /// The audio's SHA-256, hex (empty while fetching).
    pub sha256: String,
    pub external_id: Option<String>,
    /// Where the note came from: the `source` field of the upload, or `telegram` / `url` for a
    /// job that fetched its audio.
    pub source: Option<String>,
    /// The API key (by name) that created it.
    pub client: Option<String>,
    /// Claims so far.
    pub attempts: u32,
    /// Set when `failed`.
    pub error: Option<Failure>,
    /// The transcript's language, once done.
    pub language: Option<String>,
    /// Seconds of audio, once done.
    pub duration: Option<f64>,
    /// The text, once done.
    pub text: Option<String>,
    /// The review verdict, once done.
    pub review: Option<Review>,
    /// The transcript as OpenAI's `verbose_json` (with `words`), once done.
    #[schema(value_type = Option<Object>)]
    pub transcript: Option<serde_json::Value>,
    /// What the job asked (language, prompt, translate, ...).
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    pub callback_url: Option<String>,
    /// The latest webhook delivery, when there is a `callback_url`.
    pub webhook: Option<WebhookView>,
    /// Where the original can be fetched (signed when the service has keys); `null` while the
    /// job is fetching its audio.
    pub audio_url: Option<String>,
    /// How far a running long recording has got; `null` otherwise.
    pub progress: Option<ProgressView>,
}

/// A webhook delivery's state.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub delivery_id: String,
    pub event: Event,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// How far a running recording decoded in pieces has got.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ProgressView {
    /// 0 to 1.
    pub fraction: f64,
    pub audio_seconds_done: f64,
    pub audio_seconds: f64,
}

/// A job as the API shows it, less what only the HTTP layer knows (`audio_url`, `progress`).
pub fn job_json(j: &Job, delivery: Option<&Delivery>) -> JobView {
    let result = j.result.as_ref();
    JobView {
        id: j.id.clone(),
        object: "transcription.job".into(),
        status: j.status,
        created_at: j.created_at / 1000,
        filename: j.filename.clone(),
        content_type: j.content_type.clone(),
        size: j.size,
        sha256: j.sha256.clone(),
        external_id: j.external_id.clone(),
        source: j.source.clone(),
        client: j.client.clone(),
        attempts: j.attempts,
        error: j.failure.clone(),
        language: j.language.clone(),
        duration: j.duration,
        text: result.map(|r| r.transcript.text.clone()),
        review: result.map(|r| r.transcript.review.clone()),
        transcript: result.map(JobResult::verbose_json),
        options: serde_json::to_value(&j.options).expect("options serialize"),
        callback_url: j.callback_url.clone(),
        webhook: delivery.map(|d| WebhookView {
            delivery_id: d.id.clone(),
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error.clone(),
        }),
        audio_url: None,
        progress: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::Warning;
    use crate::engine::review::Review;
    use crate::engine::Transcript;

    /// Rows finished before `JobResult` hold rendered `verbose_json`; the migration makes
    /// them read as results, and what the API shows from them stays the same.
    #[test]
    fn results_stored_as_verbose_json_read_after_the_migration() {
        use crate::store::{Records, Sqlite};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite");
        let t = Transcript {
            text: "Где мой заказ?".into(),
            language: "ru".into(),
            language_probability: Some(0.97),
            duration: 2.5,
            segments: vec![crate::engine::Segment {
                id: 0,
                start: 0.0,
                end: 2.34,
                text: "Где мой заказ?".into(),
                tokens: vec![1, 2, 3],
                temperature: 0.0,
                avg_logprob: -0.2,
                compression_ratio: 1.0,
                no_speech_prob: 0.01,
                suspect: false,
            }],
            words: None,
            review: Review::default(),
        };
        let result = JobResult {
            transcript: t.clone(),
            warnings: vec![Warning {
                code: crate::audio::WarningKind::Truncated,
                message: "cut".into(),
            }],
            task: "transcribe".into(),
        };
        let id = {
            let db = Sqlite::open(&path).unwrap();
            let job = db
                .insert(crate::store::conformance::new_job("a.oga"))
                .unwrap()
                .into_job()
                .unwrap();
            drop(db);
            // What the worker stored before: the rendered verbose_json, warnings added.
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute(
                "UPDATE jobs SET status = 'done', language = 'ru', duration = 2.5, transcript = ?2 WHERE id = ?1",
                rusqlite::params![job.id, result.verbose_json().to_string()],
            )
            .unwrap();

            // Back to before that migration (every later one runs again too, as each can).
            let before = Sqlite::version_before("json_set(transcript, '$.language', language)");
            conn.pragma_update(None, "user_version", before).unwrap();
            job.id
        };
        let db = Sqlite::open(&path).unwrap();
        let job = db.get(&id).unwrap().unwrap();
        assert_eq!(job.result.as_ref(), Some(&result), "an old row reads");
        assert_eq!(
            serde_json::to_value(job_json(&job, None)).unwrap()["transcript"],
            result.verbose_json()
        );
        assert_eq!(
            serde_json::to_value(job_json(&job, None)).unwrap()["transcript"]["language"],
            "russian"
        );
        // Search still finds it.
        let found = db
            .list(&crate::job::ListFilter {
                search: Some("заказ".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(found.len(), 1);
    }
}
