//! One decoder state and what runs on it: setting its audio context, detecting the
//! language, and a `whisper_full` turned into a [`Transcript`].
//!
//! A [`DecoderState`] is made fresh for every transcription (see the engine's module
//! documentation for why states are never reused) and knows the audio context it has set,
//! so the context is changed only when a step needs another.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use whisper_rs::{FullParams, SamplingStrategy, WhisperState};

use super::review::Review;
use super::{text, Engine, EngineError, Options, Segment, Transcript, Word};
use crate::audio::WHISPER_RATE;

/// whisper.cpp's abort callback: `data` points at the engine's `cancel` flag.
unsafe extern "C" fn abort_requested(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `decode` passes a pointer to `Engine::cancel`, which outlives the call it is
    // used in (the engine is borrowed for the whole `whisper_full`).
    unsafe { (*(data as *const AtomicBool)).load(Ordering::Relaxed) }
}

impl Drop for DecoderState<'_> {
    fn drop(&mut self) {
        self.engine.states.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A fresh whisper.cpp state on an engine, with the audio context it has set.
pub(super) struct DecoderState<'e> {
    engine: &'e Engine,
    state: WhisperState,
    /// The audio context the state uses now (a fresh state's is 0, the full window).
    ctx: usize,
    threads: usize,
    /// The note's [`Turns`], when the state is one of several decoding a note's pieces, and
    /// the turn held now. Declared after `state`, so the turn is given up only once the
    /// state's buffers are freed.
    turns: Option<&'e Turns>,
    turn: Option<Turn<'e>>,
}

/// The decoder states of one note's lanes. Any number decode at once, but a careful retry
/// runs alone: beam 5 over the full window makes whisper.cpp touch about twice a greedy
/// state's buffers (one full-window beam-5 state about 210 MB with `base`, a greedy one on
/// its fitted context about 85 MB), and a retry beside another lane's state was the whole of
/// a long note's peak memory over a short one's. Retries are rare (2 in the hour-long
/// bench file), so the other lanes waiting for one costs little. On a GPU the memory is the
/// card's, and retries do not wait.
#[derive(Default)]
pub(super) struct Turns(RwLock<()>);

/// A state's hold on [`Turns`]: shared while decoding, alone for a careful retry.
enum Turn<'t> {
    Shared(#[allow(dead_code)] RwLockReadGuard<'t, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'t, ()>),
}

impl Turns {
    /// A turn beside the other lanes (waits while one is alone).
    fn shared(&self) -> Turn<'_> {
        Turn::Shared(self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A turn alone (waits until no other lane holds one).
    fn alone(&self) -> Turn<'_> {
        Turn::Alone(self.0.write().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<'e> DecoderState<'e> {
    pub(super) fn new(engine: &'e Engine, threads: usize) -> Result<DecoderState<'e>, EngineError> {
        let state = engine
            .ctx
            .create_state()
            .map_err(|e| EngineError::Inference(format!("could not create a state: {e}")))?;
        engine.states.fetch_add(1, Ordering::SeqCst);
        Ok(DecoderState {
            engine,
            state,
            ctx: 0,
            threads: threads.max(1),
            turns: None,
            turn: None,
        })
    }

    /// Decode as one of the lanes that share `turns` (see [`Turns`]); `None` or a GPU: alone
    /// in its note.
    pub(super) fn in_lanes(
        engine: &'e Engine,
        threads: usize,
        turns: Option<&'e Turns>,
    ) -> Result<DecoderState<'e>, EngineError> {
        let turns = turns.filter(|_| !engine.backend.is_gpu());
        let turn = turns.map(Turns::shared);
        let mut state = Self::new(engine, threads)?;
        state.turns = turns;
        state.turn = turn;
        Ok(state)
    }

    /// Wait until this state is the only one of its note's lanes (see [`Turns`]), before a
    /// careful retry.
    pub(super) fn alone(&mut self) {
        if let (Some(turns), Some(Turn::Shared(_))) = (self.turns, &self.turn) {
            self.turn = None;
            self.turn = Some(turns.alone());
        }
    }

    /// The engine the state runs on.
    pub(super) fn engine(&self) -> &'e Engine {
        self.engine
    }

    /// Make `ctx` the state's audio context *before* language detection, which (in whisper.cpp)
    /// runs the encoder with whatever context the state's previous run left. A `whisper_full`
    /// over 100 ms with a given language sets the context and returns before encoding.
    fn use_ctx(&mut self, ctx: usize) -> Result<(), EngineError> {
        if self.ctx == ctx {
            return Ok(());
        }
        let mut p = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        p.set_n_threads(self.threads as i32);
        p.set_language(Some("en"));
        p.set_audio_ctx(ctx as i32);
        p.set_duration_ms(100);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        self.state
            .full(p, &[0.0; WHISPER_RATE as usize / 10])
            .map_err(|e| EngineError::Inference(e.to_string()))?;
        self.ctx = ctx;
        Ok(())
    }

    /// The most likely language of `samples` over audio context `ctx`: its id and
    /// probability. (Setting the context recomputes the state's mel, so the clip's mel is
    /// computed after it.)
    pub(super) fn detect(
        &mut self,
        samples: &[f32],
        ctx: usize,
    ) -> Result<(i32, f32), EngineError> {
        let inf = |e: whisper_rs::WhisperError| EngineError::Inference(e.to_string());
        self.use_ctx(ctx)?;
        self.state.pcm_to_mel(samples, self.threads).map_err(inf)?;
        let (id, probs) = self.state.lang_detect(0, self.threads).map_err(inf)?;
        Ok((id, probs.get(id as usize).copied().unwrap_or(0.0)))
    }

    /// One `whisper_full` in `language` with audio context `audio_ctx` (which the state then
    /// keeps), and the result.
    pub(super) fn decode(
        &mut self,
        samples: &[f32],
        opts: &Options,
        language: &str,
        duration: f64,
        audio_ctx: usize,
    ) -> Result<Transcript, EngineError> {
        let threads = self.threads;
        let inf = |e: whisper_rs::WhisperError| EngineError::Inference(e.to_string());
        let strategy = match opts.beam_size {
            Some(b) if b > 1 => SamplingStrategy::BeamSearch {
                beam_size: b as i32,
                patience: -1.0,
            },
            _ => SamplingStrategy::Greedy {
                best_of: opts.best_of.max(1) as i32,
            },
        };
        let mut p = FullParams::new(strategy);
        p.set_n_threads(threads as i32);
        p.set_language(Some(language));
        p.set_translate(opts.translate);
        if let Some(prompt) = opts.prompt.as_deref().filter(|s| !s.trim().is_empty()) {
            // whisper-rs panics on a NUL byte; the API refuses one, this keeps the CLI safe.
            p.set_initial_prompt(&prompt.replace('\0', " "));
        }
        p.set_temperature(opts.temperature);
        p.set_temperature_inc(opts.temperature_increment);
        // whisper.cpp's entropy threshold plays the role of OpenAI's compression-ratio check.
        p.set_entropy_thold(opts.compression_ratio_threshold);
        p.set_logprob_thold(opts.logprob_threshold);
        p.set_no_speech_thold(opts.no_speech_threshold);
        p.set_token_timestamps(opts.word_timestamps);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        p.set_suppress_blank(true);
        // Non-speech tokens ("[музыка]", "(applause)", "♪") are suppressed, as OpenAI's and
        // faster-whisper's defaults do: a voice note's transcript is what was said.
        p.set_suppress_nst(true);
        p.set_audio_ctx(audio_ctx as i32);
        // SAFETY: the callback only reads the AtomicBool the pointer names, and the engine
        // (so `engine.cancel`) is borrowed for the whole call.
        unsafe {
            p.set_abort_callback(Some(abort_requested));
            p.set_abort_callback_user_data(
                &self.engine.cancel as *const AtomicBool as *mut std::ffi::c_void,
            );
        }
        if self.engine.cancel.load(Ordering::SeqCst) {
            return Err(EngineError::Cancelled);
        }
        let ran = self.state.full(p, samples);
        self.ctx = audio_ctx;
        if self.engine.cancel.load(Ordering::SeqCst) {
            return Err(EngineError::Cancelled);
        }
        ran.map_err(inf)?;

        let eot = self.engine.ctx.token_eot();
        let mut segments = Vec::new();
        let mut words: Vec<Word> = Vec::new();
        for seg in self.state.as_iter() {
            let mut text_bytes = Vec::new();
            let mut tokens = Vec::new();
            let mut logprob_sum = 0.0f32;
            for i in 0..seg.n_tokens() {
                let Some(tok) = seg.get_token(i) else {
                    continue;
                };
                let data = tok.token_data();
                if data.id >= eot {
                    continue; // special and timestamp tokens
                }
                let bytes = tok.to_bytes().unwrap_or(&[]);
                tokens.push(data.id);
                logprob_sum += data.plog;
                text_bytes.extend_from_slice(bytes);
                if opts.word_timestamps {
                    let starts_word = bytes.first() == Some(&b' ') || words.is_empty();
                    let (t0, t1) = (data.t0.max(0) as f64 / 100.0, data.t1.max(0) as f64 / 100.0);
                    match words.last_mut() {
                        Some(w) if !starts_word => {
                            w.word = String::from_utf8_lossy(&[w.word.as_bytes(), bytes].concat())
                                .into_owned();
                            w.end = t1.max(w.end);
                            w.probability = w.probability.min(data.p);
                        }
                        _ => words.push(Word {
                            word: String::from_utf8_lossy(bytes).into_owned(),
                            start: t0,
                            end: t1,
                            probability: data.p,
                        }),
                    }
                }
            }
            let (text, cleaned) = text::clean(String::from_utf8_lossy(&text_bytes).trim());
            if cleaned {
                tracing::debug!("caption, credit or annotation text removed from a segment");
            }
            let avg_logprob = if tokens.is_empty() {
                0.0
            } else {
                logprob_sum / tokens.len() as f32
            };
            let no_speech_prob = seg.no_speech_probability();
            // OpenAI's rule: a segment that is probably silence and poorly predicted is dropped.
            if text.is_empty()
                || (no_speech_prob > opts.no_speech_threshold
                    && avg_logprob < opts.logprob_threshold)
            {
                continue;
            }
            segments.push(Segment {
                id: segments.len(),
                start: seg.start_timestamp().max(0) as f64 / 100.0,
                end: (seg.end_timestamp().max(0) as f64 / 100.0).min(duration.max(0.01)),
                compression_ratio: compression_ratio(&text),
                text,
                tokens,
                temperature: opts.temperature,
                avg_logprob,
                no_speech_prob,
                suspect: false,
            });
        }
        for w in &mut words {
            w.word = w.word.trim().to_string();
        }
        words.retain(|w| !w.word.is_empty());
        let text = segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Transcript {
            text,
            language: language.to_string(),
            language_probability: None,
            duration,
            segments,
            words: opts.word_timestamps.then_some(words),
            review: Review::default(),
        })
    }
}

/// OpenAI's compression ratio: text bytes over zlib-compressed bytes.
fn compression_ratio(text: &str) -> f32 {
    use std::io::Write;
    if text.is_empty() {
        return 0.0;
    }
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = enc.write_all(text.as_bytes());
    let compressed = enc.finish().map(|v| v.len()).unwrap_or(text.len());
    text.len() as f32 / compressed.max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// A retry waits for the lane still decoding, and a lane that comes while the retry runs
    /// waits for it.
    #[test]
    fn a_careful_retry_runs_alone_among_its_lanes() {
        let turns = Turns::default();
        let step = AtomicUsize::new(0);
        let other = turns.shared();
        std::thread::scope(|s| {
            let retry = s.spawn(|| {
                let alone = turns.alone();
                step.store(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
                step.store(2, Ordering::SeqCst);
                drop(alone);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(step.load(Ordering::SeqCst), 0, "the retry did not wait");
            drop(other);
            while step.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            let _next = turns.shared();
            assert_eq!(
                step.load(Ordering::SeqCst),
                2,
                "a lane started during the retry"
            );
            retry.join().unwrap();
        });
    }
}
