//! What the bot says: a job's text as a reply (with the review reasons of a flagged note in
//! words, or why it failed), in the reader's language from the table the inbox page uses
//! (`web::strings`), split into messages Telegram takes.

use crate::job::{Job, Status};
use crate::web::word;

/// The reply to a finished job: its text, or "(no speech)"; a flagged note gets one more
/// line, with the review reasons in words; a failed one says why. `header` (who sent it,
/// when) goes first, `link` (to the job on the inbox page) last.
pub fn job_reply(job: &Job, lang: &str, header: Option<&str>, link: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(h) = header {
        out.push_str(h);
        out.push('\n');
    }
    match (job.status, &job.result, &job.failure) {
        (Status::Done, Some(result), _) => {
            let text = result.transcript.text.trim();
            if text.is_empty() {
                out.push_str(&word(lang, "no_speech"));
            } else {
                out.push_str(text);
            }
            let review = &result.transcript.review;
            if review.needed && !review.reasons.is_empty() {
                let reasons: Vec<String> = review
                    .reasons
                    .iter()
                    .map(|r| {
                        let mut w = word(lang, &format!("review.{}", r.code()));
                        if *r == crate::engine::review::Reason::SkippedSpeech {
                            if let Some(s) = review.skipped_speech.first() {
                                w.push(' ');
                                w.push_str(&clock(s.start));
                            }
                        }
                        w
                    })
                    .collect();
                out.push_str("\n\n");
                out.push_str(&word(lang, "bot.flagged"));
                out.push(' ');
                out.push_str(&reasons.join("; "));
            }
        }
        (_, _, Some(f)) => {
            let why = word(lang, &format!("err.{}", f.code.as_str()));
            let why = if why.starts_with("err.") {
                f.message.clone()
            } else {
                why
            };
            out.push_str(&word(lang, "bot.failed"));
            out.push(' ');
            out.push_str(&why);
        }
        _ => out.push_str(&word(lang, "err.transcription_failed")),
    }
    if let Some(l) = link {
        out.push_str("\n\n");
        out.push_str(&word(lang, "bot.open"));
        out.push(' ');
        out.push_str(l);
    }
    out
}

/// "who, when, m:ss" for the operators' chat.
pub fn header(lang: &str, who: &str, unix: i64, duration_s: Option<u64>) -> String {
    let mut h = format!("{who}, {}", when(lang, unix));
    if let Some(d) = duration_s {
        h.push_str(&format!(", {}", clock(d as f64)));
    }
    h.push(':');
    h
}

/// Seconds as `m:ss` (`h:mm:ss` past an hour).
pub fn clock(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A Unix time as the locale writes a date: `07.12.2026 в 14:05 UTC` or
/// `2026-12-07 at 14:05 UTC`. (UTC: the bot has no time zone of the reader's.)
pub fn when(lang: &str, unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm) = (secs / 3600, secs / 60 % 60);
    let at = word(lang, "bot.at");
    if crate::web::language_for(lang) == "ru" {
        format!("{d:02}.{m:02}.{y} {at} {hh:02}:{mm:02} UTC")
    } else {
        format!("{y}-{m:02}-{d:02} {at} {hh:02}:{mm:02} UTC")
    }
}

/// `text` in messages of at most `max` UTF-16 units (how Telegram counts), broken at a line
/// end or a space where one is near, never inside a character.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let mut units = 0;
        let mut cut = rest.len();
        for (i, c) in rest.char_indices() {
            units += c.len_utf16();
            if units > max {
                cut = i;
                break;
            }
        }
        if cut < rest.len() {
            // Back to the last line end or space in the second half, if any.
            let head = &rest[..cut];
            if let Some(b) = head
                .rfind('\n')
                .or_else(|| head.rfind(' '))
                .filter(|&b| b > cut / 2)
            {
                cut = b;
            }
        }
        parts.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_splits_at_spaces_within_the_limit() {
        let text = "слово ".repeat(2000);
        let parts = split(&text, 4096);
        assert_eq!(parts.len(), 3);
        for p in &parts {
            assert!(p.encode_utf16().count() <= 4096);
            assert!(p.starts_with("слово") && p.ends_with("слово"), "{p}");
        }
        assert_eq!(parts.join(" "), text.trim());
        // No space at all: cut between characters (an emoji is two UTF-16 units).
        let parts = split(&"😀".repeat(5), 4);
        assert_eq!(parts, ["😀😀", "😀😀", "😀"]);
        assert!(split("  ", 10).is_empty());
    }

    #[test]
    fn dates_and_durations_in_each_locale() {
        assert_eq!(when("ru", 1_796_612_700), "07.12.2026 в 03:05 UTC");
        assert_eq!(when("en", 1_796_612_700), "2026-12-07 at 03:05 UTC");
        assert_eq!(when("en", 0), "1970-01-01 at 00:00 UTC");
        assert_eq!(when("en", 951_782_400), "2000-02-29 at 00:00 UTC");
        assert_eq!(clock(37.9), "0:37");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(
            header("ru", "Анна (@anna)", 1_796_612_700, Some(37)),
            "Анна (@anna), 07.12.2026 в 03:05 UTC, 0:37:"
        );
    }
}
