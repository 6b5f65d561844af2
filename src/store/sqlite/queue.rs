//! The queue on SQLite: claims, leases, finishing, and taking jobs back after a crash.

use rusqlite::{params, OptionalExtension};

use super::{job_row, json, Sqlite};
use crate::error::ErrorCode;
use crate::job::{Event, Job, JobResult, Priority, Status};
use crate::store::row::JobRow;
use crate::store::{finished_now, now_ms, Fetches, Queue, StorageError, BYTES_PER_AUDIO_S};

/// The claim's order (see [`Queue::claim`], [`crate::store::FAIR_SHARE`]): synchronous
/// requests first; then the client furthest behind; within it, jobs that waited past
/// `max_wait` (`?2`) oldest first, then the smallest file.
const ORDER: &str = "j.priority ASC, COALESCE(c.vtime, 0) ASC, (j.created_at < ?2) DESC,
    CASE WHEN j.created_at < ?2 THEN j.created_at ELSE j.size END ASC, j.id ASC";

/// Move the fair share on by a claimed job of `client` with `cost` estimated audio seconds
/// (see the `store` module's doc): one row, the client's own.
fn advance(tx: &rusqlite::Transaction<'_>, client: &str, cost: f64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO clients (name, vtime) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET vtime = vtime + excluded.vtime",
        params![client, cost],
    )?;
    Ok(())
}

/// Put a webhook delivery for a finished job into the outbox, when the job has a callback.
fn enqueue_delivery(
    tx: &rusqlite::Transaction<'_>,
    job_id: &str,
    event: Event,
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
            params![uuid::Uuid::now_v7().to_string(), job_id, url, event.as_str(), now],
        )?;
    }
    Ok(())
}

/// Fail jobs whose worker died on each of their attempts, and queue their webhooks.
fn fail_crashed(tx: &rusqlite::Transaction<'_>, ids: &[String]) -> rusqlite::Result<()> {
    for id in ids {
        tracing::error!(id = %id, "job failed: the process died while running it on every attempt");
        tx.execute(
            "UPDATE jobs SET status = 'failed', error_code = ?4,
             error_message = ?2, lease_until = NULL, updated_at = ?3 WHERE id = ?1",
            params![
                id,
                format!("the service stopped while transcribing this note on each of its attempts; its audio is kept, and POST /v1/jobs/{id}/retry runs it again"),
                now_ms(),
                ErrorCode::CrashedWorker.as_str(),
            ],
        )?;
        enqueue_delivery(tx, id, Event::Failed)?;
    }
    Ok(())
}
impl Queue for Sqlite {
    fn queued_count(&self, priority: Option<Priority>) -> Result<i64, StorageError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND (?1 IS NULL OR priority = ?1)",
            [priority.map(Priority::as_i32)],
            |r| r.get(0),
        )?)
    }

    fn claim(
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
                &format!(
                    "SELECT j.* FROM jobs j LEFT JOIN clients c ON c.name = COALESCE(j.client, '')
                     WHERE j.status = 'queued' OR (j.status = 'running' AND j.lease_until < ?1)
                     ORDER BY {ORDER}
                     LIMIT 1"
                ),
                params![now, now - max_wait_ms],
                job_row,
            )
            .optional()?;
        let Some(row) = job else { return Ok(None) };
        let id = row.id.clone();
        let mut job = match row.decode() {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(id, error = %e, "a queued job's row does not read; it fails");
                tx.execute(
                    "UPDATE jobs SET status = 'failed', error_code = ?2, error_message = ?3, lease_until = NULL, updated_at = ?4 WHERE id = ?1",
                    params![id, ErrorCode::StorageError.as_str(), e.to_string(), now],
                )?;
                enqueue_delivery(&tx, &id, Event::Failed)?;
                tx.commit()?;
                return Err(e);
            }
        };
        tx.execute(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = ?2, updated_at = ?3, started_at = ?3 WHERE id = ?1",
            params![job.id, now + lease_ms, now],
        )?;
        advance(
            &tx,
            job.client.as_deref().unwrap_or_default(),
            job.size as f64 / BYTES_PER_AUDIO_S,
        )?;
        tx.commit()?;
        job.status = Status::Running;
        job.attempts += 1;
        Ok(Some(job))
    }

    fn heartbeat(&self, id: &str, lease_ms: i64) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE jobs SET lease_until = ?2 WHERE id = ?1 AND status = 'running'",
            params![id, now_ms() + lease_ms],
        )?;
        Ok(())
    }

    fn finish_done(&self, id: &str, result: &JobResult) -> Result<(), StorageError> {
        let t = &result.transcript;
        let c = self.conn();
        let tx = c.unchecked_transaction()?;
        let n = tx.execute(
            "UPDATE jobs SET status = 'done', language = ?2, duration = ?3, transcript = ?4, error_code = NULL, error_message = NULL,
             lease_until = NULL, updated_at = ?5 WHERE id = ?1 AND status IN ('queued', 'running')",
            params![id, t.language, t.duration, json(result), now_ms()],
        )?;
        if !finished_now(n, id) {
            return Ok(());
        }
        // The fair share's estimate of this job's audio gives way to its real duration.
        tx.execute(
            "UPDATE clients SET vtime = vtime + ?2 - (SELECT size FROM jobs WHERE id = ?1) / ?3
             WHERE name = (SELECT COALESCE(client, '') FROM jobs WHERE id = ?1)",
            params![id, t.duration, BYTES_PER_AUDIO_S],
        )?;
        enqueue_delivery(&tx, id, Event::Done)?;
        tx.commit()?;
        Ok(())
    }

    fn finish_failed(&self, id: &str, code: ErrorCode, message: &str) -> Result<(), StorageError> {
        let c = self.conn();
        let tx = c.unchecked_transaction()?;
        let n = tx.execute(
            "UPDATE jobs SET status = 'failed', error_code = ?2, error_message = ?3, lease_until = NULL, updated_at = ?4
             WHERE id = ?1 AND status IN ('fetching', 'queued', 'running')",
            params![id, code.as_str(), message, now_ms()],
        )?;
        if !finished_now(n, id) {
            return Ok(());
        }
        enqueue_delivery(&tx, id, Event::Failed)?;
        tx.commit()?;
        Ok(())
    }

    fn requeue(&self, id: &str, reset_attempts: bool) -> Result<bool, StorageError> {
        let n = self.conn().execute(
            "UPDATE jobs SET status = CASE WHEN sha256 = '' THEN 'fetching' ELSE 'queued' END, lease_until = NULL, updated_at = ?2,
             attempts = CASE WHEN ?3 THEN 0 ELSE attempts END WHERE id = ?1",
            params![id, now_ms(), reset_attempts],
        )?;
        Ok(n > 0)
    }

    fn recover_running(&self, max_attempts: u32) -> Result<(usize, usize), StorageError> {
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
        // A fetch cut short by the process's end is taken up again at once (one process
        // owns a SQLite file; with PostgreSQL, the lease runs out instead).
        tx.execute(
            "UPDATE jobs SET lease_until = NULL WHERE status = 'fetching'",
            [],
        )?;
        tx.commit()?;
        Ok((requeued, crashed.len()))
    }

    fn requeue_interrupted(&self, id: &str) -> Result<bool, StorageError> {
        let n = self.conn().execute(
            "UPDATE jobs SET status = 'queued', lease_until = NULL, updated_at = ?2,
             attempts = MAX(attempts - 1, 0) WHERE id = ?1 AND status = 'running'",
            params![id, now_ms()],
        )?;
        Ok(n > 0)
    }
}

impl Fetches for Sqlite {
    fn claim_fetch(&self, lease_ms: i64) -> Result<Option<Job>, StorageError> {
        let now = now_ms();
        self.conn()
            .query_row(
                "UPDATE jobs SET lease_until = ?1 + ?2, attempts = attempts + 1, updated_at = ?1
                 WHERE id = (SELECT id FROM jobs WHERE status = 'fetching'
                     AND (lease_until IS NULL OR lease_until <= ?1) ORDER BY id LIMIT 1)
                 RETURNING *",
                params![now, lease_ms],
                job_row,
            )
            .optional()?
            .map(JobRow::decode)
            .transpose()
    }

    fn fetched(&self, id: &str, sha256: &str, size: u64) -> Result<bool, StorageError> {
        let n = self.conn().execute(
            "UPDATE jobs SET status = 'queued', sha256 = ?2, size = ?3, lease_until = NULL, attempts = 0, updated_at = ?4
             WHERE id = ?1 AND status = 'fetching'",
            params![id, sha256, size as i64, now_ms()],
        )?;
        Ok(n == 1)
    }

    fn fetch_later(&self, id: &str, at_ms: i64) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE jobs SET lease_until = ?2 WHERE id = ?1 AND status = 'fetching'",
            params![id, at_ms],
        )?;
        Ok(())
    }
}
