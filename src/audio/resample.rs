//! Sample-rate conversion to the 16 kHz Whisper expects, with rubato's FFT resampler.
//!
//! `process_all` resamples a whole clip and trims the resampler's own delay, so the output is
//! time-aligned with the input (a single `process()` call would shift it).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// The rate Whisper models are trained on.
pub const WHISPER_RATE: u32 = 16_000;

/// Resample mono `samples` from `rate` to 16 kHz. Returns the input unchanged at 16 kHz.
pub fn to_16k(samples: Vec<f32>, rate: u32) -> Result<Vec<f32>, String> {
    if rate == WHISPER_RATE || samples.is_empty() {
        return Ok(samples);
    }
    if rate == 0 {
        return Err("sample rate 0".into());
    }
    let mut rs = Fft::<f32>::new(
        rate as usize,
        WHISPER_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| format!("resampler setup failed for {rate} Hz: {e}"))?;
    let input = InterleavedSlice::new(&samples[..], 1, samples.len()).map_err(|e| e.to_string())?;
    let out = rs
        .process_all(&input, samples.len(), None)
        .map_err(|e| format!("resampling from {rate} Hz failed: {e}"))?;
    Ok(out.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_length_and_phase() {
        let rate = 48_000;
        let tone: Vec<f32> = (0..rate)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
            .collect();
        let out = to_16k(tone, rate as u32).unwrap();
        assert_eq!(out.len(), 16_000);
        // aligned: sample i at 16 kHz is sin(440·2π·i/16000)
        let err: f32 = (1000..15000)
            .map(|i| (out[i] - (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin()).abs())
            .fold(0.0, f32::max);
        assert!(err < 0.01, "max error {err}");
    }
}
