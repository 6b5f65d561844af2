//! How long work takes here, measured: seconds of processing per stored byte and per job,
//! as moving averages over the jobs this process finished. The admission of synchronous
//! requests and the `Retry-After` of a refusal are computed from them (issue #39): a
//! request waits while its expected wait is under the budget, and a refused client is told
//! when a place should be free, not a constant.

use std::sync::Mutex;

/// What a job costs before any was measured: 1 s, and 25 µs a byte (a Telegram voice note
/// of 30 kB: 0.75 s on 2 cores with base-q8_0). The first finished job replaces most of it.
const PRIOR_S_PER_JOB: f64 = 1.0;
const PRIOR_S_PER_BYTE: f64 = 25e-6;

/// Weight of the newest job in the averages.
const ALPHA: f64 = 0.2;

/// The moving averages.
#[derive(Debug)]
pub struct Estimate {
    inner: Mutex<Costs>,
}

#[derive(Debug, Clone, Copy)]
struct Costs {
    s_per_job: f64,
    s_per_byte: f64,
    measured: u64,
}

impl Default for Estimate {
    fn default() -> Estimate {
        Estimate {
            inner: Mutex::new(Costs {
                s_per_job: PRIOR_S_PER_JOB,
                s_per_byte: PRIOR_S_PER_BYTE,
                measured: 0,
            }),
        }
    }
}

impl Estimate {
    fn costs(&self) -> Costs {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A job of `bytes` took `took_s` seconds of one worker.
    pub fn observe(&self, bytes: u64, took_s: f64) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let per_byte = took_s / bytes.max(1) as f64;
        // The first measurement replaces the prior; later ones move the average.
        let a = if c.measured == 0 { 1.0 } else { ALPHA };
        c.s_per_job += a * (took_s - c.s_per_job);
        c.s_per_byte += a * (per_byte - c.s_per_byte);
        c.measured += 1;
    }

    /// Seconds of one worker a job of `bytes` is expected to take: its size at the measured
    /// rate, but never under a tenth of the average job (a tiny file still loads a state and
    /// decodes a window).
    pub fn job_s(&self, bytes: u64) -> f64 {
        let c = self.costs();
        (bytes as f64 * c.s_per_byte).max(c.s_per_job / 10.0)
    }

    /// Seconds of one worker `jobs` average jobs take.
    pub fn jobs_s(&self, jobs: usize) -> f64 {
        jobs as f64 * self.costs().s_per_job
    }

    /// Jobs measured so far.
    pub fn measured(&self) -> u64 {
        self.costs().measured
    }
}

/// Whole seconds to put in `Retry-After` for a wait of `s` seconds: at least 1, at most an
/// hour.
pub fn retry_after_s(s: f64) -> u64 {
    if s.is_finite() {
        s.ceil().clamp(1.0, 3600.0) as u64
    } else {
        3600
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_job_replaces_the_prior_and_later_ones_move_the_average() {
        let e = Estimate::default();
        assert_eq!(e.measured(), 0);
        e.observe(40_000, 2.0);
        assert!((e.job_s(40_000) - 2.0).abs() < 1e-9);
        assert!((e.jobs_s(3) - 6.0).abs() < 1e-9);
        e.observe(40_000, 1.0);
        assert!((e.jobs_s(1) - 1.8).abs() < 1e-9);
        // A tiny file costs a tenth of the average job, not nothing.
        assert!((e.job_s(1) - 0.18).abs() < 1e-9);
        assert_eq!(retry_after_s(0.2), 1);
        assert_eq!(retry_after_s(7.01), 8);
        assert_eq!(retry_after_s(f64::INFINITY), 3600);
    }
}
