//! A job as the API shows it: the body of `GET /v1/jobs/{id}` and of its webhook.

use crate::job::{Delivery, Job, JobResult};

/// A job as the API shows it (`GET /v1/jobs/{id}`, and the webhook body).
pub fn job_json(j: &Job, delivery: Option<&Delivery>) -> serde_json::Value {
    let result = j.result.as_ref();
    serde_json::json!({
        "id": j.id,
        "object": "transcription.job",
        "status": j.status,
        "created_at": j.created_at / 1000,
        "filename": j.filename,
        "content_type": j.content_type,
        "size": j.size,
        "sha256": j.sha256,
        "external_id": j.external_id,
        "source": j.source,
        "client": j.client,
        "attempts": j.attempts,
        "error": j.failure,
        "language": j.language,
        "duration": j.duration,
        "text": result.map(|r| &r.transcript.text),
        "review": result.map(|r| &r.transcript.review),
        "transcript": result.map(JobResult::verbose_json),
        "options": j.options,
        "callback_url": j.callback_url,
        "webhook": delivery.map(|d| serde_json::json!({
            "delivery_id": d.id, "event": d.event, "status": d.status, "attempts": d.attempts, "last_error": d.last_error,
        })),
    })
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
        assert_eq!(job_json(&job, None)["transcript"], result.verbose_json());
        assert_eq!(job_json(&job, None)["transcript"]["language"], "russian");
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
