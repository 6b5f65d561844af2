//! earshot: self-hosted speech-to-text for voice messages.
//!
//! Data flows one way: bytes → [`audio::decode`] (16 kHz mono samples) →
//! [`engine::Engine::transcribe`] → [`engine::Transcript`] → [`output::render`]. The CLI
//! ([`cli`]) and the HTTP service ([`server`], [`http`], with [`store`] and [`jobs`]) are
//! thin shells over [`transcribe_bytes`].

pub mod audio;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod jobs;
pub mod listener;
pub mod models;
pub mod output;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod webhooks;

use audio::{DecodeError, Limits, Warning};
use engine::{Engine, EngineError, Options, Transcript};

/// Why one input produced no transcript.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Error {
    /// Stable machine-readable code (`not_audio`, `corrupt`, `inference_failed`, ...).
    pub fn code(&self) -> error::ErrorCode {
        match self {
            Error::Decode(e) => e.code(),
            Error::Engine(e) => e.code(),
        }
    }
}

/// A transcript plus what the decoder noticed on the way.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub transcript: Transcript,
    pub warnings: Vec<Warning>,
    pub container: String,
    pub codec: String,
}

/// Decode `bytes` (any supported format, judged by content) and transcribe them.
pub fn transcribe_bytes(
    engine: &Engine,
    bytes: &[u8],
    limits: &Limits,
    opts: &Options,
) -> Result<Outcome, Error> {
    transcribe_bytes_with(engine, bytes, limits, opts, &|_| {})
}

/// [`transcribe_bytes`], with `watch` following a long recording (see
/// [`Engine::transcribe_with`]).
///
/// A note up to [`HOLD_S`] long is decoded into memory and transcribed whole. A longer one
/// (with the Silero model) is never held as samples: a first pass over the bytes measures
/// its length and level, and a second decodes it again straight into
/// [`Engine::transcribe_stream`], which cuts and decodes it as it comes (decoding costs about
/// 5 s per hour of Opus on one core; the samples of an hour would be 230 MB).
pub fn transcribe_bytes_with(
    engine: &Engine,
    bytes: &[u8],
    limits: &Limits,
    opts: &Options,
    watch: &dyn engine::Watch,
) -> Result<Outcome, Error> {
    let hold = (HOLD_S * audio::WHISPER_RATE as f64) as usize;
    let streams = engine.vad().is_some();
    let mut meter = engine::level::Meter::default();
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
        !engine.is_cancelled()
    })?;
    if engine.is_cancelled() {
        return Err(engine::EngineError::Cancelled.into());
    }
    let mut transcript = match held {
        Some(samples) => engine.transcribe_with(&samples, opts, watch)?,
        None => {
            let mut feed = |out: &mut dyn FnMut(&[f32]) -> bool| {
                audio::decode_into(bytes, limits, out)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            engine.transcribe_stream(info.samples, &meter.finish(), &mut feed, opts, watch)?
        }
    };
    // Audio that arrived incomplete leaves gaps in the text: worth a listen.
    use engine::review::Reason;
    for w in &info.warnings {
        match w.code.as_ref() {
            "truncated" => transcript.review.flag(Reason::Truncated),
            "damaged_audio" => transcript.review.flag(Reason::DamagedAudio),
            _ => {}
        }
    }
    Ok(Outcome {
        transcript,
        warnings: info.warnings,
        container: info.container,
        codec: info.codec,
    })
}

/// Notes up to this long (seconds) are decoded into memory; longer ones are streamed (see
/// [`transcribe_bytes_with`]).
pub const HOLD_S: f64 = 120.0;
