//! The job records in SQLite: jobs and their full-text index (here), the queue (`queue`),
//! the webhook outbox and the finished pieces of long jobs (`outbox`), the migrations
//! (`schema`). One connection behind a mutex; every state change is one transaction. Its
//! tests are the shared ones in `conformance`.

mod chats;
mod outbox;
mod queue;
mod schema;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::row::{JobRow, Json};
use super::{now_ms, over_limit, search_words, Records, StorageError};
use crate::job::{Deleted, Inserted, Job, ListFilter, NewJob, Status};
use schema::{Step, MIGRATIONS};

/// A value as its JSON column holds it.
fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("stored values serialize")
}

/// An FTS5 query matching every word of `q` as a prefix, with FTS syntax neutralised:
/// `cafe "x` becomes `"cafe"* "x"*`. `None` when `q` has no words.
fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = search_words(q)
        .iter()
        .map(|w| format!("\"{w}\"*"))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// The job records in one SQLite file (`sqlite:` in `--database-url`, the default).
pub struct Sqlite {
    conn: Mutex<Connection>,
}

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get("id")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
        sha256: r.get("sha256")?,
        size: r.get("size")?,
        content_type: r.get("content_type")?,
        filename: r.get("filename")?,
        external_id: r.get("external_id")?,
        source: r.get("source")?,
        status: r.get("status")?,
        attempts: r.get("attempts")?,
        error_code: r.get("error_code")?,
        error_message: r.get("error_message")?,
        language: r.get("language")?,
        duration: r.get("duration")?,
        transcript: r.get::<_, Option<String>>("transcript")?.map(Json::Text),
        options: Json::Text(r.get("options")?),
        priority: r.get("priority")?,
        idempotency_key: r.get("idempotency_key")?,
        callback_url: r.get("callback_url")?,
        client: r.get("client")?,
        fetch: r.get::<_, Option<String>>("fetch_source")?.map(Json::Text),
    })
}

/// A job by id, on `c`.
fn by_id(c: &Connection, id: &str) -> Result<Option<Job>, StorageError> {
    c.query_row("SELECT * FROM jobs WHERE id = ?1", [id], job_row)
        .optional()?
        .map(JobRow::decode)
        .transpose()
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
            match m {
                Step::Sql(sql) => tx.execute_batch(sql)?,
                Step::AddColumn {
                    table,
                    column,
                    decl,
                } => {
                    let has: bool = tx.query_row(
                        &format!("SELECT EXISTS(SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1)"),
                        [column],
                        |r| r.get(0),
                    )?;
                    if !has {
                        tx.execute_batch(&format!(
                            "ALTER TABLE {table} ADD COLUMN {column} {decl}"
                        ))?;
                    }
                }
            }
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

    /// The `user_version` a database had before the first migration whose SQL contains
    /// `marker` (tests that replay a migration on old rows).
    #[cfg(test)]
    pub(crate) fn version_before(marker: &str) -> i64 {
        MIGRATIONS
            .iter()
            .position(|m| matches!(m, Step::Sql(sql) if sql.contains(marker)))
            .expect("a migration with that SQL") as i64
    }

    /// Run SQL behind the store's back (the conformance tests' corrupt rows).
    #[cfg(test)]
    pub(super) fn execute_for_test(&self, sql: &str) {
        self.conn().execute_batch(sql).unwrap();
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
/// `?5` full-text search, `?6` client.
fn list_sql(needed: Option<bool>) -> String {
    format!(
        "SELECT * FROM jobs{} WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR external_id = ?2)
         AND (?3 IS NULL OR id < ?3) AND (?6 IS NULL OR client = ?6)
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

impl Records for Sqlite {
    fn insert(&self, n: NewJob) -> Result<Inserted, StorageError> {
        let c = self.conn();
        // One connection behind the mutex: the count and the insert are one step.
        let tx = c.unchecked_transaction()?;
        if let Some(k) = &n.idempotency_key {
            if let Some(j) = tx
                .query_row(
                    "SELECT * FROM jobs WHERE idempotency_key = ?1",
                    [k],
                    job_row,
                )
                .optional()?
            {
                return Ok(Inserted::Existing(j.decode()?));
            }
        }
        if let Some(limit) = n.limit {
            let count = |client: Option<&str>| -> rusqlite::Result<usize> {
                tx.query_row(
                    "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND (?1 IS NULL OR client = ?1)",
                    [client],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as usize)
            };
            if let Some(full) = over_limit(limit, n.client.as_deref(), count)? {
                return Ok(Inserted::Full(full));
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        tx.execute(
            "INSERT INTO jobs (id, created_at, updated_at, sha256, size, content_type, filename, external_id, source, status, options, priority, idempotency_key, callback_url, client, fetch_source)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, CASE WHEN ?14 IS NULL THEN 'queued' ELSE 'fetching' END, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![id, now, n.sha256, n.size as i64, n.content_type, n.filename, n.external_id, n.source, json(&n.options), n.priority.as_i32(), n.idempotency_key, n.callback_url, n.client, n.fetch.as_ref().map(json)],
        )?;
        // The fair share: a client that had nothing queued comes in level with those waiting.
        let was_waiting: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM jobs WHERE status = 'queued' AND id <> ?1 AND client IS ?2)",
            params![id, n.client],
            |r| r.get(0),
        )?;
        if !was_waiting {
            tx.execute(
                "INSERT INTO clients (name, vtime)
                 SELECT ?1, COALESCE(MIN(c.vtime), 0) FROM clients c
                 WHERE c.name <> ?1 AND EXISTS (SELECT 1 FROM jobs j
                     WHERE j.status = 'queued' AND COALESCE(j.client, '') = c.name)
                 ON CONFLICT (name) DO UPDATE SET vtime = MAX(vtime, excluded.vtime)",
                [n.client.clone().unwrap_or_default()],
            )?;
        }
        let j = by_id(&tx, &id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        tx.commit()?;
        Ok(Inserted::New(j))
    }

    fn get(&self, id: &str) -> Result<Option<Job>, StorageError> {
        by_id(&self.conn(), id)
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Job>, StorageError> {
        let c = self.conn();
        let mut stmt = c.prepare(&list_sql(f.review_needed))?;
        let rows = stmt.query_map(
            params![
                f.status.map(Status::as_str),
                f.external_id,
                f.before,
                f.limit.clamp(1, crate::job::LIST_MAX) as i64,
                f.search.as_deref().and_then(fts_query),
                f.client,
            ],
            job_row,
        )?;
        let rows = rows.collect::<Result<Vec<_>, _>>()?;
        Ok(super::readable(rows.into_iter().map(JobRow::decode)))
    }

    fn count_by_status(&self) -> Result<Vec<(Status, i64)>, StorageError> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
        super::counts(rows.collect::<Result<_, _>>()?)
    }

    fn delete(&self, id: &str) -> Result<Deleted, StorageError> {
        let c = self.conn();
        let Some(sha): Option<String> = c
            .query_row("SELECT sha256 FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
        else {
            return Ok(Deleted::Missing);
        };
        c.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
        c.execute("DELETE FROM deliveries WHERE job_id = ?1", [id])?;
        let others: i64 =
            c.query_row("SELECT COUNT(*) FROM jobs WHERE sha256 = ?1", [&sha], |r| {
                r.get(0)
            })?;
        Ok(if others == 0 {
            Deleted::AudioUnused(sha)
        } else {
            Deleted::AudioShared
        })
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
                    None::<String>,
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
