//! [`JobResult`]: what a finished job keeps.

use serde::{Deserialize, Serialize};

use crate::audio::Warning;
use crate::engine::Transcript;
use crate::output::{self, Format};

/// What a finished job keeps: the transcript as the engine made it (full precision, the
/// language as a code), what the decoder noticed, and the task. Stored as JSON with the
/// transcript's fields at the top level, so the database can reach `$.text` (search) and
/// `$.review.needed` (the review filter); rendered to `verbose_json`, SRT, ... only when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    #[serde(flatten)]
    pub transcript: Transcript,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// `transcribe` or `translate`.
    pub task: String,
}

impl JobResult {
    /// OpenAI's `verbose_json`, with the decoder's warnings when there are any.
    pub fn verbose_json(&self) -> serde_json::Value {
        let mut v = output::to_json(&self.transcript, Format::VerboseJson, &self.task)
            .expect("verbose_json is a JSON format");
        if !self.warnings.is_empty() {
            v["warnings"] = serde_json::json!(self.warnings);
        }
        v
    }
}
