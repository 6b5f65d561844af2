//! Output formats: a [`Transcript`] rendered as `txt`, `json`, `verbose_json`, `srt` or `vtt`.
//!
//! `json` and `verbose_json` follow OpenAI's `/v1/audio/transcriptions` response shapes
//! (times in seconds, `language` as a lowercase English name), so a client written for that
//! API reads ours unchanged. The CLI and the HTTP service both render through here.

use std::fmt::Write;
use std::str::FromStr;

use serde_json::{json, Value};

use crate::engine::Transcript;

/// A response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Txt,
    Json,
    VerboseJson,
    Srt,
    Vtt,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "txt" | "text" => Format::Txt,
            "json" => Format::Json,
            "verbose_json" => Format::VerboseJson,
            "srt" => Format::Srt,
            "vtt" => Format::Vtt,
            other => {
                return Err(format!(
                    "unknown format {other:?} (txt, json, verbose_json, srt, vtt)"
                ))
            }
        })
    }
}

impl Format {
    /// File extension for this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Json => "json",
            Format::VerboseJson => "verbose.json",
            Format::Srt => "srt",
            Format::Vtt => "vtt",
        }
    }

    /// Whether this format is a JSON document.
    pub fn is_json(self) -> bool {
        matches!(self, Format::Json | Format::VerboseJson)
    }
}

/// The JSON value for the `json` / `verbose_json` formats (`None` for text formats).
pub fn to_json(t: &Transcript, format: Format, task: &str) -> Option<Value> {
    match format {
        Format::Json => Some(json!({ "text": t.text, "review": t.review })),
        Format::VerboseJson => {
            let segments: Vec<Value> = t
                .segments
                .iter()
                .map(|s| {
                    let mut v = json!({
                        "id": s.id, "seek": 0, "start": round3(s.start), "end": round3(s.end),
                        "text": s.text, "tokens": s.tokens, "temperature": s.temperature,
                        "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
                        "no_speech_prob": s.no_speech_prob,
                    });
                    if s.suspect {
                        v["suspect"] = json!(true);
                    }
                    v
                })
                .collect();
            let mut v = json!({
                "task": task,
                "language": language_name(&t.language),
                "duration": round3(t.duration),
                "text": t.text,
                "segments": segments,
                "review": t.review,
            });
            if let Some(p) = t.language_probability {
                v["language_probability"] = json!(p);
            }
            if let Some(words) = &t.words {
                v["words"] = json!(words
                    .iter()
                    .map(|w| json!({"word": w.word, "start": round3(w.start), "end": round3(w.end), "probability": w.probability}))
                    .collect::<Vec<_>>());
            }
            Some(v)
        }
        _ => None,
    }
}

/// Render a transcript in `format`. JSON formats are one line, text formats end in a newline.
pub fn render(t: &Transcript, format: Format, task: &str) -> String {
    if let Some(v) = to_json(t, format, task) {
        return v.to_string();
    }
    let mut out = String::new();
    match format {
        Format::Txt => {
            out.push_str(&t.text);
            out.push('\n');
        }
        Format::Srt => {
            for (i, s) in t.segments.iter().enumerate() {
                let _ = write!(
                    out,
                    "{}\n{} --> {}\n{}\n\n",
                    i + 1,
                    timestamp(s.start, ','),
                    timestamp(s.end, ','),
                    s.text
                );
            }
        }
        Format::Vtt => {
            out.push_str("WEBVTT\n\n");
            for s in &t.segments {
                let _ = write!(
                    out,
                    "{} --> {}\n{}\n\n",
                    timestamp(s.start, '.'),
                    timestamp(s.end, '.'),
                    s.text
                );
            }
        }
        Format::Json | Format::VerboseJson => unreachable!("handled above"),
    }
    out
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT).
pub fn timestamp(seconds: f64, sep: char) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// OpenAI reports the language as a lowercase English name ("russian").
pub fn language_name(code: &str) -> String {
    crate::engine::language::name(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Segment;

    fn sample() -> Transcript {
        let seg = |id, start, end, text: &str| Segment {
            id,
            start,
            end,
            text: text.into(),
            tokens: vec![1, 2],
            temperature: 0.0,
            avg_logprob: -0.2,
            compression_ratio: 1.1,
            no_speech_prob: 0.01,
            suspect: false,
        };
        Transcript {
            text: "Привет. How are you?".into(),
            language: "ru".into(),
            language_probability: Some(0.97),
            duration: 3723.5,
            segments: vec![
                seg(0, 0.0, 1.5, "Привет."),
                seg(1, 3721.25, 3723.5, "How are you?"),
            ],
            words: None,
            review: Default::default(),
        }
    }

    #[test]
    fn subtitles_have_exact_timestamps() {
        let srt = render(&sample(), Format::Srt, "transcribe");
        assert_eq!(srt, "1\n00:00:00,000 --> 00:00:01,500\nПривет.\n\n2\n01:02:01,250 --> 01:02:03,500\nHow are you?\n\n");
        let vtt = render(&sample(), Format::Vtt, "transcribe");
        assert!(vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nПривет.\n\n"));
    }

    #[test]
    fn json_shapes_follow_openai() {
        let v: Value =
            serde_json::from_str(&render(&sample(), Format::VerboseJson, "transcribe")).unwrap();
        assert_eq!(v["language"], "russian");
        assert_eq!(v["task"], "transcribe");
        assert_eq!(v["segments"][1]["start"], 3721.25);
        assert_eq!(v["segments"].as_array().unwrap().len(), 2);
        let j: Value =
            serde_json::from_str(&render(&sample(), Format::Json, "transcribe")).unwrap();
        assert_eq!(
            j,
            json!({"text": "Привет. How are you?", "review": {"needed": false, "reasons": []}})
        );
    }
}
