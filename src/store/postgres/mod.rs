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
//! - search is PostgreSQL's full-text search (see `schema`).
//!
//! The records are here; the queue in `queue`, the outbox and pieces in `outbox`. Calls
//! block (the synchronous `postgres` client on an r2d2 pool), like SQLite's; that client
//! must not run on a runtime thread, so async callers go through `jobs::Service`, which
//! runs each call on the blocking pool.

mod chats;
mod outbox;
mod queue;
mod schema;

use postgres::{NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;

use super::row::{JobRow, Json};
use super::{now_ms, over_limit, search_words, AudioLock, Records, StorageError};
use crate::job::{Deleted, Inserted, Job, ListFilter, NewJob, Status};
use schema::{MIGRATIONS, MIGRATION_LOCK};

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// Connections a node keeps open.
const POOL_SIZE: u32 = 8;

/// The job records in one PostgreSQL database.
pub struct Postgres {
    pool: Pool,
    /// For the `LISTEN` connection, which stays out of the pool.
    config: postgres::Config,
}

/// The advisory lock under which limited inserts count the queue (see [`Records::insert`]).
const QUEUE_LOCK: i64 = 0x0065_6172_7371_7565;

/// The channel a job's queueing is announced on (`NOTIFY`), so idle nodes claim it at once.
const QUEUED: &str = "earshot_queued";

fn job_row(r: &Row) -> Result<JobRow, StorageError> {
    Ok(JobRow {
        id: r.try_get("id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        sha256: r.try_get("sha256")?,
        size: r.try_get("size")?,
        content_type: r.try_get("content_type")?,
        filename: r.try_get("filename")?,
        external_id: r.try_get("external_id")?,
        source: r.try_get("source")?,
        status: r.try_get("status")?,
        attempts: r.try_get::<_, i32>("attempts")?.into(),
        error_code: r.try_get("error_code")?,
        error_message: r.try_get("error_message")?,
        language: r.try_get("language")?,
        duration: r.try_get("duration")?,
        transcript: r
            .try_get::<_, Option<serde_json::Value>>("transcript")?
            .map(Json::Value),
        options: Json::Value(r.try_get("options")?),
        priority: r.try_get("priority")?,
        idempotency_key: r.try_get("idempotency_key")?,
        callback_url: r.try_get("callback_url")?,
        client: r.try_get("client")?,
        fetch: r
            .try_get::<_, Option<String>>("fetch_source")?
            .map(Json::Text),
    })
}

fn job_from_row(r: &Row) -> Result<Job, StorageError> {
    job_row(r)?.decode()
}

/// A value as its `jsonb` column holds it.
fn json(v: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).expect("stored values serialize")
}

/// The job columns (all but the search vector).
const COLUMNS: &str = "id, created_at, updated_at, sha256, size, content_type, filename, \
    external_id, source, status, attempts, error_code, error_message, language, duration, \
    transcript, options, priority, idempotency_key, lease_until, callback_url, client, fetch_source";

/// The database's clock, in ms since the epoch. Leases are set and compared on it, so the
/// nodes' own clocks need not agree.
const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

fn db_now(c: &mut impl postgres::GenericClient) -> Result<i64, postgres::Error> {
    c.query_one(&format!("SELECT {DB_NOW_MS}"), &[])?.try_get(0)
}

/// A held [`Records::lock_audio`].
struct PgAudioLock {
    conn: Option<Conn>,
    sha: String,
}

impl Drop for PgAudioLock {
    fn drop(&mut self) {
        // Dropped where it was taken: on a worker thread or the blocking pool, never on a
        // runtime thread.
        if let Some(mut c) = self.conn.take() {
            if let Err(e) = c.execute(
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                &[&self.sha],
            ) {
                // The connection is broken: dropping it ends the session and the lock.
                tracing::warn!(error = %e, "could not release an audio lock");
            }
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

    /// Run SQL behind the store's back (the conformance tests' corrupt rows).
    #[cfg(test)]
    pub(super) fn execute_for_test(&self, sql: &str) {
        self.conn().unwrap().batch_execute(sql).unwrap();
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

impl Records for Postgres {
    fn insert(&self, n: NewJob) -> Result<Inserted, StorageError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction()?;
        if let Some(limit) = n.limit {
            // Every node's limited inserts take this lock in turn, so the count below stays
            // true until this insert commits.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&QUEUE_LOCK])?;
            if let Some(k) = &n.idempotency_key {
                let same = tx.query_opt(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE idempotency_key = $1"),
                    &[k],
                )?;
                if let Some(row) = same {
                    return Ok(Inserted::Existing(job_from_row(&row)?));
                }
            }
            let count = |client: Option<&str>| -> Result<usize, postgres::Error> {
                let n: i64 = tx
                    .query_one(
                            "SELECT count(*) FROM jobs WHERE status = 'queued' AND ($1::text IS NULL OR client = $1)",
                            &[&client],
                        )?
                    .try_get(0)?;
                Ok(n as usize)
            };
            if let Some(full) = over_limit(limit, n.client.as_deref(), count)? {
                return Ok(Inserted::Full(full));
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let inserted = tx.query_opt(
            &format!(
                "INSERT INTO jobs (id, created_at, updated_at, sha256, size, content_type, filename, external_id, source, status, options, priority, idempotency_key, callback_url, client, fetch_source)
                 VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $14::text IS NULL THEN 'queued' ELSE 'fetching' END, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[&id, &now, &n.sha256, &(n.size as i64), &n.content_type, &n.filename, &n.external_id, &n.source, &json(&n.options), &n.priority.as_i32(), &n.idempotency_key, &n.callback_url, &n.client, &n.fetch.as_ref().map(|f| serde_json::to_string(f).expect("stored values serialize"))],
        )?;
        if let Some(row) = inserted {
            // The fair share: a client that had nothing queued comes in level with those
            // waiting.
            let was_waiting: bool = tx
                .query_one(
                    "SELECT EXISTS(SELECT 1 FROM jobs WHERE status = 'queued' AND id <> $1
                     AND client IS NOT DISTINCT FROM $2)",
                    &[&id, &n.client],
                )?
                .try_get(0)?;
            if !was_waiting {
                tx.execute(
                    "INSERT INTO clients AS t (name, vtime)
                     SELECT $1, COALESCE(MIN(c.vtime), 0) FROM clients c
                     WHERE c.name <> $1 AND EXISTS (SELECT 1 FROM jobs j
                         WHERE j.status = 'queued' AND COALESCE(j.client, '') = c.name)
                     ON CONFLICT (name) DO UPDATE SET vtime = GREATEST(t.vtime, excluded.vtime)",
                    &[&n.client.clone().unwrap_or_default()],
                )?;
            }
            tx.execute("SELECT pg_notify($1, '')", &[&QUEUED])?;
            tx.commit()?;
            return Ok(Inserted::New(job_from_row(&row)?));
        }
        // The key is taken (by another request, maybe on another node, just now).
        let row = tx.query_one(
            &format!("SELECT {COLUMNS} FROM jobs WHERE idempotency_key = $1"),
            &[&n.idempotency_key],
        )?;
        Ok(Inserted::Existing(job_from_row(&row)?))
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
             AND ($3::text IS NULL OR id < $3) AND ($5::text IS NULL OR client = $5){}",
            review_clause(f.review_needed)
        );
        let status = f.status.map(Status::as_str);
        let limit = f.limit.clamp(1, crate::job::LIST_MAX) as i64;
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            vec![&status, &f.external_id, &f.before, &limit, &f.client];
        for (i, w) in words.iter().enumerate() {
            let p = i + 6;
            sql.push_str(&format!(
                " AND search @@ (to_tsquery('simple', quote_literal(${p}::text) || ':*')
                   || plainto_tsquery('russian', ${p}::text) || plainto_tsquery('english', ${p}::text))"
            ));
            params.push(w);
        }
        sql.push_str(" ORDER BY id DESC LIMIT $4");
        let rows = self.conn()?.query(&sql, &params)?;
        Ok(super::readable(rows.iter().map(job_from_row)))
    }

    fn count_by_status(&self) -> Result<Vec<(Status, i64)>, StorageError> {
        let rows = self
            .conn()?
            .query("SELECT status, count(*) FROM jobs GROUP BY status", &[])?;
        let rows = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, StorageError>>()?;
        super::counts(rows)
    }

    fn delete(&self, id: &str) -> Result<Deleted, StorageError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction()?;
        let Some(row) = tx.query_opt("DELETE FROM jobs WHERE id = $1 RETURNING sha256", &[&id])?
        else {
            return Ok(Deleted::Missing);
        };
        let sha: String = row.try_get(0)?;
        let others: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM jobs WHERE sha256 = $1)",
                &[&sha],
            )?
            .try_get(0)?;
        tx.commit()?;
        Ok(if others {
            Deleted::AudioShared
        } else {
            Deleted::AudioUnused(sha)
        })
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
}

#[cfg(test)]
mod tests;
