//! Long recordings (issue #15): cut at pauses into pieces decoded side by side, stitched in
//! the file's times, the same text however many lanes ran, progress while running, a short
//! note served meanwhile, and a job cut short by `kill -9` going on from its stored pieces.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::server::Server;
use crate::common::*;

/// How many times each clip is in [`long_wav`]: 8 rounds (136 s) are too long for one
/// window, and longer than the two minutes a note is held in memory for, so the file is
/// read as a stream.
const ROUNDS: usize = 8;

/// About 17 s a round: Kennedy's "ask not" (11 s) and "go forward ten meters" (2.5 s), with
/// pauses of 1.2 to 2.2 s between them.
fn long_wav(rounds: usize) -> Vec<u8> {
    let jfk = ffmpeg_decode(&fixture("telegram_jfk.oga"));
    let go = ffmpeg_decode(&fixture("goforward_16k.wav"));
    let pause = |s: f64| vec![0.0f32; (s * 16_000.0) as usize];
    let mut all = Vec::new();
    for i in 0..rounds {
        all.extend_from_slice(&jfk);
        all.extend(pause(1.2 + 0.2 * (i % 6) as f64));
        all.extend_from_slice(&go);
        all.extend(pause(2.2 - 0.2 * (i % 6) as f64));
    }
    wav16k(all, None)
}

/// [`long_wav`] of [`ROUNDS`] in a temporary folder, for the CLI (with its model fetched).
fn long_file() -> (tempfile::TempDir, std::path::PathBuf) {
    model("tiny.en");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.wav");
    std::fs::write(&path, long_wav(ROUNDS)).unwrap();
    (dir, path)
}

fn count(text: &str, phrase: &str) -> usize {
    normalize(text).matches(phrase).count()
}

/// Segments and words in order, each inside the file, and every clip's words there exactly
/// as often as the clip is: nothing lost or doubled at a cut.
fn check_stitching(v: &serde_json::Value, rounds: usize) {
    let duration = v["duration"].as_f64().unwrap();
    let text = v["text"].as_str().unwrap();
    assert_eq!(count(text, "country"), 2 * rounds, "{text}");
    assert_eq!(count(text, "forward"), rounds, "{text}");
    let mut last_end = 0.0;
    for s in v["segments"].as_array().unwrap() {
        let (a, b) = (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap());
        assert!(a <= b && b <= duration + 0.01, "{s}");
        assert!(a >= last_end - 0.01, "segments out of order at {s}");
        last_end = b;
    }
    let mut last_start = 0.0;
    for w in v["words"].as_array().unwrap() {
        let a = w["start"].as_f64().unwrap();
        assert!(
            a >= last_start - 0.01 && a <= duration,
            "words out of order at {w}"
        );
        last_start = a;
    }
}

#[test]
fn a_long_recording_is_cut_stitched_and_the_same_however_many_lanes_ran() {
    let (_dir, path) = long_file();
    let run = |threads: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_earshot"))
            .current_dir(root())
            .env("RUST_LOG", "earshot=debug")
            .args(["--log-format", "json", "transcribe", "--model", "tiny.en"])
            .args(["-f", "verbose_json"])
            .args(["--word-timestamps", "--threads", threads])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        (String::from_utf8(out.stdout).unwrap(), log)
    };
    // Two threads make two lanes of one thread; one thread, one lane.
    let (two, log) = run("2");
    assert!(log.contains("long note decoded as a stream"), "{log}");
    assert!(log.contains("\"lanes\":2"), "{log}");
    let (one, log) = run("1");
    assert!(log.contains("\"lanes\":1"), "{log}");
    assert_eq!(two, one, "the pieces' order changed the result");
    let v: serde_json::Value = serde_json::from_str(&two).unwrap();
    check_stitching(&v, ROUNDS);
}

#[test]
fn progress_while_a_long_job_runs_and_short_notes_go_on_being_served() {
    let s = Server::start("tiny.en", &["--workers", "2", "--threads-per-job", "1"]);
    let long = long_wav(18);
    let r = s.req("POST", "/v1/jobs", &[("Content-Type", "audio/wav")], &long);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    let mut short_served_while_running = false;
    let start = Instant::now();
    loop {
        let j = s.get(&format!("/v1/jobs/{id}")).json();
        match j["status"].as_str().unwrap() {
            "done" => {
                assert!(j["progress"].is_null(), "{j}");
                check_stitching(&j["transcript"], 18);
                break;
            }
            "running" if !j["progress"].is_null() => {
                let p = &j["progress"];
                let f = p["fraction"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&f), "{p}");
                assert!(p["audio_seconds"].as_f64().unwrap() > 250.0, "{p}");
                seen.push(f);
                if !short_served_while_running {
                    // The other worker answers a short note now, long job or not.
                    let r = s.multipart(
                        "/v1/audio/transcriptions",
                        &[("model", "whisper-1")],
                        Some(("a.flac", &read_fixture("goforward.flac"))),
                        &[],
                    );
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert_eq!(
                        normalize(r.json()["text"].as_str().unwrap()),
                        "go forward 10 meters"
                    );
                    let still = s.get(&format!("/v1/jobs/{id}")).json();
                    short_served_while_running = still["status"] == "running";
                }
            }
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(600), "{j}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!seen.is_empty(), "no progress was shown while the job ran");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(
        short_served_while_running,
        "the short note waited for the long job"
    );
}

#[test]
fn a_long_job_killed_mid_way_goes_on_from_its_stored_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let wav = long_wav(ROUNDS);
    let mut s = Server::start_in(tmp.path(), "tiny.en", &["--workers", "1"]);
    let r = s.req("POST", "/v1/jobs", &[("Content-Type", "audio/wav")], &wav);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let db = tmp.path().join("earshot.sqlite");
    let stored = |id: &str| -> i64 {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.query_row("SELECT COUNT(*) FROM pieces WHERE job_id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    };
    // Kill as soon as a piece is stored, while the job still runs.
    let start = Instant::now();
    while stored(&id) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no piece was stored"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    s.kill9();
    let kept = stored(&id);
    assert!(kept > 0);
    let s = Server::start_in(tmp.path(), "tiny.en", &["--workers", "1"]);
    let resumed = s.wait_job(&id, Duration::from_secs(300));
    assert_eq!(resumed["status"], "done", "{resumed}");
    let log = s.log.lock().unwrap().join("\n");
    assert!(log.contains("resuming from stored pieces"), "{log}");
    assert_eq!(stored(&id), 0, "pieces outlived their job");
    // The same bytes again, from the start: the same text as the resumed job's.
    let r = s.req("POST", "/v1/jobs", &[("Content-Type", "audio/wav")], &wav);
    let again = s.wait_job(r.json()["id"].as_str().unwrap(), Duration::from_secs(300));
    assert_eq!(resumed["text"], again["text"]);
    assert_eq!(
        resumed["transcript"]["segments"],
        again["transcript"]["segments"]
    );
    check_stitching(&resumed["transcript"], ROUNDS);
}

/// `earshot transcribe` on one long file, on a terminal (`script` gives it one, as an
/// operator's shell would): a bar of the file's audio, with its percentage and how much of
/// how much is done, drawn while the pieces finish.
#[test]
fn the_cli_draws_a_long_files_progress_on_a_terminal() {
    let (_dir, path) = long_file();
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let cmd = format!(
        "{} transcribe --model tiny.en -f txt --threads 1 {}",
        quote(env!("CARGO_BIN_EXE_earshot")),
        quote(path.to_str().unwrap())
    );
    let out = Command::new("script")
        .current_dir(root())
        .env("TERM", "xterm")
        .args(["-qefc", &cmd, "/dev/null"])
        .output()
        .expect("script (Debian's bsdutils) runs the CLI on a terminal");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains(" of 2m") && screen.contains(" of audio") && screen.contains("% · "),
        "no bar of the file's audio: {screen}"
    );
    assert_eq!(count(&screen, "forward"), ROUNDS, "{screen}");
}
