//! Which model, on which hardware: the flags `transcribe` and `serve` share, and loading
//! the model they name.

use std::path::PathBuf;

use clap::Args;

use crate::engine::{choose_backend, CpuError, CpuKernels, Engine, EngineError, GpuMode, Hardware};

/// Which model, on which hardware: shared by `transcribe` and `serve`.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Model name (resolved as <models-dir>/ggml-NAME.bin) or path to a GGML file.
    #[arg(long, env = "EARSHOT_MODEL", default_value = crate::models::DEFAULT_MODEL)]
    pub model: String,
    /// Folder holding ggml-*.bin models; looked in first, then ./models, then
    /// $XDG_DATA_HOME/earshot/models (~/.local/share/earshot/models).
    #[arg(long, env = "EARSHOT_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Run on the GPU (default: the GPU when this build has GPU support and one is present).
    /// Without a usable GPU, warns loudly and runs on the CPU.
    #[arg(long, env = "EARSHOT_GPU", conflicts_with = "no_gpu")]
    pub gpu: bool,
    /// Run on the CPU even when a GPU is present.
    #[arg(long, env = "EARSHOT_NO_GPU")]
    pub no_gpu: bool,
    /// Which GPU, counted from 0 in the order `nvidia-smi` lists them.
    #[arg(long, env = "EARSHOT_GPU_DEVICE", default_value_t = 0)]
    pub gpu_device: usize,
    /// Refuse to start when no usable GPU is found, instead of falling back to the CPU.
    #[arg(long, env = "EARSHOT_REQUIRE_GPU", conflicts_with = "no_gpu")]
    pub require_gpu: bool,
    /// Flash attention: on, off, or auto (on for a GPU, off on the CPU).
    #[arg(long, env = "EARSHOT_FLASH_ATTN", default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub flash_attn: String,
    /// CPU kernels chosen at run time: `auto` (the fastest this CPU has) or `avx2` (none that
    /// needs AVX-512: what a CPU with AVX2 only gets; refused by a `GGML_NATIVE=ON` build).
    #[arg(long, env = "EARSHOT_CPU_KERNELS", default_value = "auto", value_parser = ["auto", "avx2"])]
    pub cpu_kernels: String,
    /// Voice-activity model (name in the model folders, or a path), or `none`. Finds the
    /// speech so that silence, noise and long pauses are never decoded. When the file is
    /// missing, earshot warns once and falls back to an energy gate;
    /// `scripts/fetch-model.sh silero-vad` fetches it.
    #[arg(long, env = "EARSHOT_VAD_MODEL", default_value = crate::models::DEFAULT_VAD_MODEL)]
    pub vad_model: String,
}

/// Why the model did not load; each a sentence for the operator.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No such model file: the message names where it looked and the command that fetches it.
    #[error("{0}")]
    NotFound(String),
    /// The hardware asked for is not there (`--require-gpu` with no usable GPU).
    #[error(transparent)]
    Hardware(EngineError),
    /// The file is there but does not load.
    #[error(transparent)]
    Model(EngineError),
    /// This CPU cannot run this build's kernels as asked.
    #[error(transparent)]
    Cpu(CpuError),
}

impl ModelArgs {
    /// The model file, or a message naming the command that fetches it.
    pub fn locate(&self) -> Result<PathBuf, String> {
        let dirs = crate::models::search_dirs(self.models_dir.as_deref());
        crate::models::find(&self.model, &dirs)
            .map_err(|tried| crate::models::missing_hint(&self.model, &tried))
    }

    /// The hardware these flags ask for.
    pub fn hardware(&self) -> Hardware {
        Hardware {
            gpu: if self.no_gpu {
                GpuMode::Off
            } else if self.gpu {
                GpuMode::On
            } else {
                GpuMode::Auto
            },
            gpu_device: self.gpu_device,
            require_gpu: self.require_gpu,
            flash_attn: match self.flash_attn.as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            },
        }
    }

    /// The CPU kernels these flags allow.
    pub fn cpu_kernels(&self) -> CpuKernels {
        match self.cpu_kernels.as_str() {
            "avx2" => CpuKernels::Avx2,
            _ => CpuKernels::Auto,
        }
    }

    /// Find the model, check the CPU, pick the backend (printing the warning when a GPU was
    /// asked for and is not usable) and load it.
    pub fn load(&self) -> Result<Engine, LoadError> {
        let path = self.locate().map_err(LoadError::NotFound)?;
        crate::engine::prepare_cpu(self.cpu_kernels()).map_err(LoadError::Cpu)?;
        let (backend, warning) = choose_backend(&self.hardware()).map_err(LoadError::Hardware)?;
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let engine = Engine::load_on(&path, &backend).map_err(LoadError::Model)?;
        Ok(self.attach_vad(engine))
    }

    /// Give the engine its voice-activity model, or say once why it runs without one.
    fn attach_vad(&self, mut engine: Engine) -> Engine {
        if matches!(self.vad_model.as_str(), "none" | "off" | "") {
            tracing::info!(
                "voice-activity model off (--vad-model none): an energy gate finds the speech"
            );
            return engine;
        }
        let dirs = crate::models::search_dirs(self.models_dir.as_deref());
        let path = match crate::models::find(&self.vad_model, &dirs) {
            Ok(p) => p,
            Err(tried) => {
                tracing::warn!(
                    "voice-activity model {:?} not found ({}); falling back to the energy gate, \
                     which lets more noise through. Fetch it with: scripts/fetch-model.sh silero-vad",
                    self.vad_model,
                    tried
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return engine;
            }
        };
        match crate::engine::Silero::load(&path) {
            Ok(vad) => {
                tracing::info!(vad = %path.display(), "voice-activity model loaded");
                engine.set_vad(Some(vad));
            }
            Err(e) => tracing::warn!("{e}; falling back to the energy gate"),
        }
        engine
    }
}
