//! The queue on PostgreSQL: claims that skip what another node is taking, leases on the
//! database's clock, finishing, taking jobs back, and hearing of jobs queued elsewhere.

use postgres::fallible_iterator::FallibleIterator;
use postgres::NoTls;

use super::{db_now, job_from_row, job_row, json, Postgres, COLUMNS, DB_NOW_MS, QUEUED};
use crate::error::ErrorCode;
use crate::job::{Event, Job, JobResult, Priority};
use crate::store::{finished_now, now_ms, Fetches, Queue, StorageError, BYTES_PER_AUDIO_S};

/// Move the fair share on by a claimed job of `client` with `cost` estimated audio seconds
/// (see the `store` module's doc): one row, the client's own.
fn advance(
    tx: &mut postgres::Transaction<'_>,
    client: &str,
    cost: f64,
) -> Result<(), postgres::Error> {
    tx.execute(
        "INSERT INTO clients AS c (name, vtime) VALUES ($1, $2::float8)
         ON CONFLICT (name) DO UPDATE SET vtime = c.vtime + excluded.vtime",
        &[&client, &cost],
    )?;
    Ok(())
}

/// Put a webhook delivery for a finished job into the outbox, when the job has a callback.
fn enqueue_delivery(
    tx: &mut postgres::Transaction<'_>,
    job_id: &str,
    event: Event,
) -> Result<(), postgres::Error> {
    tx.execute(
        &format!(
            "INSERT INTO deliveries (id, job_id, url, event, status, next_attempt_at, created_at)
             SELECT $1, id, callback_url, $2, 'pending', {DB_NOW_MS}, {DB_NOW_MS} FROM jobs
             WHERE id = $3 AND callback_url IS NOT NULL"
        ),
        &[&uuid::Uuid::now_v7().to_string(), &event.as_str(), &job_id],
    )?;
    Ok(())
}

/// Fail the jobs whose lease ran out after their last allowed attempt (their worker died on
/// each), and queue their webhooks; how many.
fn fail_crashed(
    tx: &mut postgres::Transaction<'_>,
    now: i64,
    max_attempts: u32,
) -> Result<usize, postgres::Error> {
    let ids: Vec<String> = tx
        .query(
            "SELECT id FROM jobs WHERE status = 'running' AND lease_until < $1 AND attempts >= $2
             FOR UPDATE SKIP LOCKED",
            &[&now, &(max_attempts as i32)],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for id in &ids {
        tracing::error!(id = %id, "job failed: the process died while running it on every attempt");
        tx.execute(
            "UPDATE jobs SET status = 'failed', error_code = $4, error_message = $2,
             lease_until = NULL, updated_at = $3 WHERE id = $1",
            &[
                id,
                &format!("the service stopped while transcribing this note on each of its attempts; its audio is kept, and POST /v1/jobs/{id}/retry runs it again"),
                &now_ms(),
                &ErrorCode::CrashedWorker.as_str(),
            ],
        )?;
        tx.execute("DELETE FROM pieces WHERE job_id = $1", &[id])?;
        enqueue_delivery(tx, id, Event::Failed)?;
    }
    Ok(ids.len())
}

impl Queue for Postgres {
    fn queued_count(&self, priority: Option<Priority>) -> Result<i64, StorageError> {
        Ok(self
            .conn()?
            .query_one(
                "SELECT count(*) FROM jobs WHERE status = 'queued' AND ($1::int IS NULL OR priority = $1)",
                &[&priority.map(Priority::as_i32)],
            )?
            .try_get(0)?)
    }

    fn claim(
        &self,
        lease_ms: i64,
        max_wait_ms: i64,
        max_attempts: u32,
    ) -> Result<Option<Job>, StorageError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction()?;
        let now = db_now(&mut tx)?;
        fail_crashed(&mut tx, now, max_attempts)?;
        // One statement: the next job, locked (skipping those another node is taking),
        // marked running under a lease.
        let row = tx.query_opt(
            &format!(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = $3, updated_at = $1,
                 started_at = $1
                 WHERE id = (
                     SELECT j.id FROM jobs j
                     LEFT JOIN clients c ON c.name = COALESCE(j.client, '')
                     WHERE j.status = 'queued' OR (j.status = 'running' AND j.lease_until < $1)
                     ORDER BY j.priority ASC, COALESCE(c.vtime, 0) ASC, (j.created_at < $2) DESC,
                       CASE WHEN j.created_at < $2 THEN j.created_at ELSE j.size END ASC, j.id ASC
                     LIMIT 1 FOR UPDATE OF j SKIP LOCKED)
                 RETURNING {COLUMNS}"
            ),
            &[&now, &(now - max_wait_ms), &(now + lease_ms)],
        )?;
        let Some(row) = row else {
            tx.commit()?;
            return Ok(None);
        };
        let row = job_row(&row)?;
        let id = row.id.clone();
        let job = row.decode();
        if let Err(e) = &job {
            tracing::error!(id, error = %e, "a queued job's row does not read; it fails");
            tx.execute(
                "UPDATE jobs SET status = 'failed', error_code = $2, error_message = $3, lease_until = NULL WHERE id = $1",
                &[&id, &ErrorCode::StorageError.as_str(), &e.to_string()],
            )?;
            enqueue_delivery(&mut tx, &id, Event::Failed)?;
        }
        if let Ok(j) = &job {
            advance(
                &mut tx,
                j.client.as_deref().unwrap_or_default(),
                j.size as f64 / BYTES_PER_AUDIO_S,
            )?;
        }
        tx.commit()?;
        job.map(Some)
    }

    fn heartbeat(&self, id: &str, lease_ms: i64) -> Result<(), StorageError> {
        self.conn()?.execute(
            &format!("UPDATE jobs SET lease_until = {DB_NOW_MS} + $2 WHERE id = $1 AND status = 'running'"),
            &[&id, &lease_ms],
        )?;
        Ok(())
    }

    fn finish_done(&self, id: &str, result: &JobResult) -> Result<(), StorageError> {
        let t = &result.transcript;
        let mut c = self.conn()?;
        let mut tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE jobs SET status = 'done', language = $2, duration = $3, transcript = $4, error_code = NULL, error_message = NULL,
             lease_until = NULL, updated_at = $5 WHERE id = $1 AND status IN ('queued', 'running')",
            &[&id, &t.language, &t.duration, &json(result), &now_ms()],
        )?;
        if !finished_now(n as usize, id) {
            return Ok(());
        }
        tx.execute("DELETE FROM pieces WHERE job_id = $1", &[&id])?;
        // The fair share's estimate of this job's audio gives way to its real duration.
        tx.execute(
            "UPDATE clients SET vtime = vtime + $2::float8 - (SELECT size FROM jobs WHERE id = $1) / $3::float8
             WHERE name = (SELECT COALESCE(client, '') FROM jobs WHERE id = $1)",
            &[&id, &t.duration, &BYTES_PER_AUDIO_S],
        )?;
        enqueue_delivery(&mut tx, id, Event::Done)?;
        tx.commit()?;
        Ok(())
    }

    fn finish_failed(&self, id: &str, code: ErrorCode, message: &str) -> Result<(), StorageError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE jobs SET status = 'failed', error_code = $2, error_message = $3, lease_until = NULL, updated_at = $4
             WHERE id = $1 AND status IN ('fetching', 'queued', 'running')",
            &[&id, &code.as_str(), &message, &now_ms()],
        )?;
        if !finished_now(n as usize, id) {
            return Ok(());
        }
        tx.execute("DELETE FROM pieces WHERE job_id = $1", &[&id])?;
        enqueue_delivery(&mut tx, id, Event::Failed)?;
        tx.commit()?;
        Ok(())
    }

    fn requeue(&self, id: &str, reset_attempts: bool) -> Result<bool, StorageError> {
        let n = self.conn()?.execute(
            "UPDATE jobs SET status = CASE WHEN sha256 = '' THEN 'fetching' ELSE 'queued' END, lease_until = NULL, updated_at = $2,
             attempts = CASE WHEN $3 THEN 0 ELSE attempts END WHERE id = $1",
            &[&id, &now_ms(), &reset_attempts],
        )?;
        self.announce(n)
    }

    /// With several nodes on one database, a job `running` at start-up may be another
    /// node's: only jobs whose lease has run out are taken back (SQLite takes back every
    /// running job, since its one process just started).
    fn recover_running(&self, max_attempts: u32) -> Result<(usize, usize), StorageError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction()?;
        let now = db_now(&mut tx)?;
        let crashed = fail_crashed(&mut tx, now, max_attempts)?;
        let requeued = tx.execute(
            "UPDATE jobs SET status = 'queued', lease_until = NULL, updated_at = $1
             WHERE id IN (SELECT id FROM jobs WHERE status = 'running' AND lease_until < $1 FOR UPDATE SKIP LOCKED)",
            &[&now],
        )?;
        tx.commit()?;
        self.announce(requeued)?;
        Ok((requeued as usize, crashed))
    }

    fn requeue_interrupted(&self, id: &str) -> Result<bool, StorageError> {
        let n = self.conn()?.execute(
            "UPDATE jobs SET status = 'queued', lease_until = NULL, updated_at = $2,
             attempts = greatest(attempts - 1, 0) WHERE id = $1 AND status = 'running'",
            &[&id, &now_ms()],
        )?;
        self.announce(n)
    }

    /// A thread of its own holds a `LISTEN` connection (outside the pool) and calls `wake`
    /// on each announcement, reconnecting after a failure; the workers' poll covers a
    /// missed one.
    fn on_queued(&self, wake: Box<dyn Fn() + Send>) {
        let config = self.config.clone();
        let listen = move || -> Result<(), postgres::Error> {
            let mut c = config.connect(NoTls)?;
            c.batch_execute(&format!("LISTEN {QUEUED}"))?;
            loop {
                {
                    let mut heard = c.notifications();
                    let mut it = heard.timeout_iter(std::time::Duration::from_secs(30));
                    while it.next()?.is_some() {
                        wake();
                    }
                }
                c.batch_execute("SELECT 1")?; // the connection still answers
            }
        };
        let spawned = std::thread::Builder::new()
            .name("earshot-listen".into())
            .spawn(move || loop {
                if let Err(e) = listen() {
                    tracing::warn!(error = %e, "lost the LISTEN connection; reconnecting in 2 s");
                }
                std::thread::sleep(std::time::Duration::from_secs(2));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the LISTEN thread; workers poll instead");
        }
    }
}

impl Fetches for Postgres {
    /// Due and leased on the database's clock; a job another node is claiming is skipped.
    fn claim_fetch(&self, lease_ms: i64) -> Result<Option<Job>, StorageError> {
        self.conn()?
            .query_opt(
                &format!(
                    "UPDATE jobs SET lease_until = {DB_NOW_MS} + $1, attempts = attempts + 1, updated_at = $2
                     WHERE id = (SELECT id FROM jobs WHERE status = 'fetching'
                         AND (lease_until IS NULL OR lease_until <= {DB_NOW_MS}) ORDER BY id LIMIT 1
                         FOR UPDATE SKIP LOCKED)
                     RETURNING {COLUMNS}"
                ),
                &[&lease_ms, &now_ms()],
            )?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    fn fetched(&self, id: &str, sha256: &str, size: u64) -> Result<bool, StorageError> {
        let n = self.conn()?.execute(
            "UPDATE jobs SET status = 'queued', sha256 = $2, size = $3, lease_until = NULL, attempts = 0, updated_at = $4
             WHERE id = $1 AND status = 'fetching'",
            &[&id, &sha256, &(size as i64), &now_ms()],
        )?;
        self.announce(n)
    }

    /// `at_ms` is on this node's clock; the row gets the same delay on the database's.
    fn fetch_later(&self, id: &str, at_ms: i64) -> Result<(), StorageError> {
        self.conn()?.execute(
            &format!("UPDATE jobs SET lease_until = {DB_NOW_MS} + $2 WHERE id = $1 AND status = 'fetching'"),
            &[&id, &(at_ms - now_ms()).max(0)],
        )?;
        Ok(())
    }
}
