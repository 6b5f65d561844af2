//! The audio in a folder (`file:` in `--audio-store`, the default): written to a temp file
//! while hashed, fsynced, renamed into place by its SHA-256, the folder fsynced; identical
//! audio is stored once.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{open_spool, Blobs, PendingBlob};

/// The audio folder.
pub struct FsBlobs {
    root: PathBuf,
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FsBlobs {
    /// The folder (made if missing); its spool is `tmp/` inside it, so a commit is a rename.
    pub fn open(root: &Path) -> io::Result<FsBlobs> {
        open_spool(&root.join("tmp"))?;
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
        PendingBlob::create(&self.root.join("tmp"))
    }

    fn commit(&self, mut p: PendingBlob) -> io::Result<(String, u64)> {
        p.file.flush()?;
        p.file.sync_all()?;
        let sha = p.sha256();
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

    fn check(&self) -> io::Result<()> {
        fs::metadata(self.root.join("tmp")).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    super::super::conformance::blobs_behaviour!({
        let dir = tempfile::tempdir().unwrap();
        Some((FsBlobs::open(dir.path()).unwrap(), dir))
    }, stage_stores: false);

    /// A spool file a crash left is cleared at the next start once it is an hour old, and
    /// not before: another node may be writing it.
    #[test]
    fn stale_spool_files_go_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("old"), b"x").unwrap();
        fs::write(tmp.join("new"), b"x").unwrap();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3700);
        File::options()
            .write(true)
            .open(tmp.join("old"))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        FsBlobs::open(dir.path()).unwrap();
        assert!(!tmp.join("old").exists());
        assert!(tmp.join("new").exists());
    }
}
