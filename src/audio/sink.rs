//! Where decoded samples go: container trimming (Opus pre-skip, MP4 edit lists), the
//! downmix to mono, and the streaming resampler.

use super::{mp4, resample};

/// Where decoded mono samples go, packet by packet: drops what the container says to drop
/// at the start (Opus pre-skip, MP4 edit-list priming) and keeps only what it says to keep
/// at the end (MP4 edit duration), then resamples to 16 kHz on the fly and hands the
/// output to `out` as it comes; `out` returns `false` to stop the decoding.
pub(super) struct Sink<'a> {
    /// Source samples still to drop from the start.
    pub(super) skip: usize,
    /// Source samples still to keep after the skip (`None`: all).
    pub(super) keep: Option<usize>,
    /// MP4 edit list, applied once the rate is known.
    pub(super) edit: Option<mp4::Edit>,
    /// Source samples accepted after trimming.
    pub(super) accepted: usize,
    pub(super) stream: Option<resample::Stream>,
    pub(super) out: &'a mut dyn FnMut(&[f32]) -> bool,
    /// 16 kHz samples handed to `out`.
    pub(super) emitted: usize,
    /// `out` asked to stop.
    pub(super) stopped: bool,
}

impl Sink<'_> {
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
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        stream.push(samples)?;
        let (out, emitted, stopped) = (&mut self.out, &mut self.emitted, &mut self.stopped);
        stream.drain(&mut |s| {
            *emitted += s.len();
            *stopped |= !out(s);
        });
        Ok(())
    }

    /// Flush the resampler; returns how many 16 kHz samples went out in all.
    pub(super) fn finish(self) -> Result<usize, String> {
        let (out, mut emitted) = (self.out, self.emitted);
        if let Some(s) = self.stream {
            if !self.stopped {
                s.finish_into(&mut |s| {
                    emitted += s.len();
                    out(s);
                })?;
            }
        }
        Ok(emitted)
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
