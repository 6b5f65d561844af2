//! Jobs that fetch their own audio (`source` on `POST /v1/jobs`): an inbox vendor's webhook
//! carries a reference (a Telegram `file_id`, a URL), not bytes. The job is recorded
//! `fetching` at once; fetch threads download its audio, with retries, store it as an upload
//! is stored, and queue the job. A fetch that cannot succeed fails the job with a `source_*`
//! code; its webhook fires as for any failure.
//!
//! URLs: `https` only (plain `http` and private addresses only with `--fetch-allow-private`,
//! for a file host on the operator's own network), on a host in `--fetch-allow-host`, no
//! redirects, connect 10 s, `--fetch-timeout` in all, at most `--max-upload-bytes`, through
//! the resolver that refuses non-public addresses and pins those it checked
//! ([`crate::net::agent`], which webhook delivery uses too).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ErrorCode;
use crate::job::{Job, Source};
use crate::jobs::Service;
use crate::net::Capped;
use crate::store::now_ms;
use crate::telegram::{BotApi, FileError};

/// How long a claimed fetch is held past its timeout before another thread or node may take
/// it (a process that died mid-fetch; SQLite's single process frees them at start-up).
pub const LEASE_SLACK_MS: i64 = 30 * 1000;
/// Attempts before a fetch that keeps failing for a reason that may pass (no answer, a 5xx)
/// fails its job as `source_unreachable`.
pub const MAX_ATTEMPTS: u32 = 4;
/// Seconds a fetch may take in all, unless told (`--fetch-timeout`).
pub const TIMEOUT_S: u64 = 120;
/// Fetch threads.
pub const THREADS: usize = 4;

/// The rules for `source.url`.
#[derive(Debug, Clone, Default)]
pub struct UrlRules {
    /// Hosts audio may be fetched from (`--fetch-allow-host`), lower case.
    pub allow_hosts: Vec<String>,
    /// Plain http and private addresses allowed (`--fetch-allow-private`).
    pub allow_private: bool,
    pub timeout: Duration,
}

impl UrlRules {
    /// Whether `url` may be fetched, as far as its form says (its addresses are checked when
    /// it is fetched, each time): `invalid_source` or `host_not_allowed` with a message.
    pub fn check(&self, url: &str) -> Result<(), (ErrorCode, String)> {
        let invalid = |m: String| (ErrorCode::InvalidSource, m);
        if url.len() > 2048 {
            return Err(invalid("source.url is longer than 2048 bytes".into()));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("source.url must be an absolute https URL".into()))?;
        let port = match scheme.to_ascii_lowercase().as_str() {
            "https" => 443,
            "http" if self.allow_private => 80,
            "http" => {
                return Err(invalid(
                    "source.url must be https (plain http only with --fetch-allow-private)".into(),
                ))
            }
            other => {
                return Err(invalid(format!(
                    "source.url scheme '{}' is not allowed (https only)",
                    other.chars().take(20).collect::<String>()
                )))
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(invalid("source.url must not carry credentials".into()));
        }
        let (host, _) =
            crate::net::host_and_port("source.url", authority, port).map_err(invalid)?;
        let host = host.to_ascii_lowercase();
        if !self.allow_hosts.contains(&host) {
            return Err((
                ErrorCode::HostNotAllowed,
                format!(
                    "source.url host '{}' is not one audio may be fetched from; the operator allows hosts with --fetch-allow-host",
                    host.chars().take(100).collect::<String>()
                ),
            ));
        }
        Ok(())
    }
}

/// Why a fetch failed.
enum Failed {
    /// For good: the job fails with this code.
    Final(ErrorCode, String),
    /// Maybe not next time.
    Transient(String),
}

/// The fetch threads' shared state.
pub struct Fetcher {
    pub service: Arc<Service>,
    /// The Telegram bot, for `source.telegram` (`None` without `--telegram`).
    pub bot: Option<Arc<BotApi>>,
    pub local_files: Option<PathBuf>,
    pub urls: UrlRules,
}

impl Fetcher {
    /// Run [`THREADS`] fetch threads until the service stops.
    pub fn start(self) -> std::io::Result<()> {
        let me = Arc::new(self);
        let agent = Arc::new(crate::net::agent(me.urls.allow_private, me.urls.timeout));
        for n in 0..THREADS {
            let (me, agent) = (me.clone(), agent.clone());
            std::thread::Builder::new()
                .name(format!("earshot-fetch-{n}"))
                .spawn(move || me.run(&agent))?;
        }
        Ok(())
    }

    fn run(&self, agent: &ureq::Agent) {
        while !self.service.is_stopping() {
            // A Telegram download may take two minutes, a URL's `--fetch-timeout`.
            let longest = self.urls.timeout.max(Duration::from_secs(120));
            let lease = longest.as_millis() as i64 + LEASE_SLACK_MS;
            match self.service.next_fetch(lease, Duration::from_secs(1)) {
                Ok(Some(job)) => self.one(job, agent),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "reading the jobs to fetch failed");
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
    }

    fn one(&self, job: Job, agent: &ureq::Agent) {
        let span = tracing::info_span!("fetch", id = %job.id, attempt = job.attempts);
        let _g = span.enter();
        let outcome = match job.fetch.clone() {
            None => Err(Failed::Final(
                ErrorCode::InvalidSource,
                "the job has no source to fetch".into(),
            )),
            Some(source) => self.fetch(&source, agent).and_then(|blob| {
                if blob.size() == 0 {
                    return Err(Failed::Final(
                        ErrorCode::Empty,
                        "the fetched file is empty".into(),
                    ));
                }
                let size = blob.size();
                match self.service.attach(&job.id, blob) {
                    Ok(true) => {
                        tracing::info!(size, "audio fetched; job queued");
                        Ok(())
                    }
                    Ok(false) => {
                        tracing::info!("audio fetched for a job no longer waiting for it");
                        Ok(())
                    }
                    Err(e) => Err(Failed::Transient(format!("storing the audio: {e}"))),
                }
            }),
        };
        let stored = match outcome {
            Ok(()) => Ok(()),
            Err(Failed::Final(code, message)) => {
                tracing::warn!(code = %code, error = %message, "fetch failed; the job fails");
                self.service.fail(&job.id, code, &message)
            }
            Err(Failed::Transient(message)) if job.attempts >= MAX_ATTEMPTS => {
                tracing::warn!(error = %message, "fetch failed on every attempt; the job fails");
                self.service.fail(
                    &job.id,
                    ErrorCode::SourceUnreachable,
                    &format!("{message} (after {} attempts)", job.attempts),
                )
            }
            Err(Failed::Transient(message)) => {
                let wait = crate::webhooks::backoff_ms(job.attempts.saturating_sub(1));
                tracing::warn!(error = %message, retry_in_ms = wait, "fetch failed; trying again");
                self.service.fetch_later(&job.id, now_ms() + wait)
            }
        };
        if let Err(e) = stored {
            // The lease runs out and the job is fetched again.
            tracing::error!(error = %e, "recording a fetch's outcome failed");
        }
    }

    fn fetch(
        &self,
        source: &Source,
        agent: &ureq::Agent,
    ) -> Result<crate::store::PendingBlob, Failed> {
        let max = self.service.limits.max_bytes;
        let mut blob = self
            .service
            .begin_upload()
            .map_err(|e| Failed::Transient(e.to_string()))?;
        let mut write = |chunk: &[u8]| blob.write(chunk);
        match source {
            Source::Telegram { file_id } => {
                let Some(api) = &self.bot else {
                    return Err(Failed::Final(
                        ErrorCode::InvalidSource,
                        "no Telegram bot is configured (--telegram)".into(),
                    ));
                };
                crate::telegram::download(
                    api,
                    self.local_files.as_deref(),
                    file_id,
                    max,
                    &mut write,
                )
                .map_err(|e| match e {
                    FileError::TooLarge { cloud: true } => Failed::Final(
                        ErrorCode::SourceTooLarge,
                        "the file is over 20 MB, the most Telegram lets a bot download (a local Bot API server lifts that)".into(),
                    ),
                    FileError::TooLarge { cloud: false } => Failed::Final(
                        ErrorCode::SourceTooLarge,
                        format!("the file is larger than {max} bytes (--max-upload-bytes)"),
                    ),
                    FileError::Gone(m) => Failed::Final(
                        ErrorCode::SourceExpired,
                        format!("Telegram does not give this file (it was deleted, or the file_id is wrong): {m}"),
                    ),
                    FileError::Auth(m) => Failed::Final(
                        ErrorCode::SourceAuth,
                        format!("Telegram refused the bot: {m}"),
                    ),
                    FileError::Transient(e) => Failed::Transient(e.to_string()),
                    FileError::Store(m) => Failed::Transient(format!("storing the audio: {m}")),
                })?;
            }
            Source::Url(url) => {
                self.urls
                    .check(url)
                    .map_err(|(code, m)| Failed::Final(code, m))?;
                fetch_url(agent, url, max, &mut write)?;
            }
        }
        Ok(blob)
    }
}

/// GET `url` into `sink`: 2xx only, at most `max` bytes.
fn fetch_url(
    agent: &ureq::Agent,
    url: &str,
    max: u64,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), Failed> {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split(['/', '?', '#']).next())
        .unwrap_or("");
    let mut resp = agent
        .get(url)
        .header("User-Agent", concat!("earshot/", env!("CARGO_PKG_VERSION")))
        .call()
        .map_err(|e| match e {
            // The resolver's refusal of a non-public address: final.
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Failed::Final(ErrorCode::SourceUnreachable, e.to_string())
            }
            ureq::Error::Timeout(_) => Failed::Transient(format!("{host}: timed out")),
            e => Failed::Transient(format!("{host}: {e}")),
        })?;
    let status = resp.status().as_u16();
    let refused =
        |code, what: &str| Failed::Final(code, format!("{host} answered HTTP {status}: {what}"));
    match status {
        200..=299 => {}
        300..=399 => {
            return Err(refused(
                ErrorCode::SourceUnreachable,
                "a redirect, which is not followed (give the file's own URL)",
            ))
        }
        401 | 403 => return Err(refused(ErrorCode::SourceAuth, "access refused")),
        404 | 410 => return Err(refused(ErrorCode::SourceExpired, "the file is not there")),
        408 | 425 | 429 | 500..=599 => {
            return Err(Failed::Transient(format!("{host} answered HTTP {status}")))
        }
        _ => return Err(refused(ErrorCode::SourceUnreachable, "not the file")),
    }
    let too_large = || {
        Failed::Final(
            ErrorCode::SourceTooLarge,
            format!("the file is larger than {max} bytes (--max-upload-bytes)"),
        )
    };
    if resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max)
    {
        return Err(too_large());
    }
    let mut reader = resp
        .body_mut()
        .with_config()
        .limit(max.saturating_add(1))
        .reader();
    crate::net::copy_capped(&mut reader, max, sink)
        .map(|_| ())
        .map_err(|e| match e {
            Capped::TooLarge => too_large(),
            Capped::Read(e) => Failed::Transient(format!("{host}: reading the file: {e}")),
            Capped::Write(e) => Failed::Transient(format!("storing the audio: {e}")),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_urls_are_https_on_allowed_hosts() {
        let rules = UrlRules {
            allow_hosts: vec!["files.example.com".into()],
            allow_private: false,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(rules.check("https://files.example.com/a.ogg"), Ok(()));
        assert_eq!(
            rules.check("https://FILES.example.com:8443/a.ogg?x=1"),
            Ok(())
        );
        for (url, code) in [
            ("https://other.example.com/a.ogg", ErrorCode::HostNotAllowed),
            (
                "https://files.example.com.evil.net/a.ogg",
                ErrorCode::HostNotAllowed,
            ),
            ("http://files.example.com/a.ogg", ErrorCode::InvalidSource),
            ("ftp://files.example.com/a.ogg", ErrorCode::InvalidSource),
            (
                "https://u:p@files.example.com/a.ogg",
                ErrorCode::InvalidSource,
            ),
            ("files.example.com/a.ogg", ErrorCode::InvalidSource),
            ("https:///a.ogg", ErrorCode::InvalidSource),
        ] {
            assert_eq!(rules.check(url).unwrap_err().0, code, "{url}");
        }
        let lab = UrlRules {
            allow_private: true,
            ..rules
        };
        assert_eq!(lab.check("http://files.example.com/a.ogg"), Ok(()));
    }
}
