//! The engine: 16 kHz mono samples in, a [`Transcript`] out, through whisper.cpp.
//!
//! One [`Engine`] loads a GGML model once per process. Every transcription makes its own
//! `WhisperState` (about 13 ms for base on a CPU), so any number of threads can call
//! [`Engine::transcribe`] at once, and a result never depends on what ran before it:
//! whisper.cpp seeds the sampler of a state's first decoder only when the state is made,
//! so a reused state samples differently in temperature fallback. Calls block: async callers
//! run them on a blocking pool.
//!
//! A transcription: measure the level and raise a quiet note ([`level`]); find the speech
//! with Silero ([`vad`]), or the energy gate when there is no Silero model; decode only the
//! speech, packed; map times back to the note; drop what nobody said ([`text`]); judge
//! whether a person should listen ([`review`]).

pub mod language;
pub mod level;
pub mod plan;
pub mod review;
pub mod text;
pub mod vad;

use crate::error::ErrorCode;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use crate::audio::WHISPER_RATE;
use level::Level;
use plan::{decode_plan, DecodePlan, PlanModel};
use review::{Reason, Review};
use vad::{Plan, Silero};

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

/// Decoding options. Defaults follow OpenAI Whisper's `transcribe()` defaults (beam 5 as its
/// CLI, temperature 0 with +0.2 fallback, thresholds 2.4 / -1.0 / 0.6).
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// ISO 639-1 code, or `None` to detect.
    pub language: Option<String>,
    /// Translate to English instead of transcribing.
    pub translate: bool,
    /// Initial prompt (shop vocabulary, names).
    pub prompt: Option<String>,
    /// Beam width; `None` or 1 means greedy decoding with `best_of` candidates at T > 0.
    pub beam_size: Option<u32>,
    pub best_of: u32,
    pub temperature: f32,
    /// Step for temperature fallback; 0 disables the fallback.
    pub temperature_increment: f32,
    pub compression_ratio_threshold: f32,
    pub logprob_threshold: f32,
    pub no_speech_threshold: f32,
    /// CPU threads for this transcription.
    pub threads: usize,
    pub word_timestamps: bool,
    /// How much of the 30 s window the encoder runs; see [`AudioCtx`].
    pub audio_ctx: AudioCtx,
    /// Skip the silence before the first and after the last sound ([`vad::speech_span`]);
    /// timestamps stay those of the whole clip.
    pub trim_silence: bool,
}

impl Options {
    /// The same options with beam width `b` (1 = greedy).
    pub fn with_beam(mut self, b: u32) -> Options {
        self.beam_size = Some(b);
        self
    }

    /// The careful settings whatever the defaults: the full 30 s context, beam 5 (or
    /// wider), silence kept. Slower; the reference the fast defaults are measured against.
    pub fn accurate(mut self) -> Options {
        self.audio_ctx = AudioCtx::Full;
        self.trim_silence = false;
        let b = self.beam_size.unwrap_or(1).max(5);
        self.with_beam(b)
    }
}

/// How much of Whisper's 30-second audio context the encoder computes.
///
/// Whisper pads every input to 30 s, so for a 5 s voice note most of the encoder's work is
/// on silence. whisper.cpp can run the encoder on only the first N of its 1500 positions
/// (20 ms each). Too small a context makes the decoder loop or stop early, so `Auto` keeps a
/// margin and checks the result: when it looks wrong (repetition, low confidence, too little
/// text for the speech), the clip is decoded again with the full context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioCtx {
    /// Fit the context to clips shorter than 30 s, with the guard above.
    #[default]
    Auto,
    /// Always the full 30 s context (whisper.cpp's default; slowest, the reference).
    Full,
    /// This many positions, no guard (for experiments).
    Fixed(u32),
}

/// Encoder positions per second of audio.
const CTX_PER_SECOND: usize = 50;
/// Positions added after the end of the clip in `Auto` mode (2.56 s): 64 lost 2.5 points of
/// Russian CER on the eval set, 128 and 256 about 1 (`scripts/bench.sh --levers`).
pub const CTX_MARGIN: usize = 128;
const CTX_FULL: usize = 1500;
/// Positions language detection looks at first in `Auto` mode (5.12 s; 10.24 s took 10% longer
/// on the 49 eval clips for the same result).
const CTX_DETECT: usize = 256;
/// Below this probability, a short-context language detection is done again in full.
const REDETECT_BELOW: f32 = 0.9;

/// The context `Auto` gives a clip of `n` samples (16 kHz); `None` means the full context.
pub fn fitted_ctx(n: usize) -> Option<usize> {
    let needed = n.div_ceil(WHISPER_RATE as usize / CTX_PER_SECOND) + CTX_MARGIN;
    // Multiples of 64 keep the shapes friendly to ggml's kernels; near 30 s the saving is
    // too small to be worth the risk.
    let ctx = needed.div_ceil(64) * 64;
    (ctx < CTX_FULL * 9 / 10).then_some(ctx)
}

/// The decoding defaults (OpenAI Whisper's), which the CLI's flags point at too.
pub const BEST_OF: u32 = 5;
pub const TEMPERATURE_INCREMENT: f32 = 0.2;
pub const COMPRESSION_RATIO_THRESHOLD: f32 = 2.4;
pub const LOGPROB_THRESHOLD: f32 = -1.0;
pub const NO_SPEECH_THRESHOLD: f32 = 0.6;

impl Default for Options {
    fn default() -> Self {
        Options {
            language: None,
            translate: false,
            prompt: None,
            beam_size: None,
            best_of: BEST_OF,
            temperature: 0.0,
            temperature_increment: TEMPERATURE_INCREMENT,
            compression_ratio_threshold: COMPRESSION_RATIO_THRESHOLD,
            logprob_threshold: LOGPROB_THRESHOLD,
            no_speech_threshold: NO_SPEECH_THRESHOLD,
            threads: default_threads(),
            word_timestamps: false,
            audio_ctx: AudioCtx::Auto,
            trim_silence: true,
        }
    }
}

/// Threads for one job when it runs alone: all cores, at most 8 (more does not help Whisper).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}

/// One segment, in OpenAI's `verbose_json` shape (times in seconds).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Segment {
    pub id: usize,
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub tokens: Vec<i32>,
    pub temperature: f32,
    pub avg_logprob: f32,
    pub compression_ratio: f32,
    pub no_speech_prob: f32,
    /// The segment looped even after the careful retry; the repeats were cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspect: bool,
}

/// One word with its times (seconds), when word timestamps were asked for.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub probability: f32,
}

/// The result of a transcription.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Transcript {
    pub text: String,
    pub language: String,
    /// Probability of the detected language (`None` when the language was given).
    pub language_probability: Option<f32>,
    /// Audio duration, seconds.
    pub duration: f64,
    pub segments: Vec<Segment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<Word>>,
    /// Whether a person should listen to the note, and why.
    #[serde(default)]
    pub review: Review,
}

impl Transcript {
    /// Turn times in the decoded (packed) audio into times in the note, and drop segments
    /// (and their words) that lie wholly outside the speech the plan found.
    fn map_to_note(&mut self, plan: &Plan) {
        for s in &mut self.segments {
            s.start = plan.to_note(s.start, false);
            s.end = plan.to_note(s.end, true).max(s.start);
        }
        for w in self.words.iter_mut().flatten() {
            w.start = plan.to_note(w.start, false);
            w.end = plan.to_note(w.end, true).max(w.start);
        }
        let before = self.segments.len();
        self.segments
            .retain(|s| plan.touches_speech(s.start, s.end));
        if self.segments.len() != before {
            tracing::debug!(
                dropped = before - self.segments.len(),
                "segments outside the speech dropped"
            );
            if let Some(words) = &mut self.words {
                let segs = &self.segments;
                words.retain(|w| {
                    segs.iter()
                        .any(|s| w.start < s.end + 0.5 && w.end > s.start - 0.5)
                });
            }
        }
        for (i, s) in self.segments.iter_mut().enumerate() {
            s.id = i;
        }
        self.join_text();
    }

    fn join_text(&mut self) {
        self.text = self
            .segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
    }

    /// Cut repetition loops: a segment whose text loops keeps one copy of the phrase, and a
    /// run of three or more segments with the same text keeps the first. Returns whether
    /// anything was cut; the segments cut into are marked `suspect`.
    fn cut_loops(&mut self) -> bool {
        let mut cut = false;
        for s in &mut self.segments {
            if let Some(once) = text::collapse_loops(&s.text) {
                s.text = once;
                s.suspect = true;
                cut = true;
            }
        }
        let key = |s: &Segment| {
            s.text
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        };
        let mut i = 0;
        while i < self.segments.len() {
            let k = key(&self.segments[i]);
            let run = self.segments[i..]
                .iter()
                .take_while(|s| key(s) == k)
                .count();
            if run >= 3 && !k.is_empty() {
                let end = self.segments[i + run - 1].end;
                self.segments.drain(i + 1..i + run);
                self.segments[i].end = end;
                self.segments[i].suspect = true;
                cut = true;
            }
            i += 1;
        }
        if cut {
            for (i, s) in self.segments.iter_mut().enumerate() {
                s.id = i;
            }
            self.join_text();
        }
        cut
    }

    /// Whether the text loops (before [`Transcript::cut_loops`]), within a segment, over a
    /// run of equal segments, or across segment boundaries in the joined text.
    fn loops(&self) -> bool {
        self.clone().cut_loops() || text::has_loop(&self.text)
    }

    /// exp(mean token log-probability), weighted by tokens.
    fn confidence(&self) -> Option<f32> {
        let n: usize = self.segments.iter().map(|s| s.tokens.len()).sum();
        (n > 0).then(|| {
            let sum: f32 = self
                .segments
                .iter()
                .map(|s| s.avg_logprob * s.tokens.len() as f32)
                .sum();
            (sum / n as f32).exp()
        })
    }
}

/// Whether to run on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuMode {
    /// The GPU when this build has GPU support and a device is present; the CPU otherwise.
    #[default]
    Auto,
    /// A GPU was asked for: without one, run on the CPU with a loud warning.
    On,
    /// The CPU even when a GPU is present.
    Off,
}

/// Where and how the model runs.
#[derive(Debug, Clone, Default)]
pub struct Hardware {
    pub gpu: GpuMode,
    /// Index among the GPUs ggml sees (0 = first).
    pub gpu_device: usize,
    /// Fail instead of falling back to the CPU when no usable GPU is found.
    pub require_gpu: bool,
    /// Flash attention; `None` = on for a GPU, off on the CPU.
    pub flash_attn: Option<bool>,
}

/// A GPU that ggml can run on.
#[derive(Debug, Clone, Serialize)]
pub struct GpuDevice {
    pub index: usize,
    /// ggml's backend name, e.g. `CUDA0`.
    pub name: String,
    /// The device's own name, e.g. `NVIDIA H100 80GB HBM3`.
    pub description: String,
    pub memory_total_mb: u64,
    pub memory_free_mb: u64,
}

/// The GPUs this build can use (always empty in a CPU-only build).
pub fn gpu_devices() -> Vec<GpuDevice> {
    use whisper_rs::whisper_rs_sys as sys;
    let text = |p: *const std::os::raw::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: ggml returns NUL-terminated strings that live as long as the registry.
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        }
    };
    let mut out = Vec::new();
    // SAFETY: the device registry is initialised on first use and never freed; every
    // pointer passed back to ggml came from ggml_backend_dev_get within range.
    unsafe {
        for i in 0..sys::ggml_backend_dev_count() {
            let dev = sys::ggml_backend_dev_get(i);
            if dev.is_null() {
                continue;
            }
            let kind = sys::ggml_backend_dev_type(dev);
            if kind != sys::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_GPU
                && kind != sys::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_IGPU
            {
                continue;
            }
            let (mut free, mut total) = (0usize, 0usize);
            sys::ggml_backend_dev_memory(dev, &mut free, &mut total);
            out.push(GpuDevice {
                index: out.len(),
                name: text(sys::ggml_backend_dev_name(dev)),
                description: text(sys::ggml_backend_dev_description(dev)),
                memory_total_mb: (total / (1024 * 1024)) as u64,
                memory_free_mb: (free / (1024 * 1024)) as u64,
            });
        }
    }
    out
}

/// Where a loaded model actually runs.
#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    /// `cpu`, or ggml's device name such as `CUDA0`.
    pub name: String,
    /// The GPU, when there is one.
    pub device: Option<GpuDevice>,
    pub flash_attn: bool,
}

impl Backend {
    pub fn is_gpu(&self) -> bool {
        self.device.is_some()
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.device {
            Some(d) => write!(
                f,
                "{} ({}, {} MiB)",
                self.name, d.description, d.memory_total_mb
            )?,
            None => write!(f, "cpu")?,
        }
        if self.flash_attn {
            write!(f, ", flash attention")?;
        }
        Ok(())
    }
}

/// Choose the backend for `hw`. Returns the backend and, when a GPU was asked for but cannot
/// be used, the warning to print loudly (or the error, with `require_gpu`).
pub fn choose_backend(hw: &Hardware) -> Result<(Backend, Option<String>), EngineError> {
    let cpu = |flash_attn: Option<bool>| Backend {
        name: "cpu".into(),
        device: None,
        flash_attn: flash_attn.unwrap_or(false),
    };
    if hw.gpu == GpuMode::Off && !hw.require_gpu {
        return Ok((cpu(hw.flash_attn), None));
    }
    let gpus = gpu_devices();
    let problem = if !cfg!(feature = "cuda") {
        "this earshot was built without GPU support (build it with `--features cuda`)".to_string()
    } else if gpus.is_empty() {
        "no usable GPU was found (does `nvidia-smi` list one? in a container, was it started \
         with `--gpus all`?)"
            .to_string()
    } else if let Some(d) = gpus.get(hw.gpu_device) {
        let backend = Backend {
            name: d.name.clone(),
            device: Some(d.clone()),
            flash_attn: hw.flash_attn.unwrap_or(true),
        };
        return Ok((backend, None));
    } else {
        format!(
            "GPU {} was asked for but the GPUs present are {}",
            hw.gpu_device,
            gpus.iter()
                .map(|g| format!("{}: {}", g.index, g.description))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if hw.require_gpu {
        return Err(EngineError::GpuUnavailable(format!(
            "--require-gpu is set but {problem}"
        )));
    }
    let warning = (hw.gpu == GpuMode::On).then(|| {
        format!(
            "A GPU WAS ASKED FOR, BUT {problem}. RUNNING ON THE CPU, which is many times slower."
        )
    });
    Ok((cpu(hw.flash_attn), warning))
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
}

/// whisper.cpp's abort callback: `data` points at the engine's `cancel` flag.
unsafe extern "C" fn abort_requested(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `run` passes a pointer to `Engine::cancel`, which outlives the call it is
    // used in (the engine is borrowed for the whole `whisper_full`).
    unsafe { (*(data as *const AtomicBool)).load(Ordering::Relaxed) }
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

    /// A fresh state: see the module documentation for why states are never reused.
    fn new_state(&self) -> Result<WhisperState, EngineError> {
        self.ctx
            .create_state()
            .map_err(|e| EngineError::Inference(format!("could not create a state: {e}")))
    }

    /// Make `ctx` the state's audio context *before* language detection, which (in whisper.cpp)
    /// runs the encoder with whatever context the state's previous run left. A `whisper_full`
    /// over 100 ms with a given language sets the context and returns before encoding.
    fn set_ctx(state: &mut WhisperState, ctx: usize, threads: usize) -> Result<(), EngineError> {
        let mut p = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        p.set_n_threads(threads as i32);
        p.set_language(Some("en"));
        p.set_audio_ctx(ctx as i32);
        p.set_duration_ms(100);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        state
            .full(p, &[0.0; WHISPER_RATE as usize / 10])
            .map_err(|e| EngineError::Inference(e.to_string()))
    }

    /// Transcribe 16 kHz mono samples. Blocks for the length of the inference.
    pub fn transcribe(&self, samples: &[f32], opts: &Options) -> Result<Transcript, EngineError> {
        let duration = samples.len() as f64 / WHISPER_RATE as f64;
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
        let level = Level::measure(samples);
        let raised = level.apply(samples);
        let samples = &raised[..];
        let plan = match &self.vad {
            Some(vad) => Plan::new(vad.speech(samples)?, samples.len(), opts.trim_silence),
            None => Plan::from_gate(samples, opts.trim_silence),
        };
        let mut review = Review::default();
        if level.is_quiet() {
            review.flag(Reason::QuietAudio);
        }
        if !plan.has_speech() {
            review.flag(Reason::NoSpeech);
            let language = requested.clone().unwrap_or_else(|| {
                if multilingual {
                    "unknown".into()
                } else {
                    "en".into()
                }
            });
            return Ok(Transcript {
                text: String::new(),
                language,
                language_probability: None,
                duration,
                segments: vec![],
                words: opts.word_timestamps.then(Vec::new),
                review,
            });
        }
        let packed = plan.audio(samples);
        let mut samples = &packed[..];
        let padded;
        if samples.len() < MIN_SAMPLES {
            padded = [samples, &vec![0.0; MIN_SAMPLES - samples.len()]].concat();
            samples = &padded[..];
        }

        let decoding = decode_plan(
            opts,
            PlanModel {
                multilingual,
                gpu: self.backend.is_gpu(),
            },
            samples.len(),
        );
        let mut state = self.new_state()?;
        let mut t = self.transcribe_on(&mut state, samples, opts, requested, &decoding)?;
        t.map_to_note(&plan);
        t.duration = duration;
        // A loop across segment boundaries is not cut (the segments stay as decoded) but
        // is flagged.
        if t.cut_loops() || text::has_loop(&t.text) {
            review.flag(Reason::SuspectText);
        }
        review.confidence = t.confidence();
        // Never silently empty: no text is either speech the model could not read, or (for
        // a speck of "speech" shorter than a word) no speech at all.
        if t.text.trim().is_empty() {
            review.flag(if plan.speech_seconds() >= review::SPEECH_FOR_TEXT_S {
                Reason::SpeechButNoText
            } else {
                Reason::NoSpeech
            });
        }
        if review
            .confidence
            .is_some_and(|c| c < review::LOW_CONFIDENCE_BELOW)
        {
            review.flag(Reason::LowConfidence);
        }
        if t.language_probability
            .is_some_and(|p| p < review::LANGUAGE_UNSURE_BELOW)
        {
            review.flag(Reason::LanguageUncertain);
        }
        tracing::debug!(
            gain_db = level.gain_db,
            speech_dbfs = level.speech_dbfs,
            speech_s = plan.speech_seconds(),
            decoded_s = samples.len() as f64 / WHISPER_RATE as f64,
            "level and speech"
        );
        t.review = review;
        Ok(t)
    }

    /// Detect the language (unless given), decode as `plan` says, and decode again with the
    /// full context and beam 5 when the plan guards the result and it looks wrong (or loops).
    /// `state` is fresh.
    fn transcribe_on(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        opts: &Options,
        requested: Option<String>,
        plan: &DecodePlan,
    ) -> Result<Transcript, EngineError> {
        let duration = samples.len() as f64 / WHISPER_RATE as f64;
        let threads = opts.threads.max(1);
        let ctx = plan.ctx;
        let started = std::time::Instant::now();
        let inf = |e: whisper_rs::WhisperError| EngineError::Inference(e.to_string());
        // The context left set in the state (a fresh state's is 0, the full window).
        let mut state_ctx = 0;
        let mut set_ctx = |state: &mut WhisperState, wanted: usize| {
            if state_ctx != wanted {
                Self::set_ctx(state, wanted, threads)?;
                state_ctx = wanted;
            }
            Ok::<(), EngineError>(())
        };
        let (language, probability) = match requested {
            Some(l) => (l, None),
            None if !self.is_multilingual() => ("en".to_string(), None),
            None => {
                // Detection runs the encoder once more before decoding: on 2 cores it is about
                // 40% of a short note's time (the tuning half given its languages: 16.1 s;
                // detecting them: 28.4 s). In `Auto` mode it first looks at the clip's own
                // context (at most 5 s); on short clips that can be confidently wrong between
                // close languages, so anything under 90% is detected again with the full
                // window, as whisper.cpp does by default. Detecting again over the clip's
                // own fitted context instead was 11-21% faster on the tuning half and its
                // noisy copies, but read a Russian note of the measuring half as Ukrainian
                // (p = 0.87 on the fitted context): the full window stays.
                // (Setting the context recomputes the state's mel, so the clip's mel is
                // computed after it.) The contexts come from the plan.
                let mut found = None;
                if let Some(c) = plan.detect_ctx {
                    set_ctx(state, c)?;
                    state.pcm_to_mel(samples, threads).map_err(inf)?;
                    let (id, probs) = state.lang_detect(0, threads).map_err(inf)?;
                    let p = probs.get(id as usize).copied().unwrap_or(0.0);
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
                        set_ctx(state, plan.redetect_ctx)?;
                        state.pcm_to_mel(samples, threads).map_err(inf)?;
                        let (id, probs) = state.lang_detect(0, threads).map_err(inf)?;
                        (id, probs.get(id as usize).copied().unwrap_or(0.0))
                    }
                };
                let lang = language::code_of(id).unwrap_or("en").to_string();
                (lang, Some(p))
            }
        };
        let with_probability = |mut t: Transcript| {
            t.language_probability = probability;
            t
        };
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            language,
            probability,
            "language"
        );
        let started = std::time::Instant::now();
        let first = self
            .run(state, samples, opts, &language, duration, ctx)
            .map(with_probability)?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, ctx, "first pass");
        // The guard: a short context, or greedy decoding of a short note, gets a second,
        // careful pass (full context, beam 5) when the result looks wrong. Greedy decoding
        // can drop most of a clip (issue #5 saw a phone-menu prompt cut to a few words). A
        // loop gets the second pass whatever the settings.
        let why = if plan.guarded {
            suspicious(&first, opts)
        } else {
            first.loops().then_some("repetition")
        };
        let Some(why) = why else {
            return Ok(first);
        };
        tracing::debug!(
            ctx,
            why,
            "the fast result looks wrong; decoding again with the full context and beam 5"
        );
        let careful = opts.clone().with_beam(opts.beam_size.unwrap_or(1).max(5));
        let started = std::time::Instant::now();
        let again = self
            .run(state, samples, &careful, &language, duration, 0)
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

    /// One `whisper_full` in `language` with audio context `audio_ctx`, and the result.
    fn run(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        opts: &Options,
        language: &str,
        duration: f64,
        audio_ctx: usize,
    ) -> Result<Transcript, EngineError> {
        let threads = opts.threads.max(1);
        let inf = |e: whisper_rs::WhisperError| EngineError::Inference(e.to_string());
        let strategy = match opts.beam_size {
            Some(b) if b > 1 => SamplingStrategy::BeamSearch {
                beam_size: b as i32,
                patience: -1.0,
            },
            _ => SamplingStrategy::Greedy {
                best_of: opts.best_of.max(1) as i32,
            },
        };
        let mut p = FullParams::new(strategy);
        p.set_n_threads(threads as i32);
        p.set_language(Some(language));
        p.set_translate(opts.translate);
        if let Some(prompt) = opts.prompt.as_deref().filter(|s| !s.trim().is_empty()) {
            // whisper-rs panics on a NUL byte; the API refuses one, this keeps the CLI safe.
            p.set_initial_prompt(&prompt.replace('\0', " "));
        }
        p.set_temperature(opts.temperature);
        p.set_temperature_inc(opts.temperature_increment);
        // whisper.cpp's entropy threshold plays the role of OpenAI's compression-ratio check.
        p.set_entropy_thold(opts.compression_ratio_threshold);
        p.set_logprob_thold(opts.logprob_threshold);
        p.set_no_speech_thold(opts.no_speech_threshold);
        p.set_token_timestamps(opts.word_timestamps);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        p.set_suppress_blank(true);
        // Non-speech tokens ("[музыка]", "(applause)", "♪") are suppressed, as OpenAI's and
        // faster-whisper's defaults do: a voice note's transcript is what was said.
        p.set_suppress_nst(true);
        p.set_audio_ctx(audio_ctx as i32);
        // SAFETY: the callback only reads the AtomicBool the pointer names, and `self` (so
        // `self.cancel`) is borrowed for the whole call.
        unsafe {
            p.set_abort_callback(Some(abort_requested));
            p.set_abort_callback_user_data(
                &self.cancel as *const AtomicBool as *mut std::ffi::c_void,
            );
        }
        if self.cancel.load(Ordering::SeqCst) {
            return Err(EngineError::Cancelled);
        }
        let ran = state.full(p, samples);
        if self.cancel.load(Ordering::SeqCst) {
            return Err(EngineError::Cancelled);
        }
        ran.map_err(inf)?;

        let eot = self.ctx.token_eot();
        let mut segments = Vec::new();
        let mut words: Vec<Word> = Vec::new();
        for seg in state.as_iter() {
            let mut text_bytes = Vec::new();
            let mut tokens = Vec::new();
            let mut logprob_sum = 0.0f32;
            for i in 0..seg.n_tokens() {
                let Some(tok) = seg.get_token(i) else {
                    continue;
                };
                let data = tok.token_data();
                if data.id >= eot {
                    continue; // special and timestamp tokens
                }
                let bytes = tok.to_bytes().unwrap_or(&[]);
                tokens.push(data.id);
                logprob_sum += data.plog;
                text_bytes.extend_from_slice(bytes);
                if opts.word_timestamps {
                    let starts_word = bytes.first() == Some(&b' ') || words.is_empty();
                    let (t0, t1) = (data.t0.max(0) as f64 / 100.0, data.t1.max(0) as f64 / 100.0);
                    match words.last_mut() {
                        Some(w) if !starts_word => {
                            w.word = String::from_utf8_lossy(&[w.word.as_bytes(), bytes].concat())
                                .into_owned();
                            w.end = t1.max(w.end);
                            w.probability = w.probability.min(data.p);
                        }
                        _ => words.push(Word {
                            word: String::from_utf8_lossy(bytes).into_owned(),
                            start: t0,
                            end: t1,
                            probability: data.p,
                        }),
                    }
                }
            }
            let (text, cleaned) = text::clean(String::from_utf8_lossy(&text_bytes).trim());
            if cleaned {
                tracing::debug!("caption, credit or annotation text removed from a segment");
            }
            let avg_logprob = if tokens.is_empty() {
                0.0
            } else {
                logprob_sum / tokens.len() as f32
            };
            let no_speech_prob = seg.no_speech_probability();
            // OpenAI's rule: a segment that is probably silence and poorly predicted is dropped.
            if text.is_empty()
                || (no_speech_prob > opts.no_speech_threshold
                    && avg_logprob < opts.logprob_threshold)
            {
                continue;
            }
            segments.push(Segment {
                id: segments.len(),
                start: seg.start_timestamp().max(0) as f64 / 100.0,
                end: (seg.end_timestamp().max(0) as f64 / 100.0).min(duration.max(0.01)),
                compression_ratio: compression_ratio(&text),
                text,
                tokens,
                temperature: opts.temperature,
                avg_logprob,
                no_speech_prob,
                suspect: false,
            });
        }
        for w in &mut words {
            w.word = w.word.trim().to_string();
        }
        words.retain(|w| !w.word.is_empty());
        let text = segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Transcript {
            text,
            language: language.to_string(),
            language_probability: None,
            duration,
            segments,
            words: opts.word_timestamps.then_some(words),
            review: Review::default(),
        })
    }
}

/// Why a fast result should not be trusted, if it should not: it repeats itself, the model
/// was unsure of the language or the words, or the text is too short for the audio or stops
/// well before the sound does (the decoder gave up early).
fn suspicious(t: &Transcript, opts: &Options) -> Option<&'static str> {
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
    // stops seconds before that means the decoder gave up on the tail.
    let last_end = t.segments.last().map_or(0.0, |s| s.end);
    if opts.trim_silence && t.duration >= 4.0 && last_end < t.duration - 3.0 {
        return Some("text ends early");
    }
    None
}

/// OpenAI's compression ratio: text bytes over zlib-compressed bytes.
fn compression_ratio(text: &str) -> f32 {
    use std::io::Write;
    if text.is_empty() {
        return 0.0;
    }
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = enc.write_all(text.as_bytes());
    let compressed = enc.finish().map(|v| v.len()).unwrap_or(text.len());
    text.len() as f32 / compressed.max(1) as f32
}
