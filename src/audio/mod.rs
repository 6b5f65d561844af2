//! Decoding: any voice attachment's bytes in, 16 kHz mono `f32` samples out.
//!
//! This module owns everything between "bytes we were handed" and "samples Whisper can
//! read": content sniffing ([`sniff`]), demuxing and decoding (symphonia for Ogg, WebM/MKV,
//! MP4, MP3, WAV, FLAC and AIFF; libopus for Opus), gapless trimming (Opus pre-skip and
//! end trim, MP4 edit lists), downmixing, resampling ([`resample`]), limits, and the typed
//! [`DecodeError`] every caller reports. It never panics on input and never reads past the
//! configured limits: decoding stops the moment one is crossed. (Over 500 lines: the demux
//! and decode loop with its error mapping stays in one piece; about 100 lines are tests.)

mod header;
pub mod mkv;
pub mod mp4;
pub mod ogg;
mod opus;
pub mod resample;
mod sink;
pub mod sniff;

use crate::error::ErrorCode;
use std::io::Cursor;

use serde::Serialize;
use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{AudioCodecId, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

pub use header::MAX_CHANNELS;
use header::{check_format, check_wav_fmt};
pub use resample::WHISPER_RATE;
use sink::{downmix_into, Sink};
use sniff::Sniffed;

/// Limits applied while decoding untrusted input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_bytes: u64,
    /// Longest accepted audio, in seconds.
    pub max_duration_s: f64,
}

/// The default largest input: 100 MiB (the CLI's `--max-bytes`, the service's
/// `--max-upload-bytes`).
pub const MAX_BYTES: u64 = 100 * 1024 * 1024;
/// The default longest audio: 3 hours (`--max-duration`).
pub const MAX_DURATION_S: f64 = 3.0 * 3600.0;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: MAX_BYTES,
            max_duration_s: MAX_DURATION_S,
        }
    }
}

/// Why an input could not be turned into audio. Each variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty file")]
    Empty,
    #[error("not audio{}", .looks_like.map(|k| format!(" (looks like {k})")).unwrap_or_default())]
    NotAudio { looks_like: Option<&'static str> },
    #[error("unsupported codec: {codec}")]
    UnsupportedCodec { codec: String },
    #[error("no audio track in the {container} file")]
    NoAudioTrack { container: String },
    #[error("corrupt audio: {detail}{}", .offset.map(|o| format!(" (at byte {o})")).unwrap_or_default())]
    Corrupt { detail: String, offset: Option<u64> },
    #[error("file too large: {size} bytes (limit {max})")]
    TooLarge { size: u64, max: u64 },
    #[error("audio too long: more than {max_s:.0} s (limit)")]
    TooLong { max_s: f64 },
}

impl DecodeError {
    /// The stable machine-readable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Empty => ErrorCode::Empty,
            DecodeError::NotAudio { .. } => ErrorCode::NotAudio,
            DecodeError::UnsupportedCodec { .. } => ErrorCode::UnsupportedCodec,
            DecodeError::NoAudioTrack { .. } => ErrorCode::NoAudioTrack,
            DecodeError::Corrupt { .. } => ErrorCode::Corrupt,
            DecodeError::TooLarge { .. } => ErrorCode::TooLarge,
            DecodeError::TooLong { .. } => ErrorCode::TooLong,
        }
    }
}

/// Something worth telling the user about audio that did decode.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Warning {
    pub code: WarningKind,
    pub message: String,
}

/// What a [`Warning`] is about (stored and shown by its snake_case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// The file is cut off: the part that arrived was transcribed.
    Truncated,
    /// The header pages were damaged or missing, and repaired.
    DamagedHeader,
    /// Stretches of audio failed their checksums and were skipped.
    DamagedAudio,
    /// Undecodable packets were skipped.
    SkippedPackets,
}

/// Decoded audio, ready for the engine.
#[derive(Debug, Clone)]
pub struct Audio {
    /// 16 kHz mono samples.
    pub samples: Vec<f32>,
    /// The container, as sniffed ("ogg", "mp4", ...).
    pub container: String,
    /// The codec's short name ("opus", "aac", ...).
    pub codec: String,
    /// The source's sample rate and channel count.
    pub source_rate: u32,
    pub source_channels: usize,
    /// `truncated` (a cut-off file: the part that arrived is here), `skipped_packets`.
    pub warnings: Vec<Warning>,
}

impl Audio {
    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / WHISPER_RATE as f64
    }
}

/// After this many undecodable packets in a row, stop and keep what decoded.
const MAX_BAD_PACKETS_IN_A_ROW: usize = 16;

/// What [`decode_into`] learned of an input, besides the samples it handed out.
#[derive(Debug, Clone)]
pub struct Info {
    /// The container, as sniffed ("ogg", "mp4", ...).
    pub container: String,
    /// The codec's short name ("opus", "aac", ...).
    pub codec: String,
    /// The source's sample rate and channel count.
    pub source_rate: u32,
    pub source_channels: usize,
    /// `truncated` (a cut-off file: the part that arrived is here), `skipped_packets`.
    pub warnings: Vec<Warning>,
    /// How many 16 kHz samples went out.
    pub samples: usize,
}

/// Decode a whole input held in memory.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Audio, DecodeError> {
    let mut samples = Vec::new();
    let info = decode_into(bytes, limits, &mut |s| {
        samples.extend_from_slice(s);
        true
    })?;
    Ok(Audio {
        samples,
        container: info.container,
        codec: info.codec,
        source_rate: info.source_rate,
        source_channels: info.source_channels,
        warnings: info.warnings,
    })
}

/// Decode an input held in memory as a stream: the 16 kHz samples go to `out` a packet at
/// a time, and are not kept. `out` returns `false` to stop early (the rest is not decoded).
/// The input itself is copied only when it must be repaired (a cut-off MP4 or Matroska
/// file, a damaged Ogg Opus header), so a long recording costs its compressed size and a
/// packet's worth of samples, whatever its length.
pub fn decode_into(
    bytes: &[u8],
    limits: &Limits,
    out: &mut dyn FnMut(&[f32]) -> bool,
) -> Result<Info, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() as u64 > limits.max_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len() as u64,
            max: limits.max_bytes,
        });
    }
    let container = match sniff::sniff(bytes) {
        Sniffed::Audio(c) => c,
        Sniffed::UnsupportedCodec(c) => {
            return Err(DecodeError::UnsupportedCodec { codec: c.into() })
        }
        Sniffed::NotAudio(k) => return Err(DecodeError::NotAudio { looks_like: k }),
    };
    let mut warnings = Vec::new();
    let mut data = std::borrow::Cow::Borrowed(bytes);
    let mut edit = None;
    if container == "mp4" {
        if mp4::patch_truncated_mdat(data.to_mut()) {
            warnings.push(truncated_warning("the file ends inside its audio data"));
        }
        if mp4::patch_truncated_moov(data.to_mut()) {
            warnings.push(truncated_warning(
                "the file ends inside the metadata after its index",
            ));
        }
        edit = mp4::audio_edit(&data);
    }
    // The header pages sit at the start: a copy of the first megabyte tells whether they
    // need repair, and only then is the whole file copied.
    let head = &bytes[..bytes.len().min(1 << 20)];
    if container == "ogg"
        && ogg::repair_opus_headers(&mut head.to_vec())
        && ogg::repair_opus_headers(data.to_mut())
    {
        warnings.push(Warning {
            code: WarningKind::DamagedHeader,
            message: "the file's header pages were damaged or missing; repaired them and \
                      transcribed the audio"
                .into(),
        });
    }
    if container == "ogg" {
        let n = ogg::damaged_stretches(&data);
        if n > 0 {
            warnings.push(Warning {
                code: WarningKind::DamagedAudio,
                message: if n == 1 {
                    "a damaged stretch of the file's audio (it failed its checksum) was \
                     skipped; the transcript has a gap there"
                        .into()
                } else {
                    format!(
                        "{n} damaged stretches of the file's audio (they failed their \
                         checksums) were skipped; the transcript has gaps there"
                    )
                },
            });
        }
    }
    if container == "matroska" && mkv::patch_truncated(data.to_mut()) {
        warnings.push(truncated_warning("the file ends before its declared end"));
    }
    // symphonia's probe finds a RIFF/WAVE header anywhere near the start, whatever the
    // sniffer called the file, so every one of them is checked.
    check_wav_fmt(&data)?;
    // The demuxers are symphonia's; a header field they do arithmetic on without a check
    // (the fuzzer found `channels * bytes per sample` in the WAV reader) would panic in a
    // build with overflow checks. The headers we know of are checked above; anything else
    // becomes a `corrupt` error here rather than a dead worker or process.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        demux_and_decode(&data, container, edit, limits, &mut warnings, out)
    }));
    let raw = match decoded {
        Ok(r) => r?,
        Err(_) => {
            return Err(DecodeError::Corrupt {
                detail: format!("{container}: the decoder could not read this file's header"),
                offset: None,
            })
        }
    };
    Ok(Info {
        container: container.to_string(),
        codec: raw.codec,
        source_rate: raw.rate,
        source_channels: raw.channels,
        warnings,
        samples: raw.samples,
    })
}

fn truncated_warning(why: &str) -> Warning {
    Warning {
        code: WarningKind::Truncated,
        message: format!("the file is incomplete ({why}); transcribed the part that arrived"),
    }
}

/// What the decoding gave: how many `samples` at 16 kHz, `rate` and `channels` of the
/// source.
struct Raw {
    samples: usize,
    rate: u32,
    channels: usize,
    codec: String,
}

enum Dec {
    Sym(Box<dyn AudioDecoder>),
    Opus(opus::OpusMono),
}

fn codec_name(id: AudioCodecId) -> String {
    use symphonia::core::codecs::audio::well_known::*;
    let known = [
        (CODEC_ID_AAC, "aac"),
        (CODEC_ID_OPUS, "opus"),
        (CODEC_ID_VORBIS, "vorbis"),
        (CODEC_ID_FLAC, "flac"),
        (CODEC_ID_MP3, "mp3"),
        (CODEC_ID_MP2, "mp2"),
        (CODEC_ID_MP1, "mp1"),
        (CODEC_ID_ALAC, "ALAC"),
        (CODEC_ID_AC3, "AC-3"),
        (CODEC_ID_EAC3, "E-AC-3"),
        (CODEC_ID_SPEEX, "Speex"),
        (CODEC_ID_WMA, "WMA"),
        (CODEC_ID_PCM_ALAW, "pcm_alaw"),
        (CODEC_ID_PCM_MULAW, "pcm_mulaw"),
    ];
    known
        .iter()
        .find(|(k, _)| *k == id)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| {
            if let Some(d) = symphonia::default::get_codecs().get_audio_decoder(id) {
                d.codec.info.short_name.to_string()
            } else {
                format!("{id:?}")
            }
        })
}

fn sym_err(e: SymError, container: &str) -> DecodeError {
    DecodeError::Corrupt {
        detail: format!("{container}: {e}"),
        offset: None,
    }
}

fn demux_and_decode(
    data: &[u8],
    container: &str,
    edit: Option<mp4::Edit>,
    limits: &Limits,
    warnings: &mut Vec<Warning>,
    out: &mut dyn FnMut(&[f32]) -> bool,
) -> Result<Raw, DecodeError> {
    let total = data.len() as u64;
    let mss = MediaSourceStream::new(
        Box::new(Cursor::new(data)),
        MediaSourceStreamOptions::default(),
    );
    let mut format: Box<dyn FormatReader> = symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymError::Unsupported(_) if container == "unknown" => {
                DecodeError::NotAudio { looks_like: None }
            }
            SymError::IoError(ref io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                DecodeError::Corrupt {
                    detail: format!("{container}: the file ends before any audio"),
                    offset: Some(total),
                }
            }
            e => sym_err(e, container),
        })?;

    let track =
        format
            .default_track(TrackType::Audio)
            .ok_or_else(|| DecodeError::NoAudioTrack {
                container: container.into(),
            })?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .cloned()
        .ok_or_else(|| DecodeError::NoAudioTrack {
            container: container.into(),
        })?;
    let codec = codec_name(params.codec);
    let is_opus = params.codec == CODEC_ID_OPUS;
    let mut channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
    let mut rate = params.sample_rate.unwrap_or(0);
    check_format(container, rate, channels)?;
    let mut dec = if is_opus {
        let extra = params.extra_data.as_deref().unwrap_or(&[]);
        let o = opus::OpusMono::new(extra, container).map_err(|detail| DecodeError::Corrupt {
            detail,
            offset: None,
        })?;
        channels = o.channels;
        rate = opus::OPUS_RATE;
        Dec::Opus(o)
    } else {
        let d = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(|_| DecodeError::UnsupportedCodec {
                codec: codec.clone(),
            })?;
        Dec::Sym(d)
    };

    let mut sink = Sink {
        // Ogg and Matroska carry the Opus pre-skip in the header; MP4 in its edit list.
        skip: match &dec {
            Dec::Opus(o) if container != "mp4" => o.pre_skip,
            _ => 0,
        },
        keep: None,
        edit,
        accepted: 0,
        stream: None,
        out,
        emitted: 0,
        stopped: false,
    };
    let resample_err = |detail: String| DecodeError::Corrupt {
        detail,
        offset: None,
    };
    let mut mono: Vec<f32> = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut bad_in_a_row = 0usize;
    let mut skipped = 0usize;
    let mut good = 0usize;
    let mut truncated = false;
    let mut last_error = None;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                truncated = true;
                break;
            }
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                last_error = Some(e.to_string());
                truncated = true;
                break;
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        mono.clear();
        let res = match &mut dec {
            Dec::Opus(o) => o.decode(&packet.data, &mut mono),
            Dec::Sym(d) => match d.decode(&packet) {
                Ok(buf) => {
                    let spec_ch = buf.spec().channels().count().max(1);
                    if rate == 0 {
                        rate = buf.spec().rate();
                    }
                    check_format(container, rate, spec_ch)?;
                    channels = spec_ch;
                    interleaved.clear();
                    buf.copy_to_vec_interleaved(&mut interleaved);
                    downmix_into(&interleaved, spec_ch, &mut mono);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
        };
        match res {
            Ok(()) => {
                bad_in_a_row = 0;
                good += 1;
                // Ogg end trimming: the last page's granule position says how much is real.
                if is_opus && container == "ogg" {
                    let trim = (packet.trim_end.get() as usize).min(mono.len());
                    mono.truncate(mono.len() - trim);
                }
                if rate > 0 && !mono.is_empty() {
                    sink.push(&mono, rate).map_err(resample_err)?;
                    if sink.stopped {
                        break;
                    }
                }
            }
            Err(e) => {
                bad_in_a_row += 1;
                skipped += 1;
                last_error = Some(e);
                if bad_in_a_row >= MAX_BAD_PACKETS_IN_A_ROW {
                    truncated = true;
                    break;
                }
            }
        }
        if rate > 0 && sink.accepted as f64 > limits.max_duration_s * rate as f64 {
            return Err(DecodeError::TooLong {
                max_s: limits.max_duration_s,
            });
        }
    }
    if sink.accepted == 0 || skipped > good {
        // Nothing decoded, or most packets were garbage (what decoded is noise, not speech).
        return Err(DecodeError::Corrupt {
            detail: format!(
                "{container}/{codec}: {}{}",
                if good == 0 {
                    "no audio could be decoded".to_string()
                } else if rate == 0 {
                    "unknown sample rate".to_string()
                } else if skipped > good {
                    format!("{skipped} of {} packets are undecodable", skipped + good)
                } else {
                    "no audio left after the container's trims".to_string()
                },
                last_error.map(|e| format!(" ({e})")).unwrap_or_default()
            ),
            offset: None,
        });
    }
    if truncated && !warnings.iter().any(|w| w.code == WarningKind::Truncated) {
        warnings.push(truncated_warning(
            &last_error.unwrap_or_else(|| "it ends mid-stream".into()),
        ));
    } else if skipped > 0 {
        warnings.push(Warning {
            code: WarningKind::SkippedPackets,
            message: format!("{skipped} damaged packet(s) were skipped"),
        });
    }
    Ok(Raw {
        samples: sink.finish().map_err(resample_err)?,
        rate,
        channels,
        codec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_stable_codes_and_plain_messages() {
        let l = Limits::default();
        assert_eq!(decode(b"", &l).unwrap_err().code(), "empty");
        let e = decode(b"<!DOCTYPE html><html><body>404</body></html>", &l).unwrap_err();
        assert_eq!(e.code(), "not_audio");
        assert_eq!(e.to_string(), "not audio (looks like an HTML page)");
        let e = decode(b"#!AMR\n\x3c\x00\x00", &l).unwrap_err();
        assert_eq!(e.to_string(), "unsupported codec: AMR-NB");
        let e = decode(&[0u8; 100], &Limits { max_bytes: 10, ..l }).unwrap_err();
        assert_eq!(e.code(), "too_large");
    }

    /// A 16-bit PCM WAV whose header claims `rate` and `channels`, with `data_len` bytes.
    fn wav_claiming(rate: u32, channels: u16, data_len: usize) -> Vec<u8> {
        let block = 2 * channels as u32;
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&channels.to_le_bytes());
        w.extend_from_slice(&rate.to_le_bytes());
        w.extend_from_slice(&rate.wrapping_mul(block).to_le_bytes());
        w.extend_from_slice(&(block as u16).to_le_bytes());
        w.extend_from_slice(&16u16.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&(data_len as u32).to_le_bytes());
        w.extend((0..data_len).map(|i| (i * 37 % 251) as u8));
        w
    }

    /// Issue #13, item 1: a 40 KB WAV claiming 4294967295 Hz made the resampler ask for
    /// gigabytes and killed the server. Extreme rates and channel counts are now `corrupt`.
    #[test]
    fn extreme_header_fields_are_refused_as_corrupt() {
        let l = Limits::default();
        for (rate, ch) in [(u32::MAX, 1), (10_000_000, 1), (999, 1), (48_000, 1000)] {
            let e = decode(&wav_claiming(rate, ch, 40_000), &l).unwrap_err();
            assert_eq!(e.code(), "corrupt", "{rate} Hz × {ch}: {e}");
        }
        let ok = decode(&wav_claiming(384_000, 2, 40_000), &l).unwrap();
        assert_eq!(ok.source_rate, 384_000);
    }

    /// Found by the fuzzer (`fuzz/`): a WAV whose `fmt ` chunk claims 65535 channels made
    /// symphonia's WAV reader overflow `channels * bytes per sample` (a panic wherever
    /// overflow checks are on, as in the tests and the fuzzer).
    #[test]
    fn fuzzer_finds_stay_errors() {
        let wav = include_bytes!("../../tests/fixtures/fuzz/wav_channels_overflow.wav");
        let e = decode(wav, &Limits::default()).unwrap_err();
        assert_eq!(e.code(), "corrupt", "{e}");
        // The fuzzer's second find: the same header after 4 bytes of junk ("FORM"), which the
        // sniffer does not call WAV but symphonia's probe finds.
        let shifted = [&b"FORM"[..], &wav[..]].concat();
        let e = decode(&shifted, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("wav: the header"), "{e}");
        let mut zero = wav_claiming(16_000, 1, 4_000);
        zero[22] = 0; // channels = 0
        assert_eq!(
            decode(&zero, &Limits::default()).unwrap_err().code(),
            "corrupt"
        );
    }

    /// Issue #13, item 5: WebM cut at 50/90/99% was refused whole ("missing segment
    /// element"); the audio that arrived is now transcribed, with a `truncated` warning.
    #[test]
    fn truncated_webm_keeps_what_arrived() {
        let whole = include_bytes!("../../tests/fixtures/chrome_jfk.webm");
        let full = decode(whole, &Limits::default()).unwrap().duration_s();
        for pct in [50usize, 90, 99] {
            let cut = &whole[..whole.len() * pct / 100];
            let a = decode(cut, &Limits::default()).unwrap_or_else(|e| panic!("{pct}%: {e}"));
            assert!(
                a.warnings.iter().any(|w| w.code == WarningKind::Truncated),
                "{pct}%"
            );
            let d = a.duration_s();
            assert!(
                d > full * (pct as f64 / 100.0) * 0.6 && d <= full,
                "{pct}%: {d} of {full} s"
            );
        }
    }

    #[test]
    fn downmix_averages() {
        let mut out = vec![];
        downmix_into(&[1.0, 1.0, 0.5, -0.5], 2, &mut out);
        assert_eq!(out, vec![1.0, 0.0]);
    }
}
