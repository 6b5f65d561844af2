//! earshot: self-hosted speech-to-text for voice messages.
//!
//! Data flows one way: bytes → [`audio::decode`] (16 kHz mono samples) →
//! [`engine::Engine::transcribe`] → [`engine::Transcript`] → [`output::render`]. The CLI
//! ([`cli`]) and the HTTP service ([`server`], [`http`], with [`storage`] and [`jobs`]) are
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
pub mod storage;
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
pub fn transcribe_bytes_with(
    engine: &Engine,
    bytes: &[u8],
    limits: &Limits,
    opts: &Options,
    watch: &dyn engine::Watch,
) -> Result<Outcome, Error> {
    let audio = audio::decode(bytes, limits)?;
    let mut transcript = engine.transcribe_with(&audio.samples, opts, watch)?;
    if audio.warnings.iter().any(|w| w.code == "truncated") {
        transcript.review.flag(engine::review::Reason::Truncated);
    }
    Ok(Outcome {
        transcript,
        warnings: audio.warnings,
        container: audio.container,
        codec: audio.codec,
    })
}
