//! `earshot serve`: the HTTP shell over storage, the job queue and the engine.
//!
//! Routes: OpenAI's `/v1/audio/transcriptions` and `/translations` (synchronous, but every
//! request is also a durable job), `/v1/jobs` (queued jobs), `/v1/models`, `/healthz`,
//! `/readyz`, `/metrics`. Errors use OpenAI's `{"error":{message,type,param,code}}` shape.
//! Uploads are streamed to disk with a hard size limit; audio is fsynced before any 2xx.
//!
//! One file per concern: `error` (the error shape), `auth` (keys, signed URLs), `upload`
//! (multipart, limits, options, storing), `openai` (the OpenAI routes), `jobs` (the job
//! routes), `views` (a job and a transcript as shown), `ops` (health, readiness, metrics).
//! This module holds the state and the router; handlers parse, call [`crate::jobs::Service`],
//! and render.

mod auth;
mod error;
mod jobs;
mod openai;
mod openapi;
mod ops;
mod upload;
mod views;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::error::ErrorCode;
use crate::job::{Job, JobOptions, ListFilter, NewJob, Priority, QueueFull, QueueLimit, Status};
use crate::jobs::{retry_after_s, Service, Shown, Submitted, Waited};
use crate::output::{self, Format};
use crate::store::PendingBlob;

use auth::*;
use error::*;
use jobs::*;
use openai::*;
use ops::*;
use upload::*;
use views::*;

/// Shared state of the running service.
pub struct AppState {
    pub cfg: Settings,
    pub queue: Arc<Service>,
    pub model_name: String,
    requests: Mutex<HashMap<(String, u16), u64>>,
    /// Key for signed audio URLs (see [`AppState::audio_url`]); `None` when the service
    /// started without keys (the audio URL is then the plain route).
    url_key: Option<[u8; 32]>,
    /// The API keys now: the flags' and the keys file's, read again on SIGHUP.
    keys: std::sync::RwLock<Arc<Vec<crate::config::ApiKey>>>,
    /// Jobs submitted since start, by client (`/metrics`).
    submitted: Mutex<HashMap<String, u64>>,
    /// Seconds of work of the synchronous requests admitted and not yet answered (see
    /// [`SyncSlot`]).
    sync_ahead: Mutex<f64>,
}

/// One admitted synchronous request: its expected work (seconds of one worker), counted
/// ahead of every later request until it is answered, or until its client goes away (its
/// job, already stored, still runs; stored synchronous jobs are counted from the database
/// too). Taken *before* the body is read, so slow uploaders cannot all slip past the budget.
struct SyncSlot {
    s: Shared,
    work_s: f64,
}

impl SyncSlot {
    /// Admit a request of `work_s` seconds while the wait before a worker takes it (the
    /// work ahead, over the workers) is within `--sync-max-wait`; `stored_s` is the work of
    /// the synchronous jobs the database holds queued, whose clients may have gone. Refused:
    /// how long until it would be admitted.
    fn admit(s: &Shared, work_s: f64, stored_s: f64) -> Result<SyncSlot, f64> {
        let workers = s.queue.workers.max(1) as f64;
        let budget = s.cfg.sync_max_wait.as_secs_f64();
        let mut ahead = s.sync_ahead.lock().unwrap_or_else(|p| p.into_inner());
        let wait = ahead.max(stored_s) / workers;
        if wait > budget {
            return Err(wait - budget);
        }
        *ahead += work_s;
        Ok(SyncSlot {
            s: s.clone(),
            work_s,
        })
    }
}

impl Drop for SyncSlot {
    fn drop(&mut self) {
        let mut ahead = self.s.sync_ahead.lock().unwrap_or_else(|p| p.into_inner());
        *ahead = (*ahead - self.work_s).max(0.0);
    }
}

pub type Shared = Arc<AppState>;

/// Build the router.
pub fn router(state: Shared) -> Router {
    let limit = state.cfg.limits.max_bytes as usize + 1024 * 1024;
    let v1 = Router::new()
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/audio/translations", post(translations))
        .route("/v1/jobs", post(create_job).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job).delete(delete_job))
        .route("/v1/jobs/{id}/audio", get(get_audio))
        .route("/v1/jobs/{id}/transcript", get(get_transcript))
        .route("/v1/jobs/{id}/retry", post(retry_job))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(v1)
        .merge(crate::web::routes())
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { Json(openapi::document().clone()) }),
        )
        .fallback(|| async {
            ApiError::of(
                ErrorCode::NotFound,
                "no such route; the API is under /v1 (see docs/api.md)",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(json_errors))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("a request handler panicked").into_response()
            },
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

impl AppState {
    /// The service's state; `keys` are every key it starts with ([`Settings::keys`]).
    pub fn new(
        cfg: Settings,
        keys: Vec<crate::config::ApiKey>,
        queue: Arc<Service>,
        model_name: String,
    ) -> Shared {
        Arc::new(AppState {
            url_key: (!keys.is_empty()).then(|| url_key(&keys)),
            keys: std::sync::RwLock::new(Arc::new(keys)),
            submitted: Mutex::new(HashMap::new()),
            cfg,
            queue,
            model_name,
            requests: Mutex::new(HashMap::new()),
            sync_ahead: Mutex::new(0.0),
        })
    }

    /// Where a job's audio can be fetched. With API keys set, an `<audio>` element or a
    /// download link cannot send a Bearer header, so the URL carries its own permission:
    /// `expires` (24 to 25 h ahead, whole hours, so a URL stays the same for an hour) and
    /// `sig`, an HMAC-SHA256 of the job id and expiry keyed by a hash of the API keys. It
    /// opens that one job's audio, and stops working when it expires or the keys change.
    pub fn audio_url(&self, id: &str) -> String {
        if self.url_key.is_none() {
            return format!("/v1/jobs/{id}/audio");
        }
        let hour = crate::store::now_ms() / 1000 / 3600;
        let expires = (hour + 25) * 3600;
        let sig = hex::encode(self.url_mac(id, expires).finalize().into_bytes());
        format!("/v1/jobs/{id}/audio?expires={expires}&sig={sig}")
    }

    fn url_mac(&self, id: &str, expires: i64) -> Hmac<Sha256> {
        let key = self.url_key.unwrap_or_default();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
        mac.update(format!("{id}\n{expires}").as_bytes());
        mac
    }

    /// A job as `GET /v1/jobs/{id}` shows it (the webhook body is the same).
    pub fn job_body(&self, job: Job, delivery: Option<crate::job::Delivery>) -> Value {
        // Through its text, as `GET /v1/jobs/{id}` writes it: a value made directly would spell
        // an `f32` (the review's confidence) with its `f64` digits, and differ.
        let text = serde_json::to_vec(&job_view(self, &Shown { job, delivery }))
            .expect("a job serializes");
        serde_json::from_slice(&text).expect("a job's JSON reads back")
    }

    /// The API keys now.
    pub fn keys(&self) -> Arc<Vec<crate::config::ApiKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Read the keys again (SIGHUP): the flags' and the keys file's. A file that does not
    /// read leaves the keys as they were, and says why. Jobs of a key that went are kept.
    pub fn reload_keys(&self) {
        match self.cfg.keys() {
            Ok(keys) => {
                let names: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
                tracing::info!(keys = %names.join(", "), "API keys read again");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
            }
            Err(e) => tracing::error!(error = %e, "API keys not read again; the old ones stay"),
        }
    }

    /// Count a submitted job for `/metrics`.
    fn count_submitted(&self, client: Option<&str>) {
        let mut m = self.submitted.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(client.unwrap_or("").to_string()).or_default() += 1;
    }

    /// Whether `path?query` is a valid, unexpired signed audio URL.
    fn signed_audio_ok(&self, path: &str, query: Option<&str>) -> bool {
        if self.url_key.is_none() {
            return false;
        }
        let Some(id) = path
            .strip_prefix("/v1/jobs/")
            .and_then(|p| p.strip_suffix("/audio"))
            .filter(|id| !id.is_empty() && !id.contains('/'))
        else {
            return false;
        };
        let (mut expires, mut sig) = (None, None);
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse::<i64>().ok(),
                Some(("sig", v)) => sig = hex::decode(v).ok(),
                _ => {}
            }
        }
        match (expires, sig) {
            (Some(e), Some(sig)) if e > crate::store::now_ms() / 1000 => {
                self.url_mac(id, e).verify_slice(&sig).is_ok()
            }
            _ => false,
        }
    }
}
