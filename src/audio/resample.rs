//! Sample-rate conversion to the 16 kHz Whisper expects, with rubato's FFT resampler.
//!
//! [`Stream`] takes samples as a decoder produces them, in pieces of any size, and keeps
//! only the 16 kHz output plus one resampler chunk of input: a ten-minute 48 kHz file is
//! never held at its source rate. [`Stream::finish`] trims the resampler's own delay and
//! pads the tail, so the output is time-aligned with the input and exactly
//! `ceil(len × 16000 / rate)` samples long.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

/// The rate Whisper models are trained on.
pub const WHISPER_RATE: u32 = 16_000;

/// The lowest and highest source rates accepted. A header can claim any rate up to
/// 4294967295 Hz, and the resampler's tables grow with it (10 MHz: over 1 GB), so the rate is
/// checked before anything is allocated for it. 384 kHz is the highest rate audio hardware
/// records at; below 1 kHz nothing intelligible is left.
pub const MIN_RATE: u32 = 1_000;
pub const MAX_RATE: u32 = 384_000;

/// Input frames per resampler call.
const CHUNK: usize = 1024;

/// Resample mono `samples` from `rate` to 16 kHz in one go.
pub fn to_16k(samples: Vec<f32>, rate: u32) -> Result<Vec<f32>, String> {
    if rate == WHISPER_RATE || samples.is_empty() {
        return Ok(samples);
    }
    let mut s = Stream::new(rate)?;
    s.push(&samples)?;
    s.finish()
}

/// Incremental mono resampler to 16 kHz.
pub struct Stream {
    /// `None` when the input is already 16 kHz.
    rs: Option<Fft<f32>>,
    rate: u32,
    /// Input not yet resampled (less than one chunk after each `push`).
    pending: Vec<f32>,
    /// Scratch output of one resampler call.
    scratch: Vec<f32>,
    out: Vec<f32>,
    /// Output frames already handed out by [`Stream::drain`].
    taken: usize,
    /// Input frames accepted so far.
    fed: usize,
    /// Output frames of resampler delay still to drop.
    delay: usize,
}

impl Stream {
    pub fn new(rate: u32) -> Result<Self, String> {
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(format!(
                "the header's sample rate of {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz"
            ));
        }
        let rs = if rate == WHISPER_RATE {
            None
        } else {
            Some(
                Fft::<f32>::new(
                    rate as usize,
                    WHISPER_RATE as usize,
                    CHUNK,
                    1,
                    FixedSync::Input,
                )
                .map_err(|e| format!("resampler setup failed for {rate} Hz: {e}"))?,
            )
        };
        let (scratch, delay) = match &rs {
            Some(r) => (vec![0.0; r.output_frames_max()], r.output_delay()),
            None => (Vec::new(), 0),
        };
        Ok(Stream {
            rs,
            rate,
            pending: Vec::with_capacity(2 * CHUNK),
            scratch,
            out: Vec::new(),
            taken: 0,
            fed: 0,
            delay,
        })
    }

    /// Add samples; resamples every complete chunk.
    pub fn push(&mut self, samples: &[f32]) -> Result<(), String> {
        self.fed += samples.len();
        if self.rs.is_none() {
            self.out.extend_from_slice(samples);
            return Ok(());
        }
        self.pending.extend_from_slice(samples);
        let mut used = 0;
        while self.pending.len() - used >= CHUNK {
            self.run(used, None)?;
            used += CHUNK;
        }
        self.pending.drain(..used);
        Ok(())
    }

    /// One resampler call on `pending[offset..]`; `partial` marks the last, short chunk
    /// (`Some(0)`: no input left, only the resampler's tail).
    fn run(&mut self, offset: usize, partial: Option<usize>) -> Result<(), String> {
        let Some(rs) = self.rs.as_mut() else {
            return Ok(());
        };
        let input = InterleavedSlice::new(&self.pending[..], 1, self.pending.len())
            .map_err(|e| e.to_string())?;
        let n = self.scratch.len();
        let mut output =
            InterleavedSlice::new_mut(&mut self.scratch[..], 1, n).map_err(|e| e.to_string())?;
        let idx = Indexing {
            input_offset: offset,
            output_offset: 0,
            active_channels_mask: None,
            partial_len: partial,
        };
        let (_, produced) = rs
            .process_into_buffer(&input, &mut output, Some(&idx))
            .map_err(|e| format!("resampling from {} Hz failed: {e}", self.rate))?;
        let drop = self.delay.min(produced);
        self.delay -= drop;
        self.out.extend_from_slice(&self.scratch[drop..produced]);
        Ok(())
    }

    /// Hand the 16 kHz output made so far to `f`, and forget it: a caller that drains
    /// after every [`Stream::push`] never holds more than one chunk of output.
    pub fn drain(&mut self, f: &mut dyn FnMut(&[f32])) {
        if !self.out.is_empty() {
            f(&self.out);
            self.taken += self.out.len();
            self.out.clear();
        }
    }

    /// Flush the tail, handing the rest of the output to `f`.
    pub fn finish_into(mut self, f: &mut dyn FnMut(&[f32])) -> Result<(), String> {
        if self.rs.is_some() {
            let expected =
                (self.fed as u64 * WHISPER_RATE as u64).div_ceil(self.rate as u64) as usize;
            if !self.pending.is_empty() {
                let left = self.pending.len();
                self.run(0, Some(left))?;
                self.pending.clear();
            }
            while self.taken + self.out.len() < expected {
                self.run(0, Some(0))?;
            }
            self.out.truncate(expected.saturating_sub(self.taken));
        }
        self.drain(f);
        Ok(())
    }

    /// Flush the tail and return the 16 kHz samples not yet drained.
    pub fn finish(self) -> Result<Vec<f32>, String> {
        let mut all = Vec::new();
        self.finish_into(&mut |s| all.extend_from_slice(s))?;
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
            .collect()
    }

    #[test]
    fn keeps_length_and_phase() {
        let rate = 48_000;
        let out = to_16k(tone(rate, rate as usize), rate).unwrap();
        assert_eq!(out.len(), 16_000);
        // aligned: sample i at 16 kHz is sin(440·2π·i/16000)
        let err: f32 = (1000..15000)
            .map(|i| (out[i] - (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin()).abs())
            .fold(0.0, f32::max);
        assert!(err < 0.01, "max error {err}");
    }

    #[test]
    fn pieces_of_any_size_give_the_same_output() {
        for rate in [48_000, 44_100, 8_000] {
            let input = tone(rate, rate as usize * 3 / 2 + 17);
            let whole = to_16k(input.clone(), rate).unwrap();
            let mut s = Stream::new(rate).unwrap();
            let mut drained = Vec::new();
            let mut i = 0;
            for step in [1usize, 960, 5760, 3, 2048, 1023].iter().cycle() {
                if i >= input.len() {
                    break;
                }
                let end = (i + step).min(input.len());
                s.push(&input[i..end]).unwrap();
                // Draining as it goes changes nothing in the output.
                if step % 2 == 1 {
                    s.drain(&mut |d| drained.extend_from_slice(d));
                }
                i = end;
            }
            drained.extend(s.finish().unwrap());
            assert_eq!(drained, whole, "{rate} Hz");
            let expected = (input.len() as u64 * 16_000).div_ceil(rate as u64) as usize;
            assert_eq!(whole.len(), expected, "{rate} Hz");
        }
    }

    #[test]
    fn short_and_empty_inputs() {
        assert!(to_16k(vec![], 48_000).unwrap().is_empty());
        assert_eq!(to_16k(vec![0.5; 30], 48_000).unwrap().len(), 10);
        assert!(Stream::new(0).is_err());
    }

    /// The 40 KB WAV that killed the server claimed 4294967295 Hz (issue #13, item 1): such a
    /// rate is refused before anything is allocated for it, and the extremes that are
    /// accepted build their tables quickly.
    #[test]
    fn absurd_rates_are_refused_before_allocating() {
        for rate in [u32::MAX, 10_000_000, MAX_RATE + 1, MIN_RATE - 1, 1] {
            let e = Stream::new(rate).err().expect("refused");
            assert!(e.contains("outside"), "{rate}: {e}");
        }
        // The worst accepted rates: the highest, and one sharing no factor with 16 kHz.
        for rate in [MAX_RATE, 383_999, MIN_RATE, 44_101] {
            let out = to_16k(tone(rate, rate as usize / 10), rate).unwrap();
            assert_eq!(out.len(), 1600, "{rate}");
        }
    }
}
