//! Which of a note's speech is the speaker's, by level: [`by_level`] sets apart the ranges
//! far under the speaker, to be decoded on their own (see the engine's `cover`).

use std::ops::Range;

use super::vad::frame_rms;
use crate::audio::WHISPER_RATE;

/// A speech range more than this many dB under its note's speaker is decoded on its own
/// rather than with the rest (see [`by_level`]).
pub const QUIET_DB: f32 = 12.0;
/// A range's level is this percentile of its 30 ms frames' RMS (its loud frames, as
/// [`Level`](super::level::Level) measures a note). The 75th was tried, so that a knock
/// (loud for a few frames, then decaying) would measure low: it measures speech, which has
/// pauses and soft syllables, low too, and put the tuning twin's murmur within 8-12 dB of the
/// speaker, where it was decoded with them again.
const RANGE_PERCENTILE: usize = 95;
/// The speaker's level is the loudest range's among those at least this long (0.5 s).
const ANCHOR_MIN: usize = 8_000;

/// Each range's level in dBFS (see [`RANGE_PERCENTILE`]).
fn range_levels(samples: &[f32], speech: &[Range<usize>]) -> Vec<f32> {
    speech
        .iter()
        .map(|r| {
            let mut rms = frame_rms(&samples[r.start.min(samples.len())..r.end.min(samples.len())]);
            rms.sort_by(f32::total_cmp);
            let x = rms
                .get((rms.len() * RANGE_PERCENTILE / 100).min(rms.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0);
            20.0 * x.max(1e-6).log10()
        })
        .collect()
}

/// The speaker's level: the loudest range of [`ANCHOR_MIN`] or more (the loudest of all when
/// none is that long).
fn speaker_level(levels: &[f32], speech: &[Range<usize>]) -> f32 {
    let loudest = |long: bool| {
        levels
            .iter()
            .zip(speech)
            .filter(|(_, r)| !long || r.len() >= ANCHOR_MIN)
            .map(|(l, _)| *l)
            .fold(f32::MIN, f32::max)
    };
    match loudest(true) {
        l if l > f32::MIN => l,
        _ => loudest(false),
    }
}

/// A note's speech split by level: the ranges decoded together (`main`), and those more than
/// [`QUIET_DB`] under the speaker's (`quiet`), which are decoded on their own, raised, and
/// kept when what Whisper writes for them reads as speech (see the engine's `cover`). No
/// range is dropped here.
///
/// Why apart: a voice note is one person holding the phone, and Silero also hears
/// speech-like sound far behind them (a television, someone across the room, the murmur in a
/// recording's pauses). Decoded together with the speaker, Whisper writes words for that
/// murmur ("I don't know if you can see the difference between them" before "go forward ten
/// meters" in the tuning half's noisy twin), and guesses the language less surely. But the
/// same level test also catches the speaker: a last phrase that trails off, a first one said
/// before they reach the phone, a sentence said turned away. Until 2026-12 those ranges were
/// dropped ("more than 12 dB under the loudest range is background"), and on notes whose
/// level changes more than half lost a whole phrase with no flag. Now they are heard on their
/// own, where murmur cannot leak into the speaker's text, and judged by what comes back.
///
/// The speaker's level is the loudest range's, but only ranges of [`ANCHOR_MIN`] or more
/// count, so that a click or a knock that Silero took for speech sets no line. A longer loud
/// sound (a door slammed during a word) can still set it; then the speech under it is
/// decoded apart, not lost. (Under the old rule, one knock on the microphone at -10 dBFS
/// made 13 of a note's 19 s of speech "background", dropped.) A duration-weighted median of
/// the ranges' levels was tried first: in a short note the murmur lasts longer than the
/// speech, so the median was the murmur's level, and the tuning twin's English WER went from
/// 7% to 70% on words written for it.
pub fn by_level(
    samples: &[f32],
    speech: &[Range<usize>],
) -> (Vec<Range<usize>>, Vec<Range<usize>>) {
    if speech.len() < 2 {
        return (speech.to_vec(), Vec::new());
    }
    let levels = range_levels(samples, speech);
    let speaker = speaker_level(&levels, speech);
    let (mut main, mut quiet) = (Vec::new(), Vec::new());
    for (r, level) in speech.iter().zip(levels) {
        let under = level < speaker - QUIET_DB;
        tracing::trace!(
            start_s = r.start as f64 / WHISPER_RATE as f64,
            end_s = r.end as f64 / WHISPER_RATE as f64,
            level,
            speaker,
            quiet = under,
            "speech range"
        );
        if under {
            quiet.push(r.clone());
        } else {
            main.push(r.clone());
        }
    }
    (main, quiet)
}

#[cfg(test)]
mod tests {
    use super::super::vad::noise;
    use super::*;

    /// `seconds` of noise whose loud frames sit at `db` under the speaker (0.3 amplitude).
    fn at(seconds: f64, db: f32) -> Vec<f32> {
        noise((seconds * 16_000.0) as usize, 0.3 * 10f32.powf(-db / 20.0))
    }

    /// A note of `parts` (seconds, dB under the speaker) with a second's pause between
    /// them, and its ranges.
    fn note(parts: &[(f64, f32)]) -> (Vec<f32>, Vec<Range<usize>>) {
        let (mut x, mut ranges) = (Vec::new(), Vec::new());
        for &(seconds, db) in parts {
            let a = x.len();
            x.extend(at(seconds, db));
            ranges.push(a..x.len());
            x.extend(vec![0.0; 16_000]);
        }
        (x, ranges)
    }

    #[test]
    fn a_softer_last_phrase_is_decoded_apart_never_dropped() {
        // "The red fox has read many books, but" and then, 17 dB under, "there's always
        // more to read": set apart, to be decoded on its own.
        let (x, r) = note(&[(4.0, 0.0), (1.3, 17.0)]);
        assert_eq!(by_level(&x, &r), (vec![r[0].clone()], vec![r[1].clone()]));
        // 8 dB under (a phrase said a little away from the phone): decoded with the rest.
        let (x, r) = note(&[(4.0, 0.0), (1.3, 8.0)]);
        assert_eq!(by_level(&x, &r), (r.clone(), vec![]));
        // The speaker coming closer: the soft start is set apart, however long.
        let (x, r) = note(&[(6.0, 16.0), (2.0, 0.0)]);
        assert_eq!(by_level(&x, &r), (vec![r[1].clone()], vec![r[0].clone()]));
    }

    #[test]
    fn a_loud_transient_anchors_nothing() {
        // 19 s of speech in phrases, and a knock 20 dB over it that Silero took for speech
        // (0.3 s). Measured from the loudest range (the old rule) every phrase was
        // "background" and dropped.
        let (x, r) = note(&[(5.0, 20.0), (0.3, 0.0), (6.0, 20.0), (8.0, 21.0)]);
        assert_eq!(
            by_level(&x, &r),
            (r.clone(), vec![]),
            "all decoded together"
        );
        // A loud sound as long as a word (a door slammed, 0.6 s) does set the line: the
        // speech is then set apart, to be decoded on its own, never dropped.
        let (x, r) = note(&[(5.0, 20.0), (0.6, 0.0), (6.0, 20.0)]);
        assert_eq!(
            by_level(&x, &r),
            (vec![r[1].clone()], vec![r[0].clone(), r[2].clone()])
        );
    }

    #[test]
    fn murmur_under_a_speaker_is_decoded_apart() {
        // Room murmur 18 dB under, before and after the speaker (the noisy set's notes).
        let (x, r) = note(&[(1.0, 18.0), (3.0, 0.0), (0.8, 18.0), (1.0, 19.0)]);
        let (main, quiet) = by_level(&x, &r);
        assert_eq!(main, vec![r[1].clone()]);
        assert_eq!(quiet, vec![r[0].clone(), r[2].clone(), r[3].clone()]);
        // A note's only range is decoded, however quiet.
        let (x, r) = note(&[(1.0, 30.0)]);
        assert_eq!(by_level(&x, &r), (r.clone(), vec![]));
    }
}
