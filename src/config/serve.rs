//! `earshot serve`'s flags, each defaulting to a const of the module that owns the setting,
//! and what start-up derives from them. (Just over 500 lines: about 30 flags, each with its
//! help, environment variable and default, then their tests.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::keys::{self, ApiKey};
use super::{cores, parallelism, ConfigError, ModelArgs, Parallelism, Secret};
use crate::engine::Backend;
use crate::job::Defaults;
use crate::listener::{
    BODY_IDLE_TIMEOUT_S, HEADER_TIMEOUT_S, KEEP_ALIVE_TIMEOUT_S, MAX_CONNECTIONS,
};

/// Where the service listens unless told.
pub const LISTEN: &str = "127.0.0.1:8000";
/// The data folder unless told.
pub const DATA_DIR: &str = "data";
/// Seconds running jobs get to finish on SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE_S: u64 = 30;

/// `earshot serve`'s flags as clap reads them; [`Settings`] is what the service runs with.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "EARSHOT_LISTEN", default_value = LISTEN)]
    pub listen: SocketAddr,
    /// Folder for earshot.sqlite and audio/.
    #[arg(long, env = "EARSHOT_DATA_DIR", default_value = DATA_DIR)]
    pub data_dir: PathBuf,
    /// Where the job records live: `sqlite:PATH` (default: earshot.sqlite in --data-dir), or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (migrated at start-up).
    #[arg(long, env = "EARSHOT_DATABASE_URL")]
    pub database_url: Option<Secret>,
    /// Where the audio lives: `file:PATH` (default: audio/ in --data-dir), or
    /// `s3://BUCKET/PREFIX` on any S3-compatible store, with the usual AWS_* variables
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) and AWS_ENDPOINT_URL for a
    /// store that is not AWS.
    #[arg(long, env = "EARSHOT_AUDIO_STORE")]
    pub audio_store: Option<String>,
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
    #[arg(long, env = "EARSHOT_QUEUE_LIMIT", default_value_t = crate::jobs::QUEUE_LIMIT)]
    pub queue_limit: usize,
    /// Longest a synchronous request waits for a worker (seconds, expected from the work
    /// ahead and the speed measured here); past it, 503 with a computed Retry-After.
    #[arg(long, env = "EARSHOT_SYNC_MAX_WAIT", default_value_t = crate::jobs::SYNC_MAX_WAIT_S)]
    pub sync_max_wait: u64,
    /// A client key, `NAME=SECRET`, sent as `Authorization: Bearer SECRET` on /v1
    /// (repeatable): it sees only the jobs it created. A bare `SECRET` is an admin key named
    /// `default`.
    #[arg(long = "api-key", env = "EARSHOT_API_KEYS", value_delimiter = ',')]
    pub api_keys: Vec<Secret>,
    /// An admin key, `NAME=SECRET` (repeatable): it sees every job (the inbox's operators).
    #[arg(
        long = "admin-api-key",
        env = "EARSHOT_ADMIN_API_KEYS",
        value_delimiter = ','
    )]
    pub admin_api_keys: Vec<Secret>,
    /// A file of keys, one `NAME=SECRET` per line (`admin` after it for an admin key), read
    /// again on SIGHUP.
    #[arg(long, env = "EARSHOT_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Queued jobs one client may have before its POST /v1/jobs answers 429 (no limit when
    /// unset; the service's --queue-limit still holds).
    #[arg(long, env = "EARSHOT_CLIENT_QUEUE_LIMIT")]
    pub client_queue_limit: Option<usize>,
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
    #[arg(long, env = "EARSHOT_SHUTDOWN_GRACE", default_value_t = SHUTDOWN_GRACE_S)]
    pub shutdown_grace: u64,
    /// Free disk (MiB) below which uploads are refused (507) and /readyz reports not ready.
    #[arg(long, env = "EARSHOT_MIN_FREE_DISK_MB", default_value_t = crate::store::MIN_FREE_DISK_MB)]
    pub min_free_disk_mb: u64,
    /// Seconds a client has to send a request's headers (from its first byte; a new
    /// connection must start one within this time too).
    #[arg(long, env = "EARSHOT_HEADER_TIMEOUT", default_value_t = HEADER_TIMEOUT_S)]
    pub header_timeout: u64,
    /// Seconds a request body may pause before the request fails with 408.
    #[arg(long, env = "EARSHOT_BODY_IDLE_TIMEOUT", default_value_t = BODY_IDLE_TIMEOUT_S)]
    pub body_idle_timeout: u64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, env = "EARSHOT_KEEP_ALIVE_TIMEOUT", default_value_t = KEEP_ALIVE_TIMEOUT_S)]
    pub keep_alive_timeout: u64,
    /// Open connections at most; more are answered 503. Lowered at start-up to fit the
    /// process's file-descriptor limit.
    #[arg(long, env = "EARSHOT_MAX_CONNECTIONS", default_value_t = MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Run the Telegram bot in this process: voice notes sent to it become jobs, answered
    /// with their text. The token comes from EARSHOT_TELEGRAM_BOT_TOKEN or
    /// --telegram-bot-token-file, never from a flag's value (ps would show it).
    #[arg(long, env = "EARSHOT_TELEGRAM")]
    pub telegram: bool,
    /// A file holding the bot token (from @BotFather).
    #[arg(long, env = "EARSHOT_TELEGRAM_BOT_TOKEN_FILE")]
    pub telegram_bot_token_file: Option<PathBuf>,
    /// The Bot API server: Telegram's, or a self-hosted one (telegram-bot-api).
    #[arg(long, env = "EARSHOT_TELEGRAM_API_URL", default_value = crate::telegram::CLOUD_API)]
    pub telegram_api_url: String,
    /// A chat the bot serves (repeatable; EARSHOT_TELEGRAM_ALLOW_CHATS takes a comma list):
    /// a user's id for a private chat, a group's id (negative), or for Telegram Business the
    /// shop owner's user id. Others get one polite refusal, with their ID.
    #[arg(
        long = "telegram-allow-chat",
        env = "EARSHOT_TELEGRAM_ALLOW_CHATS",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    pub telegram_allow_chats: Vec<i64>,
    /// The operators' chat: Telegram Business notes are posted there ("who, when, duration:
    /// text"), never answered to the customer. Without it they are only stored as jobs.
    #[arg(
        long,
        env = "EARSHOT_TELEGRAM_FORWARD_CHAT",
        allow_negative_numbers = true
    )]
    pub telegram_forward_chat: Option<i64>,
    /// A self-hosted Bot API server's working folder, for its --local mode: files are read
    /// from there (no 20 MB limit).
    #[arg(long, env = "EARSHOT_TELEGRAM_LOCAL_FILES")]
    pub telegram_local_files: Option<PathBuf>,
    /// A webhook for every job the bot makes (their callback_url): a CRM learns of each
    /// Telegram note as it does of uploaded ones.
    #[arg(long, env = "EARSHOT_TELEGRAM_CALLBACK_URL")]
    pub telegram_callback_url: Option<String>,
    /// The address operators open the inbox page at (https://earshot.example.com), for
    /// links from the operators' chat.
    #[arg(long, env = "EARSHOT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// A host jobs may fetch their audio from (`source.url` on POST /v1/jobs; repeatable,
    /// EARSHOT_FETCH_ALLOW_HOSTS takes a comma list). No host is allowed unless named.
    #[arg(
        long = "fetch-allow-host",
        env = "EARSHOT_FETCH_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub fetch_allow_hosts: Vec<String>,
    /// Let source URLs be plain http and reach loopback and private addresses (a file host on
    /// the operator's own network).
    #[arg(long, env = "EARSHOT_FETCH_ALLOW_PRIVATE")]
    pub fetch_allow_private: bool,
    /// Seconds one fetch of a source URL may take in all (connecting: 10 s at most).
    #[arg(long, env = "EARSHOT_FETCH_TIMEOUT", default_value_t = crate::fetch::TIMEOUT_S)]
    pub fetch_timeout: u64,
}
/// What `earshot serve` runs with: its flags resolved into the types their users take
/// (limits, durations, the listener's limits), with no parsing concerns. Secrets stay
/// wrapped in [`Secret`], so `Debug` and [`Settings::describe`] never show them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `--database-url` (see [`Settings::database`]).
    pub database_url: Option<Secret>,
    /// `--audio-store` (see [`Settings::audio_store`]).
    pub audio_store: Option<String>,
    pub model: ModelArgs,
    pub language: String,
    pub prompt: Option<String>,
    pub glossary: Option<PathBuf>,
    pub workers: Option<usize>,
    pub threads_per_job: Option<usize>,
    /// Largest upload and longest audio.
    pub limits: crate::audio::Limits,
    pub queue_limit: usize,
    pub sync_max_wait: Duration,
    /// The keys of the flags (`--api-key`, `--admin-api-key`); the keys file's are read by
    /// [`Settings::keys`].
    pub api_keys: Vec<ApiKey>,
    pub api_keys_file: Option<PathBuf>,
    pub client_queue_limit: Option<usize>,
    pub webhook_secret: Option<Secret>,
    pub webhook_allow_private: bool,
    pub retention_days: Option<u64>,
    pub shutdown_grace: Duration,
    pub min_free_disk_mb: u64,
    /// Per-connection timeouts (at least a second each) and the connection cap.
    pub connections: crate::listener::Limits,
    pub telegram: bool,
    /// EARSHOT_TELEGRAM_BOT_TOKEN, read at start.
    pub telegram_token: Option<Secret>,
    pub telegram_bot_token_file: Option<PathBuf>,
    pub telegram_api_url: String,
    pub telegram_allow_chats: Vec<i64>,
    pub telegram_forward_chat: Option<i64>,
    pub telegram_local_files: Option<PathBuf>,
    pub telegram_callback_url: Option<String>,
    pub public_url: Option<String>,
    pub fetch_allow_hosts: Vec<String>,
    pub fetch_allow_private: bool,
    pub fetch_timeout: Duration,
}

impl From<ServeArgs> for Settings {
    fn from(a: ServeArgs) -> Settings {
        let secs = |s: u64| Duration::from_secs(s.max(1));
        Settings {
            listen: a.listen,
            data_dir: a.data_dir,
            database_url: a.database_url,
            audio_store: a.audio_store,
            model: a.model,
            language: a.language,
            prompt: a.prompt,
            glossary: a.glossary,
            workers: a.workers,
            threads_per_job: a.threads_per_job,
            limits: crate::audio::Limits {
                max_bytes: a.max_upload_bytes,
                max_duration_s: a.max_duration,
            },
            queue_limit: a.queue_limit,
            sync_max_wait: Duration::from_secs(a.sync_max_wait),
            api_keys: a
                .api_keys
                .iter()
                .map(|k| keys::parse(k.expose(), false))
                .chain(
                    a.admin_api_keys
                        .iter()
                        .map(|k| keys::parse(k.expose(), true)),
                )
                .collect(),
            api_keys_file: a.api_keys_file,
            client_queue_limit: a.client_queue_limit,
            webhook_secret: a.webhook_secret,
            webhook_allow_private: a.webhook_allow_private,
            retention_days: a.retention_days,
            shutdown_grace: Duration::from_secs(a.shutdown_grace),
            min_free_disk_mb: a.min_free_disk_mb,
            connections: crate::listener::Limits {
                timeouts: crate::listener::Timeouts {
                    header: secs(a.header_timeout),
                    body_idle: secs(a.body_idle_timeout),
                    keep_alive: secs(a.keep_alive_timeout),
                },
                max_connections: a.max_connections,
            },
            telegram: a.telegram,
            telegram_token: std::env::var(super::bot::TELEGRAM_TOKEN_ENV)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .map(Secret::new),
            telegram_bot_token_file: a.telegram_bot_token_file,
            telegram_api_url: a.telegram_api_url,
            telegram_allow_chats: a.telegram_allow_chats,
            telegram_forward_chat: a.telegram_forward_chat,
            telegram_local_files: a.telegram_local_files,
            telegram_callback_url: a.telegram_callback_url,
            public_url: a.public_url,
            fetch_allow_hosts: a
                .fetch_allow_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            fetch_allow_private: a.fetch_allow_private,
            fetch_timeout: Duration::from_secs(a.fetch_timeout.max(1)),
        }
    }
}

impl Settings {
    /// The service-wide language and prompt (glossary first), checked against the model:
    /// the language must be one it knows, the prompt must fit.
    pub fn defaults(&self, engine: &crate::engine::Engine) -> Result<Defaults, ConfigError> {
        let language = match self.language.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => None,
            l => Some(
                crate::engine::language::code(l)
                    .ok_or_else(|| ConfigError::Language(self.language.chars().take(40).collect()))?
                    .to_string(),
            ),
        };
        if language.as_deref().is_some_and(|l| l != "en") && !engine.is_multilingual() {
            return Err(ConfigError::EnglishOnly);
        }
        let mut parts = Vec::new();
        if let Some(path) = &self.glossary {
            let text = std::fs::read_to_string(path).map_err(|source| {
                ConfigError::GlossaryUnreadable {
                    path: path.clone(),
                    source,
                }
            })?;
            let names: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            if names.is_empty() {
                return Err(ConfigError::GlossaryEmpty(path.clone()));
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
            let tokens = engine.prompt_tokens(p)?;
            let max = engine.max_prompt_tokens();
            if tokens > max {
                return Err(ConfigError::PromptTooLong { tokens, max });
            }
        }
        Ok(Defaults { language, prompt })
    }

    /// Every API key: the flags' and the keys file's (read now). Several keys may share a
    /// name (bare secrets are all `default`; a key being rotated has two): each works, and
    /// jobs are recorded under the name. Empty: no authentication.
    pub fn keys(&self) -> Result<Vec<ApiKey>, ConfigError> {
        let mut all = self.api_keys.clone();
        if let Some(path) = &self.api_keys_file {
            all.extend(keys::read_file(path)?);
        }
        Ok(all)
    }

    /// Workers and threads per worker on `backend` ([`parallelism`]).
    pub fn parallelism(&self, backend: &Backend) -> Parallelism {
        parallelism(backend, cores(), self.workers, self.threads_per_job)
    }

    /// The effective configuration, one `key=value` per line, API keys masked.
    pub fn describe(&self) -> String {
        let keys = if self.api_keys.is_empty() && self.api_keys_file.is_none() {
            "none (no authentication)".to_string()
        } else {
            let mut named: Vec<String> = self.api_keys.iter().map(|k| format!("{k:?}")).collect();
            if let Some(f) = &self.api_keys_file {
                named.push(format!("those of {}", f.display()));
            }
            named.join(", ")
        };
        [
            format!("listen={}", self.listen),
            format!("data_dir={}", self.data_dir.display()),
            format!(
                "database={}",
                match self.database() {
                    Ok(Database::Sqlite(p)) => format!("sqlite:{}", p.display()),
                    Ok(Database::Postgres(url)) => masked_url(url.expose()),
                    Err(e) => e.to_string(),
                }
            ),
            format!(
                "audio_store={}",
                match self.audio_store() {
                    Ok(AudioStore::Folder(p)) => format!("file:{}", p.display()),
                    Ok(AudioStore::S3(url)) => {
                        let o = crate::store::S3Options::from_env();
                        format!(
                            "{url} (endpoint={} region={} access_key={} secret_key={})",
                            o.endpoint.unwrap_or_else(|| "AWS".into()),
                            o.region.unwrap_or_else(|| "us-east-1".into()),
                            o.access_key_id
                                .map_or("none".into(), |k| Secret(k).masked()),
                            if o.secret_access_key.is_some() {
                                "set (masked)"
                            } else {
                                "none"
                            }
                        )
                    }
                    Err(e) => e.to_string(),
                }
            ),
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
                "gpu={} gpu_device={} require_gpu={} flash_attn={} cpu_kernels={}",
                if self.model.no_gpu {
                    "off"
                } else if self.model.gpu {
                    "on"
                } else {
                    "auto"
                },
                self.model.gpu_device,
                self.model.require_gpu,
                self.model.flash_attn,
                self.model.cpu_kernels
            ),
            format!(
                "max_upload_bytes={} max_duration={}s queue_limit={} client_queue_limit={} sync_max_wait={}s",
                self.limits.max_bytes,
                self.limits.max_duration_s,
                self.queue_limit,
                self.client_queue_limit
                    .map_or("none".into(), |n| n.to_string()),
                self.sync_max_wait.as_secs()
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
                self.shutdown_grace.as_secs(),
                self.min_free_disk_mb
            ),
            self.describe_bot(),
            self.describe_fetch(),
            format!(
                "header_timeout={}s body_idle_timeout={}s keep_alive_timeout={}s max_connections={}",
                self.connections.timeouts.header.as_secs(),
                self.connections.timeouts.body_idle.as_secs(),
                self.connections.timeouts.keep_alive.as_secs(),
                self.connections.max_connections
            ),
        ]
        .join("\n")
    }
}

/// Where the job records live (`--database-url`).
pub enum Database {
    Sqlite(PathBuf),
    Postgres(Secret),
}

impl Settings {
    /// The database `--database-url` names, SQLite in the data folder by default; an error
    /// a person can act on for any other scheme.
    pub fn database(&self) -> Result<Database, ConfigError> {
        let Some(url) = &self.database_url else {
            return Ok(Database::Sqlite(self.data_dir.join("earshot.sqlite")));
        };
        let u = url.expose();
        if let Some(path) = u.strip_prefix("sqlite:") {
            Ok(Database::Sqlite(PathBuf::from(
                path.trim_start_matches("//"),
            )))
        } else if u.starts_with("postgres://") || u.starts_with("postgresql://") {
            Ok(Database::Postgres(url.clone()))
        } else {
            Err(ConfigError::DatabaseUrl(masked_url(u)))
        }
    }
}

/// Where the audio lives (`--audio-store`).
pub enum AudioStore {
    /// A folder; uploads are spooled in its `tmp/`.
    Folder(PathBuf),
    /// `s3://bucket/prefix`; uploads are spooled in the data folder's `spool/`.
    S3(String),
}

impl Settings {
    /// The audio store `--audio-store` names, `audio/` in the data folder by default; an
    /// error a person can act on for anything else.
    pub fn audio_store(&self) -> Result<AudioStore, ConfigError> {
        let Some(u) = self.audio_store.as_deref().map(str::trim) else {
            return Ok(AudioStore::Folder(self.data_dir.join("audio")));
        };
        if let Some(path) = u.strip_prefix("file:") {
            let path = path.trim_start_matches("//");
            if path.is_empty() {
                return Err(ConfigError::AudioFolderMissing);
            }
            Ok(AudioStore::Folder(PathBuf::from(path)))
        } else if u.starts_with("s3://") {
            crate::store::parse_s3_url(u).map_err(ConfigError::AudioBucket)?;
            Ok(AudioStore::S3(u.to_string()))
        } else {
            Err(ConfigError::AudioStore(crate::error::clip(u, 80)))
        }
    }
}

/// A connection URL with its password replaced by `***`.
fn masked_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_debug_or_the_start_up_lines() {
        use clap::Parser;
        #[derive(Parser)]
        struct Args {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let key = "sk-very-secret-key-1";
        let hook = "whsec-also-secret";
        let a = Args::try_parse_from(["serve", "--api-key", key, "--webhook-secret", hook])
            .expect("the flags parse");
        let settings = Settings::from(a.serve.clone());
        for shown in [
            format!("{:?}", a.serve),
            format!("{settings:?}"),
            settings.describe(),
        ] {
            assert!(!shown.contains(key) && !shown.contains(hook), "{shown}");
        }
        // Keys are listed by name, never by their secret.
        assert!(settings.describe().contains("api_keys=default (admin)"));
        assert_eq!(a.serve.api_keys[0].expose(), key);
        // A key that is not ASCII is masked by characters, not cut inside one.
        assert_eq!(Secret("ключ-секрет".into()).masked(), "клю…(11 chars)");
    }

    /// `--database-url`: SQLite in the data folder by default, `sqlite:` and `postgres://`
    /// taken, anything else refused; the password never shown. `--audio-store` likewise.
    #[test]
    fn database_url_choices_and_masking() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let settings = |extra: &[&str]| -> Settings {
            let mut args = vec!["earshot", "--data-dir", "/srv/e"];
            args.extend_from_slice(extra);
            Cli::parse_from(args).serve.into()
        };
        let s = settings(&[]);
        assert!(
            matches!(s.database(), Ok(Database::Sqlite(p)) if p == std::path::Path::new("/srv/e/earshot.sqlite"))
        );
        let s = settings(&["--database-url", "sqlite:/var/q.sqlite"]);
        assert!(
            matches!(s.database(), Ok(Database::Sqlite(p)) if p == std::path::Path::new("/var/q.sqlite"))
        );
        let s = settings(&[
            "--database-url",
            "postgres://earshot:hunter2@db:5432/earshot",
        ]);
        assert!(matches!(s.database(), Ok(Database::Postgres(_))));
        let shown = s.describe();
        assert!(
            shown.contains("database=postgres://earshot:***@db:5432/earshot"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"));
        // --audio-store: the data folder's audio/ by default, file: and s3:// taken.
        assert!(
            matches!(s.audio_store(), Ok(AudioStore::Folder(p)) if p == std::path::Path::new("/srv/e/audio"))
        );
        let s3 = settings(&["--audio-store", "s3://voice-notes/earshot"]);
        assert!(
            matches!(s3.audio_store(), Ok(AudioStore::S3(u)) if u == "s3://voice-notes/earshot")
        );
        assert!(s3
            .describe()
            .contains("audio_store=s3://voice-notes/earshot ("));
        let f = settings(&["--audio-store", "file:/mnt/nfs/audio"]);
        assert!(
            matches!(f.audio_store(), Ok(AudioStore::Folder(p)) if p == std::path::Path::new("/mnt/nfs/audio"))
        );
        for bad in ["s3://Voice_Notes", "ftp://x/y", "file:"] {
            let e = settings(&["--audio-store", bad]).audio_store().err();
            assert!(
                e.is_some_and(|e| e.to_string().starts_with("--audio-store")),
                "{bad}"
            );
        }
        let s = settings(&["--database-url", "mysql://u:pw@h/d"]);
        let e = s.database().err().unwrap().to_string();
        assert!(
            e.contains("sqlite: or postgres://") && !e.contains("pw@"),
            "{e}"
        );
    }
}
