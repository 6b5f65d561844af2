//! `earshot transcribe`'s flags, low-level last: what to transcribe and where to write it,
//! then the model, then the decoder's options.

use std::path::PathBuf;

use clap::Args;

use crate::audio::Limits;
use crate::engine::{self, AudioCtx, Options};
use crate::job::JobOptions;
use crate::output::Format;

#[derive(Debug, Args, Clone)]
pub struct DecodeArgs {
    /// Spoken language as an ISO 639-1 code (ru, en, ...), or auto.
    #[arg(long, env = "EARSHOT_LANGUAGE", default_value = "auto")]
    pub language: String,
    /// Translate into English.
    #[arg(long)]
    pub translate: bool,
    /// Initial prompt: names and shop vocabulary that help recognition.
    #[arg(long, env = "EARSHOT_PROMPT")]
    pub prompt: Option<String>,
    /// Beam width. 1 = greedy with temperature fallback, and with --audio-ctx auto a second
    /// pass at beam 5 when a note's result looks cut short or wrong.
    #[arg(long, env = "EARSHOT_BEAM_SIZE", default_value_t = 1)]
    pub beam_size: u32,
    /// Candidates sampled at temperature > 0 in greedy mode.
    #[arg(long, default_value_t = engine::BEST_OF)]
    pub best_of: u32,
    /// Sampling temperature; raised by 0.2 on failure up to 1.0 unless --no-fallback.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Disable temperature fallback.
    #[arg(long)]
    pub no_fallback: bool,
    /// Drop a segment as silence above this no-speech probability (with a low log-prob).
    #[arg(long, default_value_t = engine::NO_SPEECH_THRESHOLD)]
    pub no_speech_threshold: f32,
    /// Retry at a higher temperature when the average log-probability falls below this.
    #[arg(long, default_value_t = engine::LOGPROB_THRESHOLD, allow_negative_numbers = true)]
    pub logprob_threshold: f32,
    /// Retry at a higher temperature when the text repeats itself more than this (whisper.cpp's entropy check).
    #[arg(long, default_value_t = engine::COMPRESSION_RATIO_THRESHOLD)]
    pub compression_ratio_threshold: f32,
    /// Encoder context: auto (fitted to clips under 30 s, decoded again with the full context
    /// when the result looks wrong), full (always the 30 s window), or a number of 20 ms
    /// positions up to 1500.
    #[arg(long, env = "EARSHOT_AUDIO_CTX", default_value = "auto", value_parser = parse_audio_ctx)]
    pub audio_ctx: AudioCtx,
    /// Encode the silence before and after the speech too (by default it is skipped;
    /// timestamps are those of the whole file either way).
    #[arg(long, env = "EARSHOT_KEEP_SILENCE")]
    pub keep_silence: bool,
    /// The careful settings, whatever the defaults: full audio context, beam 5, silence kept.
    #[arg(long, env = "EARSHOT_ACCURATE")]
    pub accurate: bool,
    /// Add per-word timestamps (verbose_json).
    #[arg(long)]
    pub word_timestamps: bool,
    /// CPU threads per file (default: 1 up to 4 cores, else 2; or cores / --jobs).
    #[arg(long, env = "EARSHOT_THREADS")]
    pub threads: Option<usize>,
    /// Largest accepted file in bytes.
    #[arg(long, env = "EARSHOT_MAX_BYTES", default_value_t = crate::audio::MAX_BYTES)]
    pub max_bytes: u64,
    /// Longest accepted audio in seconds.
    #[arg(long, env = "EARSHOT_MAX_DURATION", default_value_t = crate::audio::MAX_DURATION_S)]
    pub max_duration: f64,
}

fn parse_audio_ctx(s: &str) -> Result<AudioCtx, String> {
    match s {
        "auto" => Ok(AudioCtx::Auto),
        "full" => Ok(AudioCtx::Full),
        n => match n.parse::<u32>() {
            Ok(n) if (1..=1500).contains(&n) => Ok(AudioCtx::Fixed(n)),
            _ => Err("use auto, full, or a number of positions from 1 to 1500".into()),
        },
    }
}

impl DecodeArgs {
    /// The request options, as the API's [`JobOptions`] holds them.
    pub fn job_options(&self) -> JobOptions {
        JobOptions {
            language: Some(self.language.clone()),
            prompt: self.prompt.clone(),
            translate: self.translate,
            temperature: Some(self.temperature as f64),
            word_timestamps: self.word_timestamps,
            accurate: self.accurate,
            beam_size: Some(self.beam_size),
        }
    }

    /// The decoder options: the expert flags, with [`DecodeArgs::job_options`] over them.
    pub fn options(&self, threads: usize) -> Options {
        self.job_options().apply(Options {
            best_of: self.best_of,
            temperature_increment: if self.no_fallback {
                0.0
            } else {
                engine::TEMPERATURE_INCREMENT
            },
            threads: self.threads.unwrap_or(threads),
            no_speech_threshold: self.no_speech_threshold,
            logprob_threshold: self.logprob_threshold,
            compression_ratio_threshold: self.compression_ratio_threshold,
            audio_ctx: self.audio_ctx,
            trim_silence: !self.keep_silence,
            ..Options::default()
        })
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_bytes: self.max_bytes,
            max_duration_s: self.max_duration,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct TranscribeArgs {
    /// Audio files or folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format; repeat for several (txt, json, verbose_json, srt, vtt).
    #[arg(long, short = 'f', default_value = "txt", value_parser = clap::value_parser!(Format))]
    pub format: Vec<Format>,
    /// Write DIR/<relative path>/<stem>.<ext> per format instead of printing.
    #[arg(long, short = 'o')]
    pub output_dir: Option<PathBuf>,
    /// Files transcribed in parallel, sharing one loaded model (default: CPU cores /
    /// threads per file, i.e. one per core on up to 4 cores; 4-16 on a GPU).
    #[arg(long, short = 'j', env = "EARSHOT_JOBS")]
    pub jobs: Option<usize>,
    /// Skip files whose outputs already exist in --output-dir (resume a batch).
    #[arg(long, requires = "output_dir")]
    pub skip_existing: bool,
    /// No progress bar and no summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub model: crate::config::ModelArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

impl clap::builder::ValueParserFactory for Format {
    type Parser = clap::builder::ValueParser;
    fn value_parser() -> Self::Parser {
        clap::builder::ValueParser::new(|s: &str| s.parse::<Format>())
    }
}
