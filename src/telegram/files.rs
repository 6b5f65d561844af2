//! A Telegram file's bytes: `getFile` (afresh each time: its links live about an hour), then
//! the download from the Bot API server, or on a local server (`--local` mode) the file it
//! wrote, read from inside its folder only. Shared by the bot and by jobs whose `source` is a
//! Telegram file.

use std::path::Path;

use super::api::{ApiError, BotApi, CLOUD_MAX_FILE};

/// Why a file could not be had.
#[derive(Debug)]
pub enum FileError {
    /// Over `max` bytes; `cloud`: over the cloud Bot API's 20 MB.
    TooLarge { cloud: bool },
    /// Telegram no longer has it, or the file id is wrong.
    Gone(String),
    /// The bot token was refused.
    Auth(String),
    /// No answer, a 5xx, a 429: may work later.
    Transient(ApiError),
    /// Writing it failed.
    Store(String),
}

/// Download the file `file_id` into `sink`, at most `max` bytes.
pub fn download(
    api: &BotApi,
    local_files: Option<&Path>,
    file_id: &str,
    max: u64,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), FileError> {
    let file = api.get_file(file_id).map_err(|e| match e {
        ApiError::Refused {
            ref description, ..
        } if description.contains("too big") => FileError::TooLarge { cloud: true },
        e if e.is_transient() => FileError::Transient(e),
        e @ ApiError::Refused {
            code: 401 | 403 | 404,
            ..
        } => FileError::Auth(e.to_string()),
        e => FileError::Gone(e.to_string()),
    })?;
    if local_files.is_none() && file.file_size.is_some_and(|s| s > CLOUD_MAX_FILE) {
        return Err(FileError::TooLarge { cloud: true });
    }
    if file.file_size.is_some_and(|s| s > max) {
        return Err(FileError::TooLarge { cloud: false });
    }
    let Some(path) = file.file_path else {
        return Err(FileError::Gone("getFile gave no file_path".into()));
    };
    match local_files {
        Some(dir) if path.starts_with('/') => read_local(dir, &path, max, sink),
        _ => api
            .download(&path, max, sink)
            .map(|_| ())
            .map_err(|e| match e {
                ApiError::TooLarge { .. } => FileError::TooLarge { cloud: false },
                e if e.is_transient() => FileError::Transient(e),
                e @ ApiError::Refused {
                    code: 401 | 403, ..
                } => FileError::Auth(e.to_string()),
                e => FileError::Gone(e.to_string()),
            }),
    }
}

/// A file a local Bot API server wrote, read only from inside its folder.
fn read_local(
    dir: &Path,
    path: &str,
    max: u64,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), FileError> {
    let gone = |e: std::io::Error| FileError::Gone(format!("the local Bot API file: {e}"));
    let root = dir.canonicalize().map_err(gone)?;
    let file = Path::new(path).canonicalize().map_err(gone)?;
    if !file.starts_with(&root) {
        return Err(FileError::Gone(
            "the Bot API server named a file outside --telegram-local-files; not read".into(),
        ));
    }
    let mut f = std::fs::File::open(&file).map_err(gone)?;
    crate::net::copy_capped(&mut f, max, sink)
        .map(|_| ())
        .map_err(|e| match e {
            crate::net::Capped::TooLarge => FileError::TooLarge { cloud: false },
            crate::net::Capped::Read(e) => gone(e),
            crate::net::Capped::Write(e) => FileError::Store(e.to_string()),
        })
}
