//! The Telegram bot's offsets and reply outbox, on PostgreSQL. Due times are on the
//! database's clock, as the webhook outbox's are. One node runs the bot (Telegram answers a
//! second poller of the same token with 409), so replies are not leased.

use postgres::Row;

use super::{Postgres, DB_NOW_MS};
use crate::job::{NewReply, Reply};
use crate::store::row::ReplyRow;
use crate::store::{now_ms, Chats, StorageError};

fn reply_from_row(r: &Row) -> Result<Reply, StorageError> {
    ReplyRow {
        id: r.try_get("id")?,
        job_id: r.try_get("job_id")?,
        chat_id: r.try_get("chat_id")?,
        reply_to: r.try_get("reply_to")?,
        language: r.try_get("language")?,
        text: r.try_get("text")?,
        typing: r.try_get("typing")?,
        status: r.try_get("status")?,
        parts_sent: r.try_get::<_, i32>("parts_sent")?.into(),
        attempts: r.try_get::<_, i32>("attempts")?.into(),
        job_status: r.try_get("job_status")?,
    }
    .decode()
}

impl Chats for Postgres {
    fn bot_offset(&self, bot: &str) -> Result<i64, StorageError> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT next_update FROM bot_offsets WHERE bot = $1",
                &[&bot],
            )?
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or(0))
    }

    fn set_bot_offset(&self, bot: &str, offset: i64) -> Result<(), StorageError> {
        self.conn()?.execute(
            "INSERT INTO bot_offsets (bot, next_update) VALUES ($1, $2)
             ON CONFLICT (bot) DO UPDATE SET next_update = GREATEST(bot_offsets.next_update, excluded.next_update)",
            &[&bot, &offset],
        )?;
        Ok(())
    }

    fn job_by_key(&self, key: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .conn()?
            .query_opt("SELECT id FROM jobs WHERE idempotency_key = $1", &[&key])?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    fn file_reply(&self, r: &NewReply) -> Result<bool, StorageError> {
        let n = self.conn()?.execute(
            &format!("INSERT INTO replies (id, job_id, chat_id, reply_to, language, text, typing, status, next_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', {DB_NOW_MS}, $8, $8) ON CONFLICT (id) DO NOTHING"),
            &[&r.id, &r.job_id, &r.chat_id, &r.reply_to, &r.language, &r.text, &r.typing, &now_ms()],
        )?;
        Ok(n == 1)
    }

    fn due_replies(&self, limit: usize) -> Result<Vec<Reply>, StorageError> {
        let rows = self.conn()?.query(
            &format!("SELECT r.*, j.status AS job_status FROM replies r LEFT JOIN jobs j ON j.id = r.job_id
             WHERE r.status = 'pending' AND r.next_at <= {DB_NOW_MS} ORDER BY (r.job_id IS NULL OR j.id IS NULL OR j.status IN ('done', 'failed')) DESC, r.created_at, r.id LIMIT $1"),
            &[&(limit as i64)],
        )?;
        rows.iter().map(reply_from_row).collect()
    }

    fn reply_progress(&self, id: &str, parts: u32) -> Result<(), StorageError> {
        self.conn()?.execute(
            "UPDATE replies SET parts_sent = $2, updated_at = $3 WHERE id = $1",
            &[&id, &(parts as i32), &now_ms()],
        )?;
        Ok(())
    }

    fn reply_sent(&self, id: &str) -> Result<(), StorageError> {
        self.conn()?.execute(
            "UPDATE replies SET status = 'sent', last_error = NULL, updated_at = $2 WHERE id = $1",
            &[&id, &now_ms()],
        )?;
        Ok(())
    }

    /// `next_at` is on this node's clock; the row gets the same delay on the database's.
    fn reply_retry(&self, id: &str, error: &str, next_at: i64) -> Result<(), StorageError> {
        self.conn()?.execute(
            &format!("UPDATE replies SET attempts = attempts + 1, last_error = $2, next_at = {DB_NOW_MS} + $3, updated_at = $4 WHERE id = $1"),
            &[&id, &error, &(next_at - now_ms()).max(0), &now_ms()],
        )?;
        Ok(())
    }

    fn reply_failed(&self, id: &str, error: &str) -> Result<(), StorageError> {
        self.conn()?.execute(
            "UPDATE replies SET status = 'failed', attempts = attempts + 1, last_error = $2, updated_at = $3 WHERE id = $1",
            &[&id, &error, &now_ms()],
        )?;
        Ok(())
    }
}
