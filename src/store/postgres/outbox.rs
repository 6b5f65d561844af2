//! The webhook outbox (each due delivery leased to the node that reads it) and the finished
//! pieces of long jobs, on PostgreSQL.

use postgres::Row;

use super::{db_now, json, Postgres, DB_NOW_MS};
use crate::engine::Transcript;
use crate::job::{Delivery, Piece};
use crate::store::row::{self, DeliveryRow, Json};
use crate::store::{now_ms, Outbox, Pieces, StorageError};

/// How long a node keeps the deliveries it read before another node may send them.
const DELIVERY_LEASE_MS: i64 = 60_000;

fn delivery_from_row(r: &Row) -> Result<Delivery, StorageError> {
    DeliveryRow {
        id: r.try_get("id")?,
        job_id: r.try_get("job_id")?,
        url: r.try_get("url")?,
        event: r.try_get("event")?,
        status: r.try_get("status")?,
        attempts: r.try_get::<_, i32>("attempts")?.into(),
        last_error: r.try_get("last_error")?,
    }
    .decode()
}

impl Outbox for Postgres {
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
}

impl Pieces for Postgres {
    fn save_piece(
        &self,
        id: &str,
        start: usize,
        end: usize,
        transcript: &Transcript,
    ) -> Result<(), StorageError> {
        // Only for a job still running: a piece that lands after the job finished (or was
        // deleted) is not kept.
        self.conn()?.execute(
            "INSERT INTO pieces (job_id, start_sample, end_sample, transcript)
             SELECT id, $2, $3, $4 FROM jobs WHERE id = $1 AND status = 'running'
             ON CONFLICT (job_id, start_sample, end_sample) DO UPDATE SET transcript = excluded.transcript",
            &[&id, &(start as i64), &(end as i64), &json(transcript)],
        )?;
        Ok(())
    }

    fn pieces(&self, id: &str) -> Result<Vec<Piece>, StorageError> {
        let rows = self.conn()?.query(
            "SELECT start_sample, end_sample, transcript FROM pieces WHERE job_id = $1 ORDER BY start_sample",
            &[&id],
        )?;
        rows.iter()
            .map(|r| row::piece(id, r.try_get(0)?, r.try_get(1)?, Json::Value(r.try_get(2)?)))
            .collect()
    }
}
