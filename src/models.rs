//! Model lookup: a name such as `base` or `tiny.en-q8_0` resolves to
//! `<models-dir>/ggml-<name>.bin`; anything that looks like a path is used as it is.
//! When the file is missing, the error names the command that fetches it.

use std::path::{Path, PathBuf};

/// The default model: multilingual, because most voice notes we see are Russian, and
/// 8-bit: 1.5× faster than f16 on the CPU for about the same accuracy (README "Performance").
pub const DEFAULT_MODEL: &str = "base-q8_0";

/// Where a model name or path points.
pub fn resolve(name_or_path: &str, models_dir: &Path) -> PathBuf {
    let looks_like_path = name_or_path.contains('/') || name_or_path.ends_with(".bin");
    if looks_like_path {
        PathBuf::from(name_or_path)
    } else {
        models_dir.join(format!("ggml-{name_or_path}.bin"))
    }
}

/// A message for a missing model that says what to run.
pub fn missing_hint(name_or_path: &str, path: &Path) -> String {
    if name_or_path.contains('/') || name_or_path.ends_with(".bin") {
        format!("model file {} does not exist", path.display())
    } else {
        let dir = path
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!(
            "model '{name_or_path}' is not installed ({} is missing); fetch it with: scripts/fetch-model.sh {name_or_path} --models-dir {dir}",
            path.display()
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
            missing_hint("tiny.en", Path::new("models/ggml-tiny.en.bin"))
                .contains("scripts/fetch-model.sh tiny.en")
        );
    }
}
