//! Configuration: the flags, each with an `EARSHOT_*` environment variable behind it, and
//! what is derived from them. `model` holds the model and hardware flags (`transcribe` and
//! `serve`), `serve` the service's ([`ServeConfig::describe`] is what start-up prints, keys
//! masked); this module holds the rules and types they share: [`parallelism`], [`Secret`];
//! the service-wide defaults live with the jobs ([`crate::jobs::Defaults`]). Nothing here imports the command line; it imports this.

mod model;
mod serve;

use crate::engine::Backend;

pub use model::ModelArgs;
pub use serve::ServeConfig;

/// A secret from the command line or the environment (an API key, the webhook secret).
/// `Debug` shows its length only, so the configuration can be logged whole; the value is
/// read with [`Secret::expose`] where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first 3 characters and the length: enough to tell keys apart in a log.
    pub fn masked(&self) -> String {
        let head: String = self.0.chars().take(3).collect();
        format!("{head}…({} chars)", self.0.chars().count())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} chars)", self.0.chars().count())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}
/// How many transcriptions run at once and with how many CPU threads each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    pub jobs: usize,
    pub threads: usize,
}

/// The one rule for `--workers`/`--jobs` and threads, used by `serve` and `transcribe`.
/// Whatever the user set wins; the rest is filled in from what was measured
/// (`scripts/bench.sh --levers` on 2 cores, the GPU machine's 16 cores, README
/// "Performance"):
/// - CPU: 1 thread per job up to 4 cores, 2 above, and as many jobs as that fills. On
///   2 cores two 1-thread jobs gave 15% more short-note throughput than one 2-thread job;
///   on 16 cores 8 × 2 was best (16 × 1 6% slower, 1 × 16 64% slower).
/// - GPU: one model, several states: 16 on a card with 24 GiB or more (16 beat 8 by 1.5×
///   and 32 was slower on an H100, about 300 MiB each with `base`), 8 from 12 GiB, else 4.
pub fn parallelism(
    backend: &Backend,
    cores: usize,
    jobs: Option<usize>,
    threads: Option<usize>,
) -> Parallelism {
    let cores = cores.max(1);
    let jobs = jobs.filter(|&j| j > 0);
    let threads = threads.filter(|&t| t > 0);
    if let Some(gpu) = backend.device.as_ref() {
        let jobs = jobs.unwrap_or(match gpu.memory_total_mb {
            m if m >= 24 * 1024 => 16,
            m if m >= 12 * 1024 => 8,
            _ => 4,
        });
        let threads = threads.unwrap_or((cores / jobs).clamp(1, 4));
        return Parallelism { jobs, threads };
    }
    match (jobs, threads) {
        (Some(jobs), Some(threads)) => Parallelism { jobs, threads },
        (Some(jobs), None) => Parallelism {
            jobs,
            threads: (cores / jobs).clamp(1, 8),
        },
        (None, threads) => {
            let threads = threads.unwrap_or(if cores <= 4 { 1 } else { 2 });
            Parallelism {
                jobs: (cores / threads).max(1),
                threads,
            }
        }
    }
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::GpuDevice;

    fn cpu() -> Backend {
        Backend {
            name: "cpu".into(),
            device: None,
            flash_attn: false,
        }
    }

    fn gpu(memory_total_mb: u64) -> Backend {
        Backend {
            name: "CUDA0".into(),
            device: Some(GpuDevice {
                index: 0,
                name: "CUDA0".into(),
                description: "test".into(),
                memory_total_mb,
                memory_free_mb: memory_total_mb,
            }),
            flash_attn: true,
        }
    }

    fn p(jobs: usize, threads: usize) -> Parallelism {
        Parallelism { jobs, threads }
    }

    #[test]
    fn parallelism_follows_the_measured_rule() {
        // CPU: one thread per job up to 4 cores, two above.
        assert_eq!(parallelism(&cpu(), 1, None, None), p(1, 1));
        assert_eq!(parallelism(&cpu(), 2, None, None), p(2, 1));
        assert_eq!(parallelism(&cpu(), 16, None, None), p(8, 2));
        // What the user sets wins; the rest is filled in.
        assert_eq!(parallelism(&cpu(), 2, Some(1), None), p(1, 2));
        assert_eq!(parallelism(&cpu(), 16, None, Some(4)), p(4, 4));
        assert_eq!(parallelism(&cpu(), 64, Some(1), None), p(1, 8));
        assert_eq!(parallelism(&cpu(), 2, Some(0), Some(0)), p(2, 1));
        // GPU: states by card memory.
        assert_eq!(parallelism(&gpu(81_559), 16, None, None), p(16, 1));
        assert_eq!(parallelism(&gpu(16_000), 16, None, None), p(8, 2));
        assert_eq!(parallelism(&gpu(8_000), 2, None, None), p(4, 1));
        assert_eq!(parallelism(&gpu(81_559), 16, Some(2), None), p(2, 4));
    }
}
