//! The durable job queue's workers: threads that claim jobs from the database, decode and
//! transcribe them with the shared engine, and record the outcome.
//!
//! Workers are plain OS threads (inference never runs on the async runtime). Each claims a
//! job with a lease and renews it while working (a heartbeat), so a crashed process's jobs
//! become claimable again; at start-up everything left `running` is requeued. Decode errors
//! fail the job with their code and keep the audio; engine errors retry with backoff up to
//! [`MAX_ATTEMPTS`]. Finished job ids are broadcast so synchronous requests can answer.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::review::{Reason, Review};
use std::collections::HashMap;
use std::ops::Range;

use crate::engine::{EngineError, Progress, Request, TranscribeError, Transcript, Watch};
use crate::job::{Job, JobResult};
use crate::store::StorageError;

use super::Service;

/// Attempts before an engine error fails a job for good.
pub const MAX_ATTEMPTS: u32 = 3;
/// How long a worker pauses after a job's audio could not be fetched from an object store
/// that does not answer, before it claims again.
const STORE_RETRY: Duration = Duration::from_secs(5);
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
    /// What a job costs here, measured (admission and `Retry-After` are computed from it).
    pub estimate: super::Estimate,
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

impl Service {
    pub(super) fn work(self: Arc<Self>) {
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
        let bytes = match self.blobs.read(&job.sha256).map_err(StorageError::Io) {
            Ok(b) => b,
            Err(e) if e.is_unavailable() => {
                // The object store is down or refusing: the audio is not lost, so the job
                // waits for it, uncounted (attempts guard against crashes, not outages), and
                // this worker pauses before it claims again.
                tracing::warn!(error = %e, "audio store unavailable; the job waits for it");
                std::thread::sleep(STORE_RETRY);
                let _ = self.db.requeue_interrupted(&job.id);
                return;
            }
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
        let asked = &job.options;
        let task = asked.task();
        let mut opts = asked.to_engine(&self.defaults, self.threads_per_job);
        // Word times cost next to nothing and do not change the text; the inbox needs them
        // to mark unsure words and seek to a word. The API shows them only when asked.
        opts.word_timestamps = true;
        let watch = JobWatch::new(self, &job.id);
        let result = self
            .engine
            .transcribe(Request::recording(&bytes, &self.limits, &opts).watched(&watch));
        self.set_progress(&job.id, None);
        match result {
            Ok(outcome) => {
                let t = &outcome.transcript;
                let result = JobResult {
                    transcript: t.clone(),
                    warnings: outcome.warnings.clone(),
                    task: task.to_string(),
                };
                let took = started.elapsed().as_secs_f64();
                self.stats.observe(t.duration, took);
                self.stats.estimate.observe(job.size, took);
                self.stats.observe_review(&t.review);
                tracing::info!(duration = t.duration, took, language = %t.language, "transcribed");
                if let Err(e) = self.db.finish_done(&job.id, &result) {
                    tracing::error!(error = %e, "could not record the transcript");
                }
            }
            Err(TranscribeError::Engine(EngineError::Cancelled)) => {
                tracing::warn!("interrupted by the shutdown; queued again");
                let _ = self.db.requeue_interrupted(&job.id);
            }
            Err(TranscribeError::Decode(e)) => {
                tracing::warn!(code = %e.code(), error = %e, "audio could not be decoded");
                let _ = self.db.finish_failed(&job.id, e.code(), &e.to_string());
            }
            Err(TranscribeError::Engine(e))
                if job.attempts < MAX_ATTEMPTS && matches!(e, EngineError::Inference(_)) =>
            {
                tracing::warn!(error = %e, attempts = job.attempts, "engine error; retrying");
                std::thread::sleep(Duration::from_secs(1 << job.attempts.min(5)));
                let _ = self.db.requeue(&job.id, false);
            }
            Err(TranscribeError::Engine(e)) => {
                tracing::error!(error = %e, "transcription failed");
                let _ = self.db.finish_failed(&job.id, e.code(), &e.to_string());
            }
        }
    }
}

/// A running job's [`Watch`]: its progress for `GET /v1/jobs/{id}`, and its finished pieces
/// kept in the database, so a job cut short by a crash or a restart goes on from them.
struct JobWatch<'a> {
    service: &'a Service,
    id: &'a str,
    stored: HashMap<(usize, usize), Transcript>,
}

impl<'a> JobWatch<'a> {
    fn new(service: &'a Service, id: &'a str) -> JobWatch<'a> {
        let stored = service
            .db
            .pieces(id)
            .map_err(|e| tracing::warn!(error = %e, "stored pieces unreadable; starting over"))
            .unwrap_or_default()
            .into_iter()
            .map(|p| ((p.start, p.end), p.transcript))
            .collect();
        JobWatch {
            service,
            id,
            stored,
        }
    }
}

impl Watch for JobWatch<'_> {
    fn progress(&self, progress: Progress) {
        self.service.set_progress(self.id, Some(progress));
    }

    fn finished(&self, piece: &Range<usize>, transcript: &Transcript) {
        if let Err(e) = self
            .service
            .db
            .save_piece(self.id, piece.start, piece.end, transcript)
        {
            // Only a resume would miss it: the job itself goes on.
            tracing::warn!(error = %e, "could not keep a finished piece");
        }
    }

    fn stored(&self, piece: &Range<usize>) -> Option<Transcript> {
        self.stored.get(&(piece.start, piece.end)).cloned()
    }
}
