//! Helpers shared by the integration tests: fixtures, the real models, ffmpeg as the
//! reference decoder, and the evaluation set's text normalization and error rates.
#![allow(dead_code)]

pub mod server;

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

pub fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// `ogg` with one byte flipped 60 bytes into its `page`-th page (counted from 0), inside
/// that page's audio once past the two header pages; and how many pages it has.
pub fn ogg_with_damaged_page(ogg: &[u8], page: impl FnOnce(usize) -> usize) -> (Vec<u8>, usize) {
    let starts: Vec<usize> = ogg
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"OggS")
        .map(|(i, _)| i)
        .collect();
    let mut d = ogg.to_vec();
    d[starts[page(starts.len())] + 60] ^= 0xff;
    (d, starts.len())
}

/// A real model fetched by scripts/fetch-model.sh (CI fetches them before the tests).
pub fn model(name: &str) -> PathBuf {
    let p = root().join("models").join(format!("ggml-{name}.bin"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch-model.sh {name}",
        p.display()
    );
    p
}

/// ffmpeg's decode of a file to 16 kHz mono f32 (libopus for Opus, as the reference).
pub fn ffmpeg_decode(path: &Path) -> Vec<f32> {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed (apt-get install ffmpeg)");
    let codec = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error"]);
    if codec == "opus" {
        cmd.args(["-c:a", "libopus"]);
    }
    let out = cmd
        .arg("-i")
        .arg(path)
        .args(["-ac", "1", "-ar", "16000", "-f", "f32le", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Pearson correlation of two signals over their common length, `b` shifted by `lag`.
pub fn correlation(a: &[f32], b: &[f32], lag: isize) -> f64 {
    let pairs: Vec<(f64, f64)> = (0..a.len())
        .filter_map(|i| {
            let j = i as isize + lag;
            (j >= 0 && (j as usize) < b.len()).then(|| (a[i] as f64, b[j as usize] as f64))
        })
        .collect();
    let n = pairs.len() as f64;
    let (ma, mb) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in &pairs {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa.sqrt() * sbb.sqrt()).max(1e-12)
}

/// The lag (in samples, within ±max) where `b` best matches `a`.
pub fn best_lag(a: &[f32], b: &[f32], max: isize) -> isize {
    (-max..=max)
        .max_by(|x, y| correlation(a, b, *x).total_cmp(&correlation(a, b, *y)))
        .unwrap()
}

/// The evaluation set's normalization: lowercase, punctuation to spaces, apostrophes
/// removed, ё→е, whitespace collapsed.
pub fn normalize(s: &str) -> String {
    let s: String = s
        .to_lowercase()
        .replace('ё', "е")
        .chars()
        .filter(|c| *c != '\'' && *c != '’')
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, y) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(x != y))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Character error rate, spaces ignored, after normalization.
pub fn cer(hyp: &str, reference: &str) -> f64 {
    let h: Vec<char> = normalize(hyp).chars().filter(|c| *c != ' ').collect();
    let r: Vec<char> = normalize(reference).chars().filter(|c| *c != ' ').collect();
    edit_distance(&h, &r) as f64 / r.len().max(1) as f64
}

/// Word error rate after normalization.
pub fn wer(hyp: &str, reference: &str) -> f64 {
    let h = normalize(hyp);
    let r = normalize(reference);
    let (h, r): (Vec<&str>, Vec<&str>) = (h.split(' ').collect(), r.split(' ').collect());
    edit_distance(&h, &r) as f64 / r.len().max(1) as f64
}

/// A 16-bit mono 16 kHz WAV of `samples` (-1..1). `declared_bytes` overrides the data size the
/// header claims (to fake a file that says it is longer than it is).
pub fn wav16k(samples: impl IntoIterator<Item = f32>, declared_bytes: Option<u32>) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).expect("a WAV header");
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .expect("writing to memory");
    }
    w.finalize().expect("writing to memory");
    let mut wav = out.into_inner();
    // A header that lies about the length (a file cut short, or one claiming hours): hound
    // writes the canonical 44-byte header, so the sizes sit at bytes 4 and 40.
    if let Some(n) = declared_bytes {
        wav[4..8].copy_from_slice(&n.saturating_add(36).to_le_bytes());
        wav[40..44].copy_from_slice(&n.to_le_bytes());
    }
    wav
}

/// One request a receiver got: its headers (lowercased names) and body.
pub type Received = (Vec<(String, String)>, Vec<u8>);

/// A webhook receiver on loopback: records each request, answers 500 to the first `fail_first`.
pub fn receiver(
    listener: std::net::TcpListener,
    fail_first: usize,
) -> std::sync::mpsc::Receiver<Received> {
    use std::io::{BufRead, BufReader, Read, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                let (k, v) = line.split_once(':').unwrap();
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let status = if n < fail_first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = conn.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            if tx.send((headers, body)).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
}

/// A TCP forwarder to `upstream` that the test can cut and restore: a store that goes away
/// while a node runs. Cut, it closes the connections it carries and refuses new ones.
pub struct TcpProxy {
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl TcpProxy {
    pub fn start(upstream: std::net::SocketAddr) -> TcpProxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, open2) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let server = match std::net::TcpStream::connect(upstream) {
                    Ok(s) if up2.load(Ordering::SeqCst) => s,
                    _ => continue, // cut: the connection is closed at once
                };
                let mut carried = open2.lock().unwrap();
                carried.push(client.try_clone().unwrap());
                carried.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        TcpProxy { addr, up, open }
    }

    /// Close every connection and refuse new ones (`false`), or carry them again (`true`).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
