//! What a transcription may be asked: [`Options`], the audio context ([`AudioCtx`]), and
//! the decoding defaults, which the command line's flags point at.

use serde::Serialize;

use crate::audio::WHISPER_RATE;

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
/// Russian CER on the eval set, 128 and 256 about 1 (`bench/bench.sh --levers`).
pub const CTX_MARGIN: usize = 128;
pub(super) const CTX_FULL: usize = 1500;
/// Positions language detection looks at first in `Auto` mode when no decoding pass will
/// reuse its encoder output (5.12 s; 10.24 s took 10% longer on the 49 eval clips for the
/// same result).
pub(super) const CTX_DETECT: usize = 256;
/// Below this probability, a short-context language detection is done again in full.
pub(super) const REDETECT_BELOW: f32 = 0.9;

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
