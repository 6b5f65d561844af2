//! The PostgreSQL schema, as the ordered list of migrations `Postgres::open` applies under an
//! advisory lock (so that nodes starting together migrate once); `earshot_migrations` counts
//! how many a database has had. The tables mirror SQLite's (`sqlite_schema`), with JSONB for
//! options and results, and a generated `tsvector` for search in place of FTS5.

/// The advisory lock key that serializes migrations ("earshot" in ASCII, as a number).
pub(super) const MIGRATION_LOCK: i64 = 0x0065_6172_7368_6f74;

pub(super) const MIGRATIONS: &[&str] = &[
    // Search: every word as a prefix (`simple`, as SQLite's FTS5 gives), and Russian and
    // English stems (`заказы` finds `заказ`). ё is indexed as е, as in SQLite.
    "CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        content_type TEXT,
        filename TEXT,
        external_id TEXT,
        source TEXT,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        error_code TEXT,
        error_message TEXT,
        language TEXT,
        duration DOUBLE PRECISION,
        transcript JSONB,
        options JSONB NOT NULL,
        priority INTEGER NOT NULL DEFAULT 1,
        idempotency_key TEXT UNIQUE,
        lease_until BIGINT,
        callback_url TEXT,
        search TSVECTOR GENERATED ALWAYS AS (
            to_tsvector('simple'::regconfig, translate(coalesce(transcript->>'text', '') || ' ' || coalesce(filename, '') || ' ' || coalesce(external_id, ''), 'ёЁ', 'еЕ'))
            || to_tsvector('russian'::regconfig, translate(coalesce(transcript->>'text', '') || ' ' || coalesce(filename, ''), 'ёЁ', 'еЕ'))
            || to_tsvector('english'::regconfig, coalesce(transcript->>'text', '') || ' ' || coalesce(filename, ''))
        ) STORED
    );
    CREATE INDEX jobs_claim ON jobs(status, priority, size);
    CREATE INDEX jobs_external ON jobs(external_id);
    CREATE INDEX jobs_sha ON jobs(sha256);
    CREATE INDEX jobs_search ON jobs USING GIN (search);
    CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        event TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        last_error TEXT,
        created_at BIGINT NOT NULL,
        delivered_at BIGINT
    );
    CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
    CREATE INDEX deliveries_job ON deliveries(job_id);
    CREATE TABLE pieces (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        start_sample BIGINT NOT NULL,
        end_sample BIGINT NOT NULL,
        transcript JSONB NOT NULL,
        PRIMARY KEY (job_id, start_sample, end_sample)
    );",
    // `GET /v1/jobs?review=needed` without reading every row (`Postgres::list` spells the
    // same condition).
    "CREATE INDEX jobs_review ON jobs(id)
        WHERE status = 'done' AND transcript->'review'->'needed' = 'true'::jsonb;",
    // The API key that made a job (issue #39), and when it was last claimed (the fair
    // share counts each client's recent work).
    "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS client TEXT;
    ALTER TABLE jobs ADD COLUMN IF NOT EXISTS started_at BIGINT;
    CREATE INDEX IF NOT EXISTS jobs_client ON jobs(client, id);
    CREATE INDEX IF NOT EXISTS jobs_started ON jobs(started_at) WHERE started_at IS NOT NULL;",
    // The fair share's virtual time per client (`store::FAIR_SHARE`; '' for jobs of no key).
    "CREATE TABLE IF NOT EXISTS clients (name TEXT PRIMARY KEY, vtime DOUBLE PRECISION NOT NULL);",
    // The Telegram bot (issue #36): how far each bot has read its updates, and the replies it
    // owes (`store::Chats`).
    "CREATE TABLE IF NOT EXISTS bot_offsets (bot TEXT PRIMARY KEY, next_update BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS replies (
        id TEXT PRIMARY KEY,
        job_id TEXT,
        chat_id BIGINT NOT NULL,
        reply_to BIGINT,
        language TEXT NOT NULL,
        text TEXT,
        typing BOOLEAN NOT NULL,
        status TEXT NOT NULL,
        parts_sent INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at BIGINT NOT NULL,
        last_error TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS replies_due ON replies(status, next_at);",
    // Jobs that fetch their own audio (issue #36): where from, as JSON; `fetching` until
    // stored.
    "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS fetch_source TEXT;
    CREATE INDEX IF NOT EXISTS jobs_fetching ON jobs(lease_until) WHERE status = 'fetching';",
];
