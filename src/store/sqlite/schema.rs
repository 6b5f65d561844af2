//! The SQLite schema, as the ordered list of migrations `Sqlite::open` applies (`user_version`
//! counts how many a database has had). A step is SQL, or a column added only when the table
//! does not have it yet (SQLite has no `ADD COLUMN IF NOT EXISTS`), so every step can run
//! again.

/// One migration.
pub(super) enum Step {
    Sql(&'static str),
    AddColumn {
        table: &'static str,
        column: &'static str,
        decl: &'static str,
    },
}

use Step::{AddColumn, Sql};

pub(super) const MIGRATIONS: &[Step] = &[
    Sql("CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        content_type TEXT,
        filename TEXT,
        external_id TEXT,
        source TEXT,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        error_code TEXT,
        error_message TEXT,
        language TEXT,
        duration REAL,
        transcript TEXT,
        options TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 1,
        idempotency_key TEXT UNIQUE,
        lease_until INTEGER
    );
    CREATE INDEX jobs_status ON jobs(status, priority, size);
    CREATE INDEX jobs_external ON jobs(external_id);
    CREATE INDEX jobs_sha ON jobs(sha256);"),
    Sql("ALTER TABLE jobs ADD COLUMN callback_url TEXT;
    CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        url TEXT NOT NULL,
        event TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        delivered_at INTEGER
    );
    CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
    CREATE INDEX deliveries_job ON deliveries(job_id);"),
    // Full-text search over transcripts, file names and external ids (the inbox's search box),
    // kept in step with `jobs` by triggers. ё is indexed as е (unicode61 folds Latin
    // diacritics only), and [`fts_query`] does the same to the query.
    Sql("CREATE VIRTUAL TABLE jobs_fts USING fts5(
        text, filename, external_id, tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO jobs_fts(rowid, text, filename, external_id)
        VALUES (new.rowid, replace(replace(json_extract(new.transcript, '$.text'), 'ё', 'е'), 'Ё', 'Е'), replace(replace(new.filename, 'ё', 'е'), 'Ё', 'Е'), new.external_id);
    END;
    CREATE TRIGGER jobs_fts_update AFTER UPDATE OF transcript, filename, external_id ON jobs BEGIN
        DELETE FROM jobs_fts WHERE rowid = old.rowid;
        INSERT INTO jobs_fts(rowid, text, filename, external_id)
        VALUES (new.rowid, replace(replace(json_extract(new.transcript, '$.text'), 'ё', 'е'), 'Ё', 'Е'), replace(replace(new.filename, 'ё', 'е'), 'Ё', 'Е'), new.external_id);
    END;
    CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN
        DELETE FROM jobs_fts WHERE rowid = old.rowid;
    END;
    INSERT INTO jobs_fts(rowid, text, filename, external_id)
        SELECT rowid, replace(replace(json_extract(transcript, '$.text'), 'ё', 'е'), 'Ё', 'Е'), replace(replace(filename, 'ё', 'е'), 'Ё', 'Е'), external_id FROM jobs;"),
    // Transcripts were stored as rendered `verbose_json`; now as `jobs::JobResult`, the
    // engine's transcript with its fields at the top level. The shapes agree but for the
    // language, a name there ("russian") and a code here: the `language` column has the code.
    // (Times stay as they were rounded, to the millisecond.) Text and review keep their paths,
    // so search and the review filter are untouched.
    Sql("UPDATE jobs SET transcript = json_set(transcript, '$.language', language)
        WHERE transcript IS NOT NULL AND language IS NOT NULL;"),
    // The finished pieces of a long recording still running (`engine::Watch`), so that a run
    // cut short goes on from them; gone when the job is done, failed or deleted.
    Sql("CREATE TABLE IF NOT EXISTS pieces (
        job_id TEXT NOT NULL,
        start_sample INTEGER NOT NULL,
        end_sample INTEGER NOT NULL,
        transcript TEXT NOT NULL,
        PRIMARY KEY (job_id, start_sample, end_sample)
    );
    CREATE TRIGGER IF NOT EXISTS pieces_finished AFTER UPDATE OF status ON jobs
        WHEN new.status IN ('done', 'failed') BEGIN
        DELETE FROM pieces WHERE job_id = new.id;
    END;
    CREATE TRIGGER IF NOT EXISTS pieces_deleted AFTER DELETE ON jobs BEGIN
        DELETE FROM pieces WHERE job_id = old.id;
    END;"),
    // `GET /v1/jobs?review=needed`: the notes someone should listen to, newest first, without
    // reading every row (`Sqlite::list` spells the same condition, so the planner uses it).
    Sql("CREATE INDEX IF NOT EXISTS jobs_review ON jobs(id)
        WHERE status = 'done' AND json_extract(transcript, '$.review.needed') = 1;"),
    // The API key that made a job (issue #39): a client key sees only its own.
    AddColumn {
        table: "jobs",
        column: "client",
        decl: "TEXT",
    },
    // When a job was last claimed: the fair share counts each client's recent work.
    AddColumn {
        table: "jobs",
        column: "started_at",
        decl: "INTEGER",
    },
    Sql("CREATE INDEX IF NOT EXISTS jobs_client ON jobs(client, id);
    CREATE INDEX IF NOT EXISTS jobs_started ON jobs(started_at) WHERE started_at IS NOT NULL;"),
    // External ids are searched with ё folded to е too, as transcripts and file names are
    // (issue #40, item 7): the triggers made again, the index filled again.
    Sql("DROP TRIGGER IF EXISTS jobs_fts_insert;
    DROP TRIGGER IF EXISTS jobs_fts_update;
    CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO jobs_fts(rowid, text, filename, external_id)
        VALUES (new.rowid, replace(replace(json_extract(new.transcript, '$.text'), 'ё', 'е'), 'Ё', 'Е'), replace(replace(new.filename, 'ё', 'е'), 'Ё', 'Е'), replace(replace(new.external_id, 'ё', 'е'), 'Ё', 'Е'));
    END;
    CREATE TRIGGER jobs_fts_update AFTER UPDATE OF transcript, filename, external_id ON jobs BEGIN
        DELETE FROM jobs_fts WHERE rowid = old.rowid;
        INSERT INTO jobs_fts(rowid, text, filename, external_id)
        VALUES (new.rowid, replace(replace(json_extract(new.transcript, '$.text'), 'ё', 'е'), 'Ё', 'Е'), replace(replace(new.filename, 'ё', 'е'), 'Ё', 'Е'), replace(replace(new.external_id, 'ё', 'е'), 'Ё', 'Е'));
    END;
    DELETE FROM jobs_fts;
    INSERT INTO jobs_fts(rowid, text, filename, external_id)
        SELECT rowid, replace(replace(json_extract(transcript, '$.text'), 'ё', 'е'), 'Ё', 'Е'), replace(replace(filename, 'ё', 'е'), 'Ё', 'Е'), replace(replace(external_id, 'ё', 'е'), 'Ё', 'Е') FROM jobs;"),
    // The fair share's virtual time per client (`store::FAIR_SHARE`; '' for jobs of no key).
    Sql("CREATE TABLE IF NOT EXISTS clients (name TEXT PRIMARY KEY, vtime REAL NOT NULL);"),
    // The Telegram bot (issue #36): how far each bot has read its updates, and the replies it
    // owes (`store::Chats`).
    Sql("CREATE TABLE IF NOT EXISTS bot_offsets (bot TEXT PRIMARY KEY, next_update INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS replies (
        id TEXT PRIMARY KEY,
        job_id TEXT,
        chat_id INTEGER NOT NULL,
        reply_to INTEGER,
        language TEXT NOT NULL,
        text TEXT,
        typing INTEGER NOT NULL,
        status TEXT NOT NULL,
        parts_sent INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS replies_due ON replies(status, next_at);"),
    // Jobs that fetch their own audio (issue #36): where from, as JSON; `fetching` until
    // stored.
    AddColumn {
        table: "jobs",
        column: "fetch_source",
        decl: "TEXT",
    },
    Sql("CREATE INDEX IF NOT EXISTS jobs_fetching ON jobs(lease_until) WHERE status = 'fetching';"),
];
