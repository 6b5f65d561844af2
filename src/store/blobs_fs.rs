//! The audio in a folder (`file:` in `--audio-store`, the default): written to a temp file
//! while hashed, fsynced, renamed into place by its SHA-256, the folder fsynced; identical
//! audio is stored once.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Blobs;

/// The audio folder.
pub struct FsBlobs {
    root: PathBuf,
}

/// An upload being written: hash and size accumulate as chunks arrive.
pub struct PendingBlob {
    file: File,
    tmp: PathBuf,
    hasher: Sha256,
    size: u64,
}

impl PendingBlob {
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The SHA-256 of the bytes written so far (hex).
    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl Drop for PendingBlob {
    fn drop(&mut self) {
        // Abandoned (refused or failed) uploads leave nothing behind.
        let _ = fs::remove_file(&self.tmp);
    }
}

/// How old a spool file must be to count as left by a crash.
const STALE_SPOOL: std::time::Duration = std::time::Duration::from_secs(3600);

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FsBlobs {
    pub fn open(root: &Path) -> io::Result<FsBlobs> {
        fs::create_dir_all(root.join("tmp"))?;
        // Temp files from a crash are never referenced by a row: clear them. Only those an
        // hour old, since nodes sharing the folder may be spooling uploads into it right now.
        for e in fs::read_dir(root.join("tmp"))?.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_SPOOL);
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(FsBlobs {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, sha: &str) -> PathBuf {
        self.root.join(&sha[0..2]).join(&sha[2..4]).join(sha)
    }
}

impl Blobs for FsBlobs {
    fn begin(&self) -> io::Result<PendingBlob> {
        let tmp = self.root.join("tmp").join(uuid::Uuid::now_v7().to_string());
        let file = File::create(&tmp)?;
        Ok(PendingBlob {
            file,
            tmp,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    fn commit(&self, mut p: PendingBlob) -> io::Result<(String, u64)> {
        p.file.flush()?;
        p.file.sync_all()?;
        let sha = hex::encode(p.hasher.clone().finalize());
        let dest = self.path(&sha);
        let dir = dest.parent().expect("blob paths have a parent");
        fs::create_dir_all(dir)?;
        if dest.exists() {
            fs::remove_file(&p.tmp)?; // deduplicated: the same bytes are already durable
        } else {
            fs::rename(&p.tmp, &dest)?;
            fsync_dir(dir)?;
        }
        Ok((sha, p.size))
    }

    fn read(&self, sha: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(sha))
    }

    fn remove(&self, sha: &str) -> io::Result<()> {
        match fs::remove_file(self.path(sha)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
