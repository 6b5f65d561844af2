//! The batch: inputs expanded from files and folders, each given its own output path,
//! transcribed `--jobs` at a time on one model, written atomically, with a progress bar
//! and a summary.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::output::{self, Format};

use super::TranscribeArgs;

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
    result: Result<crate::engine::Outcome, String>,
    skipped: bool,
}

pub(super) fn transcribe(mut args: TranscribeArgs) -> i32 {
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
    if !args.quiet {
        eprintln!(
            "earshot transcribe: {} file(s), backend={} jobs={} threads_per_job={} cpu_features={}",
            inputs.len(),
            engine.backend(),
            par.jobs,
            par.threads,
            crate::engine::cpu_features()
        );
    }
    let opts = Arc::new(args.decode.options(par.threads));
    let limits = args.decode.limits();
    let task = args.decode.job_options().task();
    let single = inputs.len() == 1;
    let terminal = !args.quiet && std::io::stderr().is_terminal();
    let show_progress = terminal && !single;
    // One long recording gets a bar of its own audio, drawn from its first piece on (a
    // short note is done before a bar would help).
    let audio_bar = (terminal && single).then(|| {
        let b = indicatif::ProgressBar::hidden();
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {percent}% · {msg} · ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let inputs = Arc::new(inputs);
    let (tx, rx) = mpsc::channel::<Done>();
    let mut workers = Vec::new();
    for _ in 0..jobs {
        let (next, inputs, tx, engine, opts, audio_bar) = (
            next.clone(),
            inputs.clone(),
            tx.clone(),
            engine.clone(),
            opts.clone(),
            audio_bar.clone(),
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
            let progress = |p: crate::engine::Progress| {
                if let Some(b) = &audio_bar {
                    if b.is_hidden() {
                        b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    }
                    b.set_length((p.total_s * 1000.0) as u64);
                    b.set_position((p.done_s * 1000.0) as u64);
                    b.set_message(format!(
                        "{} of {} of audio",
                        human_duration(p.done_s),
                        human_duration(p.total_s)
                    ));
                }
            };
            let result = std::fs::read(&input.path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    engine
                        .transcribe(
                            crate::engine::Request::recording(&bytes, &limits, &opts)
                                .watched(&progress),
                        )
                        .map_err(|e| e.to_string())
                });
            if let Some(b) = &audio_bar {
                b.finish_and_clear();
            }
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
    let (mut ok, mut failed, mut skipped, mut listen) = (0usize, 0usize, 0usize, 0usize);
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
                    let review = &outcome.transcript.review;
                    if review.needed {
                        listen += 1;
                        if !args.quiet {
                            let msg = format!("listen: {}: {}", input.path.display(), why(review));
                            match &bar {
                                Some(b) => b.println(msg),
                                None => eprintln!("{msg}"),
                            }
                        }
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
        let listen_note = if listen > 0 {
            format!(" ({listen} to listen to)")
        } else {
            String::new()
        };
        eprintln!(
            "{ok} ok{listen_note}, {failed} failed{skipped_note} · {} of audio in {} ({speed:.1}× real time, {}; cpu features {})",
            human_duration(audio_s),
            human_duration(wall),
            engine.backend(),
            crate::engine::cpu_features()
        );
    }
    i32::from(failed > 0)
}

fn emit(
    args: &TranscribeArgs,
    input: &Input,
    outcome: &crate::engine::Outcome,
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

/// Why a note needs a listen, for the terminal: its reasons, and where speech with no text
/// starts ("skipped_speech from 0:12 (1.3 s); low_confidence").
fn why(review: &crate::engine::review::Review) -> String {
    review
        .reasons
        .iter()
        .map(|r| match (r, review.skipped_speech.first()) {
            (crate::engine::review::Reason::SkippedSpeech, Some(s)) => format!(
                "{} from {} ({:.1} s)",
                r.code(),
                clock(s.start),
                review.skipped_speech_s
            ),
            _ => r.code().to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `0:12`, `12:05`.
fn clock(s: f64) -> String {
    let t = s.max(0.0).round() as u64;
    format!("{}:{:02}", t / 60, t % 60)
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
