//! Model lookup: a name such as `base` or `tiny.en-q8_0` resolves to
//! `<models-dir>/ggml-<name>.bin`; anything that looks like a path is used as it is.
//! When the file is missing, the error names the command that fetches it.

use std::path::{Path, PathBuf};

/// The default model: multilingual, because most voice notes we see are Russian, and
/// 8-bit: 1.5× faster than f16 on the CPU for about the same accuracy (docs/performance.md).
pub const DEFAULT_MODEL: &str = "base-q8_0";
/// The voice-activity model looked up by default (`ggml-silero-vad.bin`).
pub const DEFAULT_VAD_MODEL: &str = "silero-vad";

/// The folders a model name is looked up in, in order: `--models-dir` when given, then
/// `./models`, then `$XDG_DATA_HOME/earshot/models` (`~/.local/share/earshot/models`), so
/// `earshot transcribe` works from any folder once a model is fetched to the user's folder.
pub fn search_dirs(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    dirs.push(PathBuf::from("models"));
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(d) = data_home {
        dirs.push(d.join("earshot/models"));
    }
    dirs.dedup();
    dirs
}

/// The first existing file for a model name in `dirs` (a path is used as it is); when there
/// is none, where it was looked for, for the message.
pub fn find(name_or_path: &str, dirs: &[PathBuf]) -> Result<PathBuf, Vec<PathBuf>> {
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| resolve(name_or_path, d)).collect();
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => {
            let mut tried = candidates;
            tried.dedup();
            Err(tried)
        }
    }
}

/// Where a model name or path points.
pub fn resolve(name_or_path: &str, models_dir: &Path) -> PathBuf {
    let looks_like_path = name_or_path.contains('/') || name_or_path.ends_with(".bin");
    if looks_like_path {
        PathBuf::from(name_or_path)
    } else {
        models_dir.join(format!("ggml-{name_or_path}.bin"))
    }
}

/// A message for a missing model that says where it was looked for and what to run.
pub fn missing_hint(name_or_path: &str, tried: &[PathBuf]) -> String {
    let list = tried
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if name_or_path.contains('/') || name_or_path.ends_with(".bin") {
        format!("model file {list} does not exist")
    } else {
        format!(
            "model '{name_or_path}' is not installed (looked for {list}); fetch it with: scripts/fetch-model.sh {name_or_path} --user (into ~/.local/share/earshot/models), or pass --models-dir"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(
            resolve("base", Path::new("models")),
            PathBuf::from("models/ggml-base.bin")
        );
        assert_eq!(
            resolve("/m/x.bin", Path::new("models")),
            PathBuf::from("/m/x.bin")
        );
        assert!(
            missing_hint("tiny.en", &[PathBuf::from("models/ggml-tiny.en.bin")])
                .contains("scripts/fetch-model.sh tiny.en")
        );
    }

    /// Issue #13: a model fetched to the user's folder is found from any folder.
    #[test]
    fn looks_in_the_given_folder_then_models_then_the_user_folder() {
        let home = tempfile::tempdir().unwrap();
        let user = home.path().join("earshot/models");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(user.join("ggml-x.bin"), b"x").unwrap();
        let given = home.path().join("given");
        let dirs = vec![given.clone(), PathBuf::from("models"), user.clone()];
        assert_eq!(find("x", &dirs), Ok(user.join("ggml-x.bin")));
        std::fs::create_dir_all(&given).unwrap();
        std::fs::write(given.join("ggml-x.bin"), b"x").unwrap();
        assert_eq!(find("x", &dirs), Ok(given.join("ggml-x.bin")));
        let tried = find("nope", &dirs).unwrap_err();
        assert_eq!(tried.len(), 3);
        assert!(missing_hint("nope", &tried).contains(&user.display().to_string()));
        let d = search_dirs(Some(Path::new("/m")));
        assert_eq!(d[0], PathBuf::from("/m"));
        assert_eq!(d[1], PathBuf::from("models"));
        assert!(d[2].ends_with("earshot/models"));
    }
}
