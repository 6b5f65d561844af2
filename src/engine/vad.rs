//! A cheap energy gate: does a clip contain anything that could be speech?
//!
//! Whisper invents text ("Thank you.", subtitle credits) for silence and steady noise. Speech
//! is loud in bursts and quiet between words; silence is quiet everywhere and steady noise is
//! equally loud everywhere. So a clip counts as speech only when its loud frames are both
//! loud in absolute terms and well above its quiet frames.

/// 30 ms frames at 16 kHz.
const FRAME: usize = 480;
/// Loud frames must reach about -50 dBFS RMS...
const MIN_PEAK_RMS: f32 = 0.003;
/// ...and stand 8 dB above the quiet frames.
const MIN_DYNAMIC_RATIO: f32 = 2.5;

pub fn has_speech(samples: &[f32]) -> bool {
    let mut rms: Vec<f32> = samples
        .chunks(FRAME)
        .filter(|c| c.len() >= FRAME / 2)
        .map(|c| (c.iter().map(|x| x * x).sum::<f32>() / c.len() as f32).sqrt())
        .collect();
    if rms.is_empty() {
        return false;
    }
    rms.sort_by(f32::total_cmp);
    let n = rms.len();
    let quiet = rms[n / 10];
    let loud = rms[(n * 95 / 100).min(n - 1)];
    loud >= MIN_PEAK_RMS && loud >= MIN_DYNAMIC_RATIO * quiet.max(1e-5)
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
