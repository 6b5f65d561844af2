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

use std::ops::Range;

use super::level::{Level, Meter};
use super::review::{self, Reason, Review};
use super::vad::{self, Plan};
use super::{language, pieces, speaker, stream};
use super::{Engine, EngineError, Options, Transcript, Watch};
use crate::audio::{self, DecodeError, Limits, Warning, WarningKind, WHISPER_RATE};
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

/// The paths from a request to a verdict: samples held, or a long recording streamed.
impl Engine {
    /// Samples held in memory, telling `watch` how far a long note has got after each of
    /// its pieces (see [`pieces`]), handing it each finished piece, and taking from it the
    /// pieces an interrupted run finished before.
    fn held(
        &self,
        samples: &[f32],
        opts: &Options,
        watch: &dyn Watch,
    ) -> Result<Transcript, EngineError> {
        let duration = samples.len() as f64 / WHISPER_RATE as f64;
        let requested = self.requested_language(opts)?;
        let level = Level::measure(samples);
        let raised = level.apply(samples);
        let samples = &raised[..];
        let speech = match &self.vad {
            Some(vad) => Some(vad.speech(samples)?),
            None => None,
        };
        // Speech far under the speaker's level is decoded apart from the rest, when
        // silence is trimmed (see `speaker::by_level`); with `--keep-silence` the whole note is
        // decoded at once, as asked.
        let (main, quiet) = match &speech {
            Some(s) if opts.trim_silence => speaker::by_level(samples, s),
            Some(s) => (s.clone(), Vec::new()),
            None => (Vec::new(), Vec::new()),
        };
        let plan = match &speech {
            Some(_) if opts.trim_silence => Plan::holding(main.clone(), &quiet, samples.len()),
            Some(_) => Plan::new(main.clone(), samples.len(), false),
            None => Plan::from_gate(samples, opts.trim_silence),
        };
        if !plan.has_speech() {
            return Ok(self.no_speech(requested, opts, duration, &level));
        }
        // Speech that does not fit one window is cut into pieces decoded side by side (the
        // samples, already raised, streamed through as a long file's are); a note that fits
        // is decoded whole, as one piece.
        let whole = |s: &[Range<usize>]| Plan::new(s.to_vec(), samples.len(), opts.trim_silence);
        if speech
            .as_deref()
            .is_some_and(|s| whole(s).packed_len() > pieces::WHOLE_MAX)
        {
            let mut feed = |out: &mut dyn FnMut(&[f32]) -> bool| {
                for c in samples.chunks(WHISPER_RATE as usize) {
                    if !out(c) {
                        break;
                    }
                }
                Ok(())
            };
            return self.judged_stream(samples.len(), &level, None, &mut feed, opts, watch);
        }
        let t = self.transcribe_piece(samples, &plan, opts, requested, None)?;
        // Every stretch of speech reaches the text, or the verdict says where it did not.
        let (t, speech_s) = match &speech {
            Some(s) => {
                let language = t.language.clone();
                let t = self.cover(samples, t, &main, &quiet, opts, &language, None)?;
                (t, vad::seconds(s))
            }
            None => (t, plan.speech_seconds()),
        };
        Ok(review::judge(t, duration, &level, speech_s))
    }

    /// [`Engine::held`] for a note too long to hold: `n` samples, whose `level` was measured
    /// beforehand, that `feed` hands over as they decode (see [`stream`]). Needs the Silero
    /// model; the note is always decoded in pieces.
    fn streamed(
        &self,
        n: usize,
        level: &Level,
        feed: &mut stream::Feed<'_>,
        opts: &Options,
        watch: &dyn Watch,
    ) -> Result<Transcript, EngineError> {
        self.judged_stream(n, level, level.factor(), feed, opts, watch)
    }

    /// [`Engine::stream_pieces`] with the verdict: `level` is the note's, `gain` what is still
    /// to be applied to what `feed` hands over.
    fn judged_stream(
        &self,
        n: usize,
        level: &Level,
        gain: Option<f32>,
        feed: &mut stream::Feed<'_>,
        opts: &Options,
        watch: &dyn Watch,
    ) -> Result<Transcript, EngineError> {
        let requested = self.requested_language(opts)?;
        let duration = n as f64 / WHISPER_RATE as f64;
        let streamed = self.stream_pieces(n, gain, feed, opts, requested.clone(), watch)?;
        Ok(match streamed {
            Some((t, speech_s)) => review::judge(t, duration, level, speech_s),
            None => self.no_speech(requested, opts, duration, level),
        })
    }

    /// The language `opts` asks for (`None`: detect it), checked against the model.
    fn requested_language(&self, opts: &Options) -> Result<Option<String>, EngineError> {
        let multilingual = self.is_multilingual();
        let requested = opts
            .language
            .as_deref()
            .map(str::to_ascii_lowercase)
            .filter(|l| l != "auto");
        if let Some(l) = &requested {
            if language::id(l).is_none() {
                return Err(EngineError::UnknownLanguage(l.chars().take(40).collect()));
            }
            if !multilingual && l != "en" {
                return Err(EngineError::EnglishOnly(
                    "transcribe languages other than English",
                ));
            }
        }
        if !multilingual && opts.translate {
            return Err(EngineError::EnglishOnly("translate"));
        }
        Ok(requested)
    }

    /// The transcript of a note with no speech in it: empty, and flagged.
    fn no_speech(
        &self,
        requested: Option<String>,
        opts: &Options,
        duration: f64,
        level: &Level,
    ) -> Transcript {
        let mut review = Review::default();
        if level.is_quiet() {
            review.flag(Reason::QuietAudio);
        }
        review.flag(Reason::NoSpeech);
        let language = requested.unwrap_or_else(|| {
            if self.is_multilingual() {
                "unknown".into()
            } else {
                "en".into()
            }
        });
        Transcript {
            duration,
            review,
            ..Transcript::empty(&language, opts.word_timestamps)
        }
    }
}
