//! API keys: who may call `/v1`, under which name, and whether they see every job.
//!
//! - `--api-key NAME=SECRET` is a client key: it sees and acts on the jobs it created only.
//! - `--admin-api-key NAME=SECRET` sees everything (the inbox page's operators use one).
//! - A bare `--api-key SECRET` (the form before names) is an admin key named `default`, so
//!   set-ups made before keep working.
//! - `--api-keys-file FILE`: one `NAME=SECRET` per line, `admin` after it (space-separated)
//!   for an admin key, `#` comments. Read at start and again on SIGHUP, so a key is revoked
//!   without a restart.
//!
//! A name is 1-64 letters, digits, `.`, `_` or `-`. A value that does not start with such a
//! name and `=` is a bare secret.

use std::path::{Path, PathBuf};

use super::Secret;

/// One API key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Stored with each job it creates (`client`), shown at start-up; never secret.
    pub name: String,
    pub secret: Secret,
    /// Sees and acts on every job, and lists by `?client=`.
    pub admin: bool,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}",
            self.name,
            if self.admin { " (admin)" } else { "" }
        )
    }
}

/// The name a bare secret gets.
pub const DEFAULT_NAME: &str = "default";

fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `NAME=SECRET`, or a bare secret (then an admin key named `default`, whatever `admin`
/// says: today's form keeps its powers).
pub fn parse(value: &str, admin: bool) -> ApiKey {
    match value.split_once('=') {
        Some((name, secret)) if is_name(name) && !secret.is_empty() => ApiKey {
            name: name.to_string(),
            secret: Secret::new(secret.to_string()),
            admin,
        },
        _ => ApiKey {
            name: DEFAULT_NAME.to_string(),
            secret: Secret::new(value.to_string()),
            admin: true,
        },
    }
}

/// Why a keys file was not read.
#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("--api-keys-file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--api-keys-file {path}, line {line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
}

/// The keys a keys file lists.
pub fn read_file(path: &Path) -> Result<Vec<ApiKey>, KeysFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeysFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |line, reason| KeysFileError::Line {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let pair = fields.next().unwrap_or_default();
        let admin = match fields.next() {
            None => false,
            Some("admin") => true,
            Some(_) => return Err(bad(i + 1, "the third field may only be `admin`")),
        };
        if fields.next().is_some() {
            return Err(bad(i + 1, "expected NAME=SECRET, then `admin` or nothing"));
        }
        match pair.split_once('=') {
            Some((name, secret)) if is_name(name) && !secret.is_empty() => keys.push(ApiKey {
                name: name.to_string(),
                secret: Secret::new(secret.to_string()),
                admin,
            }),
            _ => {
                return Err(bad(
                    i + 1,
                    "expected NAME=SECRET (a name of letters, digits, '.', '_' or '-')",
                ))
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_secrets_and_the_bare_form() {
        let k = parse("crm=s3cr3t", false);
        assert_eq!(
            (k.name.as_str(), k.secret.expose(), k.admin),
            ("crm", "s3cr3t", false)
        );
        let a = parse("ops=abc=", true);
        assert_eq!(
            (a.name.as_str(), a.secret.expose(), a.admin),
            ("ops", "abc=", true)
        );
        // Today's form: an admin key named default, whatever flag it came from.
        let bare = parse("sk-local-test", false);
        assert_eq!(
            (bare.name.as_str(), bare.secret.expose(), bare.admin),
            ("default", "sk-local-test", true)
        );
        // Not a name before the `=`: the whole value is the secret.
        let b64 = parse("c2VjcmV0/+x==", false);
        assert_eq!(
            (b64.name.as_str(), b64.secret.expose()),
            ("default", "c2VjcmV0/+x==")
        );
        assert_eq!(format!("{k:?} {a:?}"), "crm ops (admin)");
    }

    #[test]
    fn a_keys_file_with_comments_admins_and_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(
            &path,
            "# shops\nshop-a=aaaa\n\nshop-b=bbbb\nops=oooo admin\n",
        )
        .unwrap();
        let keys = read_file(&path).unwrap();
        assert_eq!(format!("{keys:?}"), "[shop-a, shop-b, ops (admin)]");
        std::fs::write(&path, "shop-a=aaaa\nshop-b=bbbb root\n").unwrap();
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("admin"), "{e}");
        std::fs::write(&path, "just-a-secret\n").unwrap();
        assert!(read_file(&path).unwrap_err().to_string().contains("line 1"));
        assert!(read_file(&dir.path().join("missing")).is_err());
    }
}
