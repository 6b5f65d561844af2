//! [`JobOptions`]: what a request asks of its transcription (parsed once from the form,
//! stored with the job, turned into decoder options by the worker).

use serde::{Deserialize, Serialize};

use crate::engine::Options;
use crate::error::{clip, ErrorCode};

/// What a note gets when its request leaves it out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults {
    /// ISO 639-1 code; `None` detects.
    pub language: Option<String>,
    /// Glossary and prompt together.
    pub prompt: Option<String>,
}

/// The widest beam a request may ask for (whisper.cpp's decoders are allocated per beam).
pub const MAX_BEAM: u32 = 8;

/// What a request asks of its transcription: parsed once by the API, stored with the job
/// (as JSON, in the `options` column), and turned into decoder options by the worker. A new
/// request option is a field here and its use. Unknown keys in a stored row are ignored, and
/// missing ones take their defaults, so rows written by earlier versions still read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobOptions {
    /// ISO 639-1 code; `"auto"` detects even when the service has a `--language`; `None`
    /// takes the service's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Initial prompt (names, vocabulary); `None` takes the service's `--prompt`/`--glossary`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Translate to English instead of transcribing.
    pub translate: bool,
    /// Sampling temperature (0-1); `None`: 0 with fallback. (f64, so that 0.3 is stored and
    /// shown as 0.3.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Return word times (they are always computed and stored; this says whether to show them).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub word_timestamps: bool,
    /// The careful settings ([`Options::accurate`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub accurate: bool,
    /// Beam width (1-8); `None`: greedy with the careful retry, or 5 when `accurate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beam_size: Option<u32>,
}

/// A request field that does not hold what it should: the code, the field, and a sentence
/// for the caller.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct FormError {
    pub code: ErrorCode,
    pub param: &'static str,
    pub message: String,
}

fn invalid(param: &'static str, message: impl Into<String>) -> FormError {
    FormError {
        code: ErrorCode::InvalidValue,
        param,
        message: message.into(),
    }
}

/// A yes/no form field: `true`/`1` or `false`/`0`; absent or empty is no.
pub fn flag(
    fields: &std::collections::HashMap<String, String>,
    name: &'static str,
) -> Result<bool, FormError> {
    match fields.get(name).map(|v| v.trim()) {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(x) => Err(invalid(
            name,
            format!("{name} must be true or false, not '{}'", clip(x, 40)),
        )),
    }
}

impl JobOptions {
    /// The options a request's form fields ask for (the names of OpenAI's transcription API,
    /// plus earshot's own), each checked. `translate` comes from the route.
    pub fn from_form(
        fields: &std::collections::HashMap<String, String>,
        translate: bool,
    ) -> Result<JobOptions, FormError> {
        let mut opts = JobOptions {
            translate,
            ..JobOptions::default()
        };
        let field = |k: &str| fields.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        // An explicit "auto" is kept: it overrides the service's --language.
        match field("language") {
            None => {}
            Some(l) if l.eq_ignore_ascii_case("auto") => opts.language = Some("auto".into()),
            Some(l) => {
                let code = crate::engine::language::code(l).ok_or_else(|| FormError {
                    code: ErrorCode::InvalidLanguage,
                    param: "language",
                    message: format!(
                        "unknown language '{}'; use an ISO 639-1 code such as ru or en",
                        clip(l, 40)
                    ),
                })?;
                opts.language = Some(code.to_string());
            }
        }
        if let Some(p) = fields.get("prompt") {
            if p.contains('\0') {
                return Err(invalid("prompt", "prompt must not contain NUL bytes"));
            }
            opts.prompt = Some(p.clone());
        }
        if let Some(t) = field("temperature") {
            let t = t
                .parse::<f64>()
                .ok()
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or_else(|| {
                    invalid(
                        "temperature",
                        "temperature must be a number between 0 and 1",
                    )
                })?;
            opts.temperature = Some(t);
        }
        opts.accurate = flag(fields, "accurate")?;
        if let Some(b) = field("beam_size") {
            let b = b
                .parse::<u32>()
                .ok()
                .filter(|b| (1..=MAX_BEAM).contains(b))
                .ok_or_else(|| {
                    invalid(
                        "beam_size",
                        format!("beam_size must be a whole number from 1 to {MAX_BEAM}"),
                    )
                })?;
            opts.beam_size = Some(b);
        }
        if let Some(g) = fields.get("timestamp_granularities") {
            for part in g.split(',') {
                match part.trim() {
                    "word" => opts.word_timestamps = true,
                    "segment" | "" => {}
                    x => {
                        return Err(FormError {
                            param: "timestamp_granularities[]",
                            ..invalid(
                                "",
                                format!(
                                    "timestamp_granularities[] takes word or segment, not '{}'",
                                    clip(x, 40)
                                ),
                            )
                        })
                    }
                }
            }
        }
        Ok(opts)
    }

    /// The decoder options for this job, on top of the service-wide defaults.
    pub fn to_engine(&self, defaults: &Defaults, threads: usize) -> Options {
        self.apply(Options {
            language: defaults.language.clone(),
            prompt: defaults.prompt.clone(),
            threads,
            ..Options::default()
        })
    }

    /// These options over `base`: what the job leaves out keeps `base`'s value. (The
    /// command line's base carries its expert flags: thresholds, context, fallback.)
    pub fn apply(&self, base: Options) -> Options {
        let mut o = base;
        if let Some(l) = self.language.as_deref().filter(|l| !l.is_empty()) {
            o.language = Some(l.to_string()).filter(|l| l != "auto");
        }
        if let Some(p) = self.prompt.as_deref().filter(|p| !p.trim().is_empty()) {
            o.prompt = Some(p.to_string());
        }
        o.translate = self.translate;
        if let Some(t) = self.temperature {
            o.temperature = t as f32;
        }
        o.word_timestamps = self.word_timestamps;
        if let Some(b) = self.beam_size {
            o = o.with_beam(b);
        }
        if self.accurate {
            o = o.accurate();
        }
        o
    }

    /// The task, as `verbose_json` names it.
    pub fn task(&self) -> &'static str {
        if self.translate {
            "translate"
        } else {
            "transcribe"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_options_read_rows_written_before_they_were_typed() {
        // What the API stored before `JobOptions` existed, key by key.
        let old = serde_json::json!({"translate": false, "language": "auto", "prompt": "ООО Ромашка",
            "temperature": 0.3, "word_timestamps": true, "accurate": true});
        let o: JobOptions = serde_json::from_value(old).unwrap();
        assert_eq!(o.language.as_deref(), Some("auto"));
        assert_eq!(o.prompt.as_deref(), Some("ООО Ромашка"));
        assert_eq!(o.temperature, Some(0.3));
        assert_eq!(serde_json::to_value(&o).unwrap()["temperature"], 0.3);
        assert!(o.word_timestamps && o.accurate && !o.translate);
        // Stored again, it reads the same, and unset fields stay out of the JSON.
        assert_eq!(
            serde_json::from_value::<JobOptions>(serde_json::to_value(&o).unwrap()).unwrap(),
            o
        );
        assert_eq!(
            serde_json::to_value(JobOptions::default()).unwrap(),
            serde_json::json!({"translate": false})
        );
        // A value of the wrong kind does not read (the store calls such a row corrupt).
        let bad = serde_json::json!({"temperature": "hot"});
        assert!(serde_json::from_value::<JobOptions>(bad).is_err());
    }

    #[test]
    fn form_fields_become_checked_options() {
        let form = |pairs: &[(&str, &str)]| {
            let f: std::collections::HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            JobOptions::from_form(&f, false)
        };
        let o = form(&[
            ("language", "Russian"),
            ("prompt", "ООО Ромашка"),
            ("temperature", "0.3"),
            ("accurate", "1"),
            ("beam_size", "3"),
            ("timestamp_granularities", "segment,word"),
        ])
        .unwrap();
        assert_eq!(
            o,
            JobOptions {
                language: Some("ru".into()),
                prompt: Some("ООО Ромашка".into()),
                translate: false,
                temperature: Some(0.3),
                word_timestamps: true,
                accurate: true,
                beam_size: Some(3),
            }
        );
        // Accurate widens a narrower beam to 5; a wider one stays.
        assert_eq!(o.to_engine(&Defaults::default(), 1).beam_size, Some(5));
        let wide = JobOptions {
            beam_size: Some(8),
            ..o.clone()
        };
        assert_eq!(wide.to_engine(&Defaults::default(), 1).beam_size, Some(8));
        assert_eq!(
            form(&[("language", "auto")]).unwrap().language.as_deref(),
            Some("auto")
        );
        assert_eq!(form(&[]).unwrap(), JobOptions::default());
        for (field, value, code) in [
            ("language", "klingon", ErrorCode::InvalidLanguage),
            ("prompt", "a\0b", ErrorCode::InvalidValue),
            ("temperature", "1.5", ErrorCode::InvalidValue),
            ("accurate", "very", ErrorCode::InvalidValue),
            ("beam_size", "0", ErrorCode::InvalidValue),
            ("beam_size", "9", ErrorCode::InvalidValue),
            ("timestamp_granularities", "char", ErrorCode::InvalidValue),
        ] {
            let e = form(&[(field, value)]).unwrap_err();
            assert_eq!(e.code, code, "{field}={value}");
            assert!(e.param.starts_with(field), "{field}: {}", e.param);
        }
    }

    #[test]
    fn job_options_over_the_service_defaults() {
        let service = Defaults {
            language: Some("ru".into()),
            prompt: Some("Ромашка".into()),
        };
        // Nothing asked: the service's language and prompt.
        let o = JobOptions::default().to_engine(&service, 3);
        assert_eq!(o.language.as_deref(), Some("ru"));
        assert_eq!(o.prompt.as_deref(), Some("Ромашка"));
        assert_eq!(o.threads, 3);
        // "auto" detects even though the service names a language; a prompt replaces its.
        let asked = JobOptions {
            language: Some("auto".into()),
            prompt: Some("Лютик".into()),
            accurate: true,
            ..JobOptions::default()
        };
        let o = asked.to_engine(&service, 3);
        assert_eq!(o.language, None);
        assert_eq!(o.prompt.as_deref(), Some("Лютик"));
        assert_eq!(o.beam_size, Some(5));
        assert_eq!(o.threads, 3);
    }
}
