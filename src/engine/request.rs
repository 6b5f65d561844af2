//! The engine's one entry point, [`Engine::transcribe`]: a [`Request`] in (samples, or a
//! recording's bytes with the limits they are read under; the options; who follows a long
//! one), an [`Outcome`] out.
//!
//! Where the samples come from is decided here. Samples given are transcribed as they are.
//! A recording up to [`HOLD_S`] long is decoded into memory and transcribed whole. A longer
//! one (with the Silero model) is never held as samples: a first pass over the bytes
//! measures its length and level, and a second decodes it again straight into the stream of
//! pieces (`stream`), which cuts and decodes it as it comes (decoding costs about 5 s per
//! hour of Opus on one core; the samples of an hour would be 230 MB).

use super::level::Meter;
use super::review::Reason;
use super::{Engine, EngineError, Options, Transcript, Watch};
use crate::audio::{self, DecodeError, Limits, Warning, WarningKind};
use crate::error::ErrorCode;

/// Recordings up to this long (seconds) are decoded into memory; longer ones are streamed.
pub const HOLD_S: f64 = 120.0;

/// What to transcribe.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    /// 16 kHz mono samples.
    Samples(&'a [f32]),
    /// A recording in any supported format (judged by its content), read under `limits`.
    Recording { bytes: &'a [u8], limits: &'a Limits },
}

/// One transcription: what, how, and who follows it.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub input: Input<'a>,
    pub options: &'a Options,
    /// Told how far a long note has got after each piece, handed each finished piece, and
    /// asked for the pieces an interrupted run finished before.
    pub watch: &'a dyn Watch,
}

/// A [`Watch`] that follows nothing.
struct Unwatched;

impl Watch for Unwatched {}

impl<'a> Request<'a> {
    /// Samples, followed by nobody.
    pub fn samples(samples: &'a [f32], options: &'a Options) -> Request<'a> {
        Request {
            input: Input::Samples(samples),
            options,
            watch: &Unwatched,
        }
    }

    /// A recording's bytes, followed by nobody.
    pub fn recording(bytes: &'a [u8], limits: &'a Limits, options: &'a Options) -> Request<'a> {
        Request {
            input: Input::Recording { bytes, limits },
            options,
            watch: &Unwatched,
        }
    }

    /// The same request, followed by `watch`.
    pub fn watched(self, watch: &'a dyn Watch) -> Request<'a> {
        Request { watch, ..self }
    }
}

/// A transcript, and what the audio decoder noticed on the way.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub transcript: Transcript,
    pub warnings: Vec<Warning>,
}

/// Why a request produced no transcript: its audio, or the engine.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl TranscribeError {
    /// Stable machine-readable code (`not_audio`, `corrupt`, `inference_failed`, ...).
    pub fn code(&self) -> ErrorCode {
        match self {
            TranscribeError::Decode(e) => e.code(),
            TranscribeError::Engine(e) => e.code(),
        }
    }
}

/// The review reason an audio warning calls for, if any: audio that arrived incomplete or
/// damaged leaves gaps in the text, worth a listen. The one place warnings meet the verdict.
fn review_reason(kind: WarningKind) -> Option<Reason> {
    match kind {
        WarningKind::Truncated => Some(Reason::Truncated),
        WarningKind::DamagedAudio => Some(Reason::DamagedAudio),
        WarningKind::DamagedHeader | WarningKind::SkippedPackets => None,
    }
}

impl Engine {
    /// Transcribe what `req` asks. Blocks for the length of the inference; any number of
    /// threads may call it at once.
    pub fn transcribe(&self, req: Request<'_>) -> Result<Outcome, TranscribeError> {
        match req.input {
            Input::Samples(samples) => Ok(Outcome {
                transcript: self.held(samples, req.options, req.watch)?,
                warnings: Vec::new(),
            }),
            Input::Recording { bytes, limits } => {
                self.recording(bytes, limits, req.options, req.watch)
            }
        }
    }

    /// A recording: held when it is short (or there is no Silero model), streamed when not.
    fn recording(
        &self,
        bytes: &[u8],
        limits: &Limits,
        opts: &Options,
        watch: &dyn Watch,
    ) -> Result<Outcome, TranscribeError> {
        let hold = (HOLD_S * audio::WHISPER_RATE as f64) as usize;
        let streams = self.vad().is_some();
        let mut meter = Meter::default();
        let mut held = Some(Vec::new());
        let info = audio::decode_into(bytes, limits, &mut |s| {
            meter.push(s);
            if let Some(h) = held.as_mut() {
                h.extend_from_slice(s);
                if streams && h.len() > hold {
                    held = None;
                }
            }
            // A shutdown does not wait for the first pass over a long file.
            !self.is_cancelled()
        })?;
        if self.is_cancelled() {
            return Err(EngineError::Cancelled.into());
        }
        let mut transcript = match held {
            Some(samples) => self.held(&samples, opts, watch)?,
            None => {
                let mut feed = |out: &mut dyn FnMut(&[f32]) -> bool| {
                    audio::decode_into(bytes, limits, out).map(|_| ())
                };
                self.streamed(info.samples, &meter.finish(), &mut feed, opts, watch)?
            }
        };
        for w in &info.warnings {
            if let Some(reason) = review_reason(w.code) {
                transcript.review.flag(reason);
            }
        }
        Ok(Outcome {
            transcript,
            warnings: info.warnings,
        })
    }
}
