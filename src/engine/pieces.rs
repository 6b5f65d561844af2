//! Long audio in pieces: where to cut a note whose speech does not fit one 30 s window.
//!
//! Whisper reads 30 s at a time, and walking a long file window by window, each conditioned
//! on the last, uses one decoder however many cores there are. Cut at pauses into pieces of
//! at most [`PIECE_MAX`] of speech span instead, and the pieces decode independently, at the
//! same time, each with a fitted context, and give the same text whatever order they run in.
//!
//! The cuts fall in the middle of the longest pauses, never inside a speech range the
//! voice-activity model found, so no word is cut in half. (A single range of speech longer
//! than a piece, with no pause at all, is the exception: it is split into equal parts.)
//! Pieces tile the note: each sample belongs to exactly one piece, so stitching their
//! transcripts loses and doubles nothing.
//!
//! Here too: decoding one piece whole (its last words checked), how many pieces decode at
//! once, and what follows a long transcription: its [`Progress`], and the [`Watch`] that
//! hears it and keeps finished pieces for a resumed run. Reading a note, cutting it as it
//! goes and handing the pieces to the lanes is [`super::stream`].

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use serde::Serialize;

use super::decode::Turns;
use super::vad::{Plan, PAD};
use super::{Engine, EngineError, Options, Transcript};
use crate::audio::WHISPER_RATE;

/// Speech (packed) up to this long is decoded whole, as one piece: 29 s, a little under
/// Whisper's window so the last words keep their timestamps. Longer is cut.
pub const WHOLE_MAX: usize = 29 * WHISPER_RATE as usize;
/// The longest speech span (padding included) one piece of a longer note holds. Whisper's
/// encoder costs more than linearly in its context, so shorter pieces are cheaper: on a
/// 10-minute Russian file made from the tuning half's clips (2 cores, `base` q8_0), pieces
/// of 29 s took 48.9 s (CER 5.7%), 20 s 39.9 s (5.4%), 17 s 40.4 s (5.4%), 14 s 37.1 s
/// (5.4%), 12 s 39.6 s (5.3%), 10 s 40.2 s (5.9%: too little context).
pub const PIECE_MAX: usize = 14 * WHISPER_RATE as usize;
/// A piece is cut only once it spans this much, so that a short pause early on does not
/// make a piece of a few words (context helps Whisper).
pub(super) const PIECE_MIN: usize = PIECE_MAX / 2;

/// Contiguous pieces that tile `0..n`, cut at pauses between the `speech` ranges (sorted,
/// unpadded, in samples), each holding at most [`PIECE_MAX`] from its first speech (less
/// [`PAD`]) to its last (plus [`PAD`]). No speech: one piece, the whole note.
pub fn cut(speech: &[Range<usize>], n: usize) -> Vec<Range<usize>> {
    // A range too long for a piece on its own is split into equal parts first.
    let most = PIECE_MAX - 2 * PAD;
    let speech: Vec<Range<usize>> = speech
        .iter()
        .filter(|r| r.start < r.end && r.end <= n)
        .flat_map(|r| {
            let parts = r.len().div_ceil(most);
            let len = r.len().div_ceil(parts);
            (0..parts).map(move |i| r.start + i * len..(r.start + (i + 1) * len).min(r.end))
        })
        .collect();
    let span =
        |a: usize, b: usize| (speech[b].end + PAD).min(n) - speech[a].start.saturating_sub(PAD);
    let mut pieces = Vec::new();
    let (mut from, mut first) = (0, 0);
    while first < speech.len() {
        let mut last = first;
        while last + 1 < speech.len() && span(first, last + 1) <= PIECE_MAX {
            last += 1;
        }
        if last + 1 == speech.len() {
            break;
        }
        // Cut after `c`: at the longest pause among those that leave this piece at least
        // PIECE_MIN long (the later one on a tie); with none, as late as it fits.
        let c = (first..=last)
            .filter(|&c| span(first, c) >= PIECE_MIN)
            .max_by_key(|&c| speech[c + 1].start - speech[c].end)
            .unwrap_or(last);
        let mid = (speech[c].end + speech[c + 1].start) / 2;
        pieces.push(from..mid);
        from = mid;
        first = c + 1;
    }
    pieces.push(from..n);
    pieces
}

/// How far a long transcription has got: seconds of the note decoded, of how many.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Progress {
    pub done_s: f64,
    pub total_s: f64,
}

/// Who follows a long transcription (see [`Engine::transcribe_with`]): its progress, and
/// its finished pieces, which a service stores so that a run cut short (a crash, a restart)
/// goes on from them. A piece is named by its samples in the note; the same audio is cut the
/// same way every time. A plain `Fn(Progress)` follows progress only.
pub trait Watch: Sync {
    /// How far it has got.
    fn progress(&self, _progress: Progress) {}
    /// A piece is done: its transcript, in the piece's own times.
    fn finished(&self, _piece: &std::ops::Range<usize>, _transcript: &Transcript) {}
    /// A piece an earlier run finished, if it did.
    fn stored(&self, _piece: &std::ops::Range<usize>) -> Option<Transcript> {
        None
    }
}

impl<F: Fn(Progress) + Sync> Watch for F {
    fn progress(&self, progress: Progress) {
        self(progress)
    }
}

/// A mutex's guard, even if a thread panicked holding it (the data is still whole here).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// [`Engine::transcribe_piece`] in `language`, making sure no speech of the piece is
    /// missing from its text: Whisper often ends a window at a pause and drops a short
    /// utterance after it (a test file lost "go forward ten meters" after Kennedy's 11 s in
    /// two pieces of six). Speech the voice-activity model found that no segment covers is
    /// decoded again on its own ([`Engine::cover`]).
    pub(super) fn transcribe_piece_whole(
        &self,
        samples: &[f32],
        plan: &Plan,
        opts: &Options,
        language: &str,
        turns: &Turns,
    ) -> Result<Transcript, EngineError> {
        let t =
            self.transcribe_piece(samples, plan, opts, Some(language.to_string()), Some(turns))?;
        self.cover(samples, t, plan.speech(), &[], opts, language, Some(turns))
    }

    /// How many pieces of a long note may decode at once, of the `wanted` the parallelism
    /// rule gives. On a CPU the rule already divides the job's own threads. On a GPU it gives
    /// the card's whole count of states whatever the threads, so the states other jobs hold
    /// now are taken off: several long jobs at once share the card instead of each making
    /// a full set (about 300 MiB each with `base`).
    pub(super) fn lanes(&self, wanted: usize) -> usize {
        if !self.backend.is_gpu() {
            return wanted;
        }
        let others = self.states.load(Ordering::SeqCst);
        wanted.saturating_sub(others).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: usize = WHISPER_RATE as usize;

    fn secs(a: f64, b: f64) -> Range<usize> {
        (a * S as f64) as usize..(b * S as f64) as usize
    }

    /// Pieces tile the note, each holds at most PIECE_MAX of speech span, and no speech
    /// range is cut.
    fn check(speech: &[Range<usize>], n: usize) -> Vec<Range<usize>> {
        let p = cut(speech, n);
        assert_eq!(p.first().map(|r| r.start), Some(0));
        assert_eq!(p.last().map(|r| r.end), Some(n));
        for w in p.windows(2) {
            assert_eq!(w[0].end, w[1].start, "{p:?}");
            assert!(w[0].start < w[0].end, "{p:?}");
        }
        for piece in &p {
            let inside: Vec<_> = speech
                .iter()
                .filter(|r| r.start < piece.end && r.end > piece.start)
                .collect();
            if let (Some(a), Some(b)) = (inside.first(), inside.last()) {
                let span = (b.end + PAD).min(n) - a.start.saturating_sub(PAD);
                assert!(span <= PIECE_MAX || inside.len() == 1, "{piece:?}: {span}");
            }
        }
        p
    }

    #[test]
    fn short_or_silent_notes_are_one_piece() {
        assert_eq!(check(&[], 10 * S), vec![0..10 * S]);
        assert_eq!(check(&[secs(1.0, 10.0)], 12 * S), vec![0..12 * S]);
    }

    #[test]
    fn cuts_fall_in_the_longest_pause_and_never_in_speech() {
        // 2 s of speech every 3 s (1 s pauses), with one 3 s pause after 8.5 s.
        let speech: Vec<_> = (0..20)
            .map(|i| {
                let start = i as f64 * 3.0 + 0.5 + if i >= 3 { 2.0 } else { 0.0 };
                secs(start, start + 2.0)
            })
            .collect();
        let n = 65 * S;
        let p = check(&speech, n);
        assert!(p.len() >= 4, "{p:?}");
        for piece in &p[..p.len() - 1] {
            assert!(
                !speech
                    .iter()
                    .any(|r| r.start < piece.end && piece.end < r.end),
                "cut inside speech: {piece:?}"
            );
        }
        // The first cut is in the 3 s pause (8.5 to 11.5 s), although a 1 s pause later
        // would have made a longer piece.
        let first = p[0].end as f64 / S as f64;
        assert!((8.5..11.5).contains(&first), "{first}");
    }

    #[test]
    fn a_pauseless_stretch_is_split_evenly() {
        let p = check(&[secs(0.0, 70.0)], 70 * S);
        assert_eq!(p.len(), 6, "{p:?}");
        assert!(p.iter().all(|r| r.len() <= PIECE_MAX), "{p:?}");
    }

    #[test]
    fn an_hour_of_notes_is_cut_in_bounded_pieces() {
        let speech: Vec<_> = (0..600)
            .map(|i| secs(i as f64 * 6.0 + 0.3, i as f64 * 6.0 + 5.0))
            .collect();
        let p = check(&speech, 3600 * S);
        assert!((200..=400).contains(&p.len()), "{}", p.len());
    }
}
