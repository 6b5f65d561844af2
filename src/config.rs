//! `earshot serve` configuration: every option is a flag with an `EARSHOT_*` environment
//! variable behind it. [`ServeConfig::describe`] is what start-up prints (keys masked).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::cli::ModelArgs;
use crate::engine::Backend;

/// Concurrent `WhisperState`s on one GPU when `--workers` is not given. Not yet measured on a
/// real GPU (none was available); see README, "Self-hosting on a GPU box".
pub const GPU_WORKERS: usize = 4;

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
    /// Concurrent transcriptions (default: cores / threads-per-job).
    #[arg(long, env = "EARSHOT_WORKERS")]
    pub workers: Option<usize>,
    /// CPU threads per transcription (default: 2, or 1 on a single core).
    #[arg(long, env = "EARSHOT_THREADS_PER_JOB")]
    pub threads_per_job: Option<usize>,
    /// Largest accepted upload in bytes.
    #[arg(long, env = "EARSHOT_MAX_UPLOAD_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// Longest accepted audio in seconds.
    #[arg(long, env = "EARSHOT_MAX_DURATION", default_value_t = 3.0 * 3600.0)]
    pub max_duration: f64,
    /// Queued jobs accepted before POST /v1/jobs answers 429.
    #[arg(long, env = "EARSHOT_QUEUE_LIMIT", default_value_t = 10_000)]
    pub queue_limit: usize,
    /// API key required as `Authorization: Bearer KEY` on /v1 (repeatable).
    #[arg(long = "api-key", env = "EARSHOT_API_KEYS", value_delimiter = ',')]
    pub api_keys: Vec<String>,
    /// Secret for the HMAC-SHA256 signature of webhook bodies (X-Earshot-Signature).
    #[arg(long, env = "EARSHOT_WEBHOOK_SECRET")]
    pub webhook_secret: Option<String>,
    /// Allow callback URLs on loopback, private and link-local addresses.
    #[arg(long, env = "EARSHOT_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Delete jobs and their audio this many days after creation (default: keep forever).
    #[arg(long, env = "EARSHOT_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Seconds running jobs get to finish on SIGTERM/SIGINT before they are requeued.
    #[arg(long, env = "EARSHOT_SHUTDOWN_GRACE", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Free disk (MiB) below which /readyz reports not ready.
    #[arg(long, env = "EARSHOT_MIN_FREE_DISK_MB", default_value_t = 512)]
    pub min_free_disk_mb: u64,
}

impl ServeConfig {
    /// CPU threads per transcription: 2 (1 on a single core). On 2 cores, two 1-thread
    /// workers give about 15% more short-note throughput than one 2-thread worker
    /// (`scripts/bench.sh --levers`) but each note takes longer; `--threads-per-job 1` picks
    /// throughput.
    pub fn threads_per_job(&self) -> usize {
        let cores = crate::engine::default_threads();
        self.threads_per_job
            .unwrap_or(if cores >= 2 { 2 } else { 1 })
            .max(1)
    }

    /// Concurrent transcriptions: `--workers`, else one per `threads_per_job` cores on the
    /// CPU, and [`GPU_WORKERS`] states sharing one model on a GPU.
    pub fn workers(&self, backend: &Backend) -> usize {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let auto = if backend.is_gpu() {
            GPU_WORKERS
        } else {
            cores / self.threads_per_job()
        };
        self.workers.unwrap_or(auto).max(1)
    }

    /// The effective configuration, one `key=value` per line, API keys masked.
    pub fn describe(&self) -> String {
        let keys = if self.api_keys.is_empty() {
            "none (no authentication)".to_string()
        } else {
            self.api_keys
                .iter()
                .map(|k| format!("{}…({} chars)", &k[..k.len().min(3)], k.len()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        [
            format!("listen={}", self.listen),
            format!("data_dir={}", self.data_dir.display()),
            format!(
                "model={} (models_dir={})",
                self.model.model,
                self.model.models_dir.display()
            ),
            format!(
                "workers={} threads_per_job={}",
                self.workers
                    .map_or("auto (decided once the backend is known)".into(), |w| w
                        .to_string()),
                self.threads_per_job()
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
        ]
        .join("\n")
    }
}
