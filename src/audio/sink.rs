//! Where decoded samples go: container trimming (Opus pre-skip, MP4 edit lists), the
//! downmix to mono, and the streaming resampler.

use super::{mp4, resample};

/// Where decoded mono samples go, packet by packet: drops what the container says to drop
/// at the start (Opus pre-skip, MP4 edit-list priming) and keeps only what it says to keep
/// at the end (MP4 edit duration), then resamples to 16 kHz on the fly.
pub(super) struct Sink {
    /// Source samples still to drop from the start.
    pub(super) skip: usize,
    /// Source samples still to keep after the skip (`None`: all).
    pub(super) keep: Option<usize>,
    /// MP4 edit list, applied once the rate is known.
    pub(super) edit: Option<mp4::Edit>,
    /// Source samples accepted after trimming.
    pub(super) accepted: usize,
    pub(super) stream: Option<resample::Stream>,
}

impl Sink {
    pub(super) fn push(&mut self, mut samples: &[f32], rate: u32) -> Result<(), String> {
        if self.stream.is_none() {
            let stream = resample::Stream::new(rate)?;
            if let Some(e) = self.edit.take().filter(|e| e.media_timescale > 0) {
                let scale = rate as f64 / e.media_timescale as f64;
                self.skip += (e.skip as f64 * scale).round() as usize;
                self.keep = e.duration.map(|d| (d as f64 * scale).round() as usize);
            }
            self.stream = Some(stream);
        }
        let skip = self.skip.min(samples.len());
        self.skip -= skip;
        samples = &samples[skip..];
        if let Some(keep) = self.keep.as_mut() {
            let n = (*keep).min(samples.len());
            *keep -= n;
            samples = &samples[..n];
        }
        self.accepted += samples.len();
        match self.stream.as_mut() {
            Some(s) => s.push(samples),
            None => Ok(()),
        }
    }

    pub(super) fn finish(self) -> Result<Vec<f32>, String> {
        match self.stream {
            Some(s) => s.finish(),
            None => Ok(Vec::new()),
        }
    }
}

/// Average `channels` interleaved channels into mono (never clips: it is a mean).
pub(super) fn downmix_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels <= 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let inv = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|f| f.iter().sum::<f32>() * inv),
    );
}
