//! Where the model runs: the hardware found, the GPUs, and the choice between them and the
//! CPU ([`choose_backend`]).

use serde::Serialize;

use super::EngineError;

/// Whether to run on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuMode {
    /// The GPU when this build has GPU support and a device is present; the CPU otherwise.
    #[default]
    Auto,
    /// A GPU was asked for: without one, run on the CPU with a loud warning.
    On,
    /// The CPU even when a GPU is present.
    Off,
}

/// Where and how the model runs.
#[derive(Debug, Clone, Default)]
pub struct Hardware {
    pub gpu: GpuMode,
    /// Index among the GPUs ggml sees (0 = first).
    pub gpu_device: usize,
    /// Fail instead of falling back to the CPU when no usable GPU is found.
    pub require_gpu: bool,
    /// Flash attention; `None` = on for a GPU, off on the CPU.
    pub flash_attn: Option<bool>,
}

/// A GPU that ggml can run on.
#[derive(Debug, Clone, Serialize)]
pub struct GpuDevice {
    pub index: usize,
    /// ggml's backend name, e.g. `CUDA0`.
    pub name: String,
    /// The device's own name, e.g. `NVIDIA H100 80GB HBM3`.
    pub description: String,
    pub memory_total_mb: u64,
    pub memory_free_mb: u64,
}

/// The GPUs this build can use (always empty in a CPU-only build).
pub fn gpu_devices() -> Vec<GpuDevice> {
    use whisper_rs::whisper_rs_sys as sys;
    let text = |p: *const std::os::raw::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: ggml returns NUL-terminated strings that live as long as the registry.
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        }
    };
    let mut out = Vec::new();
    // SAFETY: the device registry is initialised on first use and never freed; every
    // pointer passed back to ggml came from ggml_backend_dev_get within range.
    unsafe {
        for i in 0..sys::ggml_backend_dev_count() {
            let dev = sys::ggml_backend_dev_get(i);
            if dev.is_null() {
                continue;
            }
            let kind = sys::ggml_backend_dev_type(dev);
            if kind != sys::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_GPU
                && kind != sys::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_IGPU
            {
                continue;
            }
            let (mut free, mut total) = (0usize, 0usize);
            sys::ggml_backend_dev_memory(dev, &mut free, &mut total);
            out.push(GpuDevice {
                index: out.len(),
                name: text(sys::ggml_backend_dev_name(dev)),
                description: text(sys::ggml_backend_dev_description(dev)),
                memory_total_mb: (total / (1024 * 1024)) as u64,
                memory_free_mb: (free / (1024 * 1024)) as u64,
            });
        }
    }
    out
}

/// Where a loaded model actually runs.
#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    /// `cpu`, or ggml's device name such as `CUDA0`.
    pub name: String,
    /// The GPU, when there is one.
    pub device: Option<GpuDevice>,
    pub flash_attn: bool,
}

impl Backend {
    pub fn is_gpu(&self) -> bool {
        self.device.is_some()
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.device {
            Some(d) => write!(
                f,
                "{} ({}, {} MiB)",
                self.name, d.description, d.memory_total_mb
            )?,
            None => write!(f, "cpu")?,
        }
        if self.flash_attn {
            write!(f, ", flash attention")?;
        }
        Ok(())
    }
}

/// Choose the backend for `hw`. Returns the backend and, when a GPU was asked for but cannot
/// be used, the warning to print loudly (or the error, with `require_gpu`).
pub fn choose_backend(hw: &Hardware) -> Result<(Backend, Option<String>), EngineError> {
    let cpu = |flash_attn: Option<bool>| Backend {
        name: "cpu".into(),
        device: None,
        flash_attn: flash_attn.unwrap_or(false),
    };
    if hw.gpu == GpuMode::Off && !hw.require_gpu {
        return Ok((cpu(hw.flash_attn), None));
    }
    let gpus = gpu_devices();
    let problem = if !cfg!(feature = "cuda") {
        "this earshot was built without GPU support (build it with `--features cuda`)".to_string()
    } else if gpus.is_empty() {
        "no usable GPU was found (does `nvidia-smi` list one? in a container, was it started \
         with `--gpus all`?)"
            .to_string()
    } else if let Some(d) = gpus.get(hw.gpu_device) {
        let backend = Backend {
            name: d.name.clone(),
            device: Some(d.clone()),
            flash_attn: hw.flash_attn.unwrap_or(true),
        };
        return Ok((backend, None));
    } else {
        format!(
            "GPU {} was asked for but the GPUs present are {}",
            hw.gpu_device,
            gpus.iter()
                .map(|g| format!("{}: {}", g.index, g.description))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if hw.require_gpu {
        return Err(EngineError::GpuUnavailable(format!(
            "--require-gpu is set but {problem}"
        )));
    }
    let warning = (hw.gpu == GpuMode::On).then(|| {
        format!(
            "A GPU WAS ASKED FOR, BUT {problem}. RUNNING ON THE CPU, which is many times slower."
        )
    });
    Ok((cpu(hw.flash_attn), warning))
}

/// How many transcriptions run at once and with how many CPU threads each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    pub jobs: usize,
    pub threads: usize,
}

/// The one rule for `--workers`/`--jobs` and threads, used by `serve` and `transcribe`.
/// Whatever the user set wins; the rest is filled in from what was measured
/// (`bench/bench.sh --levers` on 2 cores, the GPU machine's 16 cores,
/// docs/performance.md):
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
