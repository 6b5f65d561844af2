//! `earshot serve` configuration: every option is a flag with an `EARSHOT_*` environment
//! variable behind it. [`ServeConfig::describe`] is what start-up prints (keys masked).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::engine::{choose_backend, Backend, Engine, GpuMode, Hardware};

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
    /// Voice-activity model (name in the model folders, or a path), or `none`. Finds the
    /// speech so that silence, noise and long pauses are never decoded. When the file is
    /// missing, earshot warns once and falls back to an energy gate;
    /// `scripts/fetch-model.sh silero-vad` fetches it.
    #[arg(long, env = "EARSHOT_VAD_MODEL", default_value = crate::models::DEFAULT_VAD_MODEL)]
    pub vad_model: String,
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

    /// Find the model, pick the backend (printing the warning when a GPU was asked for and is
    /// not usable) and load it. The error is a sentence for the operator.
    pub fn load(&self) -> Result<Engine, String> {
        let path = self.locate()?;
        let (backend, warning) = choose_backend(&self.hardware()).map_err(|e| e.to_string())?;
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let engine = Engine::load_on(&path, &backend).map_err(|e| e.to_string())?;
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
        match crate::engine::vad::Silero::load(&path) {
            Ok(vad) => {
                tracing::info!(vad = %path.display(), "voice-activity model loaded");
                engine.set_vad(Some(vad));
            }
            Err(e) => tracing::warn!("{e}; falling back to the energy gate"),
        }
        engine
    }
}

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

#[derive(Debug, Args, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "EARSHOT_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Folder for earshot.sqlite and audio/.
    #[arg(long, env = "EARSHOT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// The language of every note that does not name its own (ISO 639-1, e.g. ru), or auto.
    /// Saves the detection pass and its wrong guesses on short notes.
    #[arg(long, env = "EARSHOT_LANGUAGE", default_value = "auto")]
    pub language: String,
    /// Initial prompt for every note that does not bring its own: shop vocabulary.
    #[arg(long, env = "EARSHOT_PROMPT")]
    pub prompt: Option<String>,
    /// A file of product, brand, people and street names (one per line, # comments), given
    /// to Whisper ahead of --prompt. Refused at start-up when the two together are longer
    /// than the model reads (224 tokens).
    #[arg(long, env = "EARSHOT_GLOSSARY")]
    pub glossary: Option<PathBuf>,
    /// Concurrent transcriptions (default: CPU cores / threads per job; 4-16 on a GPU,
    /// by its memory).
    #[arg(long, env = "EARSHOT_WORKERS")]
    pub workers: Option<usize>,
    /// CPU threads per transcription (default: 1 up to 4 cores, else 2).
    #[arg(long, env = "EARSHOT_THREADS_PER_JOB")]
    pub threads_per_job: Option<usize>,
    /// Largest accepted upload in bytes.
    #[arg(long, env = "EARSHOT_MAX_UPLOAD_BYTES", default_value_t = crate::audio::MAX_BYTES)]
    pub max_upload_bytes: u64,
    /// Longest accepted audio in seconds.
    #[arg(long, env = "EARSHOT_MAX_DURATION", default_value_t = crate::audio::MAX_DURATION_S)]
    pub max_duration: f64,
    /// Queued jobs accepted before POST /v1/jobs answers 429.
    #[arg(long, env = "EARSHOT_QUEUE_LIMIT", default_value_t = 10_000)]
    pub queue_limit: usize,
    /// API key required as `Authorization: Bearer KEY` on /v1 (repeatable).
    #[arg(long = "api-key", env = "EARSHOT_API_KEYS", value_delimiter = ',')]
    pub api_keys: Vec<Secret>,
    /// Secret for the HMAC-SHA256 signature of webhook bodies (X-Earshot-Signature).
    #[arg(long, env = "EARSHOT_WEBHOOK_SECRET")]
    pub webhook_secret: Option<Secret>,
    /// Allow callback URLs on loopback, private and link-local addresses.
    #[arg(long, env = "EARSHOT_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Delete jobs and their audio this many days after creation (default: keep forever).
    #[arg(long, env = "EARSHOT_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Seconds running jobs get to finish on SIGTERM/SIGINT before they are requeued.
    #[arg(long, env = "EARSHOT_SHUTDOWN_GRACE", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Free disk (MiB) below which uploads are refused (507) and /readyz reports not ready.
    #[arg(long, env = "EARSHOT_MIN_FREE_DISK_MB", default_value_t = 512)]
    pub min_free_disk_mb: u64,
    /// Seconds a client has to send a request's headers (from its first byte; a new
    /// connection must start one within this time too).
    #[arg(long, env = "EARSHOT_HEADER_TIMEOUT", default_value_t = 30)]
    pub header_timeout: u64,
    /// Seconds a request body may pause before the request fails with 408.
    #[arg(long, env = "EARSHOT_BODY_IDLE_TIMEOUT", default_value_t = 60)]
    pub body_idle_timeout: u64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, env = "EARSHOT_KEEP_ALIVE_TIMEOUT", default_value_t = 75)]
    pub keep_alive_timeout: u64,
    /// Open connections at most; more are answered 503. Lowered at start-up to fit the
    /// process's file-descriptor limit.
    #[arg(long, env = "EARSHOT_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
}

/// What a note gets when its request leaves it out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults {
    /// ISO 639-1 code; `None` detects.
    pub language: Option<String>,
    /// Glossary and prompt together.
    pub prompt: Option<String>,
}

impl ServeConfig {
    /// The service-wide language and prompt (glossary first), checked against the model:
    /// the language must be one it knows, the prompt must fit. The error is a sentence for
    /// the operator.
    pub fn defaults(&self, engine: &crate::engine::Engine) -> Result<Defaults, String> {
        let language = match self.language.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => None,
            l => Some(
                crate::engine::language::code(l)
                    .ok_or_else(|| {
                        format!("--language {:?}: not a language Whisper knows (use an ISO 639-1 code such as ru or en, or auto)", self.language.chars().take(40).collect::<String>())
                    })?
                    .to_string(),
            ),
        };
        if language.as_deref().is_some_and(|l| l != "en") && !engine.is_multilingual() {
            return Err("--language: this model is English-only".into());
        }
        let mut parts = Vec::new();
        if let Some(path) = &self.glossary {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--glossary {}: {e}", path.display()))?;
            let names: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            if names.is_empty() {
                return Err(format!(
                    "--glossary {}: the file lists no names",
                    path.display()
                ));
            }
            parts.push(format!("{}.", names.join(", ")));
        }
        if let Some(p) = self
            .prompt
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            parts.push(p.to_string());
        }
        let prompt = (!parts.is_empty()).then(|| parts.join(" ").replace('\0', " "));
        if let Some(p) = &prompt {
            let n = engine.prompt_tokens(p).map_err(|e| e.to_string())?;
            let max = engine.max_prompt_tokens();
            if n > max {
                return Err(format!(
                    "--glossary and --prompt together are {n} tokens; the model reads at most {max}. Shorten them (keep the names that are misheard most)"
                ));
            }
        }
        Ok(Defaults { language, prompt })
    }

    /// Workers and threads per worker on `backend` ([`parallelism`]).
    pub fn parallelism(&self, backend: &Backend) -> Parallelism {
        parallelism(backend, cores(), self.workers, self.threads_per_job)
    }

    /// The effective configuration, one `key=value` per line, API keys masked.
    pub fn describe(&self) -> String {
        let keys = if self.api_keys.is_empty() {
            "none (no authentication)".to_string()
        } else {
            self.api_keys
                .iter()
                .map(Secret::masked)
                .collect::<Vec<_>>()
                .join(", ")
        };
        [
            format!("listen={}", self.listen),
            format!("data_dir={}", self.data_dir.display()),
            format!(
                "model={} (models_dir={})",
                self.model.model,
                self.model
                    .models_dir
                    .as_ref()
                    .map_or("./models, then ~/.local/share/earshot/models".into(), |d| d
                        .display()
                        .to_string())
            ),
            format!(
                "vad_model={} language={} prompt={} glossary={}",
                self.model.vad_model,
                self.language,
                self.prompt
                    .as_ref()
                    .map_or("none".into(), |p| format!("{} chars", p.chars().count())),
                self.glossary
                    .as_ref()
                    .map_or("none".into(), |g| g.display().to_string()),
            ),
            format!(
                "workers={} threads_per_job={}",
                self.workers.map_or("auto".into(), |w| w.to_string()),
                self.threads_per_job
                    .map_or("auto".into(), |t| t.to_string()),
            ),
            format!(
                "gpu={} gpu_device={} require_gpu={} flash_attn={}",
                if self.model.no_gpu {
                    "off"
                } else if self.model.gpu {
                    "on"
                } else {
                    "auto"
                },
                self.model.gpu_device,
                self.model.require_gpu,
                self.model.flash_attn
            ),
            format!(
                "max_upload_bytes={} max_duration={}s queue_limit={}",
                self.max_upload_bytes, self.max_duration, self.queue_limit
            ),
            format!("api_keys={keys}"),
            format!(
                "webhook_secret={} webhook_allow_private={}",
                if self.webhook_secret.is_some() {
                    "set (masked)"
                } else {
                    "none (webhooks unsigned)"
                },
                self.webhook_allow_private
            ),
            format!(
                "retention={}",
                self.retention_days
                    .map(|d| format!("{d} days"))
                    .unwrap_or_else(|| "keep forever".into())
            ),
            format!(
                "shutdown_grace={}s min_free_disk_mb={}",
                self.shutdown_grace, self.min_free_disk_mb
            ),
            format!(
                "header_timeout={}s body_idle_timeout={}s keep_alive_timeout={}s max_connections={}",
                self.header_timeout,
                self.body_idle_timeout,
                self.keep_alive_timeout,
                self.max_connections
            ),
        ]
        .join("\n")
    }
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

    #[test]
    fn secrets_never_reach_debug_or_the_start_up_lines() {
        use clap::Parser;
        #[derive(Parser)]
        struct Args {
            #[command(flatten)]
            serve: ServeConfig,
        }
        let key = "sk-very-secret-key-1";
        let hook = "whsec-also-secret";
        let a = Args::try_parse_from(["serve", "--api-key", key, "--webhook-secret", hook])
            .expect("the flags parse");
        for shown in [format!("{:?}", a.serve), a.serve.describe()] {
            assert!(!shown.contains(key) && !shown.contains(hook), "{shown}");
        }
        assert!(a.serve.describe().contains("sk-…(20 chars)"));
        assert_eq!(a.serve.api_keys[0].expose(), key);
        // A key that is not ASCII is masked by characters, not cut inside one.
        assert_eq!(Secret("ключ-секрет".into()).masked(), "клю…(11 chars)");
    }
}
