//! A cheap energy gate: does a clip contain anything that could be speech, and where?
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

/// 30 ms frames at 16 kHz.
const FRAME: usize = 480;
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

fn frame_rms(samples: &[f32]) -> Vec<f32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, amp: f32) -> Vec<f32> {
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
}
