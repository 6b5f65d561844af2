//! The note's level, and the gain that makes a quiet note decode like a loud one.
//!
//! Whisper's log-mel input is not level-invariant: a note recorded far from the phone
//! (speech peaking at -46 dBFS) came back empty, and the same note raised by 25 dB gave
//! text. So every note is measured and, when quiet, raised before the voice-activity
//! detector and the model see it. The measure is relative to the note itself: the loud
//! frames (speech, when there is any) and the quiet ones (its own noise floor). The gain is
//! capped three ways: at [`MAX_GAIN_DB`], so that the peaks stay under [`PEAK_CEILING_DBFS`]
//! (the 98th percentile of frame peaks, so that one click of the record button does not
//! hold a whole note down), and so that the noise floor is not lifted above [`FLOOR_CEILING_DBFS`] (pure hiss stays
//! quiet hiss). Loud notes are never turned down.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// 30 ms frames at 16 kHz.
const FRAME: usize = 480;
/// Where the loud frames of a note are brought: ordinary speech RMS in a phone recording.
pub const TARGET_SPEECH_DBFS: f32 = -20.0;
/// The most a note is raised.
pub const MAX_GAIN_DB: f32 = 40.0;
/// No sample is raised above this.
pub const PEAK_CEILING_DBFS: f32 = -1.0;
/// The noise floor is not raised above this.
pub const FLOOR_CEILING_DBFS: f32 = -45.0;
/// Speech quieter than this (loud frames, before any gain) is `quiet_audio` for review.
pub const QUIET_BELOW_DBFS: f32 = -40.0;
/// What digital silence measures as.
const SILENCE_DBFS: f32 = -120.0;

/// A note's level, in dBFS, and the gain applied to it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// The largest sample.
    pub peak_dbfs: f32,
    /// The 95th percentile of 30 ms frame RMS: the loud parts (speech, if any).
    pub speech_dbfs: f32,
    /// The 10th percentile of frame RMS: the note's own noise floor.
    pub floor_dbfs: f32,
    /// The gain [`Level::apply`] applies.
    pub gain_db: f32,
}

fn dbfs(x: f32) -> f32 {
    if x <= 0.0 {
        SILENCE_DBFS
    } else {
        (20.0 * x.log10()).max(SILENCE_DBFS)
    }
}

impl Level {
    /// Measure 16 kHz mono samples and choose the gain.
    pub fn measure(samples: &[f32]) -> Level {
        let mut m = Meter::default();
        m.push(samples);
        m.finish()
    }

    /// The samples with the gain applied (borrowed when there is none to apply).
    pub fn apply<'a>(&self, samples: &'a [f32]) -> Cow<'a, [f32]> {
        match self.factor() {
            None => Cow::Borrowed(samples),
            Some(g) => Cow::Owned(samples.iter().map(|x| x * g).collect()),
        }
    }

    /// What [`Level::apply`] multiplies the samples by; `None` when it leaves them alone.
    pub fn factor(&self) -> Option<f32> {
        (self.gain_db >= 0.5).then(|| 10f32.powf(self.gain_db / 20.0))
    }

    /// Whether the note holds a quiet sound worth telling the operator about: its loud
    /// frames are under [`QUIET_BELOW_DBFS`] but stand at least 10 dB over its floor
    /// (steady faint hiss and digital silence are not a quiet recording of anything).
    pub fn is_quiet(&self) -> bool {
        self.speech_dbfs < QUIET_BELOW_DBFS && self.speech_dbfs - self.floor_dbfs >= 10.0
    }
}

/// A [`Level`] measured as the samples stream past: two numbers kept per 30 ms frame
/// (1 MB for an hour), never the samples.
#[derive(Debug, Default)]
pub struct Meter {
    rms: Vec<f32>,
    peaks: Vec<f32>,
    peak: f32,
    /// The start of a frame not yet complete.
    partial: Vec<f32>,
}

impl Meter {
    /// Take the next samples.
    pub fn push(&mut self, mut samples: &[f32]) {
        self.peak = samples.iter().fold(self.peak, |m, x| m.max(x.abs()));
        if !self.partial.is_empty() {
            let take = (FRAME - self.partial.len()).min(samples.len());
            self.partial.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.partial.len() < FRAME {
                return;
            }
            let frame = std::mem::take(&mut self.partial);
            self.frame(&frame);
        }
        let mut frames = samples.chunks_exact(FRAME);
        for f in frames.by_ref() {
            self.frame(f);
        }
        self.partial.extend_from_slice(frames.remainder());
    }

    fn frame(&mut self, c: &[f32]) {
        self.rms
            .push((c.iter().map(|x| x * x).sum::<f32>() / c.len() as f32).sqrt());
        self.peaks
            .push(c.iter().fold(0.0f32, |m, x| m.max(x.abs())));
    }

    /// The level of everything pushed, and the gain to apply. (A last frame shorter than
    /// half a frame is not counted.)
    pub fn finish(mut self) -> Level {
        if self.partial.len() >= FRAME / 2 {
            let frame = std::mem::take(&mut self.partial);
            self.frame(&frame);
        }
        let (mut rms, mut peaks) = (self.rms, self.peaks);
        rms.sort_by(f32::total_cmp);
        peaks.sort_by(f32::total_cmp);
        let pick = |v: &[f32], q: usize| {
            v.get((v.len() * q / 100).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        let (peak_dbfs, speech_dbfs, floor_dbfs) =
            (dbfs(self.peak), dbfs(pick(&rms, 95)), dbfs(pick(&rms, 10)));
        let peaks_dbfs = dbfs(pick(&peaks, 98));
        let gain_db = if peak_dbfs <= SILENCE_DBFS {
            0.0
        } else {
            (TARGET_SPEECH_DBFS - speech_dbfs)
                .min(MAX_GAIN_DB)
                .min(PEAK_CEILING_DBFS - peaks_dbfs)
                .min(FLOOR_CEILING_DBFS - floor_dbfs)
                .max(0.0)
        };
        Level {
            peak_dbfs,
            speech_dbfs,
            floor_dbfs,
            gain_db,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bursts of a tone (speech-like: loud, then quiet) over faint noise.
    fn note(speech_amp: f32, noise_amp: f32) -> Vec<f32> {
        let mut x = 0x1234_5678_u32;
        (0..48_000)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let noise = (x as f32 / u32::MAX as f32 * 2.0 - 1.0) * noise_amp;
                let on = (i / 4000) % 2 == 0;
                noise
                    + if on {
                        (i as f32 * 0.07).sin() * speech_amp
                    } else {
                        0.0
                    }
            })
            .collect()
    }

    #[test]
    fn a_quiet_note_is_raised_to_speech_level() {
        // Tone peak at -50 dBFS (RMS -53), noise at -90 dBFS.
        let quiet = note(0.00316, 0.00003);
        let l = Level::measure(&quiet);
        assert!((l.speech_dbfs + 53.0).abs() < 1.0, "{l:?}");
        assert!(l.is_quiet());
        assert!((l.gain_db - 33.0).abs() < 1.0, "raised to -20 dBFS: {l:?}");
        let raised = Level::measure(&l.apply(&quiet));
        assert!(
            (raised.speech_dbfs - TARGET_SPEECH_DBFS).abs() < 1.0,
            "{raised:?}"
        );
    }

    #[test]
    fn loud_notes_silence_and_hiss_are_left_alone() {
        let loud = note(0.5, 0.001);
        let l = Level::measure(&loud);
        assert_eq!(l.gain_db, 0.0, "{l:?}");
        assert!(!l.is_quiet());
        assert!(matches!(l.apply(&loud), Cow::Borrowed(_)));

        let silence = vec![0.0; 16_000];
        let l = Level::measure(&silence);
        assert_eq!((l.gain_db, l.peak_dbfs), (0.0, SILENCE_DBFS));
        assert!(!l.is_quiet(), "digital silence is not a quiet recording");
        assert_eq!(Level::measure(&[]).gain_db, 0.0);

        // Steady hiss at -60 dBFS: its floor may rise only to -45 dBFS.
        let hiss = note(0.0, 0.0017);
        let l = Level::measure(&hiss);
        assert!(
            l.floor_dbfs + l.gain_db <= FLOOR_CEILING_DBFS + 0.01,
            "{l:?}"
        );
    }

    #[test]
    fn peaks_are_not_pushed_into_clipping_but_one_click_does_not_count() {
        // Quiet speech with one loud click (the record button): still raised.
        let mut s = note(0.003, 0.00003);
        s[100] = 0.5;
        let l = Level::measure(&s);
        assert!(l.gain_db > 30.0, "{l:?}");
        // Short loud bursts in quiet speech hold the gain down to the ceiling.
        let mut s = note(0.003, 0.00003);
        for i in (0..48_000).step_by(4_800) {
            s[i] = 0.5;
        }
        let l = Level::measure(&s);
        assert!(l.peak_dbfs + l.gain_db <= PEAK_CEILING_DBFS + 0.01, "{l:?}");
    }

    #[test]
    fn measured_in_a_stream_or_whole_the_level_is_the_same() {
        let mut samples = note(0.01, 0.0005);
        samples.extend(note(0.02, 0.0005));
        samples.truncate(samples.len() - 250);
        let mut m = Meter::default();
        let mut rest = &samples[..];
        for step in [1usize, 479, 480, 481, 7000, 3].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let k = (*step).min(rest.len());
            m.push(&rest[..k]);
            rest = &rest[k..];
        }
        assert_eq!(m.finish(), Level::measure(&samples));
        assert!(Level::measure(&samples).gain_db > 10.0);
    }
}
