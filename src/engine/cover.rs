//! No speech dropped silently: every stretch the voice-activity model calls speech reaches
//! the text, or the verdict says where it did not (`skipped_speech`).
//!
//! After a note (or a long note's piece) is decoded, its segments' times are laid over its
//! speech ranges. A stretch of speech of [`MIN_GAP`] or more that no segment covers, and
//! every range [`speaker::by_level`](super::speaker::by_level) set apart as far quieter than the
//! speaker's, is a gap. Gaps close together are decoded together, on their own:
//! raised to speech level (the note's gain was chosen for its loud parts), with beam 5, in
//! the note's language. What comes back is judged ([`Judged`]): text that reads as speech
//! is put into the transcript in time order; text that repeats the words around the gap is
//! dropped as already there (segment times are approximate); text with more letters than
//! the gap's speech could hold is what Whisper writes over murmur and room tone, and is
//! dropped too; anything else (no text, words the model was unsure of, a loop) is left out
//! of the text, and the gap is listed in the verdict, so an operator can listen from there.
//! Speech the model could not read never disappears without a trace.

use std::ops::Range;

use super::decode::{DecoderState, Turns};
use super::level::Level;
use super::review::{Span, MAX_CHARS_PER_SPEECH_S};
use super::vad::Plan;
use super::{text, Engine, EngineError, Options, Transcript};
use crate::audio::WHISPER_RATE;

const S: usize = WHISPER_RATE as usize;
/// Speech this long or longer with no text is decoded again on its own, and listed in the
/// verdict when it still has none (0.7 s: a short word or two).
pub const MIN_GAP: usize = 7 * S / 10;
/// Segment times are Whisper's guesses: speech this close to a segment counts as covered.
const SLACK: usize = S / 4;
/// Gaps closer together than this are decoded as one.
const JOIN: usize = S;
/// Under this confidence (exp of the mean token log-probability), text written for a gap is
/// not trusted.
pub const GAP_MIN_CONFIDENCE: f32 = 0.45;
/// A gap's speech is given this much more time (seconds) when its text's length is judged:
/// a short word said softly may be heard only in part. Unlike a whole note's rule (which
/// judges 20 letters or more), every gap's text is judged: Whisper writes "Thank you very
/// much." for a fifth of a second of murmur (the tuning half's noisy twin).
const GAP_SLACK_S: f64 = 0.3;
/// New text counts as inside a segment when the segment runs on this far (seconds) on both
/// sides of it.
const CUT_SLACK_S: f64 = 0.5;
/// A gap's text whose words are mostly (this share) in the text just before or after it is
/// that text again, not new words.
const ALREADY_SAID: f64 = 0.6;

/// The parts of `speech` (sorted sample ranges) that no span of `covered` (sample ranges,
/// widened by [`SLACK`]) touches, each at least [`MIN_GAP`] long.
pub fn uncovered(speech: &[Range<usize>], covered: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for r in speech {
        let mut at = r.start;
        let mut spans: Vec<Range<usize>> = covered
            .iter()
            .map(|c| c.start.saturating_sub(SLACK)..c.end + SLACK)
            .filter(|c| c.start < r.end && c.end > r.start)
            .collect();
        spans.sort_by_key(|c| c.start);
        for c in spans {
            if c.start > at && c.start - at >= MIN_GAP {
                out.push(at..c.start.min(r.end));
            }
            at = at.max(c.end);
        }
        if r.end > at && r.end - at >= MIN_GAP {
            out.push(at..r.end);
        }
    }
    out
}

/// Sorted ranges in groups whose neighbours are under [`JOIN`] apart.
fn groups(mut gaps: Vec<Range<usize>>) -> Vec<Vec<Range<usize>>> {
    gaps.sort_by_key(|r| r.start);
    let mut out: Vec<Vec<Range<usize>>> = Vec::new();
    for g in gaps {
        match out.last_mut() {
            Some(last) if last.last().is_some_and(|l| g.start < l.end + JOIN) => last.push(g),
            _ => out.push(vec![g]),
        }
    }
    out
}

/// What became of a gap's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// It reads as speech: into the transcript.
    Speech,
    /// The words around the gap again: the text had them already.
    AlreadySaid,
    /// More letters than the stretch's speech could hold: what Whisper writes over sound
    /// that is not speech (murmur, room tone), not speech it could not read. Left out, and
    /// not flagged: on the tuning half every such guess was murmur, at 19.7-46 letters a
    /// second, while the soft speech it could not read came back at 9.5-12.5.
    Invented,
    /// No text, or text not to be trusted: the gap is listed in the verdict.
    NoText(&'static str),
}

/// Normalized words, for comparing texts.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('ё', "е"))
        .collect()
}

/// Judge `more`, decoded from a gap of `speech_s` seconds of speech, next to the text
/// `around` (the segments either side of it).
pub fn judge_gap(more: &Transcript, speech_s: f64, around: &str) -> Judged {
    let new = words(&more.text);
    if new.is_empty() {
        return Judged::NoText("no text");
    }
    let near = words(around);
    let repeated = new.iter().filter(|w| near.contains(w)).count();
    if repeated as f64 >= ALREADY_SAID * new.len() as f64 {
        return Judged::AlreadySaid;
    }
    let chars = more.text.chars().filter(|c| c.is_alphanumeric()).count() as f64;
    if chars > MAX_CHARS_PER_SPEECH_S * (speech_s + GAP_SLACK_S) {
        return Judged::Invented;
    }
    if more.confidence().is_some_and(|c| c < GAP_MIN_CONFIDENCE) {
        return Judged::NoText("low confidence");
    }
    if more.loops() || text::has_repeated_phrase(&more.text) {
        return Judged::NoText("repetition");
    }
    Judged::Speech
}

impl Engine {
    /// Make sure every stretch of `speech` in `samples` reached `t` (see the module
    /// documentation). `t` is in the samples' times; `quiet` are ranges that were not decoded
    /// with the rest. Gaps with no trustworthy text end up in `t.review.skipped_speech`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cover(
        &self,
        samples: &[f32],
        mut t: Transcript,
        speech: &[Range<usize>],
        quiet: &[Range<usize>],
        opts: &Options,
        language: &str,
        turns: Option<&Turns>,
    ) -> Result<Transcript, EngineError> {
        let at = |s: f64| (s.max(0.0) * S as f64) as usize;
        let covered: Vec<Range<usize>> =
            t.segments.iter().map(|s| at(s.start)..at(s.end)).collect();
        let mut gaps = uncovered(speech, &covered);
        gaps.extend(quiet.iter().cloned());
        let mut accepted = Vec::new();
        for group in groups(gaps) {
            let secs = |r: &Range<usize>| r.len() as f64 / S as f64;
            let speech_s: f64 = group.iter().map(secs).sum();
            let plan = Plan::new(group.clone(), samples.len(), true);
            let mut packed = self.packed(samples, &plan);
            if let Some(g) = Level::measure(&packed).factor() {
                packed.iter_mut().for_each(|x| *x *= g);
            }
            // Beam 5 and no sampling: the gap is short, and the hard part of its note.
            let careful = Options {
                temperature_increment: 0.0,
                ..opts.clone().with_beam(opts.beam_size.unwrap_or(1).max(5))
            };
            let decoding = super::plan::DecodePlan {
                guarded: false,
                ..self.decode_plan(&careful, packed.len())
            };
            let started = std::time::Instant::now();
            let mut state = DecoderState::in_lanes(self, opts.threads, turns)?;
            let mut more = Self::transcribe_on(
                &mut state,
                &packed,
                &careful,
                Some(language.to_string()),
                &decoding,
            )?;
            drop(state);
            more.map_to_note(&plan);
            let (from, to) = (group[0].start, group[group.len() - 1].end);
            let around: Vec<&str> = t
                .segments
                .iter()
                .filter(|s| at(s.end) + 2 * S > from && at(s.start) < to + 2 * S)
                .map(|s| s.text.as_str())
                .collect();
            let verdict = judge_gap(&more, speech_s, &around.join(" "));
            let ms = started.elapsed().as_millis() as u64;
            tracing::debug!(
                start_s = from as f64 / S as f64,
                end_s = to as f64 / S as f64,
                speech_s,
                ms,
                confidence = more.confidence(),
                ?verdict,
                text = %more.text,
                "speech with no text decoded on its own"
            );
            match verdict {
                Judged::Speech => accepted.push(more),
                Judged::AlreadySaid | Judged::Invented => {}
                Judged::NoText(_) => {
                    if group.iter().map(|r| r.len()).sum::<usize>() >= MIN_GAP {
                        let text = more.text.trim();
                        t.review.skipped_speech.push(Span {
                            start: (from as f64 / S as f64 * 100.0).round() / 100.0,
                            end: (to as f64 / S as f64 * 100.0).round() / 100.0,
                            guess: (!text.is_empty()).then(|| text.to_string()),
                        });
                    }
                }
            }
        }
        // Text for a stretch in the middle of one of the main pass's segments (Whisper often
        // makes one segment of the phrases either side of a stretch left out of its audio)
        // cannot go in its place: the speech either side is decoded again in runs cut there.
        let inside = |s: &super::Segment, g: &super::Segment| {
            s.start < g.start - CUT_SLACK_S && s.end > g.end + CUT_SLACK_S
        };
        let cuts: Vec<usize> = accepted
            .iter()
            .flat_map(|m| &m.segments)
            .filter(|g| t.segments.iter().any(|s| inside(s, g)))
            .map(|g| at(g.start))
            .collect();
        if !cuts.is_empty() {
            let mut runs = self.runs(samples, speech, &cuts, opts, language, turns)?;
            runs.language_probability = t.language_probability;
            runs.review = std::mem::take(&mut t.review);
            tracing::debug!(
                cuts = cuts.len(),
                "decoded again in runs, for text put in between"
            );
            t = runs;
        }
        for more in accepted {
            t.insert(more);
        }
        Ok(t)
    }

    /// `speech` (sample ranges of `samples`) decoded in runs cut at `cuts`, each run on its
    /// own, one after the other in one transcript.
    fn runs(
        &self,
        samples: &[f32],
        speech: &[Range<usize>],
        cuts: &[usize],
        opts: &Options,
        language: &str,
        turns: Option<&Turns>,
    ) -> Result<Transcript, EngineError> {
        let mut runs: Vec<Vec<Range<usize>>> = vec![Vec::new()];
        for r in speech {
            let run = cuts.iter().filter(|&&c| c <= r.start).count();
            if runs.len() <= run {
                runs.resize_with(run + 1, Vec::new);
            }
            runs[run].push(r.clone());
        }
        let mut t = Transcript::empty(language, opts.word_timestamps);
        for run in runs.into_iter().filter(|r| !r.is_empty()) {
            let plan = Plan::new(run, samples.len(), true);
            let packed = self.packed(samples, &plan);
            let decoding = self.decode_plan(opts, packed.len());
            let mut state = DecoderState::in_lanes(self, opts.threads, turns)?;
            let mut part = Self::transcribe_on(
                &mut state,
                &packed,
                opts,
                Some(language.to_string()),
                &decoding,
            )?;
            part.map_to_note(&plan);
            t.append(part);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(a: f64, b: f64) -> Range<usize> {
        (a * S as f64) as usize..(b * S as f64) as usize
    }

    #[test]
    fn speech_no_segment_covers_is_a_gap() {
        let speech = vec![secs(0.5, 3.0), secs(4.0, 6.0), secs(7.0, 7.5)];
        // Text over 0.6-2.9 s: the first range is covered (within the slack), the second
        // not at all, the third is too short to count.
        assert_eq!(uncovered(&speech, &[secs(0.6, 2.9)]), vec![secs(4.0, 6.0)]);
        // A range whose text stops half way: its end is a gap.
        let gaps = uncovered(&[secs(0.0, 5.0)], &[secs(0.0, 2.0)]);
        assert_eq!(gaps, vec![secs(2.0, 5.0).start + SLACK..secs(2.0, 5.0).end]);
        // ...and one whose start has no text.
        assert_eq!(
            uncovered(&[secs(0.0, 5.0)], &[secs(3.0, 5.0)]),
            vec![0..secs(3.0, 5.0).start - SLACK]
        );
        // A hole in the middle of a long range.
        assert_eq!(
            uncovered(&[secs(0.0, 9.0)], &[secs(0.0, 3.0), secs(6.0, 9.0)]).len(),
            1
        );
        assert!(uncovered(&speech, &[secs(0.0, 8.0)]).is_empty());
    }

    #[test]
    fn close_gaps_are_decoded_together() {
        let g = groups(vec![secs(5.0, 6.0), secs(0.0, 1.0), secs(1.5, 2.0)]);
        assert_eq!(
            g,
            vec![vec![secs(0.0, 1.0), secs(1.5, 2.0)], vec![secs(5.0, 6.0)]]
        );
    }

    fn decoded(text: &str, avg_logprob: f32) -> Transcript {
        let mut t = Transcript::empty("en", false);
        t.segments.push(super::super::Segment {
            id: 0,
            start: 0.0,
            end: 1.0,
            text: text.into(),
            tokens: vec![1; 8],
            temperature: 0.0,
            avg_logprob,
            compression_ratio: 1.0,
            no_speech_prob: 0.1,
            suspect: false,
        });
        t.text = text.into();
        t
    }

    #[test]
    fn a_gaps_text_is_kept_when_it_reads_as_speech() {
        let sure = (0.8f32).ln();
        assert_eq!(
            judge_gap(
                &decoded("there's always more to read", sure),
                1.3,
                "The red fox has read many books, but"
            ),
            Judged::Speech
        );
        assert_eq!(
            judge_gap(&decoded("", sure), 1.3, "anything"),
            Judged::NoText("no text")
        );
        // A soft phrase the model could not read (real base output, 0.96 s of speech):
        // unsure, and as long as speech: flagged.
        assert_eq!(
            judge_gap(&decoded("Наму кинжайли.", (0.276f32).ln()), 0.96, ""),
            Judged::NoText("low confidence")
        );
        // Twenty letters in a fifth of a second of speech: not what the gap held, sure or
        // not; and the sentence base wrote for 1.4 s of room tone.
        assert_eq!(
            judge_gap(&decoded("and he's looking for us now", sure), 0.2, ""),
            Judged::Invented
        );
        assert_eq!(
            judge_gap(&decoded("Thank you very much.", sure), 0.16, ""),
            Judged::Invented
        );
        assert_eq!(
            judge_gap(
                &decoded(
                    "И трималитик, сомнений, в принципе, для нас.",
                    (0.3f32).ln()
                ),
                1.4,
                ""
            ),
            Judged::Invented
        );
        assert_eq!(judge_gap(&decoded("Да.", sure), 0.2, ""), Judged::Speech);
        // The end of the sentence before it again, its timestamps having fallen short.
        assert_eq!(
            judge_gap(
                &decoded("more to read.", sure),
                1.0,
                "but there's always more to read."
            ),
            Judged::AlreadySaid
        );
    }
}
