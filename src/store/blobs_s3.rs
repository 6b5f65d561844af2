//! The audio in an S3-compatible bucket (`s3://BUCKET/PREFIX` in `--audio-store`): Garage,
//! MinIO, Ceph RGW, AWS S3, Yandex Object Storage. An upload is spooled to a local file while
//! it is hashed, then PUT as `PREFIX/ab/cd/<sha256>` (in parts past 10 MiB); the row is
//! inserted only after the PUT completed, so a row never points at a missing object and a
//! failed PUT leaves no row. Identical audio is stored once: the commit asks for the object
//! first and skips a PUT the bucket already has. Reads check the bytes against their hash.
//!
//! The connection comes from the usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_SESSION_TOKEN`) and, for
//! a store that is not AWS, `AWS_ENDPOINT_URL` (plain `http://` is allowed when the endpoint
//! says so). The client is `object_store` (Apache Arrow's), run on a small runtime of its
//! own, so that the [`Blobs`] calls stay synchronous like the folder's and may come from
//! worker threads, the blocking pool or the async runtime alike.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{open_spool, Blobs, PendingBlob};

/// Bytes an upload is sent in: one PUT up to this size, a multipart upload past it.
const PART_BYTES: usize = 10 << 20;
/// How long one request may take, and how long retries of it may go on.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY_FOR: Duration = Duration::from_secs(30);
/// How long the readiness check waits for the bucket.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The object store could not be reached, or refused: the request may be retried later.
#[derive(Debug, thiserror::Error)]
#[error("audio store {url}: {message}")]
pub struct StoreUnavailable {
    url: String,
    message: String,
}

/// A bucket (and prefix) holding the audio.
pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    prefix: String,
    spool: PathBuf,
    /// Where the client's futures run; shut down without waiting when the store goes.
    rt: Option<tokio::runtime::Runtime>,
}

/// How to reach the bucket. [`S3Options::from_env`] reads the usual `AWS_*` variables;
/// anything not set here is still taken from them by the client (a session token, say).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// The store's URL, for a store that is not AWS (`AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`; us-east-1 when neither is set.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl S3Options {
    pub fn from_env() -> S3Options {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|e| !e.is_empty()))
        };
        S3Options {
            endpoint: var(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: var(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: var(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: var(&["AWS_SECRET_ACCESS_KEY"]),
        }
    }
}

/// `s3://bucket/prefix` split into the bucket and the prefix (without slashes at its ends);
/// an error a person can act on otherwise.
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url}: an S3 audio store is s3://BUCKET[/PREFIX]"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !ok {
        return Err(format!(
            "{url}: {bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, dots and hyphens)"
        ));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

impl S3Blobs {
    /// Connect to the bucket `url` names, with `spool` as the local folder uploads are
    /// spooled in, and check that the bucket answers (a list of at most one key).
    pub fn open(url: &str, spool: &Path, opts: &S3Options) -> io::Result<S3Blobs> {
        let (bucket, prefix) = parse_url(url).map_err(io::Error::other)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        let mut client = ClientOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(Duration::from_secs(5));
        if let Some(e) = &opts.endpoint {
            builder = builder.with_endpoint(e);
            client = client.with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &opts.region {
            builder = builder.with_region(r);
        }
        if let Some(k) = &opts.access_key_id {
            builder = builder.with_access_key_id(k);
        }
        if let Some(k) = &opts.secret_access_key {
            builder = builder.with_secret_access_key(k);
        }
        let builder = builder.with_client_options(client).with_retry(RetryConfig {
            max_retries: 4,
            retry_timeout: RETRY_FOR,
            ..RetryConfig::default()
        });
        let store = builder
            .build()
            .map_err(|e| io::Error::other(format!("audio store {url}: {e}")))?;
        open_spool(spool)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("earshot-s3")
            .enable_all()
            .build()?;
        let blobs = S3Blobs {
            store: Arc::new(store),
            url: url.to_string(),
            prefix,
            spool: spool.to_path_buf(),
            rt: Some(rt),
        };
        blobs.check()?;
        Ok(blobs)
    }

    fn key(&self, sha: &str) -> Key {
        let tail = format!("{}/{}/{sha}", &sha[0..2], &sha[2..4]);
        if self.prefix.is_empty() {
            Key::from(tail)
        } else {
            Key::from(format!("{}/{tail}", self.prefix))
        }
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> io::Error {
        io::Error::other(StoreUnavailable {
            url: self.url.clone(),
            message: e.to_string(),
        })
    }

    /// Run `fut` on the store's runtime and wait for it. Called from worker threads and the
    /// blocking pool (`jobs::Service` runs every store call there), never from a runtime
    /// thread.
    fn wait<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> io::Result<T> {
        let rt = self
            .rt
            .as_ref()
            .expect("the runtime lives as long as the store");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| self.unavailable("the client stopped"))
    }

    /// Store the spooled bytes under their hash unless the same bytes are there (a HEAD
    /// first); whether they were sent.
    fn put_if_absent(&self, p: &mut PendingBlob) -> io::Result<bool> {
        use std::io::Write;
        p.file.flush()?;
        let (sha, size) = (p.sha256(), p.size);
        let key = self.key(&sha);
        let (store, tmp) = (self.store.clone(), p.tmp.clone());
        let put = async move {
            match store.head(&key).await {
                Ok(meta) if meta.size == size => return Ok(false), // the same bytes are there
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
            let mut file = tokio::fs::File::open(&tmp)
                .await
                .map_err(|e| e.to_string())?;
            let mut up = BufWriter::with_capacity(store, key, PART_BYTES);
            let sent = async {
                tokio::io::copy(&mut file, &mut up).await?;
                up.shutdown().await
            }
            .await;
            if let Err(e) = sent {
                let _ = up.abort().await; // no half multipart upload left behind
                return Err(e.to_string());
            }
            Ok(true)
        };
        self.wait(put)?.map_err(|e| self.unavailable(e))
    }
}

impl Drop for S3Blobs {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Blobs for S3Blobs {
    fn begin(&self) -> io::Result<PendingBlob> {
        PendingBlob::create(&self.spool)
    }

    /// The PUT, done here so that a node's uploads go to the bucket side by side; the
    /// commit under the locks then only finds the object there.
    fn stage(&self, p: &mut PendingBlob) -> io::Result<bool> {
        self.put_if_absent(p)
    }

    fn commit(&self, mut p: PendingBlob) -> io::Result<(String, u64)> {
        // Normally staged already (a HEAD, then nothing); PUT again if the object went in
        // between, when the last job using the same bytes was deleted.
        self.put_if_absent(&mut p)?;
        Ok((p.sha256(), p.size)) // the spool file goes with `p`
    }

    fn read(&self, sha: &str) -> io::Result<Vec<u8>> {
        let (store, key) = (self.store.clone(), self.key(sha));
        let got = self.wait(async move { store.get(&key).await?.bytes().await })?;
        let bytes = match got {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("audio store {}: no object for {sha}", self.url),
                ))
            }
            Err(e) => return Err(self.unavailable(e)),
        };
        if hex::encode(Sha256::digest(&bytes)) != sha {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "audio store {}: the object for {sha} does not match its hash",
                    self.url
                ),
            ));
        }
        Ok(bytes.to_vec())
    }

    fn remove(&self, sha: &str) -> io::Result<()> {
        let (store, key) = (self.store.clone(), self.key(sha));
        match self.wait(async move { store.delete(&key).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    fn check(&self) -> io::Result<()> {
        let store = self.store.clone();
        let prefix = (!self.prefix.is_empty()).then(|| Key::from(self.prefix.clone()));
        let listed = self.wait(async move {
            use futures_util::StreamExt;
            let first = tokio::time::timeout(CHECK_TIMEOUT, async {
                store.list(prefix.as_ref()).next().await.transpose()
            });
            match first.await {
                Ok(r) => r.map(|_| ()).map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer in {} s", CHECK_TIMEOUT.as_secs())),
            }
        })?;
        listed.map_err(|e| self.unavailable(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket scripts/test.sh's Garage serves (`EARSHOT_TEST_S3_*`), with the key that
    /// may write (or the one that may only read). Without it the tests are skipped, except
    /// under CI, where they must run.
    fn options(read_only: bool) -> Option<(String, S3Options)> {
        let Ok(url) = std::env::var("EARSHOT_TEST_S3_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the S3 tests: scripts/test.sh starts Garage and sets EARSHOT_TEST_S3_URL"
            );
            eprintln!("skipped: EARSHOT_TEST_S3_URL is not set (scripts/test.sh sets it)");
            return None;
        };
        let var = |v: &str| std::env::var(v).ok();
        let which = if read_only { "_RO" } else { "" };
        Some((
            url,
            S3Options {
                endpoint: var("EARSHOT_TEST_S3_ENDPOINT"),
                region: var("EARSHOT_TEST_S3_REGION"),
                access_key_id: var(&format!("EARSHOT_TEST_S3{which}_KEY_ID")),
                secret_access_key: var(&format!("EARSHOT_TEST_S3{which}_SECRET")),
            },
        ))
    }

    /// A store under a prefix of its own in the test bucket.
    fn open(read_only: bool) -> Option<(S3Blobs, tempfile::TempDir)> {
        let (url, opts) = options(read_only)?;
        let spool = tempfile::tempdir().unwrap();
        let url = format!("{url}/unit-{}", uuid::Uuid::now_v7().simple());
        Some((S3Blobs::open(&url, spool.path(), &opts).unwrap(), spool))
    }

    super::super::conformance::blobs_behaviour!(open(false), stage_stores: true);

    #[test]
    fn bucket_urls() {
        assert_eq!(
            parse_url("s3://audio/earshot/prod/").unwrap(),
            ("audio".into(), "earshot/prod".into())
        );
        assert_eq!(
            parse_url("s3://audio").unwrap(),
            ("audio".into(), "".into())
        );
        assert!(parse_url("s3://A_b/x")
            .unwrap_err()
            .contains("not a bucket name"));
        assert!(parse_url("file:/x").is_err());
    }

    /// A store that does not answer is refused at start-up, with the reason, as
    /// "unavailable"; so is a PUT the store refuses, and nothing is left behind.
    #[test]
    fn an_unreachable_store_or_a_refused_put_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(); // free: nothing listens there once the listener is dropped
        let spool = tempfile::tempdir().unwrap();
        let opts = S3Options {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            region: Some("garage".into()),
            access_key_id: Some("GK00".into()),
            secret_access_key: Some("00".into()),
        };
        let e = S3Blobs::open("s3://nowhere", spool.path(), &opts)
            .err()
            .expect("nothing answers");
        assert!(crate::store::StorageError::Io(e).is_unavailable());

        let Some((blobs, spool)) = open(true) else {
            return;
        };
        let mut p = blobs.begin().unwrap();
        p.write(&super::super::conformance::unique_bytes(5000))
            .unwrap();
        let sha = p.sha256();
        let e = blobs
            .commit(p)
            .expect_err("a key that may only read cannot PUT");
        assert!(
            crate::store::StorageError::Io(e).is_unavailable(),
            "a refused PUT is 'unavailable'"
        );
        assert_eq!(
            blobs.read(&sha).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            std::fs::read_dir(spool.path()).unwrap().count(),
            0,
            "spool left"
        );
    }

    /// Bytes that do not match their hash (a store that changed them) are an error, not
    /// audio.
    #[test]
    fn an_object_that_does_not_match_its_hash_is_refused() {
        let Some((blobs, _spool)) = open(false) else {
            return;
        };
        let sha = "ab".repeat(32);
        let (store, key) = (blobs.store.clone(), blobs.key(&sha));
        blobs
            .wait(async move { store.put(&key, b"not that".to_vec().into()).await })
            .unwrap()
            .unwrap();
        let e = blobs.read(&sha).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        blobs.remove(&sha).unwrap();
    }
}
