//! A long note as a stream: its samples pass through once, and what is held at any time is
//! the pieces being decoded plus the half minute the next cut waits on, whatever the note's
//! length (issue #15's flat memory).
//!
//! [`Engine::stream_pieces`] takes the note's samples as they are decoded. It raises them
//! by the note's gain (measured beforehand, in a first pass over the file: the gain must be
//! known before the voice-activity model hears anything), runs Silero a block at a time
//! ([`VAD_BLOCK`], each block started [`VAD_WARM`] early so its state has settled), and cuts
//! a piece with [`cut`] as soon as the speech found so far settles where it ends. Each piece
//! (only its speech, padded, when silence is trimmed) goes to the lanes while the reading
//! goes on; the reading waits when every lane is busy and one piece is queued, so a slow
//! model never lets the samples pile up. A stretch of speech with no pause at all is closed
//! every [`SPLIT_AFTER`] windows (two minutes), so even that is not held to its end.
//!
//! The cuts are the ones [`cut`] would make over the whole note (the ranges a cut depends on
//! are all closed before it is made), so a resumed run finds the same pieces as the run it
//! resumes. The language is detected once, from the first piece with speech, before any
//! piece is decoded. (Just over 500 lines: about 80 are the test of that claim.)

use std::ops::Range;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Mutex, OnceLock};

use super::decode::{DecoderState, Turns};
use super::pieces::{cut, lock, Progress, Watch, PIECE_MIN};
use super::vad::{Plan, Ranges, Silero, PAD, WINDOW};
use super::{parallelism, Engine, EngineError, Options, Transcript};
use crate::audio::WHISPER_RATE;

/// Silero runs over this much at a time (32.8 s).
pub const VAD_BLOCK: usize = 1024 * WINDOW;
/// ...starting this much earlier (1 s), whose probabilities are dropped: Silero's state
/// starts from zero at every call.
const VAD_WARM: usize = 32 * WINDOW;
/// An open speech range is closed after this many windows (2 min) and goes on as a new one.
const SPLIT_AFTER: usize = 3750;
/// Buffered samples are dropped in steps of at least this many (1 s).
const DROP_STEP: usize = WHISPER_RATE as usize;

/// Where a note's samples come from: called once, it hands them to the function it is given
/// in order, and stops early when that returns `false`. An error is the decoder's.
pub type Feed<'a> =
    dyn FnMut(&mut dyn FnMut(&[f32]) -> bool) -> Result<(), crate::audio::DecodeError> + 'a;

/// One piece on its way to a lane: its place in the note, the samples it decodes (from
/// `at`), and how.
struct Job {
    index: usize,
    cut: Range<usize>,
    at: usize,
    samples: Vec<f32>,
    plan: Plan,
}

/// A piece's result, in the note's order.
enum Part {
    Decoding,
    Done(Transcript),
    /// No speech in it: nothing to decode.
    Silent,
}

/// What the lanes and the reader share.
struct Shared {
    /// Samples done (for progress), and every piece's part so far.
    parts: Mutex<(usize, Vec<Part>)>,
    failed: Mutex<Option<EngineError>>,
    /// The note's language and how sure detection was, set before the first piece is sent.
    language: OnceLock<(String, Option<f32>)>,
    total_s: f64,
}

impl Shared {
    fn fail(&self, e: EngineError) {
        lock(&self.failed).get_or_insert(e);
    }

    fn has_failed(&self) -> bool {
        lock(&self.failed).is_some()
    }

    /// Piece `index` (`len` samples) is finished.
    fn finish(&self, index: usize, len: usize, part: Part, watch: &dyn Watch) {
        let mut p = lock(&self.parts);
        if p.1.len() <= index {
            p.1.resize_with(index + 1, || Part::Decoding);
        }
        p.0 += len;
        p.1[index] = part;
        watch.progress(Progress {
            done_s: p.0 as f64 / WHISPER_RATE as f64,
            total_s: self.total_s,
        });
    }
}

/// The reading side: the samples since the next piece's first needed one, Silero's ranges,
/// and where the next cut starts.
struct Reader<'a> {
    engine: &'a Engine,
    silero: &'a Silero,
    opts: &'a Options,
    requested: Option<String>,
    watch: &'a dyn Watch,
    shared: &'a Shared,
    tx: Option<SyncSender<Job>>,
    gain: Option<f32>,
    /// Samples from `base` on.
    buf: Vec<f32>,
    base: usize,
    /// Samples read.
    n: usize,
    /// Samples Silero has been over.
    heard: usize,
    ranges: Ranges,
    /// Pieces made, and where the next one starts.
    made: usize,
    from: usize,
    /// Every piece made, in order.
    cuts: Vec<Range<usize>>,
    /// Samples of speech in the note, once it is all read.
    speech_samples: usize,
    /// A piece stored by an earlier run was met.
    resuming: bool,
}

impl Reader<'_> {
    fn push(&mut self, samples: &[f32]) -> Result<(), EngineError> {
        let at = self.buf.len();
        self.buf.extend_from_slice(samples);
        if let Some(g) = self.gain {
            self.buf[at..].iter_mut().for_each(|x| *x *= g);
        }
        self.n += samples.len();
        while self.n - self.heard >= VAD_BLOCK {
            self.hear(self.heard + VAD_BLOCK)?;
            let stable = self
                .ranges
                .closed()
                .iter()
                .take_while(|r| r.end + PAD <= self.heard)
                .cloned()
                .collect::<Vec<_>>();
            let cuts = cut(&stable, self.heard);
            // The last piece can still grow; the others are what the whole note gives.
            self.make(&cuts[..cuts.len() - 1], &stable)?;
            self.drop_unneeded();
            tracing::trace!(
                heard_s = self.heard as f64 / WHISPER_RATE as f64,
                held_s = self.buf.len() as f64 / WHISPER_RATE as f64,
                pieces = self.made,
                "read on"
            );
        }
        Ok(())
    }

    /// Run Silero up to sample `to`.
    fn hear(&mut self, to: usize) -> Result<(), EngineError> {
        let warm = VAD_WARM.min(self.heard);
        let from = self.heard - warm;
        let probs = self
            .silero
            .probabilities(&self.buf[from - self.base..to - self.base])?;
        self.ranges.push(probs.get(warm / WINDOW..).unwrap_or(&[]));
        self.heard = to;
        Ok(())
    }

    /// The end of the note: the rest heard, and the last pieces made.
    fn finish(&mut self) -> Result<(), EngineError> {
        if self.heard < self.n {
            self.hear(self.n)?;
        }
        let speech = std::mem::take(&mut self.ranges).finish(self.n);
        self.speech_samples = speech.iter().map(|r| r.len()).sum();
        self.make(&cut(&speech, self.n), &speech)
    }

    /// The pieces of `cuts` (the note's cuts from its start) not made yet, with `speech`
    /// the ranges known so far.
    fn make(&mut self, cuts: &[Range<usize>], speech: &[Range<usize>]) -> Result<(), EngineError> {
        for c in cuts.iter().skip(self.made) {
            // Always the case (see the module documentation); the max keeps the tiling whole
            // if it ever were not.
            debug_assert_eq!(c.start, self.from);
            let c = c.start.max(self.from)..c.end;
            if !c.is_empty() {
                self.piece(c, speech)?;
            }
        }
        Ok(())
    }

    fn piece(&mut self, c: Range<usize>, speech: &[Range<usize>]) -> Result<(), EngineError> {
        let index = self.made;
        self.made += 1;
        self.from = c.end;
        self.cuts.push(c.clone());
        if let Some(t) = self.watch.stored(&c) {
            if !self.resuming {
                self.resuming = true;
                tracing::info!(from_piece = index, "resuming from stored pieces");
            }
            self.know_language(Some(&t), None)?;
            self.shared
                .finish(index, c.len(), Part::Done(t), self.watch);
            return Ok(());
        }
        let inside: Vec<Range<usize>> = speech
            .iter()
            .filter(|r| r.start < c.end && r.end > c.start)
            .map(|r| r.start.max(c.start) - c.start..r.end.min(c.end) - c.start)
            .collect();
        let (Some(first), Some(last)) = (inside.first(), inside.last()) else {
            self.shared.finish(index, c.len(), Part::Silent, self.watch);
            return Ok(());
        };
        // With the silence trimmed, only the speech (padded as the plan pads it) is needed.
        let (a, b) = if self.opts.trim_silence {
            (
                c.start + first.start.saturating_sub(PAD),
                c.start + (last.end + PAD).min(c.len()),
            )
        } else {
            (c.start, c.end)
        };
        let plan = Plan::new(
            inside
                .iter()
                .map(|r| r.start + c.start - a..r.end + c.start - a)
                .collect(),
            b - a,
            self.opts.trim_silence,
        );
        let job = Job {
            index,
            cut: c,
            at: a,
            samples: self.buf[a - self.base..b - self.base].to_vec(),
            plan,
        };
        self.know_language(None, Some(&job))?;
        if let Some(tx) = &self.tx {
            // Blocks while every lane is busy and a piece is already waiting.
            if tx.send(job).is_err() {
                return Err(EngineError::Inference("the decoding lanes stopped".into()));
            }
        }
        Ok(())
    }

    /// Settle the note's language, once: as asked, as a resumed run's stored piece had it,
    /// or detected from `job`, the first piece with speech.
    fn know_language(
        &mut self,
        stored: Option<&Transcript>,
        job: Option<&Job>,
    ) -> Result<(), EngineError> {
        if self.shared.language.get().is_some() {
            return Ok(());
        }
        let found = match (&self.requested, stored, job) {
            (Some(l), _, _) => (l.clone(), None),
            (None, Some(t), _) => (t.language.clone(), t.language_probability),
            (None, None, Some(_)) if self.engine.is_cancelled() => {
                return Err(EngineError::Cancelled);
            }
            (None, None, Some(job)) => {
                let packed = self.engine.packed(&job.samples, &job.plan);
                let mut state = DecoderState::new(self.engine, self.opts.threads)?;
                let decoding = self
                    .engine
                    .decode_plan(self.opts, packed.len())
                    .for_detection_alone();
                let (language, probability, _) =
                    Engine::language(&mut state, &packed, None, &decoding)?;
                (language, probability)
            }
            (None, None, None) => return Ok(()),
        };
        let _ = self.shared.language.set(found);
        Ok(())
    }

    /// Forget the samples no piece or Silero block will read again.
    fn drop_unneeded(&mut self) {
        let for_silero = self.heard.saturating_sub(VAD_WARM);
        let for_pieces = if self.opts.trim_silence {
            // The next speech after the cut (closed, or still open), less its padding; with
            // none yet, any speech to come starts after what Silero has heard.
            let next = self
                .ranges
                .closed()
                .iter()
                .find(|r| r.end > self.from)
                .map(|r| r.start)
                .or(self.ranges.open_since())
                .unwrap_or(self.heard);
            next.saturating_sub(PAD).max(self.from)
        } else {
            self.from
        };
        let keep = for_silero.min(for_pieces);
        if keep >= self.base + DROP_STEP {
            self.buf.drain(..keep - self.base);
            self.base = keep;
        }
    }
}

impl Engine {
    /// A long note of `n` samples, read from `feed` as it decodes and raised by `gain` (see
    /// the module documentation), in `requested` or the detected language: its stitched
    /// transcript and seconds of speech, or `None` when there is no speech in it. `watch`
    /// hears the progress after each piece, gets each finished piece, and may have some
    /// already.
    pub(super) fn stream_pieces(
        &self,
        n: usize,
        gain: Option<f32>,
        feed: &mut Feed<'_>,
        opts: &Options,
        requested: Option<String>,
        watch: &dyn Watch,
    ) -> Result<Option<(Transcript, f64)>, EngineError> {
        let silero = self.vad.as_ref().ok_or_else(|| {
            EngineError::Inference("a long note is read as a stream only with Silero".into())
        })?;
        let started = std::time::Instant::now();
        let par = parallelism(&self.backend, opts.threads.max(1), None, None);
        let lanes = self.lanes(par.jobs).clamp(1, n.div_ceil(PIECE_MIN).max(1));
        let piece_opts = Options {
            threads: par.threads,
            ..opts.clone()
        };
        let shared = Shared {
            parts: Mutex::new((0, Vec::new())),
            failed: Mutex::new(None),
            language: OnceLock::new(),
            total_s: n as f64 / WHISPER_RATE as f64,
        };
        watch.progress(Progress {
            done_s: 0.0,
            total_s: shared.total_s,
        });
        let (tx, rx) = sync_channel::<Job>(1);
        let rx = Mutex::new(rx);
        let turns = Turns::default();
        let mut reader = Reader {
            engine: self,
            silero,
            opts,
            requested,
            watch,
            shared: &shared,
            tx: Some(tx),
            gain,
            buf: Vec::new(),
            base: 0,
            n: 0,
            heard: 0,
            ranges: Ranges::new(Some(SPLIT_AFTER)),
            made: 0,
            from: 0,
            cuts: Vec::new(),
            speech_samples: 0,
            resuming: false,
        };
        let mut fed = Ok(());
        let span = tracing::Span::current();
        std::thread::scope(|scope| {
            for _ in 0..lanes {
                scope.spawn(|| loop {
                    let _job = span.enter();
                    let Ok(job) = lock(&rx).recv() else {
                        break;
                    };
                    if shared.has_failed() || self.is_cancelled() {
                        shared.fail(EngineError::Cancelled);
                        continue; // drain, so that the reader never waits on a full queue
                    }
                    let (language, probability) = shared
                        .language
                        .get()
                        .cloned()
                        .unwrap_or_else(|| ("en".into(), None));
                    match self.transcribe_piece_whole(
                        &job.samples,
                        &job.plan,
                        &piece_opts,
                        &language,
                        &turns,
                    ) {
                        Ok(mut t) => {
                            t.language_probability = probability;
                            // In the piece's own times, as the watch keeps it.
                            t.shift((job.at - job.cut.start) as f64 / WHISPER_RATE as f64);
                            watch.finished(&job.cut, &t);
                            shared.finish(job.index, job.cut.len(), Part::Done(t), watch);
                        }
                        Err(e) => shared.fail(e),
                    }
                });
            }
            let mut error = None;
            fed = feed(&mut |samples| {
                if self.is_cancelled() {
                    error.get_or_insert(EngineError::Cancelled);
                } else if let Err(e) = reader.push(samples) {
                    error.get_or_insert(e);
                }
                error.is_none() && !shared.has_failed()
            });
            let end = match error {
                Some(e) => Err(e),
                None if fed.is_ok() && !shared.has_failed() => reader.finish(),
                None => Ok(()),
            };
            if let Err(e) = end {
                shared.fail(e);
            }
            reader.tx = None; // the lanes finish the queue and stop
        });
        if let Some(e) = lock(&shared.failed).take() {
            return Err(e);
        }
        fed.map_err(|e| EngineError::Inference(format!("reading the audio again failed: {e}")))?;
        let Some((language, probability)) = shared.language.get().cloned() else {
            return Ok(None);
        };
        let parts = std::mem::take(&mut lock(&shared.parts).1);
        let mut t = Transcript::empty(&language, opts.word_timestamps);
        let pieces = parts.len();
        for (part, c) in parts.into_iter().zip(&reader.cuts) {
            if let Part::Done(mut p) = part {
                p.shift(c.start as f64 / WHISPER_RATE as f64);
                t.append(p);
            }
        }
        t.language_probability = probability;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            pieces,
            lanes,
            threads = par.threads,
            "long note decoded as a stream"
        );
        Ok(Some((
            t,
            reader.speech_samples as f64 / WHISPER_RATE as f64,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speech ranges like a long recording's: bursts of 0.3-20 s, pauses of 0.1-6 s, and
    /// now and then a minute of silence or a pauseless stretch longer than a piece.
    fn ranges(seed: u32, n: usize) -> Vec<Range<usize>> {
        let mut x = seed.max(1);
        let mut next = |m: usize| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize % m
        };
        let (mut at, mut out) = (next(3 * 16_000), Vec::new());
        while at < n {
            let len = match next(20) {
                0 => 40 * 16_000 + next(16_000),
                _ => 5_000 + next(20 * 16_000),
            };
            out.push(at..(at + len).min(n));
            at += len
                + match next(15) {
                    0 => 60 * 16_000,
                    _ => 1_600 + next(6 * 16_000),
                };
        }
        out
    }

    /// What the reader relies on: the cuts made from the ranges closed so far (those whose
    /// padded end Silero has heard) are the first cuts of the whole note, whatever comes
    /// after, so pieces can go out before the note is read to its end.
    #[test]
    fn cuts_made_while_reading_are_the_whole_notes_cuts() {
        for seed in 1..40 {
            let n = 20 * 60 * 16_000;
            let all = ranges(seed, n);
            let whole = cut(&all, n);
            let mut made = 0;
            let mut heard = 0;
            while heard < n {
                heard = (heard + VAD_BLOCK).min(n);
                let stable: Vec<_> = all
                    .iter()
                    .take_while(|r| r.end + PAD <= heard)
                    .cloned()
                    .collect();
                let cuts = cut(&stable, heard);
                let settled = &cuts[..cuts.len() - 1];
                assert_eq!(settled, &whole[..settled.len()], "seed {seed}, at {heard}");
                assert!(settled.len() >= made, "seed {seed}: a cut was taken back");
                made = settled.len();
            }
            assert!(
                made + 1 >= whole.len() / 2,
                "seed {seed}: few cuts settled early"
            );
        }
    }
}
