//! Run the real `earshot serve` binary on a random port with a temp data folder, and talk
//! HTTP/1.1 to it over a plain TCP socket (no client library between the test and the wire).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    /// The bucket prefix the audio goes to (`EARSHOT_IT_S3`), or none for the data folder.
    pub bucket: Option<String>,
    /// The PostgreSQL database the job records go to (`EARSHOT_IT_POSTGRES`), or none for
    /// SQLite in the data folder.
    pub database: Option<String>,
    /// Every line the server wrote to stderr (JSON log lines), as it wrote them.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Start with a fresh data folder.
    pub fn start(model: &str, extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, model, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Start on an existing data folder (a restart). With `EARSHOT_IT_POSTGRES` set to a
    /// server's URL (scripts/test.sh does, for a second run of the service's tests), the job
    /// records go to a database of that server named after the data folder, so that a
    /// restart finds them; with `EARSHOT_IT_S3` set to a bucket's URL, the audio goes to a
    /// prefix of that bucket named the same way.
    pub fn start_in(data_dir: &Path, model: &str, extra: &[&str]) -> Server {
        Server::start_node(data_dir, data_dir, model, extra)
    }

    /// Start one node of a cluster: its own data folder, and the database and bucket prefix
    /// of `cluster` (any path naming the cluster), as [`Server::start_in`] picks them.
    pub fn start_node(cluster: &Path, data_dir: &Path, model: &str, extra: &[&str]) -> Server {
        Server::start_with(cluster, data_dir, model, extra, &[])
    }

    /// [`Server::start_node`] with more environment variables for the process.
    pub fn start_with(
        cluster: &Path,
        data_dir: &Path,
        model: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Server {
        super::model(model);
        let database = std::env::var("EARSHOT_IT_POSTGRES").ok().map(|url| {
            // On a plain thread: the synchronous client starts a runtime of its own, which
            // a tokio test's thread refuses.
            let dir = cluster.to_path_buf();
            std::thread::spawn(move || postgres_for(&url, &dir))
                .join()
                .unwrap()
        });
        // A test that names its own audio store keeps it.
        let own_store = extra.iter().any(|a| a.starts_with("--audio-store"));
        let bucket = std::env::var("EARSHOT_IT_S3")
            .ok()
            .filter(|_| !own_store)
            .map(|url| {
                let name = &sha256_hex(cluster.to_string_lossy().as_bytes())[..16];
                format!("{url}/it-{name}")
            });
        let mut command = Command::new(env!("CARGO_BIN_EXE_earshot"));
        if bucket.is_some() {
            for (to, from) in s3_env(false) {
                command.env(to, from);
            }
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = command
            .current_dir(super::root())
            .args([
                "--log-format",
                "json",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--model",
                model,
                "--data-dir",
            ])
            .arg(data_dir)
            .args(
                database
                    .iter()
                    .flat_map(|url| ["--database-url", url.as_str()]),
            )
            .args(
                bucket
                    .iter()
                    .flat_map(|url| ["--audio-store", url.as_str()]),
            )
            .args(extra)
            .env_remove("EARSHOT_API_KEYS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("earshot serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(a) = line.strip_prefix("earshot: listening on http://") {
                        let _ = tx.send(a.to_string());
                        sent = true;
                    }
                }
                if std::env::var_os("EARSHOT_TEST_SERVER_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed its address");
        Server {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            bucket,
            database,
            log,
            _tmp: None,
        }
    }

    /// The names (hashes) of the audio the server has stored: in its folder, or in its
    /// bucket prefix.
    pub fn stored_audio(&self) -> Vec<String> {
        match &self.bucket {
            None => files_in(&self.data_dir.join("audio"))
                .into_iter()
                .filter(|p| !p.starts_with(self.data_dir.join("audio").join("tmp")))
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect(),
            Some(url) => s3_list(url),
        }
    }

    /// Run `sqlite`, or `postgres` when the records are in PostgreSQL, on the server's
    /// database from outside, as an operator at a console would.
    pub fn db_execute(&self, sqlite: &str, postgres: &str) {
        match &self.database {
            Some(url) => {
                // On a plain thread, as in `start_with`.
                let (url, sql) = (url.clone(), postgres.to_string());
                std::thread::spawn(move || {
                    postgres::Client::connect(&url, postgres::NoTls)
                        .expect("the test PostgreSQL")
                        .batch_execute(&sql)
                        .expect("the statements run")
                })
                .join()
                .unwrap()
            }
            None => rusqlite::Connection::open(self.data_dir.join("earshot.sqlite"))
                .expect("the server's SQLite file")
                .execute_batch(sqlite)
                .expect("the statements run"),
        }
    }

    /// The uploads in flight in the server's spool (none once every request is answered).
    pub fn spooled(&self) -> Vec<PathBuf> {
        let spool = match self.bucket {
            None => self.data_dir.join("audio").join("tmp"),
            Some(_) => self.data_dir.join("spool"),
        };
        files_in(&spool)
    }

    /// Keep `tmp` (the data folder, say) until the server goes.
    pub fn keep(&mut self, tmp: tempfile::TempDir) {
        self._tmp = Some(tmp);
    }

    pub fn kill9(&mut self) {
        // SIGKILL: no shutdown code runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(&self.addr, method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], b"")
    }

    /// POST a multipart form: text fields plus one file.
    pub fn multipart(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        file: Option<(&str, &[u8])>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let (ct, body) = multipart_body(fields, file);
        let mut h = vec![("Content-Type", ct.as_str())];
        h.extend_from_slice(headers);
        self.req("POST", path, &h, &body)
    }

    /// Poll a job, with an API key, until it is done or failed (within five minutes).
    pub fn wait_job_with(&self, id: &str, key: (&str, &str)) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let r = self.req("GET", &format!("/v1/jobs/{id}"), &[key], b"");
            assert_eq!(r.status, 200, "{}", r.text());
            let j = r.json();
            if j["status"] == "done" || j["status"] == "failed" {
                return j;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "job {id} still {}",
                j["status"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Poll a job until it is done or failed.
    pub fn wait_job(&self, id: &str, timeout: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let r = self.get(&format!("/v1/jobs/{id}"));
            assert_eq!(r.status, 200, "{}", r.text());
            let j = r.json();
            if j["status"] == "done" || j["status"] == "failed" {
                return j;
            }
            assert!(
                start.elapsed() < timeout,
                "job {id} still {} after {timeout:?}",
                j["status"]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn multipart_body(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "earshot-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, data)) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading everything; a broken pipe then is fine.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = &rest[nl + 2 + size + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// The names of the objects under an `s3://bucket/prefix` of the test Garage (on a plain
/// thread, with a runtime of its own: callers may be tokio tests).
fn s3_list(url: &str) -> Vec<String> {
    use futures_util::TryStreamExt;
    use object_store::ObjectStore;
    let url = url.to_string();
    std::thread::spawn(move || {
        let (bucket, prefix) = url
            .strip_prefix("s3://")
            .and_then(|r| r.split_once('/'))
            .expect("s3://bucket/prefix");
        let env: std::collections::HashMap<_, _> = s3_env(false).into_iter().collect();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&env["AWS_ENDPOINT_URL"])
            .with_region(&env["AWS_REGION"])
            .with_access_key_id(&env["AWS_ACCESS_KEY_ID"])
            .with_secret_access_key(&env["AWS_SECRET_ACCESS_KEY"])
            .with_allow_http(true)
            .build()
            .unwrap();
        let prefix = object_store::path::Path::from(prefix);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(
                store
                    .list(Some(&prefix))
                    .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
                    .try_collect::<Vec<_>>(),
            )
            .unwrap()
    })
    .join()
    .unwrap()
}

/// The `AWS_*` variables for scripts/test.sh's Garage (`EARSHOT_TEST_S3_*`), with the key
/// that may write or the one that may only read.
pub fn s3_env(read_only: bool) -> Vec<(&'static str, String)> {
    let var =
        |v: &str| std::env::var(v).unwrap_or_else(|_| panic!("{v} (scripts/test.sh sets it)"));
    let which = if read_only { "_RO" } else { "" };
    vec![
        ("AWS_ENDPOINT_URL", var("EARSHOT_TEST_S3_ENDPOINT")),
        ("AWS_REGION", var("EARSHOT_TEST_S3_REGION")),
        (
            "AWS_ACCESS_KEY_ID",
            var(&format!("EARSHOT_TEST_S3{which}_KEY_ID")),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            var(&format!("EARSHOT_TEST_S3{which}_SECRET")),
        ),
    ]
}

/// A database on the PostgreSQL server at `url` for the data folder `dir` (made on first
/// use), and its URL.
fn postgres_for(url: &str, dir: &Path) -> String {
    let name = format!(
        "earshot_it_{}",
        &sha256_hex(dir.to_string_lossy().as_bytes())[..16]
    );
    let mut admin = postgres::Client::connect(url, postgres::NoTls).expect("the test PostgreSQL");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap()
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
    }
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}
