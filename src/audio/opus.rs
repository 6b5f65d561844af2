//! Opus packets to mono samples, through libopus (bundled by `opusic-sys`).
//!
//! Decoding goes straight to one channel (libopus downmixes a stereo stream itself), and the
//! pre-skip is read here from the container's header, whatever its layout: `OpusHead` (Ogg,
//! Matroska) or MP4's `dOps`. The caller trims it, so trimming spans packets correctly.

use std::ffi::c_int;

/// Opus always decodes at 48 kHz here.
pub const OPUS_RATE: u32 = 48_000;
/// The longest Opus packet is 120 ms.
const MAX_FRAME: usize = 48 * 120;

pub struct OpusMono {
    dec: *mut opusic_sys::OpusDecoder,
    /// Samples (at 48 kHz) to drop from the start.
    pub pre_skip: usize,
    /// Channels in the stream (before our downmix).
    pub channels: usize,
    buf: Vec<f32>,
}

// The decoder state is owned exclusively by this value and only used through `&mut self`.
unsafe impl Send for OpusMono {}

impl OpusMono {
    /// `extra` is the codec's extra data: an `OpusHead` packet or an MP4 `dOps` payload.
    pub fn new(extra: &[u8], container: &str) -> Result<Self, String> {
        let (channels, pre_skip, family) = if extra.starts_with(b"OpusHead") && extra.len() >= 19 {
            (
                extra[9] as usize,
                u16::from_le_bytes([extra[10], extra[11]]) as usize,
                extra[18],
            )
        } else if extra.len() >= 11 {
            // dOps: version, channel count, pre-skip (big-endian), rate, gain, mapping family
            (
                extra[1] as usize,
                u16::from_be_bytes([extra[2], extra[3]]) as usize,
                extra[10],
            )
        } else {
            return Err(format!("{container}/opus: missing or short Opus header"));
        };
        if family != 0 && channels > 2 {
            return Err(format!(
                "{container}/opus: multistream Opus ({channels} channels) is not supported"
            ));
        }
        let mut err: c_int = 0;
        // SAFETY: plain constructor call; the result is checked before use.
        let dec = unsafe { opusic_sys::opus_decoder_create(OPUS_RATE as i32, 1, &mut err) };
        if err != opusic_sys::OPUS_OK || dec.is_null() {
            return Err(format!(
                "{container}/opus: libopus could not create a decoder (error {err})"
            ));
        }
        Ok(OpusMono {
            dec,
            pre_skip,
            channels: channels.max(1),
            buf: vec![0.0; MAX_FRAME],
        })
    }

    /// Decode one packet and append its samples to `out`.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
        if packet.is_empty() {
            return Err("empty Opus packet".into());
        }
        let len = c_int::try_from(packet.len()).map_err(|_| "oversized Opus packet".to_string())?;
        // SAFETY: `self.dec` is a live decoder; `packet` and `self.buf` are valid for the
        // lengths passed (`buf` holds MAX_FRAME samples for one channel).
        let n = unsafe {
            opusic_sys::opus_decode_float(
                self.dec,
                packet.as_ptr(),
                len,
                self.buf.as_mut_ptr(),
                MAX_FRAME as c_int,
                0,
            )
        };
        if n < 0 {
            return Err(format!("libopus could not decode a packet (error {n})"));
        }
        out.extend_from_slice(&self.buf[..n as usize]);
        Ok(())
    }
}

impl Drop for OpusMono {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create and destroyed exactly once.
        unsafe { opusic_sys::opus_decoder_destroy(self.dec) }
    }
}
