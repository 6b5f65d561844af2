//! The webhook outbox and the finished pieces of long jobs, on SQLite.

use rusqlite::{params, OptionalExtension, Row};

use super::{json, Sqlite};
use crate::engine::Transcript;
use crate::job::{Delivery, Piece};
use crate::store::row::{self, DeliveryRow, Json};
use crate::store::{now_ms, Outbox, Pieces, StorageError};

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.get("id")?,
        job_id: r.get("job_id")?,
        url: r.get("url")?,
        event: r.get("event")?,
        status: r.get("status")?,
        attempts: r.get("attempts")?,
        last_error: r.get("last_error")?,
    })
}

impl Outbox for Sqlite {
    fn due_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StorageError> {
        let c = self.conn();
        let mut stmt = c.prepare("SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2")?;
        let rows = stmt.query_map(params![now_ms(), limit as i64], delivery_row)?;
        rows.map(|r| r?.decode()).collect()
    }

    fn latest_delivery(&self, job_id: &str) -> Result<Option<Delivery>, StorageError> {
        self
            .conn()
            .query_row("SELECT * FROM deliveries WHERE job_id = ?1 ORDER BY created_at DESC, id DESC LIMIT 1", [job_id], delivery_row)
            .optional()?
            .map(DeliveryRow::decode)
            .transpose()
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
}

impl Pieces for Sqlite {
    fn save_piece(
        &self,
        id: &str,
        start: usize,
        end: usize,
        transcript: &Transcript,
    ) -> Result<(), StorageError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO pieces (job_id, start_sample, end_sample, transcript) VALUES (?1, ?2, ?3, ?4)",
            params![id, start as i64, end as i64, json(transcript)],
        )?;
        Ok(())
    }

    fn pieces(&self, id: &str) -> Result<Vec<Piece>, StorageError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT start_sample, end_sample, transcript FROM pieces WHERE job_id = ?1 ORDER BY start_sample",
        )?;
        let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))?;
        rows.map(|r| {
            let (a, b, t) = r?;
            row::piece(id, a, b, Json::Text(t))
        })
        .collect()
    }
}
