//! The command line: `earshot transcribe FILES...`, a batch shell over
//! [`crate::transcribe_bytes`].
//!
//! It expands folders, runs `--jobs` files at once on one shared model, writes each
//! transcript in every asked-for format (to `--output-dir` or stdout), shows progress on a
//! terminal, and ends with a one-line summary. Every failure names the file and the reason;
//! the exit code is 0 when all files succeeded, 1 when any failed, 2 for usage errors.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::audio::Limits;
use crate::engine::{self, AudioCtx, Options};
use crate::jobs::JobOptions;
use crate::output::{self, Format};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "earshot",
    version,
    about = "Speech-to-text for voice messages, on your own box"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "EARSHOT_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Transcribe audio files and folders (recursively).
    Transcribe(TranscribeArgs),
    /// Run the HTTP service (OpenAI-compatible API and durable jobs).
    Serve(crate::config::ServeConfig),
}

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

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Transcribe(args) => {
            telemetry::init(cli.log_format, "warn");
            transcribe(args)
        }
        Command::Serve(cfg) => {
            telemetry::init(cli.log_format, "info");
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: could not start the async runtime: {e}");
                    return 1;
                }
            };
            match rt.block_on(crate::server::run(cfg)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
    }
}

/// One input file, with the path its outputs mirror.
#[derive(Debug, Clone)]
struct Input {
    path: PathBuf,
    relative: PathBuf,
    /// The output file's path under `--output-dir`, less the format's extension:
    /// `relative` without its extension, or with it when two inputs would otherwise
    /// write the same file (`note.oga` and `note.m4a` give `note.oga.txt`, `note.m4a.txt`).
    out_base: PathBuf,
}

/// Give every input its own output base (see [`Input::out_base`]); two inputs whose names
/// are identical (the same file name from two folders) are refused, never overwritten.
fn assign_outputs(inputs: &mut [Input]) -> Result<(), String> {
    use std::collections::HashMap;
    let stem_of = |r: &Path| r.with_extension("");
    let mut by_stem: HashMap<PathBuf, usize> = HashMap::new();
    for i in inputs.iter() {
        *by_stem.entry(stem_of(&i.relative)).or_default() += 1;
    }
    let mut taken: HashMap<PathBuf, &Path> = HashMap::new();
    for i in inputs.iter_mut() {
        let stem = stem_of(&i.relative);
        i.out_base = if by_stem[&stem] > 1 {
            i.relative.clone()
        } else {
            stem
        };
    }
    for i in inputs.iter() {
        if let Some(other) = taken.insert(i.out_base.clone(), &i.path) {
            return Err(format!(
                "{} and {} would write the same output ({}.*); transcribe them in separate runs or into separate --output-dir folders",
                other.display(),
                i.path.display(),
                i.out_base.display()
            ));
        }
    }
    Ok(())
}

fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<Input>, String> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            let walker = walkdir::WalkDir::new(p)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')
                });
            for entry in walker {
                let entry = entry.map_err(|e| format!("{}: {e}", p.display()))?;
                if entry.file_type().is_file() {
                    let relative = entry
                        .path()
                        .strip_prefix(p)
                        .unwrap_or(entry.path())
                        .to_path_buf();
                    out.push(Input {
                        path: entry.path().to_path_buf(),
                        out_base: relative.clone(),
                        relative,
                    });
                }
            }
        } else {
            let name = p
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| p.clone());
            out.push(Input {
                path: p.clone(),
                out_base: name.clone(),
                relative: name,
            });
        }
    }
    assign_outputs(&mut out)?;
    Ok(out)
}

fn output_path(dir: &Path, input: &Input, format: Format) -> PathBuf {
    let mut name = input
        .out_base
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_else(|| "audio".into());
    name.push(".");
    name.push(format.extension());
    let parent = input.out_base.parent().unwrap_or(Path::new(""));
    dir.join(parent).join(name)
}

/// Write a file atomically (temp file + rename) so an interrupted batch leaves no half file.
fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

struct Done {
    index: usize,
    result: Result<crate::Outcome, String>,
    skipped: bool,
}

fn transcribe(mut args: TranscribeArgs) -> i32 {
    args.format.dedup();
    let inputs = match collect_inputs(&args.paths) {
        Ok(i) if i.is_empty() => {
            eprintln!(
                "error: no files found in {}",
                args.paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return 2;
        }
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let engine = match args.model.load() {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let plan = |jobs| {
        crate::config::parallelism(
            engine.backend(),
            crate::config::cores(),
            jobs,
            args.decode.threads,
        )
    };
    let mut par = plan(args.jobs);
    if par.jobs > inputs.len() {
        // Fewer files than jobs: the cores go to the files there are.
        par = plan(Some(inputs.len()));
    }
    let jobs = par.jobs;
    let opts = Arc::new(args.decode.options(par.threads));
    let limits = args.decode.limits();
    let task = if args.decode.translate {
        "translate"
    } else {
        "transcribe"
    };
    let single = inputs.len() == 1;
    let show_progress = !args.quiet && std::io::stderr().is_terminal() && !single;

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let inputs = Arc::new(inputs);
    let (tx, rx) = mpsc::channel::<Done>();
    let mut workers = Vec::new();
    for _ in 0..jobs {
        let (next, inputs, tx, engine, opts) = (
            next.clone(),
            inputs.clone(),
            tx.clone(),
            engine.clone(),
            opts.clone(),
        );
        let (out_dir, formats, skip_existing) = (
            args.output_dir.clone(),
            args.format.clone(),
            args.skip_existing,
        );
        workers.push(std::thread::spawn(move || loop {
            let index = next.fetch_add(1, Ordering::SeqCst);
            let Some(input) = inputs.get(index) else {
                break;
            };
            if skip_existing {
                if let Some(dir) = &out_dir {
                    if formats.iter().all(|f| output_path(dir, input, *f).exists()) {
                        let _ = tx.send(Done {
                            index,
                            result: Err(String::new()),
                            skipped: true,
                        });
                        continue;
                    }
                }
            }
            let span = tracing::info_span!("file", path = %input.path.display());
            let _g = span.enter();
            let result = std::fs::read(&input.path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    crate::transcribe_bytes(&engine, &bytes, &limits, &opts)
                        .map_err(|e| e.to_string())
                });
            if tx
                .send(Done {
                    index,
                    result,
                    skipped: false,
                })
                .is_err()
            {
                break;
            }
        }));
    }
    drop(tx);

    let bar = show_progress.then(|| {
        let b = indicatif::ProgressBar::new(inputs.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} files · {msg} · ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });

    // Print in input order: hold results that finish early.
    let mut pending: Vec<Option<Done>> = (0..inputs.len()).map(|_| None).collect();
    let mut printed = 0usize;
    let (mut ok, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut audio_s = 0.0f64;
    let stdout = std::io::stdout();
    for done in rx {
        let i = done.index;
        pending[i] = Some(done);
        while printed < pending.len() {
            let Some(done) = pending[printed].take() else {
                break;
            };
            let input = &inputs[printed];
            printed += 1;
            if done.skipped {
                skipped += 1;
                continue;
            }
            match done.result {
                Ok(outcome) => {
                    ok += 1;
                    audio_s += outcome.transcript.duration;
                    for w in &outcome.warnings {
                        eprintln!("warning: {}: {}", input.path.display(), w.message);
                    }
                    if let Err(e) = emit(&args, input, &outcome, task, single, &mut stdout.lock()) {
                        eprintln!(
                            "error: {}: could not write output: {e}",
                            input.path.display()
                        );
                        ok -= 1;
                        failed += 1;
                    }
                }
                Err(reason) => {
                    failed += 1;
                    let msg = format!("error: {}: {reason}", input.path.display());
                    match &bar {
                        Some(b) => b.println(msg),
                        None => eprintln!("{msg}"),
                    }
                }
            }
            if let Some(b) = &bar {
                b.set_message(format!("{} of audio", human_duration(audio_s)));
                b.inc(1);
            }
        }
    }
    for w in workers {
        let _ = w.join();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let wall = started.elapsed().as_secs_f64();
    if !args.quiet {
        let speed = if wall > 0.0 { audio_s / wall } else { 0.0 };
        let skipped_note = if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        };
        eprintln!(
            "{ok} ok, {failed} failed{skipped_note} · {} of audio in {} ({speed:.1}× real time, {})",
            human_duration(audio_s),
            human_duration(wall),
            engine.backend()
        );
    }
    i32::from(failed > 0)
}

fn emit(
    args: &TranscribeArgs,
    input: &Input,
    outcome: &crate::Outcome,
    task: &str,
    single: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let t = &outcome.transcript;
    if let Some(dir) = &args.output_dir {
        for f in &args.format {
            write_atomic(&output_path(dir, input, *f), &output::render(t, *f, task))?;
        }
        return Ok(());
    }
    for f in &args.format {
        if single {
            let s = output::render(t, *f, task);
            out.write_all(s.as_bytes())?;
            if f.is_json() {
                out.write_all(b"\n")?;
            }
        } else if let Some(mut v) = output::to_json(t, *f, task) {
            v["file"] = serde_json::Value::String(input.path.display().to_string());
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "==> {} <==", input.path.display())?;
            out.write_all(output::render(t, *f, task).as_bytes())?;
        }
    }
    out.flush()
}

/// `8m12s`, `41s`, `1h02m`.
pub fn human_duration(s: f64) -> String {
    let d = Duration::from_secs_f64(s.max(0.0));
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs / 60 % 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if s >= 10.0 {
        format!("{secs}s")
    } else {
        format!("{s:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str) -> Input {
        let p = PathBuf::from(path);
        let name = PathBuf::from(p.file_name().unwrap());
        Input {
            path: p,
            out_base: name.clone(),
            relative: name,
        }
    }

    /// Issue #13: `-o out a/note.oga a/note.m4a` wrote both to out/note.txt.
    #[test]
    fn outputs_never_collide() {
        let mut v = vec![
            input("a/note.oga"),
            input("a/note.m4a"),
            input("a/other.oga"),
        ];
        assign_outputs(&mut v).unwrap();
        let dir = Path::new("out");
        let paths: Vec<_> = v.iter().map(|i| output_path(dir, i, Format::Txt)).collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("out/note.oga.txt"),
                PathBuf::from("out/note.m4a.txt"),
                PathBuf::from("out/other.txt")
            ]
        );
        let mut same = vec![input("a/note.oga"), input("b/note.oga")];
        let e = assign_outputs(&mut same).unwrap_err();
        assert!(
            e.contains("a/note.oga and b/note.oga would write the same output"),
            "{e}"
        );
    }
}
