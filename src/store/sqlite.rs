//! The job records in SQLite: jobs, their full-text index, the webhook outbox, and the
//! finished pieces of long jobs. One connection behind a mutex; every state change is one
//! transaction. Its tests are the shared ones in `conformance`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::sqlite_schema::MIGRATIONS;
use super::{
    finished_now, now_ms, search_words, Delivery, Job, Jobs, ListFilter, NewJob, Status,
    StorageError,
};

/// An FTS5 query matching every word of `q` as a prefix, with FTS syntax neutralised:
/// `cafe "x` becomes `"cafe"* "x"*`. `None` when `q` has no words.
fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = search_words(q)
        .iter()
        .map(|w| format!("\"{w}\"*"))
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
/// The job records in one SQLite file (`sqlite:` in `--database-url`, the default).
pub struct Sqlite {
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
impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite, StorageError> {
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
        Ok(Sqlite {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// For "needed", the partial index `jobs_review`, named: without statistics the planner
/// takes `status = 'done'` for a selective term and reads every done job through
/// `jobs_status`, then sorts them.
fn review_index(needed: Option<bool>) -> &'static str {
    if needed == Some(true) {
        " INDEXED BY jobs_review"
    } else {
        ""
    }
}

/// The job list's query: `?1` status, `?2` external id, `?3` before this id, `?4` limit,
/// `?5` full-text search.
fn list_sql(needed: Option<bool>) -> String {
    format!(
        "SELECT * FROM jobs{} WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR external_id = ?2)
         AND (?3 IS NULL OR id < ?3)
         AND (?5 IS NULL OR rowid IN (SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH ?5)){}
         ORDER BY id DESC LIMIT ?4",
        review_index(needed),
        review_clause(needed)
    )
}

/// The review filter, written out rather than bound: "needed" is then the very condition of
/// the partial index `jobs_review` (which `INDEXED BY` requires).
fn review_clause(needed: Option<bool>) -> &'static str {
    match needed {
        None => "",
        Some(true) => " AND status = 'done' AND json_extract(transcript, '$.review.needed') = 1",
        Some(false) => {
            " AND status = 'done' AND coalesce(json_extract(transcript, '$.review.needed'), 0) = 0"
        }
    }
}

impl Jobs for Sqlite {
    fn insert(&self, n: NewJob) -> Result<(Job, bool), StorageError> {
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

    fn get(&self, id: &str) -> Result<Option<Job>, StorageError> {
        Ok(self
            .conn()
            .query_row("SELECT * FROM jobs WHERE id = ?1", [id], job_from_row)
            .optional()?)
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Job>, StorageError> {
        let c = self.conn();
        let mut stmt = c.prepare(&list_sql(f.review_needed))?;
        let rows = stmt.query_map(
            params![
                f.status.map(Status::as_str),
                f.external_id,
                f.before,
                f.limit.clamp(1, super::LIST_MAX) as i64,
                f.search.as_deref().and_then(fts_query),
            ],
            job_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StorageError> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn queued_count(&self, priority: Option<i32>) -> Result<i64, StorageError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND (?1 IS NULL OR priority = ?1)",
            [priority],
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

    fn heartbeat(&self, id: &str, lease_ms: i64) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE jobs SET lease_until = ?2 WHERE id = ?1 AND status = 'running'",
            params![id, now_ms() + lease_ms],
        )?;
        Ok(())
    }

    fn finish_done(
        &self,
        id: &str,
        language: &str,
        duration: f64,
        transcript: &serde_json::Value,
    ) -> Result<(), StorageError> {
        let c = self.conn();
        let tx = c.unchecked_transaction()?;
        let n = tx.execute(
            "UPDATE jobs SET status = 'done', language = ?2, duration = ?3, transcript = ?4, error_code = NULL, error_message = NULL,
             lease_until = NULL, updated_at = ?5 WHERE id = ?1 AND status IN ('queued', 'running')",
            params![id, language, duration, transcript.to_string(), now_ms()],
        )?;
        if !finished_now(n, id) {
            return Ok(());
        }
        enqueue_delivery(&tx, id, "job.done")?;
        tx.commit()?;
        Ok(())
    }

    fn finish_failed(
        &self,
        id: &str,
        code: crate::error::ErrorCode,
        message: &str,
    ) -> Result<(), StorageError> {
        let c = self.conn();
        let tx = c.unchecked_transaction()?;
        let n = tx.execute(
            "UPDATE jobs SET status = 'failed', error_code = ?2, error_message = ?3, lease_until = NULL, updated_at = ?4
             WHERE id = ?1 AND status IN ('queued', 'running')",
            params![id, code.as_str(), message, now_ms()],
        )?;
        if !finished_now(n, id) {
            return Ok(());
        }
        enqueue_delivery(&tx, id, "job.failed")?;
        tx.commit()?;
        Ok(())
    }

    fn due_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StorageError> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2")?;
        let rows = stmt.query_map(params![now_ms(), limit as i64], delivery_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn latest_delivery(&self, job_id: &str) -> Result<Option<Delivery>, StorageError> {
        Ok(self
            .conn()
            .query_row("SELECT * FROM deliveries WHERE job_id = ?1 ORDER BY created_at DESC, id DESC LIMIT 1", [job_id], delivery_from_row)
            .optional()?)
    }

    fn delivery_done(&self, id: &str) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = ?2, last_error = NULL WHERE id = ?1",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    fn delivery_retry(&self, id: &str, error: &str, next_at: i64) -> Result<(), StorageError> {
        self.conn()
            .execute("UPDATE deliveries SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1", params![id, error, next_at])?;
        Ok(())
    }

    fn delivery_gave_up(&self, id: &str, error: &str) -> Result<(), StorageError> {
        self.conn().execute("UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?2 WHERE id = ?1", params![id, error])?;
        Ok(())
    }

    fn save_piece(
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

    fn pieces(&self, id: &str) -> Result<Vec<(usize, usize, serde_json::Value)>, StorageError> {
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

    fn requeue(&self, id: &str, reset_attempts: bool) -> Result<bool, StorageError> {
        let n = self.conn().execute(
            "UPDATE jobs SET status = 'queued', lease_until = NULL, updated_at = ?2,
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

    fn delete(&self, id: &str) -> Result<Option<Option<String>>, StorageError> {
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

    fn expired(&self, days: u64) -> Result<Vec<String>, StorageError> {
        let cutoff = now_ms() - (days as i64) * 86_400_000;
        let c = self.conn();
        let mut stmt = c.prepare(
            "SELECT id FROM jobs WHERE created_at < ?1 AND status IN ('done', 'failed') LIMIT 1000",
        )?;
        let rows = stmt.query_map([cutoff], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn sha_in_use(&self, sha: &str) -> Result<bool, StorageError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM jobs WHERE sha256 = ?1)",
            [sha],
            |r| r.get(0),
        )?)
    }

    fn writable(&self) -> bool {
        self.conn()
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .is_ok()
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    super::super::conformance::behaviour!(Some(
        Sqlite::open(Path::new(":memory:")).expect("an in-memory database")
    ));

    /// The "needs review" list, as `list` queries it, reads the partial index newest first:
    /// no scan of every done job, no sort. (`INDEXED BY` makes the prepare itself fail when
    /// the filter stops matching the index's condition.)
    #[test]
    fn the_review_list_uses_its_index() {
        let db = Sqlite::open(Path::new(":memory:")).unwrap();
        let plan: Vec<String> = db
            .conn()
            .prepare(&format!("EXPLAIN QUERY PLAN {}", list_sql(Some(true))))
            .unwrap()
            .query_map(
                params![
                    None::<String>,
                    None::<String>,
                    None::<String>,
                    50,
                    None::<String>
                ],
                |r| r.get::<_, String>(3),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !plan.iter().any(|d| d.contains("TEMP B-TREE")),
            "newest first straight from the index: {plan:?}"
        );
        assert!(
            !plan
                .iter()
                .any(|d| d.starts_with("SCAN jobs") && !d.contains("INDEX")),
            "a scan of the whole table: {plan:?}"
        );
    }
}
