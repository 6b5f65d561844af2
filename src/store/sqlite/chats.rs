//! The Telegram bot's offsets and reply outbox, on SQLite.

use rusqlite::{params, OptionalExtension, Row};

use super::Sqlite;
use crate::job::{NewReply, Reply};
use crate::store::row::ReplyRow;
use crate::store::{now_ms, Chats, StorageError};

fn reply_row(r: &Row<'_>) -> rusqlite::Result<ReplyRow> {
    Ok(ReplyRow {
        id: r.get("id")?,
        job_id: r.get("job_id")?,
        chat_id: r.get("chat_id")?,
        reply_to: r.get("reply_to")?,
        language: r.get("language")?,
        text: r.get("text")?,
        typing: r.get("typing")?,
        status: r.get("status")?,
        parts_sent: r.get("parts_sent")?,
        attempts: r.get("attempts")?,
        job_status: r.get("job_status")?,
    })
}

impl Chats for Sqlite {
    fn bot_offset(&self, bot: &str) -> Result<i64, StorageError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT next_update FROM bot_offsets WHERE bot = ?1",
                [bot],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    fn set_bot_offset(&self, bot: &str, offset: i64) -> Result<(), StorageError> {
        self.conn().execute(
            "INSERT INTO bot_offsets (bot, next_update) VALUES (?1, ?2)
             ON CONFLICT (bot) DO UPDATE SET next_update = max(next_update, excluded.next_update)",
            params![bot, offset],
        )?;
        Ok(())
    }

    fn job_by_key(&self, key: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id FROM jobs WHERE idempotency_key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn file_reply(&self, r: &NewReply) -> Result<bool, StorageError> {
        let now = now_ms();
        let n = self.conn().execute(
            "INSERT INTO replies (id, job_id, chat_id, reply_to, language, text, typing, status, next_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8, ?8) ON CONFLICT (id) DO NOTHING",
            params![r.id, r.job_id, r.chat_id, r.reply_to, r.language, r.text, r.typing, now],
        )?;
        Ok(n == 1)
    }

    fn due_replies(&self, limit: usize) -> Result<Vec<Reply>, StorageError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT r.*, j.status AS job_status FROM replies r LEFT JOIN jobs j ON j.id = r.job_id
             WHERE r.status = 'pending' AND r.next_at <= ?1 ORDER BY (r.job_id IS NULL OR j.id IS NULL OR j.status IN ('done', 'failed')) DESC, r.created_at, r.id LIMIT ?2",
        )?;
        let rows = st.query_map(params![now_ms(), limit as i64], reply_row)?;
        rows.map(|r| r?.decode()).collect()
    }

    fn reply_progress(&self, id: &str, parts: u32) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE replies SET parts_sent = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, parts, now_ms()],
        )?;
        Ok(())
    }

    fn reply_sent(&self, id: &str) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE replies SET status = 'sent', last_error = NULL, updated_at = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    fn reply_retry(&self, id: &str, error: &str, next_at: i64) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE replies SET attempts = attempts + 1, last_error = ?2, next_at = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, error, next_at, now_ms()],
        )?;
        Ok(())
    }

    fn reply_failed(&self, id: &str, error: &str) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE replies SET status = 'failed', attempts = attempts + 1, last_error = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, error, now_ms()],
        )?;
        Ok(())
    }
}
