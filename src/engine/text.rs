//! Text Whisper writes that nobody said: subtitle credits, caption and music annotations,
//! and repetition loops. Caught per segment as the text comes out of the decoder, in every
//! pass (the guard's retry included).
//!
//! Whisper learned from subtitled video, so on the silence or noise at the end of a note it
//! may append what subtitles carry: a credit ("Редактор субтитров А.Семкин"), a caption
//! ("Субтитры", "[музыка]", "♪"), or a mood line in capitals ("СПОКОЙНАЯ МУЗЫКА"). A fixed
//! list of phrases misses the next variant, so [`clean`] works from the shape as well:
//! * anything in brackets, parentheses, asterisks or between music notes;
//! * a sentence written wholly in capitals (two words or more: people are transcribed in
//!   sentence case, captions are not);
//! * a sentence made only of caption words ("музыка", "субтитры", "applause", ...) and
//!   adjectives;
//! * a subtitle credit, up to the end of the segment.
//!
//! [`collapse_loops`] finds a phrase repeated over and over and keeps one copy.

/// Nouns that make up captions, in the languages notes arrive in. A sentence of these and
/// adjectives only is a caption; one with any other word is speech about them.
const CAPTION_WORDS: &[&str] = &[
    // ru
    "музыка",
    "музыки",
    "музыкой",
    "субтитры",
    "субтитров",
    "субтитр",
    "титры",
    "аплодисменты",
    "смех",
    "тишина",
    "шум",
    "вздох",
    "кашель",
    "продолжение",
    "следует",
    "играет",
    "звучит",
    "песня",
    "мелодия",
    "инструментальная",
    // en
    "music",
    "playing",
    "plays",
    "subtitles",
    "subtitle",
    "captions",
    "caption",
    "applause",
    "laughter",
    "laughs",
    "silence",
    "noise",
    "sighs",
    "coughs",
    "instrumental",
    "song",
    "outro",
    "intro",
    "continues",
    "upbeat",
    "soft",
    "gentle",
    "dramatic",
    "calm",
];

/// Subtitle credits (lowercase): these and anything after them are cut.
const CREDITS: &[&str] = &[
    "редактор субтитров",
    "корректор субтитров",
    "субтитры сделал",
    "субтитры делал",
    "субтитры создавал",
    "субтитры подготовил",
    "субтитры и редактор",
    "субтитры by",
    "subtitles by",
    "captions by",
    "amara.org",
    "dimatorzok",
];

/// `text` with credits, bracketed annotations and caption sentences removed, whitespace
/// tidied. Returns the text and whether anything was removed.
pub fn clean(text: &str) -> (String, bool) {
    let uncredited = strip_credits(text);
    let unbracketed = strip_brackets(uncredited);
    // Sentences are kept as written, so "2.5" split at its dot comes back whole.
    let kept: String = sentences(&unbracketed)
        .into_iter()
        .filter(|s| !is_caption(s))
        .collect();
    if kept == text {
        return (kept, false);
    }
    let out = normalize_space(&kept);
    let changed = out != normalize_space(text);
    (out, changed)
}

fn normalize_space(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` up to the first subtitle credit in it (case-insensitive), trailing space removed.
fn strip_credits(text: &str) -> &str {
    // Lowercase, remembering where each lowercase byte came from in `text`.
    let mut lower = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        for l in c.to_lowercase() {
            let before = lower.len();
            lower.push(l);
            origin.resize(origin.len() + lower.len() - before, i);
        }
    }
    match CREDITS.iter().filter_map(|p| lower.find(p)).min() {
        Some(at) => text[..origin[at]].trim_end(),
        None => text,
    }
}

/// Remove `[...]`, `(...)`, `*...*` and `♪...♪` spans (an unclosed one runs to the end).
fn strip_brackets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut closing: Option<char> = None;
    for c in text.chars() {
        match closing {
            Some(end) if c == end => closing = None,
            Some(_) => {}
            None => match c {
                '[' => closing = Some(']'),
                '(' => closing = Some(')'),
                '*' => closing = Some('*'),
                '♪' | '♫' | '♬' | '🎵' | '🎶' => closing = Some(c),
                _ => out.push(c),
            },
        }
    }
    out
}

/// Sentences, each with its closing punctuation.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?' | '…') {
            // Runs of punctuation ("?!", "...") end one sentence.
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if matches!(d, '.' | '!' | '?' | '…') {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(&text[start..end]);
            start = end;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn words(sentence: &str) -> Vec<String> {
    sentence
        .split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// Russian and English adjective shapes ("спокойная", "веселую", "upbeat" is listed).
fn adjective_like(w: &str) -> bool {
    const ENDINGS: &[&str] = &[
        "ая", "яя", "ый", "ий", "ой", "ое", "ее", "ые", "ие", "ую", "юю", "ful", "ing", "ic",
    ];
    w.chars().count() > 3 && ENDINGS.iter().any(|e| w.ends_with(e))
}

/// Whether a sentence is a caption rather than speech.
fn is_caption(sentence: &str) -> bool {
    let ws = words(sentence);
    if ws.is_empty() {
        return !sentence.trim().is_empty() && sentence.chars().all(|c| !c.is_alphanumeric());
    }
    let letters: Vec<char> = sentence.chars().filter(|c| c.is_alphabetic()).collect();
    let all_caps = letters.len() >= 6 && ws.len() >= 2 && letters.iter().all(|c| c.is_uppercase());
    if all_caps {
        return true;
    }
    let captions = ws
        .iter()
        .filter(|w| CAPTION_WORDS.contains(&w.as_str()))
        .count();
    captions > 0
        && ws.len() <= 4
        && ws
            .iter()
            .all(|w| CAPTION_WORDS.contains(&w.as_str()) || adjective_like(w))
}

/// A phrase of `n` words repeated back to back this many times is a loop: 3 for phrases of
/// two words or more; one word must come 5 times ("нет, нет, нет" is said).
fn min_repeats(n: usize) -> usize {
    if n == 1 {
        5
    } else {
        3
    }
}

/// The first loop in `words` (normalized) at or after `from`: (start, phrase length,
/// repeats). Phrases of up to 16 words.
fn find_loop(words: &[String], from: usize) -> Option<(usize, usize, usize)> {
    for start in from..words.len() {
        for n in 1..=((words.len() - start) / 2).min(16) {
            let mut reps = 1;
            while start + (reps + 1) * n <= words.len()
                && words[start + reps * n..start + (reps + 1) * n] == words[start..start + n]
            {
                reps += 1;
            }
            if reps >= min_repeats(n) {
                return Some((start, n, reps));
            }
        }
    }
    None
}

/// A word as loops and repeats compare it: its letters and digits, lower case.
fn compared(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

/// `text` with every loop cut to one copy of its phrase; `None` when there is no loop.
pub fn collapse_loops(text: &str) -> Option<String> {
    // Work on the words as written, compare them normalized.
    let mut raw: Vec<&str> = text.split_whitespace().collect();
    let mut norm: Vec<String> = raw.iter().map(|w| compared(w)).collect();
    let mut from = 0;
    let mut found = false;
    while let Some((start, n, reps)) = find_loop(&norm, from) {
        raw.drain(start + n..start + reps * n);
        norm.drain(start + n..start + reps * n);
        from = start + 1;
        found = true;
    }
    found.then(|| raw.join(" "))
}

/// Whether the text loops.
pub fn has_loop(text: &str) -> bool {
    collapse_loops(text).is_some()
}

/// Whether a phrase of two words or more comes twice back to back ("Нажмите один для...
/// Нажмите один для..."): fewer repeats than a loop, and often what Whisper makes of noise
/// or of speech it could not read. One word said twice ("да, да") is ordinary speech.
pub fn has_repeated_phrase(text: &str) -> bool {
    let w: Vec<String> = text
        .split_whitespace()
        .map(compared)
        .filter(|w| !w.is_empty())
        .collect();
    (2..=16).any(|n| {
        (0..(w.len() + 1).saturating_sub(2 * n)).any(|i| w[i..i + n] == w[i + n..i + 2 * n])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real whisper outputs (base, from eval clips and held-out notes) and what should stay.
    #[test]
    fn credits_captions_and_music_are_removed() {
        let cases = [
            (
                "прыгнул ему на спину. Редактор субтитров А.Семкин Корректор А.Егорова",
                "прыгнул ему на спину.",
            ),
            (
                "посредине крепости. Субтитры и Редактор субтитров А.Семкин",
                "посредине крепости.",
            ),
            ("СУБТИТРЫ СДЕЛАЛ DimaTorzok", ""),
            (
                "Добрый день, посылка пришла? Субтитры",
                "Добрый день, посылка пришла?",
            ),
            (
                "Привезите, пожалуйста, завтра. СПОКОЙНАЯ МУЗЫКА",
                "Привезите, пожалуйста, завтра.",
            ),
            ("Спасибо. [музыка]", "Спасибо."),
            ("♪ Instrumental music ♪", ""),
            (
                "And so, my fellow Americans. (applause)",
                "And so, my fellow Americans.",
            ),
            (
                "Thank you. Subtitles by the Amara.org community",
                "Thank you.",
            ),
            ("Весёлая музыка.", ""),
            ("*laughs* Okay then.", "Okay then."),
        ];
        for (whisper, want) in cases {
            assert_eq!(clean(whisper).0, want, "{whisper:?}");
            assert!(clean(whisper).1);
        }
    }

    #[test]
    fn speech_about_music_and_subtitles_stays() {
        for said in [
            "Добавьте, пожалуйста, субтитры к видео, İstanbul.",
            "Музыка была слишком громкой, верните деньги.",
            "I love this song, can you send me the link?",
            "Заказ номер 45, ОК?",
            "Мой ИНН и СНИЛС в письме.",
            "Play some music.",
            "Тишина в зале!",
        ] {
            assert_eq!(clean(said), (said.to_string(), false), "{said:?}");
        }
    }

    #[test]
    fn a_phrase_said_twice_is_told_from_a_word_said_twice() {
        assert!(has_repeated_phrase(
            "Нажмите один для... Нажмите один для..."
        ));
        assert!(has_repeated_phrase("10 of clubs. 10 of clubs."));
        assert!(!has_repeated_phrase("Да, да, я вас слушаю."));
        assert!(!has_repeated_phrase("one two one three one two"));
        assert!(!has_repeated_phrase("Привет"));
        assert!(!has_repeated_phrase(""));
    }

    #[test]
    fn loops_are_cut_to_one_copy() {
        let looped = "I'm not sure if I'm right or wrong. ".repeat(10);
        assert_eq!(
            collapse_loops(looped.trim()).as_deref(),
            Some("I'm not sure if I'm right or wrong.")
        );
        assert_eq!(
            collapse_loops("Да, да. Спасибо спасибо спасибо спасибо спасибо спасибо большое")
                .as_deref(),
            Some("Да, да. Спасибо большое")
        );
        let two = "и вот и вот и вот и вот потом всё";
        assert_eq!(collapse_loops(two).as_deref(), Some("и вот потом всё"));
        for said in [
            "Нет, нет, нет, я не заказывала.",
            "Алло, алло, вы меня слышите?",
            "очень очень очень хорошо",
            "the the plan",
        ] {
            assert_eq!(collapse_loops(said), None, "{said:?}");
        }
    }
}
