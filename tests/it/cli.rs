//! The `earshot transcribe` binary, run as a user runs it.

use std::process::{Command, Output};

use crate::common::*;

fn earshot(args: &[&str]) -> Output {
    earshot_env(&[], args)
}

/// `earshot` with these environment variables set, as a user sets them.
fn earshot_env(vars: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_earshot"))
        .current_dir(root())
        .env_remove("EARSHOT_MODEL")
        .envs(vars.iter().copied())
        .args(args)
        .output()
        .expect("earshot runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn whole_fixture_folder_reports_each_broken_file_and_exits_1() {
    model("tiny.en");
    let out = earshot(&[
        "transcribe",
        "--model",
        "tiny.en",
        "--jobs",
        "2",
        "--beam-size",
        "1",
        "tests/fixtures",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (file, reason) in [
        ("broken/empty.ogg", "empty file"),
        ("broken/random.bin", "not audio"),
        (
            "broken/cdn_error.ogg",
            "not audio (looks like an HTML page)",
        ),
        (
            "broken/error.json.oga",
            "not audio (looks like a JSON document)",
        ),
        ("broken/amr_voice.amr", "unsupported codec: AMR-NB"),
        ("broken/video_only.mp4", "no audio track in the mp4 file"),
        ("broken/ogg_header_then_garbage.ogg", "corrupt audio"),
        ("broken/mp4_header_then_garbage.m4a", "corrupt audio"),
        (
            "fuzz/wav_channels_overflow.wav",
            "corrupt audio: wav: the header",
        ),
    ] {
        let line = format!("error: tests/fixtures/{file}: {reason}");
        assert!(stderr.contains(&line), "missing {line:?} in\n{stderr}");
    }
    assert!(
        stderr.contains(
            "warning: tests/fixtures/broken/telegram_ru_truncated.oga: the file is incomplete"
        ),
        "{stderr}"
    );
    // Valid files print under headers, in input order, with the right text.
    let jfk = stdout
        .split("==> tests/fixtures/telegram_jfk.oga <==\n")
        .nth(1)
        .expect(&stdout);
    assert!(
        normalize(jfk.lines().next().unwrap()).contains("ask not what your country can do for you"),
        "{stdout}"
    );
    let a = stdout.find("chrome_jfk.webm").unwrap();
    let b = stdout.find("goforward.flac").unwrap();
    assert!(a < b, "outputs are in input order");
    // Notes that need a listen are named, with why; the summary counts them.
    assert!(
        stderr.contains("listen: tests/fixtures/silence_10s.oga: no_speech"),
        "{stderr}"
    );
    let listen = stderr.lines().filter(|l| l.starts_with("listen: ")).count();
    let summary = stderr.lines().last().unwrap();
    assert!(
        summary.starts_with(&format!("18 ok ({listen} to listen to), 9 failed · ")),
        "{summary}"
    );
    assert!(summary.contains("× real time"), "{summary}");
}

/// A note with speech the text has none for says so on the terminal, with where to listen
/// from: Kennedy, then the same speech backwards 24 dB under him, which no model can read.
#[test]
fn speech_with_no_text_is_named_with_where_to_listen() {
    model("tiny.en");
    let jfk = earshot::audio::decode(&read_fixture("telegram_jfk.oga"), &Default::default())
        .unwrap()
        .samples;
    let murmur: Vec<f32> = jfk
        .iter()
        .rev()
        .map(|x| x * 10f32.powf(-24.0 / 20.0))
        .collect();
    let note: Vec<f32> = jfk
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0.0, 16_000))
        .chain(murmur)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("note.wav");
    std::fs::write(&path, wav16k(note, None)).unwrap();
    let out = earshot(&["transcribe", "--model", "tiny.en", path.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        normalize(&stdout).contains("ask not what your country"),
        "{stdout}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("listen: "))
        .unwrap_or_else(|| panic!("no listen line in\n{stderr}"));
    assert!(line.contains("note.wav: skipped_speech from 0:1"), "{line}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("1 ok (1 to listen to), 0 failed"),
        "{stderr}"
    );
}

#[test]
fn one_file_prints_just_its_transcript() {
    model("tiny.en");
    let out = earshot(&[
        "transcribe",
        "--model",
        "tiny.en",
        "-q",
        "tests/fixtures/goforward.flac",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(normalize(&text(&out.stdout)), "go forward 10 meters");
    assert_eq!(text(&out.stderr), "", "--quiet prints nothing else");
}

#[test]
fn json_lines_for_several_files() {
    model("tiny.en");
    let out = earshot(&[
        "transcribe",
        "--model",
        "tiny.en",
        "-f",
        "verbose_json",
        "tests/fixtures/goforward.mp3",
        "tests/fixtures/goforward_8k_mulaw.wav",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["file"], "tests/fixtures/goforward.mp3");
    assert_eq!(lines[1]["language"], "english");
    assert!(lines[1]["segments"][0]["end"].as_f64().unwrap() > 1.0);
}

#[test]
fn output_dir_mirrors_folders_and_resumes() {
    model("tiny.en");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("inbox/2026-11");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(fixture("goforward.mp3"), src.join("note.mp3")).unwrap();
    std::fs::copy(fixture("broken/cdn_error.ogg"), src.join("bad.ogg")).unwrap();
    let out_dir = dir.path().join("out");
    let inbox = dir.path().join("inbox");
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "transcribe",
            "--model",
            "tiny.en",
            "-f",
            "txt",
            "-f",
            "srt",
            "-f",
            "vtt",
            "-f",
            "json",
            "-o",
        ];
        a.push(out_dir.to_str().unwrap());
        a.push(inbox.to_str().unwrap());
        a.extend_from_slice(extra);
        earshot(&a)
    };
    let first = args(&[]);
    assert_eq!(first.status.code(), Some(1), "bad.ogg fails");
    let base = out_dir.join("2026-11/note");
    let srt = std::fs::read_to_string(base.with_extension("srt")).unwrap();
    assert!(srt.starts_with("1\n00:00:0"), "{srt}");
    assert!(std::fs::read_to_string(base.with_extension("vtt"))
        .unwrap()
        .starts_with("WEBVTT\n\n"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(
        normalize(json["text"].as_str().unwrap()),
        "go forward 10 meters"
    );
    assert!(!out_dir.join("2026-11/bad.txt").exists());

    let again = args(&["--skip-existing"]);
    let summary = text(&again.stderr);
    assert!(summary.contains("0 ok, 1 failed, 1 skipped"), "{summary}");
}

#[test]
fn missing_model_says_how_to_fetch_it() {
    let out = earshot(&[
        "transcribe",
        "--model",
        "medium",
        "--models-dir",
        "/nonexistent",
        "tests/fixtures/goforward.mp3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("/nonexistent/ggml-medium.bin"), "{err}");
    assert!(err.contains("scripts/fetch-model.sh medium"), "{err}");
}

/// Issue #13: run from any folder, a model fetched into the user's data folder is found.
#[test]
fn model_in_the_user_data_folder_is_found_from_any_folder() {
    let m = model("tiny.en");
    let xdg = tempfile::tempdir().unwrap();
    let dir = xdg.path().join("earshot/models");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&m, dir.join("ggml-tiny.en.bin")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .current_dir(elsewhere.path())
        .env_remove("EARSHOT_MODEL")
        .env_remove("EARSHOT_MODELS_DIR")
        .env("XDG_DATA_HOME", xdg.path())
        .args(["transcribe", "--model", "tiny.en"])
        .arg(root().join("tests/fixtures/goforward.mp3"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).to_lowercase().contains("forward"));
}

/// Issue #13: `-o out a/note.oga a/note.m4a` wrote both transcripts to out/note.txt.
#[test]
fn same_stem_inputs_keep_their_extension_in_the_output() {
    model("tiny.en");
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("in");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::copy(
        root().join("tests/fixtures/telegram_jfk.oga"),
        a.join("note.oga"),
    )
    .unwrap();
    std::fs::copy(
        root().join("tests/fixtures/goforward.mp3"),
        a.join("note.mp3"),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .current_dir(root())
        .env_remove("EARSHOT_MODEL")
        .args(["transcribe", "--model", "tiny.en", "-o"])
        .arg(&out_dir)
        .arg(a.join("note.oga"))
        .arg(a.join("note.mp3"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let jfk = std::fs::read_to_string(out_dir.join("note.oga.txt")).unwrap();
    let fwd = std::fs::read_to_string(out_dir.join("note.mp3.txt")).unwrap();
    assert!(jfk.to_lowercase().contains("americans"), "{jfk}");
    assert!(fwd.to_lowercase().contains("forward"), "{fwd}");
    assert!(!out_dir.join("note.txt").exists());
    // The same name from two folders cannot be told apart: refused before any work.
    let b = dir.path().join("other");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::copy(a.join("note.oga"), b.join("note.oga")).unwrap();
    let out = earshot(&[
        "transcribe",
        "--model",
        "tiny.en",
        "-o",
        out_dir.to_str().unwrap(),
        a.join("note.oga").to_str().unwrap(),
        b.join("note.oga").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("would write the same output"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(earshot(&["transcribe"]).status.code(), Some(2));
    assert_eq!(
        earshot(&["transcribe", "-f", "docx", "x.ogg"])
            .status
            .code(),
        Some(2)
    );
    let out = earshot(&["transcribe", "--model", "tiny.en", "no/such/file.ogg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such/file.ogg"));
}

/// In the CPU-only build: `--gpu` falls back to the CPU with a warning that says why, and
/// `--require-gpu` refuses to run at all.
#[cfg(not(feature = "cuda"))]
#[test]
fn gpu_flags_without_a_gpu() {
    let fixture = "tests/fixtures/telegram_jfk.oga";
    let out = earshot(&["transcribe", "--model", "tiny.en", "--gpu", fixture]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("A GPU WAS ASKED FOR"), "{err}");
    assert!(err.contains("--features cuda"), "{err}");
    assert!(err.contains("real time, cpu; cpu features "), "{err}");
    assert!(text(&out.stdout)
        .to_lowercase()
        .contains("fellow americans"));

    let out = earshot(&["transcribe", "--model", "tiny.en", "--require-gpu", fixture]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--require-gpu is set but"), "{err}");
    assert!(out.stdout.is_empty());

    let out = earshot_env(
        &[("EARSHOT_NO_GPU", "true")],
        &["transcribe", "--model", "tiny.en", fixture],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stderr).contains("A GPU WAS ASKED FOR"));
}

/// The start-up line names the CPU features in use. In the default (portable) build on a CPU
/// with AVX-512 VNNI, the AVX-512 kernels are chosen at run time; `--cpu-kernels avx2` (or
/// `EARSHOT_CPU_KERNELS=avx2`) masks them off, and the note still comes out right. A build
/// compiled for AVX-512 (`GGML_NATIVE=ON` on such a CPU) cannot mask them, and says so.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_cpu_features_in_use_are_named_and_avx512_can_be_masked_off() {
    model("tiny.en");
    let fixture = "tests/fixtures/telegram_jfk.oga";
    let features = |err: &str| -> String {
        let line = err
            .lines()
            .find(|l| l.starts_with("earshot transcribe: 1 file(s),"))
            .unwrap_or_else(|| panic!("no start-up line in:\n{err}"));
        line.split("cpu_features=")
            .nth(1)
            .expect("cpu_features=")
            .to_string()
    };
    let auto = earshot(&["transcribe", "--model", "tiny.en", fixture]);
    let err = text(&auto.stderr);
    assert_eq!(auto.status.code(), Some(0), "{err}");
    assert!(text(&auto.stdout)
        .to_lowercase()
        .contains("fellow americans"));
    let auto_features = features(&err);
    assert!(auto_features.contains("AVX2"), "{auto_features}");
    let built = auto_features.split(" +").next().unwrap();
    let built_for_avx512 = built.split(',').any(|f| f.starts_with("AVX512"));

    let masked = earshot_env(
        &[("EARSHOT_CPU_KERNELS", "avx2")],
        &["transcribe", "--model", "tiny.en", fixture],
    );
    let err = text(&masked.stderr);
    if built_for_avx512 {
        assert_eq!(masked.status.code(), Some(2), "{err}");
        assert!(
            err.contains("--cpu-kernels avx2 cannot mask AVX-512 off"),
            "{err}"
        );
        return;
    }
    assert_eq!(masked.status.code(), Some(0), "{err}");
    assert!(text(&masked.stdout)
        .to_lowercase()
        .contains("fellow americans"));
    let masked_features = features(&err);
    assert_eq!(masked_features, built, "{err}");
    assert!(!masked_features.contains("AVX512"), "{masked_features}");

    use std::arch::is_x86_feature_detected as has;
    if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
        assert!(
            auto_features.ends_with(" +AVX512,AVX512_VNNI (chosen at run time)"),
            "{auto_features}"
        );
    } else {
        assert_eq!(auto_features, built, "{auto_features}");
    }
}
