//! Decode + resample speed on one core, as a multiple of real time.
//!
//! `bench/bench-decode.sh` makes the 10-minute inputs and runs this; it reads the files
//! named by EARSHOT_BENCH_FILES (space-separated) and prints one line per file.

use std::time::Instant;

use earshot::audio::{decode, Limits};

fn main() {
    let files = std::env::var("EARSHOT_BENCH_FILES").unwrap_or_default();
    if files.trim().is_empty() {
        eprintln!("set EARSHOT_BENCH_FILES (bench/bench-decode.sh does)");
        return;
    }
    let rounds: usize = std::env::var("EARSHOT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for path in files.split_whitespace() {
        let bytes = std::fs::read(path).expect("bench input");
        let mut best = f64::MAX;
        let mut audio_s = 0.0;
        for _ in 0..rounds {
            let t = Instant::now();
            let a = decode(&bytes, &Limits::default()).expect("decodes");
            best = best.min(t.elapsed().as_secs_f64());
            audio_s = a.duration_s();
        }
        println!("{path}: {audio_s:.1} s of audio decoded+resampled in {best:.3} s = {:.0}x real time (best of {rounds}, 1 thread)", audio_s / best);
    }
}
