//! Whisper's languages, looked up in Rust.
//!
//! A language from a request or a flag is matched against whisper.cpp's own table here and
//! never handed to `whisper_lang_id`: that function logs an unknown code through
//! `whisper_log_internal`, which reuses its `va_list` for lines over 1023 bytes and so crashes
//! the process on a long code, and whisper-rs panics on a NUL byte before it even gets there.
//! Only codes from this table reach whisper.cpp, so no user text is ever logged by it.

use std::sync::OnceLock;

/// `(code, English name)` for every language id whisper.cpp knows, in id order.
fn table() -> &'static [(&'static str, &'static str)] {
    static TABLE: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=whisper_rs::get_lang_max_id())
            .filter_map(|id| {
                Some((
                    whisper_rs::get_lang_str(id)?,
                    whisper_rs::get_lang_str_full(id)?,
                ))
            })
            .collect()
    })
}

/// The id of a language given as a code ("ru") or an English name ("russian"), in any case;
/// `None` for anything else, however long or odd.
pub fn id(language: &str) -> Option<i32> {
    if language.is_empty() || language.len() > 32 || !language.is_ascii() {
        return None;
    }
    let l = language.to_ascii_lowercase();
    table()
        .iter()
        .position(|(code, name)| *code == l || *name == l)
        .map(|i| i as i32)
}

/// The canonical code ("ru") of a code or name; `None` when unknown.
pub fn code(language: &str) -> Option<&'static str> {
    id(language).map(|i| table()[i as usize].0)
}

/// The code of a language id whisper.cpp returned.
pub fn code_of(id: i32) -> Option<&'static str> {
    usize::try_from(id)
        .ok()
        .and_then(|i| table().get(i))
        .map(|(c, _)| *c)
}

/// The lowercase English name OpenAI reports ("russian"); the input itself when unknown.
pub fn name(language: &str) -> String {
    id(language)
        .map(|i| table()[i as usize].1.to_string())
        .unwrap_or_else(|| language.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names() {
        assert_eq!(code("ru"), Some("ru"));
        assert_eq!(code("RU"), Some("ru"));
        assert_eq!(code("Russian"), Some("ru"));
        assert_eq!(name("en"), "english");
        assert_eq!(code_of(id("de").unwrap()), Some("de"));
        assert_eq!(name("xx"), "xx");
    }

    /// The inputs that crashed or panicked the server (issue #13, item 2) are plain "unknown".
    #[test]
    fn hostile_input_is_unknown_without_touching_whisper() {
        assert_eq!(id(&"a".repeat(5000)), None);
        assert_eq!(id("r\0u"), None);
        assert_eq!(id("\0"), None);
        assert_eq!(id(""), None);
        assert_eq!(id("русский"), None);
        assert_eq!(code_of(-1), None);
        assert_eq!(code_of(10_000), None);
    }
}
