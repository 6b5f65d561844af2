//! The engine: 16 kHz mono samples in, a [`Transcript`] out, through whisper.cpp.
//!
//! One [`Engine`] loads a GGML model once per process. Every transcription makes its own
//! state (`decode::DecoderState`, about 13 ms for base on a CPU), so any number of threads can call
//! [`Engine::transcribe`] at once, and a result never depends on what ran before it:
//! whisper.cpp seeds the sampler of a state's first decoder only when the state is made,
//! so a reused state samples differently in temperature fallback. Calls block: async callers
//! run them on a blocking pool.
//!
//! A transcription: measure the level and raise a quiet note ([`level`]); find the speech
//! with Silero ([`vad`]), or the energy gate when there is no Silero model; decode only the
//! speech, packed; map times back to the note; drop what nobody said ([`text`]); judge
//! whether a person should listen ([`review`]). How each pass decodes (context, detection,
//! the careful retry) is decided up front by [`plan`]; the options are in `options`, the
//! result's shape in `transcript`, and where the model runs in `backend`.

mod backend;
mod cover;
mod cpu;
mod decode;
pub mod language;
mod level;
mod options;
mod pieces;
mod plan;
mod request;
pub mod review;
mod speaker;
mod stream;
mod text;
mod transcript;
mod vad;

pub use backend::{
    choose_backend, cores, gpu_devices, parallelism, Backend, GpuDevice, GpuMode, Hardware,
    Parallelism,
};
pub use cpu::{cpu_features, prepare_cpu, CpuError, CpuFeatures, CpuKernels};
pub use options::{
    default_threads, fitted_ctx, AudioCtx, Options, BEST_OF, COMPRESSION_RATIO_THRESHOLD,
    CTX_MARGIN, LOGPROB_THRESHOLD, NO_SPEECH_THRESHOLD, TEMPERATURE_INCREMENT,
};
pub use pieces::{Progress, Watch};
pub use request::{Input, Outcome, Request, TranscribeError, HOLD_S};
pub use transcript::{Segment, Transcript, Word};
pub use vad::Silero;

use decode::{DecoderState, Turns};
use options::{CTX_DETECT, CTX_FULL, REDETECT_BELOW};

use crate::error::ErrorCode;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use whisper_rs::{WhisperContext, WhisperContextParameters};

use crate::audio::WHISPER_RATE;
use level::Level;
use plan::{decode_plan, DecodePlan, PlanModel};

use vad::Plan;

/// Errors from loading a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file not found: {path}")]
    ModelMissing { path: PathBuf },
    #[error("could not load model {path}: {reason}")]
    ModelLoad { path: PathBuf, reason: String },
    #[error(
        "unknown language {0:?} (use an ISO 639-1 code such as \"ru\" or \"en\", or \"auto\")"
    )]
    UnknownLanguage(String),
    #[error("this model is English-only and cannot {0}")]
    EnglishOnly(&'static str),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("{0}")]
    GpuUnavailable(String),
    #[error("stopped: the service is shutting down")]
    Cancelled,
}

impl EngineError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::ModelMissing { .. } => ErrorCode::ModelNotFound,
            EngineError::ModelLoad { .. } => ErrorCode::ModelLoadFailed,
            EngineError::UnknownLanguage(_) => ErrorCode::InvalidLanguage,
            EngineError::EnglishOnly(_) => ErrorCode::InvalidLanguage,
            EngineError::Inference(_) => ErrorCode::InferenceFailed,
            EngineError::GpuUnavailable(_) => ErrorCode::GpuUnavailable,
            EngineError::Cancelled => ErrorCode::Cancelled,
        }
    }
}
/// A loaded model, and the voice-activity model when there is one.
pub struct Engine {
    ctx: WhisperContext,
    path: PathBuf,
    backend: Backend,
    vad: Option<Silero>,
    /// Set by [`Engine::cancel`]: whisper.cpp's abort callback reads it between encoder and
    /// decoder steps, so running transcriptions stop within a fraction of a second.
    cancel: AtomicBool,
    /// Decoder states alive now (see [`Engine::lanes`]).
    states: AtomicUsize,
}

/// Shortest input whisper.cpp accepts is 100 ms; shorter clips are padded with silence.
const MIN_SAMPLES: usize = WHISPER_RATE as usize / 10 + 160;

impl Engine {
    /// Load a GGML model file on the default hardware (a GPU when there is one).
    pub fn load(path: &Path) -> Result<Engine, EngineError> {
        Self::load_on(path, &choose_backend(&Hardware::default())?.0)
    }

    /// Load a GGML model file on `backend` (from [`choose_backend`]).
    pub fn load_on(path: &Path, backend: &Backend) -> Result<Engine, EngineError> {
        if !path.is_file() {
            return Err(EngineError::ModelMissing {
                path: path.to_path_buf(),
            });
        }
        // whisper.cpp logs the path, and a log line over 1023 bytes crashes it (see
        // `language`).
        if path.as_os_str().len() > 900 {
            return Err(EngineError::ModelLoad {
                path: path.to_path_buf(),
                reason: "the path is longer than 900 bytes; move the model to a shorter path"
                    .into(),
            });
        }
        whisper_rs::install_logging_hooks();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(backend.is_gpu());
        params.gpu_device(backend.device.as_ref().map_or(0, |d| d.index as i32));
        params.flash_attn(backend.flash_attn);
        let p = path.to_str().ok_or_else(|| EngineError::ModelLoad {
            path: path.to_path_buf(),
            reason: "the path is not valid UTF-8".into(),
        })?;
        let ctx =
            WhisperContext::new_with_params(p, params).map_err(|e| EngineError::ModelLoad {
                path: path.to_path_buf(),
                reason: format!(
                    "{e} (is it a whisper.cpp GGML file? scripts/fetch-model.sh makes one)"
                ),
            })?;
        Ok(Engine {
            ctx,
            path: path.to_path_buf(),
            backend: backend.clone(),
            vad: None,
            cancel: AtomicBool::new(false),
            states: AtomicUsize::new(0),
        })
    }

    /// Find speech with `vad` (see [`vad`]); with `None`, the energy gate stands in.
    pub fn set_vad(&mut self, vad: Option<Silero>) {
        self.vad = vad;
    }

    /// The voice-activity model in use, if any.
    pub fn vad(&self) -> Option<&Silero> {
        self.vad.as_ref()
    }

    /// Stop every running and future transcription with [`EngineError::Cancelled`]
    /// (shutdown after the grace period). There is no way back: the process is ending.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether [`Engine::cancel`] was called: work not yet in whisper.cpp (reading a long
    /// note, finding its speech) checks this to stop as promptly as inference does.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// The model file this engine runs.
    pub fn model_path(&self) -> &Path {
        &self.path
    }

    /// Where the model runs.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Most prompt tokens Whisper reads: half its text context (224); whisper.cpp silently
    /// keeps only the last ones of a longer prompt.
    pub fn max_prompt_tokens(&self) -> usize {
        (self.ctx.n_text_ctx() / 2).max(1) as usize
    }

    /// How many tokens `text` is as a prompt.
    pub fn prompt_tokens(&self, text: &str) -> Result<usize, EngineError> {
        let text = text.replace('\0', " ");
        self.ctx
            .tokenize(&text, 4 * text.len() + 16)
            .map(|t| t.len())
            .map_err(|e| EngineError::Inference(format!("could not tokenize the prompt: {e}")))
    }

    /// Whether the model knows languages other than English.
    pub fn is_multilingual(&self) -> bool {
        self.ctx.is_multilingual()
    }
    /// One piece of a note, decoded as `plan` says (its speech packed), with times in the
    /// piece's own samples. `samples` are the piece's.
    fn transcribe_piece(
        &self,
        samples: &[f32],
        plan: &Plan,
        opts: &Options,
        language: Option<String>,
        turns: Option<&Turns>,
    ) -> Result<Transcript, EngineError> {
        let packed = self.packed(samples, plan);
        let decoding = self.decode_plan(opts, packed.len());
        let mut state = DecoderState::in_lanes(self, opts.threads, turns)?;
        let mut t = Self::transcribe_on(&mut state, &packed, opts, language, &decoding)?;
        t.map_to_note(plan);
        Ok(t)
    }

    /// The audio `plan` decodes, padded to the shortest input whisper.cpp takes.
    fn packed(&self, samples: &[f32], plan: &Plan) -> Vec<f32> {
        let mut packed = plan.audio(samples);
        if packed.len() < MIN_SAMPLES {
            packed.resize(MIN_SAMPLES, 0.0);
        }
        packed
    }

    fn decode_plan(&self, opts: &Options, samples: usize) -> DecodePlan {
        let model = PlanModel {
            multilingual: self.is_multilingual(),
            gpu: self.backend.is_gpu(),
        };
        decode_plan(opts, model, samples)
    }

    /// Detect the language (unless given), decode as `plan` says, and decode again with the
    /// full context and beam 5 when the plan guards the result and it looks wrong (or loops).
    /// `state` is fresh.
    fn transcribe_on(
        state: &mut DecoderState<'_>,
        samples: &[f32],
        opts: &Options,
        requested: Option<String>,
        plan: &DecodePlan,
    ) -> Result<Transcript, EngineError> {
        let duration = samples.len() as f64 / WHISPER_RATE as f64;
        let (language, probability, looked_again) =
            Self::language(state, samples, requested, plan)?;
        let ctx = plan.decoding_ctx(looked_again);
        let with_probability = |mut t: Transcript| {
            t.language_probability = probability;
            t
        };
        let started = std::time::Instant::now();
        let first = state
            .decode(samples, &plan.first_pass(opts), &language, duration, ctx)
            .map(with_probability)?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, ctx, "first pass");
        // The guard: a short context, or greedy decoding of a short note, gets a second,
        // careful pass (full context, beam 5) when the result looks wrong. Greedy decoding
        // can drop most of a clip (issue #5 saw a phone-menu prompt cut to a few words). A
        // loop gets the second pass whatever the settings.
        let why = if plan.guarded {
            suspicious(&first, samples, opts)
        } else {
            first.loops().then_some("repetition")
        };
        let Some(why) = why else {
            return Ok(first);
        };
        tracing::debug!(
            ctx,
            why,
            text_end = first.segments.last().map_or(0.0, |s| s.end),
            decoded_s = first.duration,
            "the fast result looks wrong; decoding again with the full context and beam 5"
        );
        tracing::trace!(text = %first.text, "the fast result");
        let careful = opts.clone().with_beam(opts.beam_size.unwrap_or(1).max(5));
        state.alone();
        let started = std::time::Instant::now();
        let again = state
            .decode(samples, &careful, &language, duration, 0)
            .map(with_probability)?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "careful pass");
        // When the careful pass loops too, keep the saner of the two: the one that loses
        // less text to the loop cut, then the surer one. (The caller cuts the loop and flags
        // the note.)
        if again.loops() && first.loops() {
            let kept = |t: &Transcript| {
                let mut c = t.clone();
                c.cut_loops();
                c.text.chars().count() as f64 / t.text.chars().count().max(1) as f64
            };
            let score = |t: &Transcript| (kept(t), t.confidence().unwrap_or(0.0) as f64);
            if score(&first) > score(&again) {
                return Ok(first);
            }
        }
        Ok(again)
    }

    /// The language to decode `samples` in, and how sure detection was (`None` when it was
    /// given, or the model knows only English).
    fn language(
        state: &mut DecoderState<'_>,
        samples: &[f32],
        requested: Option<String>,
        plan: &DecodePlan,
    ) -> Result<(String, Option<f32>, bool), EngineError> {
        let started = std::time::Instant::now();
        let mut looked_again = false;
        let (language, probability) = match requested {
            Some(l) => (l, None),
            None if !state.engine().is_multilingual() => ("en".to_string(), None),
            None => {
                // The first guess looks at the context the decoding pass will use (plan), so
                // the decoding pass reuses its encoder output: whisper.cpp as vendored here
                // skips an encode of the very input the state encoded last. Before that,
                // detection ran the encoder once more, about 40% of a short note's time on
                // 2 cores. On short clips a fitted context can be confidently wrong between
                // close languages, so anything under 90% is detected again with the full
                // window, as whisper.cpp does by default. Detecting again over the clip's own
                // fitted context instead was 11-21% faster on the tuning half and its noisy
                // copies, but read a Russian note of the measuring half as Ukrainian (p =
                // 0.87 on the fitted context): the full window stays.
                let mut found = None;
                if let Some(c) = plan.detect_ctx {
                    let (id, p) = state.detect(samples, c)?;
                    tracing::debug!(
                        ctx = c,
                        p,
                        language = language::code_of(id),
                        "first language guess"
                    );
                    if p >= REDETECT_BELOW {
                        found = Some((id, p));
                    }
                }
                let (id, p) = match found {
                    Some(f) => f,
                    None => {
                        looked_again = true;
                        state.detect(samples, plan.redetect_ctx)?
                    }
                };
                let lang = language::code_of(id).unwrap_or("en").to_string();
                (lang, Some(p))
            }
        };
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            language,
            probability,
            "language"
        );
        Ok((language, probability, looked_again))
    }
}

/// Why a fast result should not be trusted, if it should not: it repeats itself (a loop, or
/// a phrase of two words or more said twice in a row, which Whisper makes of noise), the model
/// was unsure of the language or the words, or the text is too short for the audio or stops
/// well before the speaker does (the decoder gave up early). `samples` are the audio `t` was
/// decoded from.
fn suspicious(t: &Transcript, samples: &[f32], opts: &Options) -> Option<&'static str> {
    if t.segments.is_empty() {
        return Some("no text");
    }
    // Even the full-context detection could not tell the language: hard audio.
    if t.language_probability.is_some_and(|p| p < 0.5) {
        return Some("language unsure");
    }
    if t.segments
        .iter()
        .any(|s| s.compression_ratio > opts.compression_ratio_threshold)
        || t.loops()
        || text::has_repeated_phrase(&t.text)
    {
        return Some("repetition");
    }
    if t.segments
        .iter()
        .any(|s| s.avg_logprob < opts.logprob_threshold)
    {
        return Some("low confidence");
    }
    // Speech runs at 10-20 characters a second (the slowest eval clip: 6.7); under 3 means
    // most of it is missing.
    let chars = t.text.chars().filter(|c| c.is_alphanumeric()).count() as f64;
    if t.duration >= 4.0 && chars < 3.0 * t.duration {
        return Some("too little text");
    }
    // With the silence trimmed, the clip ends half a second after its last sound: text that
    // stops seconds before that means the decoder gave up on the tail, unless what it left
    // is far quieter than the speaker (murmur the VAD kept: writing nothing for it is right).
    let last_end = t.segments.last().map_or(0.0, |s| s.end);
    if opts.trim_silence
        && t.duration >= 4.0
        && last_end < t.duration - 3.0
        && !quiet_tail(samples, last_end)
    {
        return Some("text ends early");
    }
    None
}

/// How far under the note's speech the audio after the text must be to count as not the
/// speaker's: one speaker's phrases stay within about 6 dB of each other; murmur the VAD
/// keeps sits 13 dB and more under them (and, in a note decoded whole, is mostly decoded
/// apart from the speaker: [`speaker::by_level`]). Skipping the careful pass here loses nothing:
/// speech the text does not cover is decoded on its own afterwards ([`cover`]).
const QUIET_TAIL_DB: f32 = 10.0;

/// Whether the audio from a second after `text_end` (seconds) on is more than
/// [`QUIET_TAIL_DB`] under the speech of all of `samples`. The second's margin keeps the last
/// word, which Whisper's end time may cut short, out of the tail's level.
fn quiet_tail(samples: &[f32], text_end: f64) -> bool {
    let from = ((text_end + 1.0).max(0.0) * WHISPER_RATE as f64) as usize;
    if from >= samples.len() {
        return true;
    }
    Level::measure(&samples[from..]).speech_dbfs
        < Level::measure(samples).speech_dbfs - QUIET_TAIL_DB
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `seconds` of a 220 Hz tone whose RMS is `dbfs`.
    fn tone(seconds: f64, dbfs: f32) -> Vec<f32> {
        let amp = 10f32.powf(dbfs / 20.0) * std::f32::consts::SQRT_2;
        (0..(seconds * WHISPER_RATE as f64) as usize)
            .map(|i| amp * (i as f32 * 220.0 * std::f32::consts::TAU / WHISPER_RATE as f32).sin())
            .collect()
    }

    #[test]
    fn a_tail_far_under_the_speaker_is_not_missed_speech() {
        let speaker = tone(10.0, -15.0);
        let with = |tail: Vec<f32>| [speaker.clone(), tail].concat();
        // Murmur 17 dB under, as the noisy notes' room tone holds: nothing was missed.
        assert!(quiet_tail(&with(tone(4.0, -32.0)), 10.0));
        // Silence after the text: nothing was missed either.
        assert!(quiet_tail(
            &with(vec![0.0; 4 * WHISPER_RATE as usize]),
            10.0
        ));
        // The speaker going on a little quieter: the decoder gave up on speech.
        assert!(!quiet_tail(&with(tone(4.0, -20.0)), 10.0));
        // Text that stopped mid-speech, well before the tail: the speaker's level is there.
        assert!(!quiet_tail(&with(tone(4.0, -32.0)), 5.0));
        // Nothing after the margin: nothing to miss.
        assert!(quiet_tail(&speaker, 9.5));
    }
}
