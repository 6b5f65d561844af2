//! Header checks before any decoder allocates: a sample rate and channel count a real
//! recording can have, and every RIFF/WAVE `fmt ` chunk in the first MiB.

use super::{resample, DecodeError};

/// More channels than any real recording has (7.1.4 is 12; WAVE_FORMAT_EXTENSIBLE names 18):
/// a header claiming more is damaged, and decoders size their buffers by it.
pub const MAX_CHANNELS: usize = 32;

/// Refuse a header's sample rate or channel count before a decoder or resampler allocates
/// anything for it.
pub(super) fn check_format(container: &str, rate: u32, channels: usize) -> Result<(), DecodeError> {
    let bad = |detail: String| DecodeError::Corrupt {
        detail: format!("{container}: {detail}"),
        offset: None,
    };
    if rate != 0 && !(resample::MIN_RATE..=resample::MAX_RATE).contains(&rate) {
        return Err(bad(format!(
            "the header's sample rate of {rate} Hz is outside {}..{} Hz",
            resample::MIN_RATE,
            resample::MAX_RATE
        )));
    }
    if channels > MAX_CHANNELS {
        return Err(bad(format!(
            "the header claims {channels} channels (at most {MAX_CHANNELS})"
        )));
    }
    Ok(())
}

/// Check every RIFF/WAVE header in the first MiB (symphonia's probe looks past leading
/// junk, so a file sniffed as something else can still reach its WAV reader) and its `fmt `
/// chunk before symphonia reads it: channels 1..=[`MAX_CHANNELS`],
/// a sample rate [`check_format`] accepts, and at most 64 bits per sample. (A missing or
/// short chunk is left to the demuxer, which reports it.)
pub(super) fn check_wav_fmt(d: &[u8]) -> Result<(), DecodeError> {
    let head = &d[..d.len().min(1 << 20)];
    let mut from = 0;
    while let Some(i) = head[from..].windows(4).position(|w| w == b"RIFF") {
        let at = from + i;
        if head.get(at + 8..at + 12) == Some(b"WAVE") {
            check_wav_fmt_at(&d[at..])?;
        }
        from = at + 4;
    }
    Ok(())
}

/// [`check_wav_fmt`] for a RIFF/WAVE header at the start of `d`.
fn check_wav_fmt_at(d: &[u8]) -> Result<(), DecodeError> {
    let bad = |detail: String| DecodeError::Corrupt {
        detail: format!("wav: {detail}"),
        offset: None,
    };
    let mut at = 12;
    while at + 8 <= d.len() {
        let id = &d[at..at + 4];
        let size = u32::from_le_bytes([d[at + 4], d[at + 5], d[at + 6], d[at + 7]]) as usize;
        if id == b"fmt " {
            let Some(f) = d.get(at + 8..at + 24) else {
                return Ok(());
            };
            let channels = u16::from_le_bytes([f[2], f[3]]) as usize;
            let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
            let bits = u16::from_le_bytes([f[14], f[15]]);
            if channels == 0 {
                return Err(bad("the header claims 0 channels".into()));
            }
            if bits > 64 {
                return Err(bad(format!("the header claims {bits} bits per sample")));
            }
            return check_format("wav", rate, channels);
        }
        at = at.saturating_add(8).saturating_add(size + (size & 1));
    }
    Ok(())
}
