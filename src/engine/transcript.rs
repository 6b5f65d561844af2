//! A transcription's result: [`Transcript`], its [`Segment`]s and [`Word`]s, in OpenAI's
//! `verbose_json` shape, and what is done to it after decoding (times mapped back to the
//! note, loops cut, confidence).

use serde::Serialize;

use super::review::Review;
use super::text;
use super::vad::Plan;

/// One segment, in OpenAI's `verbose_json` shape (times in seconds).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Segment {
    pub id: usize,
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub tokens: Vec<i32>,
    pub temperature: f32,
    pub avg_logprob: f32,
    pub compression_ratio: f32,
    pub no_speech_prob: f32,
    /// The segment looped even after the careful retry; the repeats were cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspect: bool,
}

/// One word with its times (seconds), when word timestamps were asked for.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub probability: f32,
}

/// The result of a transcription.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Transcript {
    pub text: String,
    pub language: String,
    /// Probability of the detected language (`None` when the language was given).
    pub language_probability: Option<f32>,
    /// Audio duration, seconds.
    pub duration: f64,
    pub segments: Vec<Segment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<Word>>,
    /// Whether a person should listen to the note, and why.
    #[serde(default)]
    pub review: Review,
}

impl Transcript {
    /// No text, in `language`; an empty word list when words were asked for.
    pub(super) fn empty(language: &str, words: bool) -> Transcript {
        Transcript {
            text: String::new(),
            language: language.to_string(),
            language_probability: None,
            duration: 0.0,
            segments: vec![],
            words: words.then(Vec::new),
            review: Review::default(),
        }
    }

    /// Move every time `by` seconds later (a piece's times into the note's).
    pub(super) fn shift(&mut self, by: f64) {
        for s in &mut self.segments {
            s.start += by;
            s.end += by;
        }
        for w in self.words.iter_mut().flatten() {
            w.start += by;
            w.end += by;
        }
        for s in &mut self.review.skipped_speech {
            s.start += by;
            s.end += by;
        }
    }

    /// Add `next` (the following piece, in the note's times) after this one: its segments
    /// numbered on, its words and text appended.
    pub(super) fn append(&mut self, next: Transcript) {
        let base = self.segments.len();
        self.segments
            .extend(next.segments.into_iter().enumerate().map(|(i, mut s)| {
                s.id = base + i;
                s
            }));
        if let (Some(words), Some(more)) = (self.words.as_mut(), next.words) {
            words.extend(more);
        }
        if !next.text.is_empty() {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            self.text.push_str(&next.text);
        }
        self.review
            .skipped_speech
            .extend(next.review.skipped_speech);
    }

    /// Put `more` (text for a stretch this transcript had none for, in the same times) in
    /// its place: segments and words in time order, numbered again, the text joined again.
    pub(super) fn insert(&mut self, more: Transcript) {
        self.segments.extend(more.segments);
        self.segments.sort_by(|a, b| a.start.total_cmp(&b.start));
        for (i, s) in self.segments.iter_mut().enumerate() {
            s.id = i;
        }
        if let (Some(words), Some(new)) = (self.words.as_mut(), more.words) {
            words.extend(new);
            words.sort_by(|a, b| a.start.total_cmp(&b.start));
        }
        self.join_text();
    }

    /// Turn times in the decoded (packed) audio into times in the note, and drop segments
    /// (and their words) that lie wholly outside the speech the plan found.
    pub(super) fn map_to_note(&mut self, plan: &Plan) {
        for s in &mut self.segments {
            s.start = plan.to_note(s.start, false);
            s.end = plan.to_note(s.end, true).max(s.start);
        }
        for w in self.words.iter_mut().flatten() {
            w.start = plan.to_note(w.start, false);
            w.end = plan.to_note(w.end, true).max(w.start);
        }
        let before = self.segments.len();
        self.segments
            .retain(|s| plan.touches_speech(s.start, s.end));
        if self.segments.len() != before {
            tracing::debug!(
                dropped = before - self.segments.len(),
                "segments outside the speech dropped"
            );
            if let Some(words) = &mut self.words {
                let segs = &self.segments;
                words.retain(|w| {
                    segs.iter()
                        .any(|s| w.start < s.end + 0.5 && w.end > s.start - 0.5)
                });
            }
        }
        for (i, s) in self.segments.iter_mut().enumerate() {
            s.id = i;
        }
        self.join_text();
    }

    pub(super) fn join_text(&mut self) {
        self.text = self
            .segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
    }

    /// Cut repetition loops: a segment whose text loops keeps one copy of the phrase, and a
    /// run of three or more segments with the same text keeps the first. Returns whether
    /// anything was cut; the segments cut into are marked `suspect`.
    pub(super) fn cut_loops(&mut self) -> bool {
        let mut cut = false;
        for s in &mut self.segments {
            if let Some(once) = text::collapse_loops(&s.text) {
                s.text = once;
                s.suspect = true;
                cut = true;
            }
        }
        let key = |s: &Segment| {
            s.text
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        };
        let mut i = 0;
        while i < self.segments.len() {
            let k = key(&self.segments[i]);
            let run = self.segments[i..]
                .iter()
                .take_while(|s| key(s) == k)
                .count();
            if run >= 3 && !k.is_empty() {
                let end = self.segments[i + run - 1].end;
                self.segments.drain(i + 1..i + run);
                self.segments[i].end = end;
                self.segments[i].suspect = true;
                cut = true;
            }
            i += 1;
        }
        if cut {
            for (i, s) in self.segments.iter_mut().enumerate() {
                s.id = i;
            }
            self.join_text();
        }
        cut
    }

    /// Whether the text loops (before [`Transcript::cut_loops`]), within a segment, over a
    /// run of equal segments, or across segment boundaries in the joined text.
    pub(super) fn loops(&self) -> bool {
        self.clone().cut_loops() || text::has_loop(&self.text)
    }

    /// exp(mean token log-probability), weighted by tokens.
    pub(super) fn confidence(&self) -> Option<f32> {
        let n: usize = self.segments.iter().map(|s| s.tokens.len()).sum();
        (n > 0).then(|| {
            let sum: f32 = self
                .segments
                .iter()
                .map(|s| s.avg_logprob * s.tokens.len() as f32)
                .sum();
            (sum / n as f32).exp()
        })
    }
}
