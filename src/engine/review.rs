//! The review verdict: whether an operator should listen to a note rather than trust its
//! text, and why. Computed from what the decoder and the level and speech measurements
//! already give, at no extra inference cost.

use serde::{Deserialize, Serialize};

use super::level::Level;
use super::{text, Transcript};

/// Why a transcript needs a listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The speech was recorded far below normal level (raised before decoding).
    QuietAudio,
    /// The voice-activity model heard speech, but no text came out.
    SpeechButNoText,
    /// The model was unsure of the words (mean token probability under the threshold).
    LowConfidence,
    /// The detected language was a guess.
    LanguageUncertain,
    /// The file was cut short; only the part that arrived was transcribed.
    Truncated,
    /// A stretch of the file was damaged and skipped; the text has a gap there.
    DamagedAudio,
    /// No speech was found; the text is empty. Listen if a voice was expected.
    NoSpeech,
    /// A segment kept repeating itself even after the careful retry; the repeats were cut.
    SuspectText,
    /// A phrase of two words or more comes twice back to back.
    RepeatedText,
    /// More text than the speech could hold: words were likely made up over noise.
    TooMuchText,
    /// Speech the voice-activity model heard has no text, even decoded on its own: listen
    /// from [`Review::skipped_speech`].
    SkippedSpeech,
}

impl Reason {
    /// Every reason, in a stable order (for metrics).
    pub const ALL: [Reason; 11] = [
        Reason::QuietAudio,
        Reason::SpeechButNoText,
        Reason::LowConfidence,
        Reason::LanguageUncertain,
        Reason::Truncated,
        Reason::DamagedAudio,
        Reason::NoSpeech,
        Reason::SuspectText,
        Reason::RepeatedText,
        Reason::TooMuchText,
        Reason::SkippedSpeech,
    ];

    /// The machine-readable name (as serialized).
    pub fn code(self) -> &'static str {
        match self {
            Reason::QuietAudio => "quiet_audio",
            Reason::SpeechButNoText => "speech_but_no_text",
            Reason::LowConfidence => "low_confidence",
            Reason::LanguageUncertain => "language_uncertain",
            Reason::Truncated => "truncated",
            Reason::DamagedAudio => "damaged_audio",
            Reason::NoSpeech => "no_speech",
            Reason::SuspectText => "suspect_text",
            Reason::RepeatedText => "repeated_text",
            Reason::TooMuchText => "too_much_text",
            Reason::SkippedSpeech => "skipped_speech",
        }
    }
}

/// A transcript's review verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Review {
    /// Whether someone should listen to the note.
    pub needed: bool,
    /// Why, when needed.
    pub reasons: Vec<Reason>,
    /// exp(mean token log-probability) over the transcript: 0-1, higher is surer; `None`
    /// when there is no text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Where the note has speech that is in no segment (seconds in the note), when it has
    /// any: the reason [`Reason::SkippedSpeech`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_speech: Vec<Span>,
    /// Their total length, seconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_speech_s: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// A stretch of a note, in seconds, with speech the text has no words for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Span {
    pub start: f64,
    pub end: f64,
    /// What the model wrote for it on its own, when it wrote anything: a guess not trusted
    /// enough for the text (it was unsure, or wrote more than the stretch could hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guess: Option<String>,
}

impl Review {
    /// Add a reason (once); the note then needs review.
    pub fn flag(&mut self, r: Reason) {
        if !self.reasons.contains(&r) {
            self.reasons.push(r);
        }
        self.needed = true;
    }
}

/// Under this confidence a transcript is `low_confidence`, and under
/// [`LANGUAGE_UNSURE_BELOW`] a detected language is `language_uncertain`. Both were chosen
/// by `bench/review_eval.py` on the tuning half of the evaluation clips and their noisy,
/// quiet and far-field copies (the highest recall that flags at most 1 good note in 5 on
/// the text reasons); the first guesses were 0.60 and 0.70. The language threshold was 0.80
/// until the fast pass stopped sampling at higher temperatures (2026-11-28): chosen again
/// then, 0.80 flagged 23% of the tuning half's good notes on the text reasons (over 1 in
/// 5), and 0.60 gave the highest recall within that. See docs/performance.md for what they achieve
/// on the measuring half.
pub const LOW_CONFIDENCE_BELOW: f32 = 0.64;
pub const LANGUAGE_UNSURE_BELOW: f32 = 0.6;
/// Speech at least this long with no text is `speech_but_no_text`; shorter, `no_speech`.
pub const SPEECH_FOR_TEXT_S: f64 = 0.5;
/// More letters and digits than this per second of speech (as the voice-activity model
/// measured it, pauses left out) is `too_much_text`, once the text has
/// [`MIN_CHARS_FOR_RATE`] of them. Chosen on the tuning half: its three notes with whole
/// sentences invented over noise ran at 18.3-23.1 a second, its good notes at 14.9 at most
/// (read speech; a fast talker may reach the threshold, and is then worth a listen anyway).
pub const MAX_CHARS_PER_SPEECH_S: f64 = 17.0;
pub const MIN_CHARS_FOR_RATE: usize = 20;

/// Whether `text` holds more than `speech_s` seconds of speech could say.
pub fn too_much_text(text: &str, speech_s: f64) -> bool {
    let chars = text.chars().filter(|c| c.is_alphanumeric()).count();
    speech_s > 0.0
        && chars >= MIN_CHARS_FOR_RATE
        && chars as f64 > MAX_CHARS_PER_SPEECH_S * speech_s
}

/// The verdict on a decoded note of `duration` seconds, `speech_s` of them speech.
pub(super) fn judge(mut t: Transcript, duration: f64, level: &Level, speech_s: f64) -> Transcript {
    let mut review = Review {
        skipped_speech: std::mem::take(&mut t.review.skipped_speech),
        ..Review::default()
    };
    if !review.skipped_speech.is_empty() {
        review
            .skipped_speech
            .sort_by(|a, b| a.start.total_cmp(&b.start));
        let s: f64 = review.skipped_speech.iter().map(|s| s.end - s.start).sum();
        review.skipped_speech_s = (s * 100.0).round() / 100.0;
        review.flag(Reason::SkippedSpeech);
    }
    if level.is_quiet() {
        review.flag(Reason::QuietAudio);
    }
    t.duration = duration;
    // A loop across segment boundaries is not cut (the segments stay as decoded) but
    // is flagged.
    if t.cut_loops() || text::has_loop(&t.text) {
        review.flag(Reason::SuspectText);
    }
    review.confidence = t.confidence();
    // Never silently empty: no text is either speech the model could not read, or (for
    // a speck of "speech" shorter than a word) no speech at all.
    if t.text.trim().is_empty() {
        review.flag(if speech_s >= SPEECH_FOR_TEXT_S {
            Reason::SpeechButNoText
        } else {
            Reason::NoSpeech
        });
    }
    if text::has_repeated_phrase(&t.text) {
        review.flag(Reason::RepeatedText);
    }
    if too_much_text(&t.text, speech_s) {
        review.flag(Reason::TooMuchText);
    }
    if review.confidence.is_some_and(|c| c < LOW_CONFIDENCE_BELOW) {
        review.flag(Reason::LowConfidence);
    }
    if t.language_probability
        .is_some_and(|p| p < LANGUAGE_UNSURE_BELOW)
    {
        review.flag(Reason::LanguageUncertain);
    }
    tracing::debug!(
        gain_db = level.gain_db,
        speech_dbfs = level.speech_dbfs,
        speech_s,
        "level and speech"
    );
    t.review = review;
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_beyond_what_the_speech_could_hold() {
        // Real base output: a sentence invented over 3 s of room noise before "one moment
        // please", 2.85 s of speech in all (19.7 a second).
        let invented = "It's a little bit similar to the principle for them. One moment, please.";
        assert!(too_much_text(invented, 2.848));
        assert!(
            !too_much_text(invented, 5.0),
            "the same text over 5 s of speech"
        );
        assert!(!too_much_text("Да, конечно.", 0.3), "too short to judge");
        assert!(
            !too_much_text(invented, 0.0),
            "no speech measure: not judged"
        );
    }

    /// The verdict puts the text reasons on a transcript (no segments: no confidence).
    #[test]
    fn the_verdict_names_repeated_and_excess_text() {
        let loud = Level {
            peak_dbfs: -3.0,
            speech_dbfs: -12.0,
            floor_dbfs: -60.0,
            gain_db: 0.0,
        };
        let judged = |text: &str, speech_s: f64| {
            let mut t = Transcript::empty("ru", false);
            t.text = text.into();
            judge(t, 8.0, &loud, speech_s).review
        };
        let r = judged("Нажмите один для... Нажмите один для...", 2.9);
        assert_eq!(r.reasons, [Reason::RepeatedText]);
        assert!(r.needed);
        let r = judged(
            "Je m'allais qu'il y en a de toute façon pour tout ce que je fais.",
            2.5,
        );
        assert_eq!(r.reasons, [Reason::TooMuchText]);
        let r = judged("Здравствуйте, я хотел бы заказать торт.", 4.0);
        assert!(!r.needed && r.reasons.is_empty(), "{r:?}");
    }
}
