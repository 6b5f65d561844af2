//! The durable job queue's workers: threads that claim jobs from the database, decode and
//! transcribe them with the shared engine, and record the outcome.
//!
//! Workers are plain OS threads (inference never runs on the async runtime). Each claims a
//! job with a lease and renews it while working (a heartbeat), so a crashed process's jobs
//! become claimable again; at start-up everything left `running` is requeued. Decode errors
//! fail the job with their code and keep the audio; engine errors retry with backoff up to
//! [`MAX_ATTEMPTS`]. Finished job ids are broadcast so synchronous requests can answer.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::audio::{Limits, Warning};
use crate::config::Defaults;
use crate::engine::review::{Reason, Review};
use crate::engine::{Engine, Options, Transcript};
use crate::output::{self, Format};
use crate::storage::{BlobStore, Db, Delivery, Job, NewJob, PendingBlob, StorageError};

/// Attempts before an engine error fails a job for good.
pub const MAX_ATTEMPTS: u32 = 3;
const LEASE_MS: i64 = 60_000;
/// A queued job that waited this long goes before shorter ones.
const MAX_WAIT_MS: i64 = 30_000;

/// Counters the metrics endpoint reads.
#[derive(Default)]
pub struct Stats {
    pub busy: AtomicUsize,
    pub audio_ms: AtomicU64,
    pub processing_ms: AtomicU64,
    /// Processing-time histogram: counts per bucket of [`BUCKETS_S`] (+Inf last).
    pub histogram: Mutex<Vec<u64>>,
    /// Finished jobs that need review, in all and by reason ([`Reason::ALL`]'s order).
    pub review_needed: AtomicU64,
    pub review_reasons: [AtomicU64; Reason::ALL.len()],
}

/// Upper bounds (seconds) of the processing-time histogram's buckets.
pub const BUCKETS_S: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];

impl Stats {
    fn observe_review(&self, review: &Review) {
        if review.needed {
            self.review_needed.fetch_add(1, Ordering::Relaxed);
        }
        for (i, r) in Reason::ALL.iter().enumerate() {
            if review.reasons.contains(r) {
                self.review_reasons[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn observe(&self, audio_s: f64, took_s: f64) {
        self.audio_ms
            .fetch_add((audio_s * 1000.0) as u64, Ordering::Relaxed);
        self.processing_ms
            .fetch_add((took_s * 1000.0) as u64, Ordering::Relaxed);
        let mut h = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
        if h.is_empty() {
            h.resize(BUCKETS_S.len() + 1, 0);
        }
        let i = BUCKETS_S
            .iter()
            .position(|b| took_s <= *b)
            .unwrap_or(BUCKETS_S.len());
        h[i] += 1;
    }
}

/// What the workers share.
pub struct Queue {
    pub db: Arc<Db>,
    pub blobs: Arc<BlobStore>,
    pub engine: Arc<Engine>,
    pub limits: Limits,
    pub threads_per_job: usize,
    pub workers: usize,
    /// The service-wide language and prompt, for jobs that do not bring their own.
    pub defaults: Defaults,
    pub stats: Stats,
    pub finished: broadcast::Sender<String>,
    wake: (Mutex<u64>, Condvar),
    stopping: AtomicBool,
    /// Held while an audio file and the rows that point at it change together: storing an
    /// upload (the file, deduplicated by hash, then its row) and deleting a job (its row,
    /// then the file when no other row points at it). Without it, an upload of bytes that
    /// are already stored could find the file present, a delete could then remove it as
    /// unreferenced, and the upload's row would point at nothing.
    audio_refs: Mutex<()>,
}

impl Queue {
    pub fn new(
        db: Arc<Db>,
        blobs: Arc<BlobStore>,
        engine: Arc<Engine>,
        limits: Limits,
        workers: usize,
        threads_per_job: usize,
        defaults: Defaults,
    ) -> Arc<Queue> {
        let (finished, _) = broadcast::channel(1024);
        Arc::new(Queue {
            db,
            blobs,
            engine,
            limits,
            threads_per_job,
            workers,
            defaults,
            stats: Stats::default(),
            finished,
            wake: (Mutex::new(0), Condvar::new()),
            stopping: AtomicBool::new(false),
            audio_refs: Mutex::new(()),
        })
    }

    fn lock_audio_refs(&self) -> std::sync::MutexGuard<'_, ()> {
        self.audio_refs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make an upload durable and record its job: the audio file first (deduplicated by
    /// hash), then the row, as one step against [`Queue::delete`]; wake a worker for a new
    /// job. `job` builds the row from the audio's hash and size. The Idempotency-Key rule
    /// lives here: the same key with the same bytes is the same job; the same key with other
    /// bytes is refused, and the bytes just stored go unless another job uses them.
    pub fn submit(
        &self,
        blob: PendingBlob,
        job: impl FnOnce(String, u64) -> NewJob,
    ) -> Result<Submitted, StorageError> {
        let submitted = {
            let _refs = self.lock_audio_refs();
            let (sha, size) = self.blobs.commit(blob)?;
            let (stored, created) = self.db.insert(job(sha.clone(), size))?;
            if created {
                Submitted::Created(stored)
            } else if stored.sha256 == sha {
                Submitted::Replayed(stored)
            } else {
                if !self.db.sha_in_use(&sha)? {
                    self.blobs.remove(&sha)?;
                }
                Submitted::KeyReused(stored)
            }
        };
        if let Submitted::Created(_) = submitted {
            self.notify();
        }
        Ok(submitted)
    }

    /// Delete a job's record (if there is one), and its audio when no other record points
    /// at it.
    pub fn delete(&self, id: &str) -> Result<(), StorageError> {
        let _refs = self.lock_audio_refs();
        if let Some(Some(sha)) = self.db.delete(id)? {
            self.blobs.remove(&sha)?;
        }
        Ok(())
    }

    /// Tell idle workers there is work.
    pub fn notify(&self) {
        let (m, c) = &self.wake;
        *m.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        c.notify_all();
    }

    /// Start the worker threads.
    pub fn start(self: &Arc<Self>) -> Vec<std::thread::JoinHandle<()>> {
        (0..self.workers)
            .map(|i| {
                let q = self.clone();
                std::thread::Builder::new()
                    .name(format!("earshot-worker-{i}"))
                    .spawn(move || q.work())
                    .expect("spawn worker")
            })
            .collect()
    }

    /// Stop claiming new jobs; running ones finish (or are cancelled through the engine).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.notify();
        // Wake synchronous requests, which answer 503 for a job that will not run now.
        let _ = self.finished.send(String::new());
    }

    /// Whether the service is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn work(self: Arc<Self>) {
        while !self.stopping.load(Ordering::SeqCst) {
            match self.db.claim(LEASE_MS, MAX_WAIT_MS, MAX_ATTEMPTS) {
                Ok(Some(job)) => self.process(job),
                Ok(None) => {
                    let (m, c) = &self.wake;
                    let g = m.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = c.wait_timeout(g, Duration::from_millis(500));
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not claim a job");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn process(&self, job: Job) {
        let span = tracing::info_span!("job", id = %job.id);
        let _g = span.enter();
        self.stats.busy.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let heartbeat = s.spawn(|| {
                // Heartbeat: renew the lease while the job runs.
                while !done.load(Ordering::SeqCst) {
                    std::thread::park_timeout(Duration::from_millis(LEASE_MS as u64 / 3));
                    if !done.load(Ordering::SeqCst) {
                        let _ = self.db.heartbeat(&job.id, LEASE_MS);
                    }
                }
            });
            self.run(&job, started);
            done.store(true, Ordering::SeqCst);
            // Wake the heartbeat so the scope ends now, not at its next beat.
            heartbeat.thread().unpark();
        });
        self.stats.busy.fetch_sub(1, Ordering::SeqCst);
        let _ = self.finished.send(job.id.clone());
    }

    fn run(&self, job: &Job, started: Instant) {
        let bytes = match std::fs::read(self.blobs.path(&job.sha256)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "audio blob unreadable");
                let _ = self.db.finish_failed(
                    &job.id,
                    crate::error::ErrorCode::StorageError,
                    &format!("stored audio could not be read: {e}"),
                );
                return;
            }
        };
        let mut opts = JobOptions::of(job).to_engine(&self.defaults, self.threads_per_job);
        // Word times cost next to nothing and do not change the text; the inbox needs them
        // to mark unsure words and seek to a word. The API shows them only when asked.
        opts.word_timestamps = true;
        let task = if opts.translate {
            "translate"
        } else {
            "transcribe"
        };
        match crate::transcribe_bytes(&self.engine, &bytes, &self.limits, &opts) {
            Ok(outcome) => {
                let t = &outcome.transcript;
                let v = JobResult {
                    transcript: t.clone(),
                    warnings: outcome.warnings.clone(),
                    task: task.to_string(),
                }
                .to_stored();
                let took = started.elapsed().as_secs_f64();
                self.stats.observe(t.duration, took);
                self.stats.observe_review(&t.review);
                tracing::info!(duration = t.duration, took, language = %t.language, "transcribed");
                if let Err(e) = self.db.finish_done(&job.id, &t.language, t.duration, &v) {
                    tracing::error!(error = %e, "could not record the transcript");
                }
            }
            Err(crate::Error::Engine(crate::engine::EngineError::Cancelled)) => {
                tracing::warn!("interrupted by the shutdown; queued again");
                let _ = self.db.requeue_interrupted(&job.id);
            }
            Err(crate::Error::Decode(e)) => {
                tracing::warn!(code = %e.code(), error = %e, "audio could not be decoded");
                let _ = self.db.finish_failed(&job.id, e.code(), &e.to_string());
            }
            Err(crate::Error::Engine(e))
                if job.attempts < MAX_ATTEMPTS
                    && matches!(e, crate::engine::EngineError::Inference(_)) =>
            {
                tracing::warn!(error = %e, attempts = job.attempts, "engine error; retrying");
                std::thread::sleep(Duration::from_secs(1 << job.attempts.min(5)));
                let _ = self.db.requeue(&job.id, false);
            }
            Err(crate::Error::Engine(e)) => {
                tracing::error!(error = %e, "transcription failed");
                let _ = self.db.finish_failed(&job.id, e.code(), &e.to_string());
            }
        }
    }
}

/// What became of a submitted upload.
#[derive(Debug)]
pub enum Submitted {
    /// A new job, queued.
    Created(Job),
    /// Its Idempotency-Key was seen before with the same bytes: that job.
    Replayed(Job),
    /// Its Idempotency-Key was seen before with other bytes: nothing was stored; the job
    /// that holds the key.
    KeyReused(Job),
}

/// What a request asks of its transcription: parsed once by the API, stored with the job
/// (as JSON, in the `options` column), and turned into decoder options by the worker. A new
/// request option is a field here and its use. Unknown keys in a stored row are ignored, and
/// missing ones take their defaults, so rows written by earlier versions still read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobOptions {
    /// ISO 639-1 code; `"auto"` detects even when the service has a `--language`; `None`
    /// takes the service's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Initial prompt (names, vocabulary); `None` takes the service's `--prompt`/`--glossary`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Translate to English instead of transcribing.
    pub translate: bool,
    /// Sampling temperature (0-1); `None`: 0 with fallback. (f64, so that 0.3 is stored and
    /// shown as 0.3.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Return word times (they are always computed and stored; this says whether to show them).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub word_timestamps: bool,
    /// The careful settings ([`Options::accurate`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub accurate: bool,
}

impl JobOptions {
    /// A stored job's options. (Storage keeps them as JSON so that it need not know this
    /// type; every row is written from one.)
    pub fn of(job: &Job) -> JobOptions {
        JobOptions::deserialize(&job.options).unwrap_or_else(|e| {
            tracing::warn!(id = %job.id, error = %e, "stored options unreadable; using the defaults");
            JobOptions::default()
        })
    }

    /// The options as stored.
    pub fn to_stored(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("JobOptions serializes")
    }

    /// The decoder options for this job, on top of the service-wide defaults.
    pub fn to_engine(&self, defaults: &Defaults, threads: usize) -> Options {
        let mut o = Options {
            language: defaults.language.clone(),
            prompt: defaults.prompt.clone(),
            threads,
            ..Options::default()
        };
        if let Some(l) = self.language.as_deref().filter(|l| !l.is_empty()) {
            o.language = Some(l.to_string()).filter(|l| l != "auto");
        }
        if let Some(p) = self.prompt.as_deref().filter(|p| !p.trim().is_empty()) {
            o.prompt = Some(p.to_string());
        }
        o.translate = self.translate;
        if let Some(t) = self.temperature {
            o.temperature = t as f32;
        }
        o.word_timestamps = self.word_timestamps;
        if self.accurate {
            o = o.accurate();
        }
        o
    }

    /// The task, as `verbose_json` names it.
    pub fn task(&self) -> &'static str {
        if self.translate {
            "translate"
        } else {
            "transcribe"
        }
    }
}

/// What a finished job keeps: the transcript as the engine made it (full precision, the
/// language as a code), what the decoder noticed, and the task. Stored as JSON with the
/// transcript's fields at the top level, so the database can reach `$.text` (search) and
/// `$.review.needed` (the review filter); rendered to `verbose_json`, SRT, ... only when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    #[serde(flatten)]
    pub transcript: Transcript,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// `transcribe` or `translate`.
    pub task: String,
}

impl JobResult {
    /// A done job's result; `None` before it is done, or for a row this version cannot read
    /// (logged).
    pub fn of(job: &Job) -> Option<JobResult> {
        let v = job.transcript.as_ref()?;
        JobResult::deserialize(v)
            .map_err(|e| tracing::error!(id = %job.id, error = %e, "stored transcript unreadable"))
            .ok()
    }

    /// As stored.
    pub fn to_stored(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("JobResult serializes")
    }

    /// OpenAI's `verbose_json`, with the decoder's warnings when there are any.
    pub fn verbose_json(&self) -> serde_json::Value {
        let mut v = output::to_json(&self.transcript, Format::VerboseJson, &self.task)
            .expect("verbose_json is a JSON format");
        if !self.warnings.is_empty() {
            v["warnings"] = serde_json::json!(self.warnings);
        }
        v
    }
}

/// A job as the API shows it (`GET /v1/jobs/{id}`, and the webhook body).
pub fn job_json(j: &Job, delivery: Option<&Delivery>) -> serde_json::Value {
    let result = JobResult::of(j);
    serde_json::json!({
        "id": j.id,
        "object": "transcription.job",
        "status": j.status,
        "created_at": j.created_at / 1000,
        "filename": j.filename,
        "content_type": j.content_type,
        "size": j.size,
        "sha256": j.sha256,
        "external_id": j.external_id,
        "source": j.source,
        "attempts": j.attempts,
        "error": j.error_code.as_ref().map(|c| serde_json::json!({"code": c, "message": j.error_message})),
        "language": j.language,
        "duration": j.duration,
        "text": result.as_ref().map(|r| &r.transcript.text),
        "review": result.as_ref().map(|r| &r.transcript.review),
        "transcript": result.as_ref().map(JobResult::verbose_json),
        "options": j.options,
        "callback_url": j.callback_url,
        "webhook": delivery.map(|d| serde_json::json!({
            "delivery_id": d.id, "event": d.event, "status": d.status, "attempts": d.attempts, "last_error": d.last_error,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Status;

    fn job(options: serde_json::Value) -> Job {
        Job {
            id: "j".into(),
            created_at: 0,
            sha256: String::new(),
            size: 0,
            content_type: None,
            filename: None,
            external_id: None,
            source: None,
            status: Status::Queued,
            attempts: 0,
            error_code: None,
            error_message: None,
            language: None,
            duration: None,
            transcript: None,
            options,
            priority: 1,
            idempotency_key: None,
            callback_url: None,
            updated_at: 0,
        }
    }

    #[test]
    fn job_options_read_rows_written_before_they_were_typed() {
        // What the API stored before `JobOptions` existed, key by key.
        let old = serde_json::json!({"translate": false, "language": "auto", "prompt": "ООО Ромашка",
            "temperature": 0.3, "word_timestamps": true, "accurate": true});
        let o = JobOptions::of(&job(old));
        assert_eq!(o.language.as_deref(), Some("auto"));
        assert_eq!(o.prompt.as_deref(), Some("ООО Ромашка"));
        assert_eq!(o.temperature, Some(0.3));
        assert_eq!(o.to_stored()["temperature"], 0.3);
        assert!(o.word_timestamps && o.accurate && !o.translate);
        // Stored again, it reads the same, and unset fields stay out of the JSON.
        assert_eq!(
            serde_json::from_value::<JobOptions>(o.to_stored()).unwrap(),
            o
        );
        assert_eq!(
            JobOptions::default().to_stored(),
            serde_json::json!({"translate": false})
        );
        // A row this version cannot read falls back to the defaults instead of failing.
        let bad = job(serde_json::json!({"temperature": "hot"}));
        assert_eq!(JobOptions::of(&bad), JobOptions::default());
    }

    /// Rows finished before `JobResult` hold rendered `verbose_json`; the migration makes
    /// them read as results, and what the API shows from them stays the same.
    #[test]
    fn results_stored_as_verbose_json_read_after_the_migration() {
        use crate::storage::{Db, NewJob};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite");
        let t = Transcript {
            text: "Где мой заказ?".into(),
            language: "ru".into(),
            language_probability: Some(0.97),
            duration: 2.5,
            segments: vec![crate::engine::Segment {
                id: 0,
                start: 0.0,
                end: 2.34,
                text: "Где мой заказ?".into(),
                tokens: vec![1, 2, 3],
                temperature: 0.0,
                avg_logprob: -0.2,
                compression_ratio: 1.0,
                no_speech_prob: 0.01,
                suspect: false,
            }],
            words: None,
            review: Review::default(),
        };
        let result = JobResult {
            transcript: t.clone(),
            warnings: vec![Warning {
                code: "truncated".into(),
                message: "cut".into(),
            }],
            task: "transcribe".into(),
        };
        let id = {
            let db = Db::open(&path).unwrap();
            let (job, _) = db
                .insert(NewJob {
                    sha256: "00".repeat(32),
                    size: 1,
                    content_type: None,
                    filename: Some("a.oga".into()),
                    external_id: None,
                    source: None,
                    options: JobOptions::default().to_stored(),
                    priority: 1,
                    idempotency_key: None,
                    callback_url: None,
                })
                .unwrap();
            // What the worker stored before: the rendered verbose_json, warnings added.
            db.finish_done(&job.id, "ru", 2.5, &result.verbose_json())
                .unwrap();
            let conn = rusqlite::Connection::open(&path).unwrap();
            let v: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            conn.pragma_update(None, "user_version", v - 1).unwrap();
            job.id
        };
        let db = Db::open(&path).unwrap();
        let job = db.get(&id).unwrap().unwrap();
        let read = JobResult::of(&job).expect("an old row reads");
        assert_eq!(read, result);
        assert_eq!(job_json(&job, None)["transcript"], result.verbose_json());
        assert_eq!(job_json(&job, None)["transcript"]["language"], "russian");
        // Search still finds it.
        let found = db
            .list(&crate::storage::ListFilter {
                search: Some("заказ".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn job_options_over_the_service_defaults() {
        let service = Defaults {
            language: Some("ru".into()),
            prompt: Some("Ромашка".into()),
        };
        // Nothing asked: the service's language and prompt.
        let o = JobOptions::default().to_engine(&service, 3);
        assert_eq!(o.language.as_deref(), Some("ru"));
        assert_eq!(o.prompt.as_deref(), Some("Ромашка"));
        assert_eq!(o.threads, 3);
        // "auto" detects even though the service names a language; a prompt replaces its.
        let asked = JobOptions {
            language: Some("auto".into()),
            prompt: Some("Лютик".into()),
            accurate: true,
            ..JobOptions::default()
        };
        let o = asked.to_engine(&service, 3);
        assert_eq!(o.language, None);
        assert_eq!(o.prompt.as_deref(), Some("Лютик"));
        assert_eq!(o.beam_size, Some(5));
        assert_eq!(o.threads, 3);
    }
}
