//! Where the speech is: the Silero voice-activity model ([`Silero`]), and the plan that
//! turns its answer into the audio Whisper decodes ([`Plan`]).
//!
//! Silero (run by whisper.cpp from `ggml-silero-vad.bin`) gives a speech probability for
//! every 32 ms; [`speech_ranges`] turns those into speech ranges with hysteresis and a
//! margin. A [`Plan`] keeps only those ranges (padded) and packs them together, so the
//! silence at both ends and long pauses inside are never decoded, and maps every time in
//! the packed audio back to the original file. A note with no speech range is not decoded
//! at all; a segment that lies wholly outside speech is dropped.
//!
//! Without the model file, the energy gate below stands in, as it did before Silero:
//!
//! Whisper invents text ("Thank you.", subtitle credits) for silence and steady noise. Speech
//! is loud in bursts and quiet between words; silence is quiet everywhere and steady noise is
//! equally loud everywhere. So a clip counts as speech only when its loud frames are both
//! loud in absolute terms and well above its quiet frames ([`has_speech`]).
//!
//! [`speech_span`] finds where the sound starts and ends, so the leading and trailing silence
//! of a voice note (the thumb on the button) is not encoded. It is deliberately generous:
//! anything above the clip's own noise floor counts, and half a second is kept on each side,
//! because cutting a quiet first syllable costs more than encoding a little silence.
//!
//! (Over 500 lines: a third of them are tests; the model, its ranges, the plan and the gate
//! it stands in for are read together.)

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use whisper_rs::{WhisperVadContext, WhisperVadContextParams};

use super::EngineError;
use crate::audio::WHISPER_RATE;

/// 30 ms frames at 16 kHz.
const FRAME: usize = 480;

/// Samples per Silero probability (32 ms at 16 kHz).
pub const WINDOW: usize = 512;
/// A window is speech from this probability up...
const SPEECH_ON: f32 = 0.5;
/// ...and speech goes on until the probability falls under this (hysteresis, as Silero's
/// own `get_speech_timestamps`).
const SPEECH_OFF: f32 = 0.35;
/// Shorter bursts are clicks and bumps, not words ("да" is about 200 ms).
const MIN_SPEECH: usize = 5 * WINDOW;
/// Audio kept around each speech range (0.4 s): quiet onsets and final consonants.
pub(super) const PAD: usize = 6_400;
/// Pauses shorter than this (after padding) are kept whole; longer ones are cut out.
const MIN_CUT: usize = 16_000;

/// The Silero voice-activity model, with a pool of whisper.cpp VAD contexts (each holds
/// its own LSTM state, reset at every call).
pub struct Silero {
    path: PathBuf,
    pool: Mutex<Vec<WhisperVadContext>>,
}

impl Silero {
    /// Load the GGML Silero model at `path` (made by `scripts/fetch-model.sh silero-vad`).
    pub fn load(path: &Path) -> Result<Silero, EngineError> {
        let s = Silero {
            path: path.to_path_buf(),
            pool: Mutex::new(Vec::new()),
        };
        let ctx = s.context()?;
        s.pool.lock().unwrap_or_else(|p| p.into_inner()).push(ctx);
        Ok(s)
    }

    fn context(&self) -> Result<WhisperVadContext, EngineError> {
        let err = |reason: String| EngineError::ModelLoad {
            path: self.path.clone(),
            reason,
        };
        if !self.path.is_file() {
            return Err(EngineError::ModelMissing {
                path: self.path.clone(),
            });
        }
        // whisper.cpp logs the path (see `language` for why a long one is refused).
        let p = self
            .path
            .to_str()
            .filter(|p| p.len() <= 900 && !p.contains('\0'))
            .ok_or_else(|| err("the path is not UTF-8, or longer than 900 bytes".into()))?;
        let mut params = WhisperVadContextParams::default();
        params.set_n_threads(1);
        params.set_use_gpu(false);
        WhisperVadContext::new(p, params).map_err(|e| {
            err(format!(
                "{e} (is it a Silero GGML file? scripts/fetch-model.sh silero-vad makes one)"
            ))
        })
    }

    /// Speech probabilities, one per [`WINDOW`] samples.
    pub fn probabilities(&self, samples: &[f32]) -> Result<Vec<f32>, EngineError> {
        let popped = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut ctx = match popped {
            Some(c) => c,
            None => self.context()?,
        };
        let out = ctx
            .detect_speech(samples)
            .map(|()| ctx.probabilities().to_vec())
            .map_err(|e| EngineError::Inference(format!("voice-activity detection: {e}")));
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ctx);
        out
    }

    /// The speech in 16 kHz samples, as sample ranges (see [`speech_ranges`]).
    pub fn speech(&self, samples: &[f32]) -> Result<Vec<Range<usize>>, EngineError> {
        Ok(speech_ranges(&self.probabilities(samples)?, samples.len()))
    }
}

/// Speech ranges (samples, unpadded) from per-window probabilities: a range opens at a
/// window over [`SPEECH_ON`] and closes when the probability falls under [`SPEECH_OFF`];
/// ranges shorter than [`MIN_SPEECH`] are dropped.
pub fn speech_ranges(probs: &[f32], n_samples: usize) -> Vec<Range<usize>> {
    let mut r = Ranges::new(None);
    r.push(probs);
    r.finish(n_samples)
}

/// [`speech_ranges`] worked out as the probabilities arrive: the ranges already closed
/// are final, and only the one still open can change. With `split_after`, a range open
/// that many windows is closed there and goes on as a new one, so a stretch with no pause
/// (music, a noisy hall) does not keep everything since it began waiting.
#[derive(Debug, Default)]
pub struct Ranges {
    closed: Vec<Range<usize>>,
    /// The window the open range started at, and whether it goes on from a split range
    /// (which is kept however short).
    open: Option<(usize, bool)>,
    windows: usize,
    split_after: Option<usize>,
}

impl Ranges {
    pub fn new(split_after: Option<usize>) -> Ranges {
        Ranges {
            split_after,
            ..Ranges::default()
        }
    }

    /// The next windows' probabilities.
    pub fn push(&mut self, probs: &[f32]) {
        for &p in probs {
            let i = self.windows;
            self.windows += 1;
            match self.open {
                None if p >= SPEECH_ON => self.open = Some((i, false)),
                Some((start, goes_on)) if p < SPEECH_OFF => {
                    self.close(start..i, goes_on);
                    self.open = None;
                }
                Some((start, goes_on)) if self.split_after.is_some_and(|s| i - start >= s) => {
                    self.close(start..i, goes_on);
                    self.open = Some((i, true));
                }
                _ => {}
            }
        }
    }

    fn close(&mut self, windows: Range<usize>, goes_on: bool) {
        let r = windows.start * WINDOW..windows.end * WINDOW;
        if goes_on || r.len() >= MIN_SPEECH {
            self.closed.push(r);
        }
    }

    /// The ranges that can no longer change.
    pub fn closed(&self) -> &[Range<usize>] {
        &self.closed
    }

    /// Where the range still open started (in samples), if one is.
    pub fn open_since(&self) -> Option<usize> {
        self.open.map(|(start, _)| start * WINDOW)
    }

    /// All the ranges, the open one closed at the end of `n_samples`.
    pub fn finish(mut self, n_samples: usize) -> Vec<Range<usize>> {
        if let Some((start, goes_on)) = self.open.take() {
            let r = start * WINDOW..(self.windows * WINDOW).min(n_samples);
            if goes_on || r.len() >= MIN_SPEECH {
                self.closed.push(r);
            }
        }
        self.closed
            .into_iter()
            .map(|r| r.start.min(n_samples)..r.end.min(n_samples))
            .filter(|r| !r.is_empty())
            .collect()
    }
}

/// Seconds in `ranges` of 16 kHz samples.
pub fn seconds(ranges: &[Range<usize>]) -> f64 {
    ranges.iter().map(|r| r.len()).sum::<usize>() as f64 / WHISPER_RATE as f64
}

/// Which parts of a note Whisper decodes, packed one after another, and the way back to
/// the note's own times.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// (range in the note, where it starts in the packed audio), in order.
    pieces: Vec<(Range<usize>, usize)>,
    /// The speech as detected (unpadded), in the note's samples.
    speech: Vec<Range<usize>>,
    /// Pieces decoded as silence (see [`Plan::holding`]).
    muted: Vec<Range<usize>>,
}

/// The most silence [`Plan::holding`] puts in for a range decoded apart (1 s).
const HELD_MAX: usize = 16_000;

impl Plan {
    /// Decode `speech` (padded by [`PAD`]; pauses under [`MIN_CUT`] kept) out of a note of
    /// `n` samples; with `cut` false, the whole note is decoded.
    pub fn new(speech: Vec<Range<usize>>, n: usize, cut: bool) -> Plan {
        let mut kept: Vec<Range<usize>> = Vec::new();
        if !cut {
            kept.push(0..n);
        } else {
            for r in &speech {
                let padded = r.start.saturating_sub(PAD)..(r.end + PAD).min(n);
                match kept.last_mut() {
                    Some(last) if padded.start < last.end + MIN_CUT => last.end = padded.end,
                    _ => kept.push(padded),
                }
            }
        }
        Plan {
            pieces: Self::packed_at(kept),
            speech,
            muted: Vec::new(),
        }
    }

    fn packed_at(kept: Vec<Range<usize>>) -> Vec<(Range<usize>, usize)> {
        let mut at = 0;
        kept.into_iter()
            .map(|r| {
                let piece = (r.clone(), at);
                at += r.len();
                piece
            })
            .collect()
    }

    /// [`Plan::new`] with silence cut `speech`, and the place of each range of `apart` that
    /// falls between two of its pieces held by up to [`HELD_MAX`] of silence. Those ranges
    /// are decoded on their own later; the silence makes Whisper end a segment where they
    /// were, so their text can go in its place instead of after a segment that spans both
    /// sides of it.
    pub fn holding(speech: Vec<Range<usize>>, apart: &[Range<usize>], n: usize) -> Plan {
        let plan = Plan::new(speech, n, true);
        let mut kept: Vec<Range<usize>> = plan.pieces.into_iter().map(|(r, _)| r).collect();
        let mut muted = Vec::new();
        for a in apart {
            let Some(next) = kept.iter().position(|r| r.start >= a.end) else {
                continue;
            };
            if next == 0 {
                continue;
            }
            let start = a.start.max(kept[next - 1].end);
            let end = (start + HELD_MAX)
                .min(kept[next].start)
                .min(a.end.max(start));
            if end > start {
                kept.insert(next, start..end);
                muted.push(start..end);
            }
        }
        Plan {
            pieces: Self::packed_at(kept),
            speech: plan.speech,
            muted,
        }
    }

    /// A plan from the energy gate, when there is no Silero model: speech or not for the
    /// whole note, and the span from the first to the last sound decoded (the whole note
    /// with `cut` false). The gate cannot say where words are, so no segment is dropped.
    pub fn from_gate(samples: &[f32], cut: bool) -> Plan {
        let n = samples.len();
        let span = if cut { speech_span(samples) } else { 0..n };
        Plan {
            pieces: vec![(span, 0)],
            speech: if has_speech(samples) {
                std::iter::once(0..n).collect()
            } else {
                Vec::new()
            },
            muted: Vec::new(),
        }
    }

    /// Whether any speech was found.
    pub fn has_speech(&self) -> bool {
        !self.speech.is_empty()
    }

    /// Seconds of speech found.
    pub fn speech_seconds(&self) -> f64 {
        self.speech.iter().map(|r| r.len()).sum::<usize>() as f64 / 16_000.0
    }

    /// Samples in the packed audio.
    pub fn packed_len(&self) -> usize {
        self.pieces.iter().map(|(r, _)| r.len()).sum()
    }

    /// The packed audio.
    pub fn audio(&self, samples: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.packed_len());
        for (r, _) in &self.pieces {
            if self.muted.contains(r) {
                out.resize(out.len() + r.len(), 0.0);
            } else {
                out.extend_from_slice(&samples[r.clone()]);
            }
        }
        out
    }

    /// A time in the packed audio (seconds) as a time in the note. A start (`end` false)
    /// that falls on the seam between two pieces belongs to the later one, an end to the
    /// earlier one.
    pub fn to_note(&self, t: f64, end: bool) -> f64 {
        let s = (t.max(0.0) * 16_000.0).round() as usize;
        let piece = self
            .pieces
            .iter()
            .find(|(r, at)| {
                if end {
                    s > *at && s <= at + r.len()
                } else {
                    s >= *at && s < at + r.len()
                }
            })
            .or(if end {
                self.pieces.last()
            } else {
                self.pieces.first()
            });
        match piece {
            Some((r, at)) => {
                let inside = s.saturating_sub(*at).min(r.len());
                (r.start + inside) as f64 / 16_000.0
            }
            None => t,
        }
    }

    /// The speech found (unpadded), in the note's samples.
    pub fn speech(&self) -> &[Range<usize>] {
        &self.speech
    }

    /// Whether a span of the note (seconds) touches the speech, with [`PAD`] of slack.
    pub fn touches_speech(&self, start: f64, end: f64) -> bool {
        let (a, b) = ((start * 16_000.0) as usize, (end * 16_000.0) as usize);
        self.speech
            .iter()
            .any(|r| a < r.end + PAD && b + PAD > r.start)
    }
}

/// Loud frames must reach about -50 dBFS RMS...
const MIN_PEAK_RMS: f32 = 0.003;
/// ...and stand 8 dB above the quiet frames.
const MIN_DYNAMIC_RATIO: f32 = 2.5;

/// Silence kept before the first and after the last sound (0.5 s).
const SPAN_PAD: usize = 8_000;
/// A frame is sound when it is this far above the noise floor (about 6 dB)...
const SOUND_OVER_FLOOR: f32 = 2.0;
/// ...or within 30 dB of the loud frames.
const SOUND_UNDER_LOUD: f32 = 0.03;

pub(super) fn frame_rms(samples: &[f32]) -> Vec<f32> {
    samples
        .chunks(FRAME)
        .filter(|c| c.len() >= FRAME / 2)
        .map(|c| (c.iter().map(|x| x * x).sum::<f32>() / c.len() as f32).sqrt())
        .collect()
}

/// The 10th and 95th percentile frame levels: the noise floor and the loud parts.
fn levels(rms: &[f32]) -> Option<(f32, f32)> {
    let mut sorted = rms.to_vec();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    (n > 0).then(|| (sorted[n / 10], sorted[(n * 95 / 100).min(n - 1)]))
}

pub fn has_speech(samples: &[f32]) -> bool {
    let Some((quiet, loud)) = levels(&frame_rms(samples)) else {
        return false;
    };
    loud >= MIN_PEAK_RMS && loud >= MIN_DYNAMIC_RATIO * quiet.max(1e-5)
}

/// The sample range from just before the first sound to just after the last one. The whole
/// clip when there is nothing to trim.
pub fn speech_span(samples: &[f32]) -> std::ops::Range<usize> {
    let rms = frame_rms(samples);
    let Some((quiet, loud)) = levels(&rms) else {
        return 0..samples.len();
    };
    let threshold = (quiet.max(1e-5) * SOUND_OVER_FLOOR).min(loud * SOUND_UNDER_LOUD);
    let first = rms.iter().position(|&r| r > threshold);
    let last = rms.iter().rposition(|&r| r > threshold);
    match (first, last) {
        (Some(a), Some(b)) => {
            let start = (a * FRAME).saturating_sub(SPAN_PAD);
            let end = ((b + 1) * FRAME + SPAN_PAD).min(samples.len());
            start..end
        }
        _ => 0..samples.len(),
    }
}

/// Reproducible white noise of amplitude `amp`, for the tests of this module and of
/// [`super::speaker`].
#[cfg(test)]
pub(super) fn noise(n: usize, amp: f32) -> Vec<f32> {
    let mut x = 0x2545_f491_u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_become_ranges_with_hysteresis() {
        let mut p = vec![0.0; 100];
        p[10..20].fill(0.9);
        p[20..25].fill(0.4); // under ON but over OFF: speech goes on
        p[40..42].fill(0.9); // 64 ms: a click, dropped
        p[60..70].fill(0.6);
        p[97..].fill(0.8); // open at the end
        assert_eq!(
            speech_ranges(&p, 100 * WINDOW - 100),
            vec![10 * WINDOW..25 * WINDOW, 60 * WINDOW..70 * WINDOW,],
            "the last 3 windows are too short"
        );
        assert!(speech_ranges(&[0.3; 50], 50 * WINDOW).is_empty());
    }

    #[test]
    fn plan_cuts_long_pauses_and_maps_times_back() {
        // Speech at 2-4 s and 10-11 s of a 15 s note; a 0.3 s gap at 11.0-11.3 s joins.
        let sp = vec![32_000..64_000, 160_000..176_000, 180_800..184_000];
        let plan = Plan::new(sp, 240_000, true);
        assert_eq!(
            plan.pieces,
            vec![(25_600..70_400, 0), (153_600..190_400, 44_800)]
        );
        let audio: Vec<f32> = (0..240_000).map(|i| i as f32).collect();
        let packed = plan.audio(&audio);
        assert_eq!(packed.len(), 44_800 + 36_800);
        assert_eq!(packed[44_800], 153_600.0);
        // 0 s packed is 1.6 s in the note; 2.8 s packed is the seam.
        assert_eq!(plan.to_note(0.0, false), 1.6);
        assert_eq!(plan.to_note(2.8, false), 9.6);
        assert_eq!(plan.to_note(2.8, true), 4.4);
        assert_eq!(plan.to_note(99.0, true), 11.9);
        assert!(plan.touches_speech(3.0, 3.5));
        assert!(plan.touches_speech(4.2, 4.5), "within the margin");
        assert!(!plan.touches_speech(6.0, 8.0), "the cut pause");
        assert!((plan.speech_seconds() - 3.2).abs() < 1e-9);

        let whole = Plan::new(std::iter::once(32_000..64_000).collect(), 240_000, false);
        assert_eq!(whole.pieces, vec![(0..240_000, 0)]);
        assert_eq!(whole.to_note(7.5, false), 7.5);
        assert!(!Plan::new(vec![], 1000, true).has_speech());
    }

    #[test]
    fn a_range_decoded_apart_between_pieces_is_held_by_silence() {
        // Speech at 1-3 s and 8-10 s; a range decoded apart at 4-6.5 s, one before the
        // first piece (not between two: nothing to hold) and one inside a piece.
        let speech = vec![16_000..48_000, 128_000..160_000];
        let apart = [64_000..104_000, 0..8_000, 40_000..44_000];
        let plan = Plan::holding(speech.clone(), &apart, 200_000);
        let held = 64_000..80_000; // at most a second of it
        assert_eq!(
            plan.pieces,
            vec![
                (9_600..54_400, 0),
                (held.clone(), 44_800),
                (121_600..166_400, 60_800)
            ]
        );
        assert_eq!(plan.speech(), &speech[..], "the held silence is not speech");
        let audio: Vec<f32> = (0..200_000).map(|i| i as f32 + 1.0).collect();
        let packed = plan.audio(&audio);
        assert_eq!(packed.len(), 44_800 + 16_000 + 44_800);
        assert!(packed[44_800..60_800].iter().all(|&x| x == 0.0));
        assert_eq!(packed[60_800], 121_601.0);
        assert_eq!(
            plan.to_note(3.0, false),
            4.2,
            "times inside the silence map to its place"
        );
    }

    #[test]
    fn silence_and_steady_noise_are_not_speech() {
        assert!(!has_speech(&vec![0.0; 160_000]));
        assert!(!has_speech(&noise(160_000, 0.01)));
        assert!(!has_speech(&noise(160_000, 0.2)));
        assert!(!has_speech(&[]));
    }

    #[test]
    fn span_trims_silence_around_sound_and_keeps_a_margin() {
        let mut s = noise(16_000 * 10, 0.0005);
        // a tone from 3.0 s to 6.5 s, with a quiet onset
        for (i, v) in s.iter_mut().enumerate().take(104_000).skip(48_000) {
            let env = ((i - 48_000) as f32 / 4_000.0).min(1.0);
            *v += (i as f32 * 0.05).sin() * 0.3 * env;
        }
        let span = speech_span(&s);
        assert!(
            span.start <= 48_000 - 7_000 && span.start >= 48_000 - 9_000,
            "{span:?}"
        );
        assert!(
            span.end >= 104_000 + 7_000 && span.end <= 104_000 + 9_000,
            "{span:?}"
        );
        // nothing to trim: the whole clip
        let loud = noise(16_000, 0.2);
        assert_eq!(speech_span(&loud), 0..16_000);
        assert_eq!(speech_span(&[]), 0..0);
    }

    #[test]
    fn bursts_over_quiet_are_speech() {
        let mut s = noise(48_000, 0.001);
        for (i, v) in s.iter_mut().enumerate() {
            if (i / 4000) % 2 == 0 {
                *v += (i as f32 * 0.05).sin() * 0.3;
            }
        }
        assert!(has_speech(&s));
    }

    #[test]
    fn ranges_found_as_the_probabilities_arrive_are_the_same_and_long_ones_split() {
        let mut x = 7u32;
        let p: Vec<f32> = (0..5000)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Runs of speech and pause, with noise near the thresholds.
                let base = if (i / 60) % 3 == 0 { 0.1 } else { 0.7 };
                base + (x % 100) as f32 / 250.0 - 0.2
            })
            .collect();
        let n = 5000 * WINDOW - 77;
        let mut r = Ranges::new(None);
        for part in p.chunks(333) {
            r.push(part);
        }
        let whole = speech_ranges(&p, n);
        assert!(whole.len() > 10);
        assert_eq!(r.finish(n), whole);
        // Split: the same speech, in ranges no longer than the limit, none dropped.
        let mut r = Ranges::new(Some(50));
        r.push(&[0.9; 120]);
        r.push(&[0.1; 10]);
        assert_eq!(
            r.closed(),
            &[
                0..50 * WINDOW,
                50 * WINDOW..100 * WINDOW,
                100 * WINDOW..120 * WINDOW
            ]
        );
        assert_eq!(r.open_since(), None);
    }
}
