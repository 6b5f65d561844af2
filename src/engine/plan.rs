//! The decoding plan: which encoder contexts each pass uses, and whether a result that
//! looks wrong is decoded again. A pure function, so every rule is a named row of one table
//! test.

use super::{fitted_ctx, AudioCtx, Options, CTX_DETECT, CTX_FULL, WHISPER_RATE};

/// How one note is decoded: the encoder contexts of each pass, and whether a result that
/// looks wrong is decoded again. A pure function of the options, the model and the audio's
/// length ([`decode_plan`]), so that every rule is a named row of one table test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodePlan {
    /// Encoder positions for the decoding pass; 0 is the full 30 s window.
    pub ctx: usize,
    /// Positions for the first, cheap language guess; `None`: detect once, on
    /// `redetect_ctx`.
    pub detect_ctx: Option<usize>,
    /// Positions for language detection when the first guess is unsure (or there is none).
    pub redetect_ctx: usize,
    /// Whether a result that looks wrong gets the careful pass (full window, beam 5). A loop
    /// gets it whatever this says.
    pub guarded: bool,
}

impl DecodePlan {
    /// The options of the decoding pass. A guarded pass decodes once, at temperature 0,
    /// without whisper.cpp's temperature fallback: when its result fails the thresholds, the
    /// careful pass is the fallback. Falling back inside the fast pass first sampled up to
    /// five more times per step on the fitted context (4-6 s on a 1-2 s note that then often
    /// went to the careful pass anyway). An unguarded pass keeps the fallback, as asked.
    pub fn first_pass(&self, opts: &Options) -> Options {
        if self.guarded {
            Options {
                temperature_increment: 0.0,
                ..opts.clone()
            }
        } else {
            opts.clone()
        }
    }

    /// The decoding pass's context once the language is known. A note whose language was
    /// detected again on the full window (`looked_again`) is decoded on it too: the state
    /// holds that encode, so the fast pass, and a careful pass after it, reuse it instead of
    /// encoding the fitted context and then the full window once more. On the tuning half
    /// that gave the same texts (but for punctuation) for 15% less CPU.
    pub fn decoding_ctx(&self, looked_again: bool) -> usize {
        if looked_again && self.redetect_ctx == CTX_FULL {
            0
        } else {
            self.ctx
        }
    }

    /// The plan for a detection whose encoder output no decoding pass on the same state will
    /// reuse (a long note's language, detected apart from its pieces): the first guess then
    /// looks at no more than 5 s, as it is paid for in full.
    pub fn for_detection_alone(self) -> DecodePlan {
        DecodePlan {
            detect_ctx: self.detect_ctx.map(|c| c.min(CTX_DETECT)),
            ..self
        }
    }
}

/// What the model and the machine are, as far as the plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanModel {
    pub multilingual: bool,
    pub gpu: bool,
}

/// The decoding plan for `samples` 16 kHz samples (after the voice-activity step).
///
/// - A fitted context only on the CPU and for multilingual models: on a GPU the full window
///   was both faster (the extra passes cost more than they save there) and more accurate
///   (H100: 98 notes in 5.7 s vs 11.2 s, CER 5.4% vs 7.3%), and English-only models crawled
///   with a fitted context (tiny.en: a minute for three short clips, not understood yet).
/// - The language is first guessed on the decoding pass's own fitted context, whose encoder
///   output the decoding pass then reuses (whisper.cpp as vendored here skips an encode of
///   the input it encoded last), so the guess costs one decoder step; then, under 90% sure,
///   on the full window (see `Engine::language`). With the full window to decode, the first
///   guess looks at 5 s. Not on a GPU, for the same reason: there the one detection is on
///   the full window, which the decoding pass reuses.
/// - The guard: a fitted context, or greedy decoding of a note up to 30 s, gets the careful
///   pass when the result looks wrong.
pub fn decode_plan(opts: &Options, model: PlanModel, samples: usize) -> DecodePlan {
    let auto = opts.audio_ctx == AudioCtx::Auto;
    let ctx = match opts.audio_ctx {
        AudioCtx::Full => 0,
        AudioCtx::Fixed(n) => (n as usize).min(CTX_FULL),
        AudioCtx::Auto if model.multilingual && !model.gpu => fitted_ctx(samples).unwrap_or(0),
        AudioCtx::Auto => 0,
    };
    // (An English-only model never detects.)
    let detect_ctx = (auto && !model.gpu && model.multilingual).then_some(if ctx == 0 {
        CTX_DETECT
    } else {
        ctx
    });
    let greedy = opts.beam_size.unwrap_or(1) <= 1;
    let duration = samples as f64 / WHISPER_RATE as f64;
    DecodePlan {
        ctx,
        detect_ctx,
        redetect_ctx: if auto { CTX_FULL } else { ctx },
        guarded: auto && (ctx != 0 || (greedy && duration <= 30.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: usize = WHISPER_RATE as usize; // samples per second
    /// A multilingual model on the CPU, the case most rows are about.
    const CPU: PlanModel = PlanModel {
        multilingual: true,
        gpu: false,
    };

    fn opts(audio_ctx: AudioCtx, beam: Option<u32>) -> Options {
        Options {
            audio_ctx,
            beam_size: beam,
            ..Options::default()
        }
    }

    #[test]
    fn the_decoding_plan_is_one_table() {
        let gpu = PlanModel {
            multilingual: true,
            gpu: true,
        };
        let english_only = PlanModel {
            multilingual: false,
            gpu: false,
        };
        let auto = opts(AudioCtx::Auto, None);
        let plan = |what: &str, o: &Options, m: PlanModel, secs: f64, want: DecodePlan| {
            assert_eq!(
                decode_plan(o, m, (secs * S as f64) as usize),
                want,
                "{what}"
            );
        };
        let p = |ctx, detect_ctx, redetect_ctx, guarded| DecodePlan {
            ctx,
            detect_ctx,
            redetect_ctx,
            guarded,
        };
        // (what, options, model, seconds) -> plan
        plan("CPU, a 5 s note: fitted context (250 + 128 positions, to a multiple of 64), the first guess on it, guarded",
            &auto, CPU, 5.0, p(384, Some(384), CTX_FULL, true));
        plan(
            "CPU, a 20 s note: the first guess on its whole fitted context (the decoding pass reuses that encode)",
            &auto,
            CPU,
            20.0,
            p(1152, Some(1152), CTX_FULL, true),
        );
        plan(
            "CPU, a 2 s note: the first guess uses the note's own context",
            &auto,
            CPU,
            2.0,
            p(256, Some(256), CTX_FULL, true),
        );
        plan("CPU, a 28 s note: too close to 30 s to fit, full window, still guarded (greedy, <= 30 s)",
            &auto, CPU, 28.0, p(0, Some(CTX_DETECT), CTX_FULL, true));
        plan(
            "CPU, a 60 s recording: full window, not guarded",
            &auto,
            CPU,
            60.0,
            p(0, Some(CTX_DETECT), CTX_FULL, false),
        );
        plan(
            "CPU, beam 5 on a 28 s note: full window, not guarded (only greedy is)",
            &opts(AudioCtx::Auto, Some(5)),
            CPU,
            28.0,
            p(0, Some(CTX_DETECT), CTX_FULL, false),
        );
        plan(
            "CPU, beam 5 on a 5 s note: the fitted context is guarded whatever the beam",
            &opts(AudioCtx::Auto, Some(5)),
            CPU,
            5.0,
            p(384, Some(384), CTX_FULL, true),
        );
        plan(
            "GPU: full window, one detection, guarded only as greedy on a short note",
            &auto,
            gpu,
            5.0,
            p(0, None, CTX_FULL, true),
        );
        plan(
            "English-only model: full window (a fitted one crawled), nothing to detect",
            &auto,
            english_only,
            5.0,
            p(0, None, CTX_FULL, true),
        );
        plan(
            "--audio-ctx full: no first guess, no guard",
            &opts(AudioCtx::Full, None),
            CPU,
            5.0,
            p(0, None, 0, false),
        );
        plan(
            "--audio-ctx 700: that context everywhere, no guard",
            &opts(AudioCtx::Fixed(700), None),
            CPU,
            5.0,
            p(700, None, 700, false),
        );
        plan(
            "--audio-ctx 5000: capped at the model's 1500",
            &opts(AudioCtx::Fixed(5000), None),
            CPU,
            5.0,
            p(CTX_FULL, None, CTX_FULL, false),
        );
        plan(
            "--accurate: full window, beam 5, no guard",
            &auto.clone().accurate(),
            CPU,
            5.0,
            p(0, None, 0, false),
        );
    }

    #[test]
    fn a_detection_no_decoding_pass_reuses_looks_at_5_s_first() {
        let twenty = decode_plan(&opts(AudioCtx::Auto, None), CPU, 20 * S);
        assert_eq!(twenty.for_detection_alone().detect_ctx, Some(CTX_DETECT));
        assert_eq!(twenty.for_detection_alone().ctx, twenty.ctx);
        let two = decode_plan(&opts(AudioCtx::Auto, None), CPU, 2 * S);
        assert_eq!(two.for_detection_alone(), two, "already within 5 s");
        let full = decode_plan(&opts(AudioCtx::Full, None), CPU, 20 * S);
        assert_eq!(full.for_detection_alone(), full, "no first guess to cap");
    }

    #[test]
    fn a_note_detected_again_on_the_full_window_is_decoded_on_it() {
        let auto = decode_plan(&opts(AudioCtx::Auto, None), CPU, 2 * S);
        assert_eq!(auto.decoding_ctx(false), 256, "the first guess was sure");
        assert_eq!(
            auto.decoding_ctx(true),
            0,
            "detected again on the full window"
        );
        let fixed = decode_plan(&opts(AudioCtx::Fixed(700), None), CPU, 2 * S);
        assert_eq!(
            fixed.decoding_ctx(true),
            700,
            "detection ran on the asked context, which the pass keeps"
        );
    }

    #[test]
    fn a_guarded_pass_leaves_the_temperature_fallback_to_the_careful_pass() {
        let auto = opts(AudioCtx::Auto, None);
        let guarded = decode_plan(&auto, CPU, 5 * S);
        assert!(guarded.guarded);
        let fast = guarded.first_pass(&auto);
        assert_eq!(fast.temperature_increment, 0.0);
        assert_eq!(fast.temperature, auto.temperature);
        assert_eq!(fast.beam_size, auto.beam_size);
        let long = decode_plan(&auto, CPU, 60 * S);
        assert!(!long.guarded);
        assert_eq!(
            long.first_pass(&auto).temperature_increment,
            auto.temperature_increment,
            "an unguarded pass keeps whisper.cpp's fallback"
        );
    }
}
