//! The job records in SQLite: jobs, their full-text index, the webhook outbox, and the
//! finished pieces of long jobs. One connection behind a mutex; every state change is one
//! transaction. (Over 500 lines because every SQL statement on these tables is here, in one
//! place; about 130 of them are tests.)

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::schema::MIGRATIONS;
use super::{now_ms, Delivery, Job, ListFilter, NewJob, Status, StorageError};

/// An FTS5 query matching every word of `q` as a prefix, with FTS syntax neutralised:
/// `cafe "x` becomes `"cafe"* "x"*`. `None` when `q` has no words.
pub fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| format!("\"{}\"*", w.replace('ё', "е").replace('Ё', "Е")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}
fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get("id")?,
        job_id: r.get("job_id")?,
        url: r.get("url")?,
        event: r.get("event")?,
        status: r.get("status")?,
        attempts: r.get::<_, i64>("attempts")? as u32,
        last_error: r.get("last_error")?,
    })
}

/// Put a webhook delivery for a finished job into the outbox, when the job has a callback.
fn enqueue_delivery(
    tx: &rusqlite::Transaction<'_>,
    job_id: &str,
    event: &str,
) -> rusqlite::Result<()> {
    let url: Option<String> = tx.query_row(
        "SELECT callback_url FROM jobs WHERE id = ?1",
        [job_id],
        |r| r.get(0),
    )?;
    if let Some(url) = url {
        let now = now_ms();
        tx.execute(
            "INSERT INTO deliveries (id, job_id, url, event, status, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
            params![uuid::Uuid::now_v7().to_string(), job_id, url, event, now],
        )?;
    }
    Ok(())
}

/// Fail jobs whose worker died on each of their attempts, and queue their webhooks.
fn fail_crashed(tx: &rusqlite::Transaction<'_>, ids: &[String]) -> rusqlite::Result<()> {
    for id in ids {
        tracing::error!(id = %id, "job failed: the process died while running it on every attempt");
        tx.execute(
            "UPDATE jobs SET status = 'failed', error_code = 'crashed_worker',
             error_message = ?2, lease_until = NULL, updated_at = ?3 WHERE id = ?1",
            params![
                id,
                format!("the service stopped while transcribing this note on each of its attempts; its audio is kept, and POST /v1/jobs/{id}/retry runs it again"),
                now_ms()
            ],
        )?;
        enqueue_delivery(tx, id, "job.failed")?;
    }
    Ok(())
}
/// The job table.
pub struct Db {
    conn: Mutex<Connection>,
}

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = r.get("status")?;
    let transcript: Option<String> = r.get("transcript")?;
    let options: String = r.get("options")?;
    Ok(Job {
        id: r.get("id")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
        sha256: r.get("sha256")?,
        size: r.get::<_, i64>("size")? as u64,
        content_type: r.get("content_type")?,
        filename: r.get("filename")?,
        external_id: r.get("external_id")?,
        source: r.get("source")?,
        status: Status::parse(&status).unwrap_or(Status::Queued),
        attempts: r.get::<_, i64>("attempts")? as u32,
        error_code: r.get("error_code")?,
        error_message: r.get("error_message")?,
        language: r.get("language")?,
        duration: r.get("duration")?,
        transcript: transcript.and_then(|t| serde_json::from_str(&t).ok()),
        options: serde_json::from_str(&options).unwrap_or(serde_json::Value::Null),
        priority: r.get("priority")?,
        idempotency_key: r.get("idempotency_key")?,
        callback_url: r.get("callback_url")?,
    })
}
impl Db {
    pub fn open(path: &Path) -> Result<Db, StorageError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Insert a record (status `queued`). With an idempotency key already used, returns the
    /// existing record instead (`Ok((job, false))`).
    pub fn insert(&self, n: NewJob) -> Result<(Job, bool), StorageError> {
        let c = self.conn();
        if let Some(k) = &n.idempotency_key {
            if let Some(j) = c
                .query_row(
                    "SELECT * FROM jobs WHERE idempotency_key = ?1",
                    [k],
                    job_from_row,
                )
                .optional()?
            {
                return Ok((j, false));
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        c.execute(
            "INSERT INTO jobs (id, created_at, updated_at, sha256, size, content_type, filename, external_id, source, status, options, priority, idempotency_key, callback_url)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10, ?11, ?12)",
            params![id, now, n.sha256, n.size as i64, n.content_type, n.filename, n.external_id, n.source, n.options.to_string(), n.priority, n.idempotency_key, n.callback_url],
        )?;
        let j = c.query_row("SELECT * FROM jobs WHERE id = ?1", [&id], job_from_row)?;
        Ok((j, true))
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>, StorageError> {
        Ok(self
            .conn()
            .query_row("SELECT * FROM jobs WHERE id = ?1", [id], job_from_row)
            .optional()?)
    }

    pub fn list(&self, f: &ListFilter) -> Result<Vec<Job>, StorageError> {
        let c = self.conn();
        let mut stmt = c.prepare(
            "SELECT * FROM jobs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR external_id = ?2)
             AND (?3 IS NULL OR id < ?3)
             AND (?5 IS NULL OR rowid IN (SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH ?5))
             AND (?6 IS NULL OR (status = 'done'
                  AND coalesce(json_extract(transcript, '$.review.needed'), 0) = ?6))
             ORDER BY id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                f.status.map(Status::as_str),
                f.external_id,
                f.before,
                f.limit.clamp(1, 1000) as i64,
                f.search.as_deref().and_then(fts_query),
                f.review_needed,
            ],
            job_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn count_by_status(&self) -> Result<Vec<(String, i64)>, StorageError> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Jobs waiting for a worker; with `Some(p)`, only those of priority `p` (0: synchronous).
    pub fn queued_count(&self, priority: Option<i32>) -> Result<i64, StorageError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND (?1 IS NULL OR priority = ?1)",
            [priority],
            |r| r.get(0),
        )?)
    }

    /// Claim the next job for a worker: synchronous requests first, then jobs that waited
    /// longer than `max_wait_ms` (oldest first), then the smallest file (a short voice note
    /// is not stuck behind a long one). Also reclaims `running` jobs whose lease expired.
    /// A job whose lease expired after `max_attempts` claims fails as `crashed_worker`
    /// instead (see [`Db::recover_running`]).
    pub fn claim(
        &self,
        lease_ms: i64,
        max_wait_ms: i64,
        max_attempts: u32,
    ) -> Result<Option<Job>, StorageError> {
        let c = self.conn();
        let now = now_ms();
        let tx = c.unchecked_transaction()?;
        // A job whose lease ran out after its last allowed attempt: its worker died each time.
        let crashed: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT id FROM jobs WHERE status = 'running' AND lease_until < ?1 AND attempts >= ?2",
            )?;
            let rows = stmt.query_map(params![now, max_attempts], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        fail_crashed(&tx, &crashed)?;
        let job = tx
            .query_row(
                "SELECT * FROM jobs WHERE status = 'queued' OR (status = 'running' AND lease_until < ?1)
                 ORDER BY priority ASC, (created_at < ?2) DESC, CASE WHEN created_at < ?2 THEN created_at ELSE size END ASC, id ASC
                 LIMIT 1",
                params![now, now - max_wait_ms],
                job_from_row,
            )
            .optional()?;
        let Some(mut job) = job else { return Ok(None) };
        tx.execute(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = ?2, updated_at = ?3 WHERE id = ?1",
            params![job.id, now + lease_ms, now],
        )?;
        tx.commit()?;
        job.status = Status::Running;
        job.attempts += 1;
        Ok(Some(job))
    }

    /// Extend a running job's lease (the worker's heartbeat).
    pub fn heartbeat(&self, id: &str, lease_ms: i64) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE jobs SET lease_until = ?2 WHERE id = ?1 AND status = 'running'",
            params![id, now_ms() + lease_ms],
        )?;
        Ok(())
    }

    /// Record a transcript; queues the webhook (if any) in the same transaction.
    pub fn finish_done(
        &self,
        id: &str,
        language: &str,
        duration: f64,
        transcript: &serde_json::Value,
    ) -> Result<(), StorageError> {
        let c = self.conn();
        let tx = c.unchecked_transaction()?;
        tx.execute(
            "UPDATE jobs SET status = 'done', language = ?2, duration = ?3, transcript = ?4, error_code = NULL, error_message = NULL,
             lease_until = NULL, updated_at = ?5 WHERE id = ?1",
            params![id, language, duration, transcript.to_string(), now_ms()],
        )?;
        enqueue_delivery(&tx, id, "job.done")?;
        tx.commit()?;
        Ok(())
    }

    /// Record a failure; queues the webhook (if any) in the same transaction.
    pub fn finish_failed(
        &self,
        id: &str,
        code: crate::error::ErrorCode,
        message: &str,
    ) -> Result<(), StorageError> {
        let c = self.conn();
        let tx = c.unchecked_transaction()?;
        tx.execute(
            "UPDATE jobs SET status = 'failed', error_code = ?2, error_message = ?3, lease_until = NULL, updated_at = ?4 WHERE id = ?1",
            params![id, code.as_str(), message, now_ms()],
        )?;
        enqueue_delivery(&tx, id, "job.failed")?;
        tx.commit()?;
        Ok(())
    }

    /// Deliveries due now, oldest first.
    pub fn due_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StorageError> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2")?;
        let rows = stmt.query_map(params![now_ms(), limit as i64], delivery_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest delivery of a job, if it has one.
    pub fn latest_delivery(&self, job_id: &str) -> Result<Option<Delivery>, StorageError> {
        Ok(self
            .conn()
            .query_row("SELECT * FROM deliveries WHERE job_id = ?1 ORDER BY created_at DESC, id DESC LIMIT 1", [job_id], delivery_from_row)
            .optional()?)
    }

    pub fn delivery_done(&self, id: &str) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = ?2, last_error = NULL WHERE id = ?1",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    pub fn delivery_retry(&self, id: &str, error: &str, next_at: i64) -> Result<(), StorageError> {
        self.conn()
            .execute("UPDATE deliveries SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1", params![id, error, next_at])?;
        Ok(())
    }

    pub fn delivery_gave_up(&self, id: &str, error: &str) -> Result<(), StorageError> {
        self.conn().execute("UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?2 WHERE id = ?1", params![id, error])?;
        Ok(())
    }

    /// Put a job back in the queue (engine error to retry, shutdown, explicit retry).
    /// Keep a finished piece of a running job (samples `start..end` of its audio).
    pub fn save_piece(
        &self,
        id: &str,
        start: usize,
        end: usize,
        transcript: &serde_json::Value,
    ) -> Result<(), StorageError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO pieces (job_id, start_sample, end_sample, transcript) VALUES (?1, ?2, ?3, ?4)",
            params![id, start as i64, end as i64, transcript.to_string()],
        )?;
        Ok(())
    }

    /// The pieces kept for a job: `(start, end, transcript)`.
    pub fn pieces(&self, id: &str) -> Result<Vec<(usize, usize, serde_json::Value)>, StorageError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT start_sample, end_sample, transcript FROM pieces WHERE job_id = ?1 ORDER BY start_sample",
        )?;
        let rows = st.query_map([id], |r| {
            let t: String = r.get(2)?;
            Ok((
                r.get::<_, i64>(0)? as usize,
                r.get::<_, i64>(1)? as usize,
                serde_json::from_str(&t).unwrap_or(serde_json::Value::Null),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn requeue(&self, id: &str, reset_attempts: bool) -> Result<bool, StorageError> {
        let n = self.conn().execute(
            "UPDATE jobs SET status = 'queued', lease_until = NULL, updated_at = ?2,
             attempts = CASE WHEN ?3 THEN 0 ELSE attempts END WHERE id = ?1",
            params![id, now_ms(), reset_attempts],
        )?;
        Ok(n > 0)
    }

    /// At start-up: jobs left `running` by a previous process. Each claim counted an attempt,
    /// so a job found here after `max_attempts` claims has been running every time its
    /// process died: it fails as `crashed_worker` (its audio kept, retryable by hand) instead
    /// of killing every restart. The others go back to the queue. Returns (requeued, failed).
    pub fn recover_running(&self, max_attempts: u32) -> Result<(usize, usize), StorageError> {
        let c = self.conn();
        let tx = c.unchecked_transaction()?;
        let crashed: Vec<String> = {
            let mut stmt =
                tx.prepare("SELECT id FROM jobs WHERE status = 'running' AND attempts >= ?1")?;
            let rows = stmt.query_map([max_attempts], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        fail_crashed(&tx, &crashed)?;
        let requeued = tx.execute(
            "UPDATE jobs SET status = 'queued', lease_until = NULL, updated_at = ?1 WHERE status = 'running'",
            [now_ms()],
        )?;
        tx.commit()?;
        Ok((requeued, crashed.len()))
    }

    /// Put a job that this process interrupted (shutdown) back in the queue, without
    /// counting the attempt: it did not crash anything.
    pub fn requeue_interrupted(&self, id: &str) -> Result<bool, StorageError> {
        let n = self.conn().execute(
            "UPDATE jobs SET status = 'queued', lease_until = NULL, updated_at = ?2,
             attempts = MAX(attempts - 1, 0) WHERE id = ?1 AND status = 'running'",
            params![id, now_ms()],
        )?;
        Ok(n > 0)
    }

    /// Delete a record; returns its blob hash when no other record uses that blob any more.
    pub fn delete(&self, id: &str) -> Result<Option<Option<String>>, StorageError> {
        let c = self.conn();
        let Some(sha): Option<String> = c
            .query_row("SELECT sha256 FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
        else {
            return Ok(None);
        };
        c.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
        c.execute("DELETE FROM deliveries WHERE job_id = ?1", [id])?;
        let others: i64 =
            c.query_row("SELECT COUNT(*) FROM jobs WHERE sha256 = ?1", [&sha], |r| {
                r.get(0)
            })?;
        Ok(Some((others == 0).then_some(sha)))
    }

    /// Finished jobs created more than `days` days ago (the operator's retention policy).
    pub fn expired(&self, days: u64) -> Result<Vec<String>, StorageError> {
        let cutoff = now_ms() - (days as i64) * 86_400_000;
        let c = self.conn();
        let mut stmt = c.prepare(
            "SELECT id FROM jobs WHERE created_at < ?1 AND status IN ('done', 'failed') LIMIT 1000",
        )?;
        let rows = stmt.query_map([cutoff], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether any record points at this blob.
    pub fn sha_in_use(&self, sha: &str) -> Result<bool, StorageError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM jobs WHERE sha256 = ?1)",
            [sha],
            |r| r.get(0),
        )?)
    }

    /// Whether a write goes through (readiness).
    pub fn writable(&self) -> bool {
        self.conn()
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .is_ok()
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn job(db: &Db, name: &str) -> Job {
        db.insert(NewJob {
            sha256: "00".repeat(32),
            size: 1,
            content_type: None,
            filename: Some(name.into()),
            external_id: None,
            source: None,
            options: serde_json::json!({}),
            priority: 1,
            idempotency_key: None,
            callback_url: None,
        })
        .unwrap()
        .0
    }

    fn search(db: &Db, q: &str) -> Vec<String> {
        db.list(&ListFilter {
            search: Some(q.into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|j| j.filename.unwrap())
        .collect()
    }

    #[test]
    fn full_text_search_over_transcripts_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.sqlite")).unwrap();
        let a = job(&db, "a.oga");
        let b = job(&db, "b.oga");
        job(&db, "заказ_2.oga");
        let t = |text: &str| serde_json::json!({ "text": text });
        db.finish_done(&a.id, "ru", 3.0, &t("Где мой заказ? Жёлтая коробка."))
            .unwrap();
        db.finish_done(&b.id, "en", 2.0, &t("Ask not what your country"))
            .unwrap();
        // Case, ё/е and prefixes fold; every word must match; FTS syntax is neutralised.
        assert_eq!(search(&db, "ЗАКАЗ"), ["заказ_2.oga", "a.oga"]);
        assert_eq!(search(&db, "желтая кор"), ["a.oga"]);
        assert_eq!(search(&db, "country ask"), ["b.oga"]);
        assert_eq!(search(&db, "country заказ"), Vec::<String>::new());
        assert_eq!(search(&db, "\"ask) (*country:"), ["b.oga"]);
        // A transcript replaced (retry) or a job deleted leaves no stale match.
        db.finish_done(&b.id, "en", 2.0, &t("something else"))
            .unwrap();
        assert!(search(&db, "country").is_empty());
        db.delete(&a.id).unwrap();
        assert_eq!(search(&db, "заказ"), ["заказ_2.oga"]);
    }

    /// Issue #13, item 1: a job that was running each time the process died three times is
    /// failed as `crashed_worker`, not requeued into a fourth crash; a shutdown does not count.
    #[test]
    fn crash_loop_protection() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.sqlite")).unwrap();
        let a = job(&db, "bomb.wav");
        for round in 1..=3u32 {
            let claimed = db.claim(60_000, 30_000, 3).unwrap().expect("claimable");
            assert_eq!(
                (claimed.id.as_str(), claimed.attempts),
                (a.id.as_str(), round)
            );
            // kill -9 here; the next process starts:
            let (requeued, failed) = db.recover_running(3).unwrap();
            if round < 3 {
                assert_eq!((requeued, failed), (1, 0), "round {round}");
            } else {
                assert_eq!((requeued, failed), (0, 1));
            }
        }
        let j = db.get(&a.id).unwrap().unwrap();
        assert_eq!(j.status, Status::Failed);
        assert_eq!(j.error_code.as_deref(), Some("crashed_worker"));
        assert!(db.claim(60_000, 30_000, 3).unwrap().is_none());
        // Retried by hand, it runs again from a clean count.
        db.requeue(&a.id, true).unwrap();
        let again = db.claim(60_000, 30_000, 3).unwrap().unwrap();
        assert_eq!(again.attempts, 1);
        // An interrupted (shut down) attempt is not counted.
        db.requeue_interrupted(&a.id).unwrap();
        assert_eq!(db.get(&a.id).unwrap().unwrap().attempts, 0);
        // A lease that ran out after the last attempt fails the job at the next claim.
        for _ in 0..3 {
            db.claim(-1, 30_000, 3).unwrap().unwrap();
            db.conn()
                .execute("UPDATE jobs SET lease_until = 0", [])
                .unwrap();
        }
        assert!(db.claim(60_000, 30_000, 3).unwrap().is_none());
        let j = db.get(&a.id).unwrap().unwrap();
        assert_eq!(j.error_code.as_deref(), Some("crashed_worker"));
    }
}
