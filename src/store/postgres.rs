//! The job records in PostgreSQL (`postgres://` in `--database-url`), for several nodes on
//! one database. The same records and rules as `sqlite`; what differs is what several
//! writers need:
//! - a claim takes the next job `FOR UPDATE SKIP LOCKED`, so two nodes never take the same
//!   one and neither waits on the other's lock;
//! - an Idempotency-Key insert is `ON CONFLICT DO NOTHING`, so the same key sent to two
//!   nodes at once makes one job;
//! - due webhook deliveries are leased to the node that reads them, so each is sent by one
//!   node at a time;
//! - leases and webhook due times are set and compared on the database's clock, so the
//!   nodes' clocks need not agree;
//! - search is PostgreSQL's full-text search (see `postgres_schema`).
//!
//! Calls block (the synchronous `postgres` client on an r2d2 pool), like SQLite's; the server
//! wraps this store in `OffRuntime`, since that client must not run on a runtime thread.
//! (Over 500 lines: every statement on these tables, and about 200 lines of tests.)

use postgres::fallible_iterator::FallibleIterator;
use postgres::{NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;

use super::postgres_schema::{MIGRATIONS, MIGRATION_LOCK};
use super::{
    finished_now, now_ms, off_runtime, search_words, AudioLock, Delivery, Job, Jobs, ListFilter,
    NewJob, Status, StorageError,
};

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// How long a node keeps the deliveries it read before another node may send them.
const DELIVERY_LEASE_MS: i64 = 60_000;

/// Connections a node keeps open.
const POOL_SIZE: u32 = 8;

/// The job records in one PostgreSQL database.
pub struct Postgres {
    pool: Pool,
    /// For the `LISTEN` connection, which stays out of the pool.
    config: postgres::Config,
}

/// The channel a job's queueing is announced on (`NOTIFY`), so idle nodes claim it at once.
const QUEUED: &str = "earshot_queued";

fn job_from_row(r: &Row) -> Result<Job, StorageError> {
    let status: String = r.try_get("status")?;
    Ok(Job {
        id: r.try_get("id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        sha256: r.try_get("sha256")?,
        size: r.try_get::<_, i64>("size")? as u64,
        content_type: r.try_get("content_type")?,
        filename: r.try_get("filename")?,
        external_id: r.try_get("external_id")?,
        source: r.try_get("source")?,
        status: Status::parse(&status).unwrap_or(Status::Queued),
        attempts: r.try_get::<_, i32>("attempts")? as u32,
        error_code: r.try_get("error_code")?,
        error_message: r.try_get("error_message")?,
        language: r.try_get("language")?,
        duration: r.try_get("duration")?,
        transcript: r.try_get("transcript")?,
        options: r.try_get("options")?,
        priority: r.try_get("priority")?,
        idempotency_key: r.try_get("idempotency_key")?,
        callback_url: r.try_get("callback_url")?,
    })
}

fn delivery_from_row(r: &Row) -> Result<Delivery, StorageError> {
    Ok(Delivery {
        id: r.try_get("id")?,
        job_id: r.try_get("job_id")?,
        url: r.try_get("url")?,
        event: r.try_get("event")?,
        status: r.try_get("status")?,
        attempts: r.try_get::<_, i32>("attempts")? as u32,
        last_error: r.try_get("last_error")?,
    })
}

fn jobs(rows: Vec<Row>) -> Result<Vec<Job>, StorageError> {
    rows.iter().map(job_from_row).collect()
}

/// The job columns (all but the search vector).
const COLUMNS: &str = "id, created_at, updated_at, sha256, size, content_type, filename, \
    external_id, source, status, attempts, error_code, error_message, language, duration, \
    transcript, options, priority, idempotency_key, lease_until, callback_url";

/// Put a webhook delivery for a finished job into the outbox, when the job has a callback.
fn enqueue_delivery(
    tx: &mut postgres::Transaction<'_>,
    job_id: &str,
    event: &str,
) -> Result<(), postgres::Error> {
    tx.execute(
        &format!(
            "INSERT INTO deliveries (id, job_id, url, event, status, next_attempt_at, created_at)
             SELECT $1, id, callback_url, $2, 'pending', {DB_NOW_MS}, {DB_NOW_MS} FROM jobs
             WHERE id = $3 AND callback_url IS NOT NULL"
        ),
        &[&uuid::Uuid::now_v7().to_string(), &event, &job_id],
    )?;
    Ok(())
}

/// The database's clock, in ms since the epoch. Leases are set and compared on it, so the
/// nodes' own clocks need not agree.
const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

fn db_now(c: &mut impl postgres::GenericClient) -> Result<i64, postgres::Error> {
    c.query_one(&format!("SELECT {DB_NOW_MS}"), &[])?.try_get(0)
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
            "UPDATE jobs SET status = 'failed', error_code = 'crashed_worker', error_message = $2,
             lease_until = NULL, updated_at = $3 WHERE id = $1",
            &[
                id,
                &format!("the service stopped while transcribing this note on each of its attempts; its audio is kept, and POST /v1/jobs/{id}/retry runs it again"),
                &now_ms(),
            ],
        )?;
        tx.execute("DELETE FROM pieces WHERE job_id = $1", &[id])?;
        enqueue_delivery(tx, id, "job.failed")?;
    }
    Ok(ids.len())
}

/// A held [`Jobs::lock_audio`].
struct PgAudioLock {
    conn: Option<Conn>,
    sha: String,
}

impl Drop for PgAudioLock {
    fn drop(&mut self) {
        if let Some(mut c) = self.conn.take() {
            off_runtime(|| {
                if let Err(e) = c.execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                    &[&self.sha],
                ) {
                    // The connection is broken: dropping it ends the session and the lock.
                    tracing::warn!(error = %e, "could not release an audio lock");
                }
            });
        }
    }
}

impl Postgres {
    /// Connect to `url` (`postgres://user:password@host:port/database`, or the key=value
    /// form) and bring the schema up to date. Nodes that start together migrate one at a
    /// time.
    pub fn open(url: &str) -> Result<Postgres, StorageError> {
        Self::with_config(url.parse()?)
    }

    /// [`Postgres::open`] with the connection settings parsed.
    pub fn with_config(config: postgres::Config) -> Result<Postgres, StorageError> {
        let manager = PostgresConnectionManager::new(config.clone(), NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .connection_timeout(std::time::Duration::from_secs(10))
            .build(manager)?;
        let mut c = pool.get()?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
        let migrated = Self::migrate(&mut c);
        c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
        migrated?;
        Ok(Postgres { pool, config })
    }

    fn migrate(c: &mut Conn) -> Result<(), StorageError> {
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS earshot_migrations (version INTEGER NOT NULL)",
        )?;
        let done: i64 = c
            .query_one("SELECT count(*) FROM earshot_migrations", &[])?
            .try_get(0)?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            let mut tx = c.transaction()?;
            tx.batch_execute(m)?;
            tx.execute(
                "INSERT INTO earshot_migrations (version) VALUES ($1)",
                &[&((i + 1) as i32)],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    fn conn(&self) -> Result<Conn, StorageError> {
        Ok(self.pool.get()?)
    }

    /// Announce `n` jobs queued again (none: nothing to say); whether there were any.
    fn announce(&self, n: u64) -> Result<bool, StorageError> {
        if n > 0 {
            self.conn()?
                .execute("SELECT pg_notify($1, '')", &[&QUEUED])?;
        }
        Ok(n > 0)
    }

    fn by_id(c: &mut impl postgres::GenericClient, id: &str) -> Result<Option<Job>, StorageError> {
        c.query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"), &[&id])?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }
}

/// The review filter, written out rather than bound: "needed" is then the very condition of
/// the partial index `jobs_review`, which the planner only uses when it sees it.
fn review_clause(needed: Option<bool>) -> &'static str {
    match needed {
        None => "",
        Some(true) => " AND status = 'done' AND transcript->'review'->'needed' = 'true'::jsonb",
        Some(false) => {
            " AND status = 'done' AND transcript->'review'->'needed' IS DISTINCT FROM 'true'::jsonb"
        }
    }
}

impl Jobs for Postgres {
    fn insert(&self, n: NewJob) -> Result<(Job, bool), StorageError> {
        let mut c = self.conn()?;
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let inserted = c.query_opt(
            &format!(
                "INSERT INTO jobs (id, created_at, updated_at, sha256, size, content_type, filename, external_id, source, status, options, priority, idempotency_key, callback_url)
                 VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $10, $11, $12)
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[&id, &now, &n.sha256, &(n.size as i64), &n.content_type, &n.filename, &n.external_id, &n.source, &n.options, &n.priority, &n.idempotency_key, &n.callback_url],
        )?;
        if let Some(row) = inserted {
            c.execute("SELECT pg_notify($1, '')", &[&QUEUED])?;
            return Ok((job_from_row(&row)?, true));
        }
        // The key is taken (by another request, maybe on another node, just now).
        let row = c.query_one(
            &format!("SELECT {COLUMNS} FROM jobs WHERE idempotency_key = $1"),
            &[&n.idempotency_key],
        )?;
        Ok((job_from_row(&row)?, false))
    }

    fn get(&self, id: &str) -> Result<Option<Job>, StorageError> {
        Self::by_id(&mut *self.conn()?, id)
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Job>, StorageError> {
        // Each word: a prefix of a word as written, or the same Russian or English stem.
        // A search with no words in it filters nothing (as in SQLite).
        let words = f.search.as_deref().map(search_words).unwrap_or_default();
        let mut sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR external_id = $2)
             AND ($3::text IS NULL OR id < $3){}",
            review_clause(f.review_needed)
        );
        let status = f.status.map(Status::as_str);
        let limit = f.limit.clamp(1, super::LIST_MAX) as i64;
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            vec![&status, &f.external_id, &f.before, &limit];
        for (i, w) in words.iter().enumerate() {
            let p = i + 5;
            sql.push_str(&format!(
                " AND search @@ (to_tsquery('simple', quote_literal(${p}::text) || ':*')
                   || plainto_tsquery('russian', ${p}::text) || plainto_tsquery('english', ${p}::text))"
            ));
            params.push(w);
        }
        sql.push_str(" ORDER BY id DESC LIMIT $4");
        jobs(self.conn()?.query(&sql, &params)?)
    }

    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StorageError> {
        let rows = self
            .conn()?
            .query("SELECT status, count(*) FROM jobs GROUP BY status", &[])?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    fn queued_count(&self, priority: Option<i32>) -> Result<i64, StorageError> {
        Ok(self
            .conn()?
            .query_one(
                "SELECT count(*) FROM jobs WHERE status = 'queued' AND ($1::int IS NULL OR priority = $1)",
                &[&priority],
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
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = $3, updated_at = $1
                 WHERE id = (
                     SELECT id FROM jobs WHERE status = 'queued' OR (status = 'running' AND lease_until < $1)
                     ORDER BY priority ASC, (created_at < $2) DESC, CASE WHEN created_at < $2 THEN created_at ELSE size END ASC, id ASC
                     LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING {COLUMNS}"
            ),
            &[&now, &(now - max_wait_ms), &(now + lease_ms)],
        )?;
        tx.commit()?;
        row.as_ref().map(job_from_row).transpose()
    }

    fn heartbeat(&self, id: &str, lease_ms: i64) -> Result<(), StorageError> {
        self.conn()?.execute(
            &format!("UPDATE jobs SET lease_until = {DB_NOW_MS} + $2 WHERE id = $1 AND status = 'running'"),
            &[&id, &lease_ms],
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
        let mut c = self.conn()?;
        let mut tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE jobs SET status = 'done', language = $2, duration = $3, transcript = $4, error_code = NULL, error_message = NULL,
             lease_until = NULL, updated_at = $5 WHERE id = $1 AND status IN ('queued', 'running')",
            &[&id, &language, &duration, transcript, &now_ms()],
        )?;
        if !finished_now(n as usize, id) {
            return Ok(());
        }
        tx.execute("DELETE FROM pieces WHERE job_id = $1", &[&id])?;
        enqueue_delivery(&mut tx, id, "job.done")?;
        tx.commit()?;
        Ok(())
    }

    fn finish_failed(
        &self,
        id: &str,
        code: crate::error::ErrorCode,
        message: &str,
    ) -> Result<(), StorageError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE jobs SET status = 'failed', error_code = $2, error_message = $3, lease_until = NULL, updated_at = $4
             WHERE id = $1 AND status IN ('queued', 'running')",
            &[&id, &code.as_str(), &message, &now_ms()],
        )?;
        if !finished_now(n as usize, id) {
            return Ok(());
        }
        tx.execute("DELETE FROM pieces WHERE job_id = $1", &[&id])?;
        enqueue_delivery(&mut tx, id, "job.failed")?;
        tx.commit()?;
        Ok(())
    }

    /// Due deliveries are leased for [`DELIVERY_LEASE_MS`] as they are read, so that no other
    /// node sends them meanwhile; the sender's outcome then sets the row's next step.
    fn due_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StorageError> {
        let mut c = self.conn()?;
        let now = db_now(&mut *c)?;
        let rows = c.query(
            "UPDATE deliveries SET next_attempt_at = $2 WHERE id IN (
                 SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING *",
            &[&now, &(now + DELIVERY_LEASE_MS), &(limit as i64)],
        )?;
        rows.iter().map(delivery_from_row).collect()
    }

    fn latest_delivery(&self, job_id: &str) -> Result<Option<Delivery>, StorageError> {
        self.conn()?
            .query_opt(
                "SELECT * FROM deliveries WHERE job_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
                &[&job_id],
            )?
            .as_ref()
            .map(delivery_from_row)
            .transpose()
    }

    fn delivery_done(&self, id: &str) -> Result<(), StorageError> {
        self.conn()?.execute(
            "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = $2, last_error = NULL WHERE id = $1",
            &[&id, &now_ms()],
        )?;
        Ok(())
    }

    /// `next_at` is on this node's clock; the row gets the same delay on the database's,
    /// which is the clock due deliveries are read by.
    fn delivery_retry(&self, id: &str, error: &str, next_at: i64) -> Result<(), StorageError> {
        self.conn()?.execute(
            &format!("UPDATE deliveries SET attempts = attempts + 1, last_error = $2, next_attempt_at = {DB_NOW_MS} + $3 WHERE id = $1"),
            &[&id, &error, &(next_at - now_ms()).max(0)],
        )?;
        Ok(())
    }

    fn delivery_gave_up(&self, id: &str, error: &str) -> Result<(), StorageError> {
        self.conn()?.execute(
            "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = $2 WHERE id = $1",
            &[&id, &error],
        )?;
        Ok(())
    }

    fn save_piece(
        &self,
        id: &str,
        start: usize,
        end: usize,
        transcript: &serde_json::Value,
    ) -> Result<(), StorageError> {
        // Only for a job still running: a piece that lands after the job finished (or was
        // deleted) is not kept.
        self.conn()?.execute(
            "INSERT INTO pieces (job_id, start_sample, end_sample, transcript)
             SELECT id, $2, $3, $4 FROM jobs WHERE id = $1 AND status = 'running'
             ON CONFLICT (job_id, start_sample, end_sample) DO UPDATE SET transcript = excluded.transcript",
            &[&id, &(start as i64), &(end as i64), transcript],
        )?;
        Ok(())
    }

    fn pieces(&self, id: &str) -> Result<Vec<(usize, usize, serde_json::Value)>, StorageError> {
        let rows = self.conn()?.query(
            "SELECT start_sample, end_sample, transcript FROM pieces WHERE job_id = $1 ORDER BY start_sample",
            &[&id],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<_, i64>(0)? as usize,
                    r.try_get::<_, i64>(1)? as usize,
                    r.try_get(2)?,
                ))
            })
            .collect()
    }

    fn requeue(&self, id: &str, reset_attempts: bool) -> Result<bool, StorageError> {
        let n = self.conn()?.execute(
            "UPDATE jobs SET status = 'queued', lease_until = NULL, updated_at = $2,
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

    fn delete(&self, id: &str) -> Result<Option<Option<String>>, StorageError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction()?;
        let Some(row) = tx.query_opt("DELETE FROM jobs WHERE id = $1 RETURNING sha256", &[&id])?
        else {
            return Ok(None);
        };
        let sha: String = row.try_get(0)?;
        let others: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM jobs WHERE sha256 = $1)",
                &[&sha],
            )?
            .try_get(0)?;
        tx.commit()?;
        Ok(Some((!others).then_some(sha)))
    }

    fn expired(&self, days: u64) -> Result<Vec<String>, StorageError> {
        let cutoff = now_ms() - (days as i64) * 86_400_000;
        let rows = self.conn()?.query(
            "SELECT id FROM jobs WHERE created_at < $1 AND status IN ('done', 'failed') LIMIT 1000",
            &[&cutoff],
        )?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    fn sha_in_use(&self, sha: &str) -> Result<bool, StorageError> {
        Ok(self
            .conn()?
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM jobs WHERE sha256 = $1)",
                &[&sha],
            )?
            .try_get(0)?)
    }

    /// A session-level advisory lock on the hash, held on a connection of its own until the
    /// lock is dropped (or the node dies, which ends the session and frees it).
    fn lock_audio(&self, sha: &str) -> Result<AudioLock, StorageError> {
        let mut conn = self.conn()?;
        conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&sha])?;
        Ok(AudioLock(Some(Box::new(PgAudioLock {
            conn: Some(conn),
            sha: sha.to_string(),
        }))))
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

    fn writable(&self) -> bool {
        self.conn()
            .and_then(|mut c| {
                let mut tx = c.transaction()?;
                tx.execute("LOCK TABLE jobs IN ROW EXCLUSIVE MODE NOWAIT", &[])?;
                tx.rollback()?;
                Ok(())
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::new_job;
    use super::*;

    /// A fresh database on the server that `EARSHOT_TEST_DATABASE_URL` names (scripts/test.sh
    /// starts one). Without it the tests are skipped, except under CI, where they must run.
    fn open() -> Option<Postgres> {
        let Ok(url) = std::env::var("EARSHOT_TEST_DATABASE_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the PostgreSQL tests: scripts/test.sh starts a server and sets EARSHOT_TEST_DATABASE_URL"
            );
            eprintln!("skipped: EARSHOT_TEST_DATABASE_URL is not set (scripts/test.sh sets it)");
            return None;
        };
        let mut admin = postgres::Client::connect(&url, NoTls).expect("the test server");
        let name = format!("earshot_t_{}", uuid::Uuid::now_v7().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let mut config: postgres::Config = url.parse().unwrap();
        config.dbname(&name);
        Some(Postgres::with_config(config).expect("the test database"))
    }

    super::super::conformance::behaviour!(open());

    /// The "needs review" list can read the partial index (with sequential scans off, as
    /// they would be too costly on a big table; a tiny one is scanned either way).
    #[test]
    fn the_review_list_uses_its_index() {
        let Some(db) = open() else { return };
        let mut c = db.conn().unwrap();
        c.batch_execute("SET enable_seqscan = off").unwrap();
        let plan: Vec<String> = c
            .query(
                &format!(
                    "EXPLAIN SELECT id FROM jobs WHERE true{} ORDER BY id DESC LIMIT 50",
                    review_clause(Some(true))
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        c.batch_execute("RESET enable_seqscan").unwrap();
        assert!(plan.iter().any(|l| l.contains("jobs_review")), "{plan:?}");
    }

    /// The connection settings of `db`'s database, for another node on it.
    fn config_of(db: &Postgres) -> postgres::Config {
        let name: String = db
            .conn()
            .unwrap()
            .query_one("SELECT current_database()", &[])
            .unwrap()
            .get(0);
        let mut config: postgres::Config = std::env::var("EARSHOT_TEST_DATABASE_URL")
            .unwrap()
            .parse()
            .unwrap();
        config.dbname(&name);
        config
    }

    /// Search finds other forms of a Russian or English word (stems), beyond SQLite's prefixes.
    #[test]
    fn search_finds_russian_and_english_word_forms() {
        let Some(db) = open() else { return };
        let (a, _) = db.insert(new_job("a.oga")).unwrap();
        let (b, _) = db.insert(new_job("b.oga")).unwrap();
        let t = |text: &str| serde_json::json!({ "text": text });
        db.finish_done(&a.id, "ru", 1.0, &t("Где мои заказы? Доставка опоздала."))
            .unwrap();
        db.finish_done(&b.id, "en", 1.0, &t("The parcels were delivered"))
            .unwrap();
        let search = |q| super::super::conformance::search(&db, q);
        assert_eq!(search("заказ доставку"), ["a.oga"]);
        assert_eq!(search("parcel deliver"), ["b.oga"]);
        assert!(search("заказ parcel").is_empty());
    }

    /// A running job whose lease holds belongs to another node: a node starting up leaves
    /// it; deliveries read by one node are not handed to another until their lease runs out.
    #[test]
    fn leases_keep_other_nodes_off() {
        let Some(db) = open() else { return };
        let mut n = new_job("hook.oga");
        n.callback_url = Some("http://127.0.0.1:9/hook".into());
        let (a, _) = db.insert(n).unwrap();
        db.claim(60_000, 30_000, 3).unwrap().unwrap();
        assert_eq!(db.recover_running(3).unwrap(), (0, 0));
        assert!(db.claim(60_000, 30_000, 3).unwrap().is_none());
        db.finish_done(&a.id, "ru", 1.0, &serde_json::json!({ "text": "x" }))
            .unwrap();
        assert_eq!(db.due_deliveries(16).unwrap().len(), 1);
        assert!(
            db.due_deliveries(16).unwrap().is_empty(),
            "leased to the first reader"
        );
    }

    /// The audio lock of one hash is held by one node at a time (each `Postgres` here stands
    /// for a node: its own pool, so its own sessions); other hashes do not wait.
    #[test]
    fn the_audio_lock_spans_nodes() {
        let Some(node_a) = open() else { return };
        let node_b = Postgres::with_config(config_of(&node_a)).unwrap();
        let held = node_a.lock_audio("aa").unwrap();
        drop(node_b.lock_audio("bb").unwrap());
        let step = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let _l = node_b.lock_audio("aa").unwrap();
                step.store(1, std::sync::atomic::Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert_eq!(
                step.load(std::sync::atomic::Ordering::SeqCst),
                0,
                "node B did not wait"
            );
            drop(held);
            waiter.join().unwrap();
        });
        assert_eq!(step.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A job queued through one node wakes the workers of another at once (`LISTEN/NOTIFY`),
    /// and so does a retry.
    #[test]
    fn a_job_queued_on_one_node_wakes_another() {
        let Some(node_a) = open() else { return };
        let node_b = Postgres::with_config(config_of(&node_a)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        node_b.on_queued(Box::new(move || {
            let _ = tx.lock().unwrap().send(());
        }));
        let wait = std::time::Duration::from_secs(1);
        // The listener connects on its own thread: the first inserts may come before it.
        let woken = (0..20).any(|i| {
            node_a.insert(new_job(&format!("{i}.oga"))).unwrap();
            rx.recv_timeout(wait).is_ok()
        });
        assert!(woken, "no wake-up for jobs queued on the other node");
        while rx.try_recv().is_ok() {}
        let job = node_a.claim(60_000, 30_000, 3).unwrap().unwrap();
        node_a
            .finish_done(&job.id, "ru", 1.0, &serde_json::json!({ "text": "x" }))
            .unwrap();
        while rx.try_recv().is_ok() {}
        node_a.requeue(&job.id, true).unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("a retry wakes the other node");
    }

    /// Two nodes starting on one new database migrate it once.
    #[test]
    fn nodes_starting_together_migrate_once() {
        let Some(db) = open() else { return };
        let config = config_of(&db);
        db.conn()
            .unwrap()
            .batch_execute("DROP TABLE pieces, deliveries, jobs, earshot_migrations")
            .unwrap();
        std::thread::scope(|s| {
            let nodes: Vec<_> = (0..3)
                .map(|_| s.spawn(|| Postgres::with_config(config.clone()).map(|_| ())))
                .collect();
            for n in nodes {
                n.join().unwrap().expect("every node starts");
            }
        });
        let versions: i64 = db
            .conn()
            .unwrap()
            .query_one("SELECT count(*) FROM earshot_migrations", &[])
            .unwrap()
            .get(0);
        assert_eq!(versions as usize, MIGRATIONS.len());
    }
}
