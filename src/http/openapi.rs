//! `GET /openapi.json`: the HTTP surface as an OpenAPI 3.1 document. The schemas are made from
//! the types the handlers answer with (`jobs::JobView`, `JobList`, `error::ErrorBody`, ...)
//! and the operations from the declarations below; then each operation gets its error
//! responses, one per status, naming every [`ErrorCode`] of that status, and the job's
//! operations get links (create → get → transcript → audio → retry → delete), so that a
//! stateful tester can walk them. `scripts/test.sh` runs schemathesis against a live server
//! with it; a test holds docs/api.md and it to the same statuses, codes and headers.

#![allow(dead_code)] // the `#[utoipa::path]` functions exist for their declarations only

use serde_json::{json, Value};
use utoipa::OpenApi;

use super::jobs::JobList;
use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::jobs::{JobView, ProgressView, WebhookView};

/// The form of `POST /v1/audio/transcriptions` and `/translations` (OpenAI's fields; every
/// field but `file` is optional).
#[derive(utoipa::ToSchema)]
pub struct TranscriptionForm {
    /// The recording: any voice-note format (judged by content, not by name).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// `whisper-1`, or the served model's name.
    pub model: Option<String>,
    /// ISO 639-1 code (`ru`, `en`), or `auto`.
    pub language: Option<String>,
    /// Vocabulary to prime the model with.
    pub prompt: Option<String>,
    /// `json` (default), `text`, `srt`, `verbose_json` or `vtt`.
    pub response_format: Option<ResponseFormat>,
    /// 0 to 1.
    pub temperature: Option<f32>,
    /// `word` and/or `segment` (as `timestamp_granularities[]`).
    #[schema(rename = "timestamp_granularities[]")]
    pub timestamp_granularities: Option<Vec<Granularity>>,
    /// `true`: a slower, more careful decode (beam search).
    pub accurate: Option<bool>,
    /// 1 to 8.
    pub beam_size: Option<u32>,
}

/// A transcript's format.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ResponseFormat {
    Json,
    Text,
    Srt,
    VerboseJson,
    Vtt,
}

/// Timestamps asked for.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Granularity {
    Word,
    Segment,
}

/// The form of `POST /v1/jobs`: the transcription fields, and the job's own.
#[derive(utoipa::ToSchema)]
pub struct JobForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub temperature: Option<f32>,
    #[schema(rename = "timestamp_granularities[]")]
    pub timestamp_granularities: Option<Vec<Granularity>>,
    pub accurate: Option<bool>,
    pub beam_size: Option<u32>,
    /// `true`: translate to English.
    pub translate: Option<bool>,
    /// The caller's own reference (up to 256 bytes; searchable).
    pub external_id: Option<String>,
    /// Where the note came from (a label, up to 256 bytes).
    pub source: Option<String>,
    /// Where to POST the job when it ends (http or https; public addresses only).
    pub callback_url: Option<String>,
}

/// `POST /v1/jobs` with JSON: audio to fetch, and the job's fields.
#[derive(utoipa::ToSchema)]
pub struct SourceRequest {
    pub source: crate::job::Source,
    pub external_id: Option<String>,
    pub callback_url: Option<String>,
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub translate: Option<bool>,
    pub temperature: Option<f32>,
    pub accurate: Option<bool>,
    pub beam_size: Option<u32>,
}

/// `json`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TranscriptionText {
    pub text: String,
}

/// `DELETE /v1/jobs/{id}`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct DeletedJob {
    pub id: String,
    /// `transcription.job`.
    pub object: String,
    /// Always `true`.
    pub deleted: bool,
}

/// `GET /v1/models`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    pub data: Vec<Model>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Model {
    /// `whisper-1`, or the served model's name.
    pub id: String,
    /// `model`.
    pub object: String,
    pub created: i64,
    pub owned_by: String,
}

/// `GET /healthz`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /readyz`'s answer: `ready`, or `not_ready` and what is not.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    #[schema(value_type = Object)]
    pub model: Value,
    #[schema(value_type = Object)]
    pub database: Value,
    #[schema(value_type = Object)]
    pub audio_store: Value,
    #[schema(value_type = Object)]
    pub disk: Value,
    pub workers: usize,
}

const JOB_ID: &str = "x-earshot-job-id";

#[utoipa::path(post, path = "/v1/audio/transcriptions", operation_id = "createTranscription",
    tag = "openai",
    request_body(content = TranscriptionForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The transcript in `response_format`",
        headers(("X-Earshot-Job-Id" = String, description = "The job kept for this request")),
        content(
            (TranscriptionText = "application/json"),
            (String = "text/plain"),
            (String = "application/x-subrip"),
            (String = "text/vtt"),
        ))),
    security((), ("bearer" = [])))]
fn create_transcription() {}

#[utoipa::path(post, path = "/v1/audio/translations", operation_id = "createTranslation",
    tag = "openai",
    request_body(content = TranscriptionForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The English transcript in `response_format`",
        headers(("X-Earshot-Job-Id" = String, description = "The job kept for this request")),
        content(
            (TranscriptionText = "application/json"),
            (String = "text/plain"),
            (String = "application/x-subrip"),
            (String = "text/vtt"),
        ))),
    security((), ("bearer" = [])))]
fn create_translation() {}

#[utoipa::path(post, path = "/v1/jobs", operation_id = "createJob", tag = "jobs",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A replay with the same audio (or source) returns the same job"),
        ("external_id" = Option<String>, Query, description = "The caller's reference (a form field wins)"),
        ("callback_url" = Option<String>, Query, description = "Where to POST the job when it ends"),
        ("language" = Option<String>, Query, description = "ISO 639-1, or auto"),
    ),
    request_body(content(
        (JobForm = "multipart/form-data"),
        (SourceRequest = "application/json"),
        (Vec<u8> = "application/octet-stream"),
        (Vec<u8> = "audio/ogg"),
        (Vec<u8> = "audio/mpeg"),
        (Vec<u8> = "audio/mp4"),
        (Vec<u8> = "audio/wav"),
        (Vec<u8> = "video/mp4"),
    )),
    responses((status = 202, description = "The job: stored (`queued`), or recorded and fetching its audio (`fetching`)",
        body = JobView,
        headers(
            ("X-Earshot-Job-Id" = String, description = "The job's id"),
            ("Idempotent-Replayed" = Option<String>, description = "`true` when the Idempotency-Key was seen before"),
        ))),
    security((), ("bearer" = [])))]
fn create_job() {}

#[utoipa::path(get, path = "/v1/jobs", operation_id = "listJobs", tag = "jobs",
    params(
        ("status" = Option<crate::job::Status>, Query),
        ("external_id" = Option<String>, Query),
        ("q" = Option<String>, Query, description = "Full-text search: every word as a prefix"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000),
        ("before" = Option<String>, Query, description = "A job id: the page after it"),
        ("review" = Option<String>, Query, description = "`needed` or `ok`"),
        ("client" = Option<String>, Query, description = "Only this client's jobs (admin keys)"),
    ),
    responses((status = 200, description = "Jobs, newest first", body = JobList)),
    security((), ("bearer" = [])))]
fn list_jobs() {}

#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "getJob", tag = "jobs",
    params(("id" = String, Path)),
    responses((status = 200, description = "The job", body = JobView)),
    security((), ("bearer" = [])))]
fn get_job() {}

#[utoipa::path(delete, path = "/v1/jobs/{id}", operation_id = "deleteJob", tag = "jobs",
    params(("id" = String, Path)),
    responses((status = 200, description = "Deleted, with its audio when no other job has it", body = DeletedJob)),
    security((), ("bearer" = [])))]
fn delete_job() {}

#[utoipa::path(get, path = "/v1/jobs/{id}/audio", operation_id = "getJobAudio", tag = "jobs",
    params(
        ("id" = String, Path),
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=START-END`"),
        ("expires" = Option<String>, Query, description = "A signed URL's expiry (Unix seconds)"),
        ("sig" = Option<String>, Query, description = "A signed URL's signature"),
    ),
    responses(
        (status = 200, description = "The original bytes",
            headers(
                ("Content-Disposition" = String, description = "attachment, with a safe file name"),
                ("Accept-Ranges" = String),
            ),
            content((Vec<u8> = "application/octet-stream"))),
        (status = 206, description = "The range asked for",
            headers(("Content-Range" = String), ("Content-Disposition" = String)),
            content((Vec<u8> = "application/octet-stream"))),
    ),
    security((), ("bearer" = [])))]
fn get_job_audio() {}

#[utoipa::path(get, path = "/v1/jobs/{id}/transcript", operation_id = "getJobTranscript",
    tag = "jobs",
    params(
        ("id" = String, Path),
        ("format" = Option<String>, Query, description = "txt, srt, vtt, json or verbose_json"),
    ),
    responses((status = 200, description = "A done job's transcript",
        content(
            (Object = "application/json"),
            (String = "text/plain"),
            (String = "application/x-subrip"),
            (String = "text/vtt"),
        ))),
    security((), ("bearer" = [])))]
fn get_job_transcript() {}

#[utoipa::path(post, path = "/v1/jobs/{id}/retry", operation_id = "retryJob", tag = "jobs",
    params(("id" = String, Path)),
    responses((status = 202, description = "A failed job, queued again (or fetching again)", body = JobView)),
    security((), ("bearer" = [])))]
fn retry_job() {}

#[utoipa::path(get, path = "/v1/models", operation_id = "listModels", tag = "openai",
    responses((status = 200, description = "The models this service answers to", body = ModelList)),
    security((), ("bearer" = [])))]
fn list_models() {}

#[utoipa::path(get, path = "/healthz", operation_id = "health", tag = "operations",
    responses((status = 200, description = "The process answers", body = Health)))]
fn health() {}

#[utoipa::path(get, path = "/readyz", operation_id = "ready", tag = "operations",
    responses(
        (status = 200, description = "Ready: the database is writable, the audio store answers, the disk has room", body = Readiness),
        (status = 503, description = "Not ready, and what is not", body = Readiness),
    ))]
fn ready() {}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content((String = "text/plain")))))]
fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "This document", content((Object = "application/json")))))]
fn openapi() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "earshot", description = "Self-hosted speech-to-text for voice notes: OpenAI's transcription routes, durable jobs with webhooks, and jobs that fetch their own audio. The prose is docs/api.md."),
    paths(create_transcription, create_translation, create_job, list_jobs, get_job, delete_job,
        get_job_audio, get_job_transcript, retry_job, list_models, health, ready, metrics, openapi),
    components(schemas(JobView, JobList, WebhookView, ProgressView, ErrorBody, ErrorDetail,
        ErrorCode, TranscriptionForm, JobForm, SourceRequest, TranscriptionText, DeletedJob,
        ModelList, Model, Health, Readiness)),
    modifiers(&Bearer),
    tags((name = "openai", description = "OpenAI's audio routes"),
        (name = "jobs", description = "Durable jobs"),
        (name = "operations", description = "Health, readiness, metrics")),
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "An API key (--api-key); not needed when the service has none",
                        ))
                        .build(),
                ),
            );
    }
}

/// The statuses each operation can answer with an error, besides those of every `/v1`
/// route (401 without a good key; 500, 503 from the store).
fn error_statuses(operation: &str) -> &'static [u16] {
    match operation {
        "createTranscription" | "createTranslation" => &[400, 404, 408, 413, 415, 507],
        "createJob" => &[400, 403, 408, 413, 415, 422, 429, 507],
        "listJobs" => &[400],
        "getJob" => &[404],
        "deleteJob" => &[404, 409],
        "getJobAudio" => &[404, 416],
        // A failed job's transcript answers with the job's own code, whatever its status.
        "getJobTranscript" => &[400, 404, 409, 413, 502],
        "retryJob" => &[404, 409],
        _ => &[],
    }
}

/// The job's lifecycle, from an answer that holds a job: its other operations by its id.
fn job_links() -> Value {
    let by_id = |op: &str| json!({"operationId": op, "parameters": {"id": "$response.body#/id"}});
    json!({
        "GetJob": by_id("getJob"),
        "GetJobTranscript": by_id("getJobTranscript"),
        "GetJobAudio": by_id("getJobAudio"),
        "RetryJob": by_id("retryJob"),
        "DeleteJob": by_id("deleteJob"),
    })
}

/// The document (made once).
pub fn document() -> &'static Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    doc["info"]["license"] = json!({"name": "MIT", "identifier": "MIT"});
    doc["info"]["description"] = json!(format!(
        "{} A method a path does not list is answered `405` `method_not_allowed`; a path that is not here, `404` `not_found`.",
        doc["info"]["description"].as_str().unwrap_or("")
    ));
    let error = |status: u16| {
        let codes: Vec<String> = ErrorCode::ALL
            .iter()
            .filter(|c| c.http_status() == status)
            .map(|c| format!("`{}`", c.as_str()))
            .collect();
        let mut r = json!({
            "description": format!("Error: {}", codes.join(", ")),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        });
        if matches!(status, 429 | 503 | 507) {
            r["headers"] = json!({"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}});
        }
        r
    };
    let paths = doc["paths"].as_object_mut().expect("paths");
    for (path, item) in paths.iter_mut() {
        for (_, op) in item.as_object_mut().expect("a path item").iter_mut() {
            let id = op["operationId"].as_str().unwrap_or("").to_string();
            let responses = op["responses"].as_object_mut().expect("responses");
            let mut statuses: Vec<u16> = error_statuses(&id).to_vec();
            if path.starts_with("/v1/") {
                statuses.extend([401, 500, 503]);
            }
            for status in statuses {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(status));
            }
            if matches!(id.as_str(), "createJob" | "getJob" | "retryJob") {
                for ok in ["200", "202"] {
                    if let Some(r) = responses.get_mut(ok) {
                        r["links"] = job_links();
                    }
                }
            }
        }
    }
    // The webhook a job with a callback_url sends when it ends (OpenAPI 3.1 `webhooks`).
    doc["webhooks"] = json!({
        "jobEnded": {"post": {
            "operationId": "jobEnded",
            "summary": "A job with a callback_url ended (job.done or job.failed); the body is GET /v1/jobs/{id}'s",
            "parameters": [
                {"name": "X-Earshot-Event", "in": "header", "required": true, "schema": {"type": "string", "enum": ["job.done", "job.failed"]}},
                {"name": "X-Earshot-Delivery", "in": "header", "required": true, "description": "The delivery's id: receivers de-duplicate by it", "schema": {"type": "string"}},
                {"name": "X-Earshot-Signature", "in": "header", "required": false, "description": "sha256=<hex HMAC-SHA256 of the body> with --webhook-secret", "schema": {"type": "string"}},
            ],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobView"}}}},
            "responses": {"200": {"description": "Any 2xx: delivered; anything else is tried again with backoff"}},
        }},
    });
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every string value under `v` (descriptions, names, keys' values).
    fn text_of(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|v| text_of(v, out)),
            Value::Object(o) => {
                for (k, v) in o {
                    out.push_str(k);
                    out.push('\n');
                    text_of(v, out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_route_and_code() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths: BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for p in [
            "/v1/audio/transcriptions",
            "/v1/audio/translations",
            "/v1/jobs",
            "/v1/jobs/{id}",
            "/v1/jobs/{id}/audio",
            "/v1/jobs/{id}/transcript",
            "/v1/jobs/{id}/retry",
            "/v1/models",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(paths.contains(p), "{p} missing from {paths:?}");
        }
        let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(codes, ErrorCode::ALL.len());
        let create = &doc["paths"]["/v1/jobs"]["post"]["responses"];
        assert!(create["202"]["links"]["GetJob"].is_object());
        assert!(create["429"]["headers"]["Retry-After"].is_object());
    }

    /// docs/api.md and the document name the same statuses, error codes and headers.
    #[test]
    fn docs_and_document_agree_on_statuses_codes_and_headers() {
        let docs = include_str!("../../docs/api.md");
        let mut doc_text = String::new();
        text_of(document(), &mut doc_text);
        // Statuses: the docs' error table rows, and the document's responses.
        let docs_statuses: BTreeSet<String> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| "))
            .filter_map(|l| l.get(..3))
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
            .collect();
        // 405 answers a method no operation has: the document says so in its description.
        let mut doc_statuses = BTreeSet::new();
        if document()["info"]["description"]
            .as_str()
            .unwrap()
            .contains("`405`")
        {
            doc_statuses.insert("405".to_string());
        }
        for item in document()["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                for status in op["responses"].as_object().unwrap().keys() {
                    doc_statuses.insert(status.clone());
                }
            }
        }
        let errors: BTreeSet<String> = doc_statuses
            .iter()
            .filter(|s| s.as_str() >= "400")
            .cloned()
            .collect();
        assert_eq!(
            docs_statuses, errors,
            "the docs' error table and the document's error statuses"
        );
        for ok in doc_statuses.iter().filter(|s| s.as_str() < "400") {
            assert!(
                docs.contains(&format!("`{ok}`")) || docs.contains(&format!("{ok} ")),
                "status {ok} is not in docs/api.md"
            );
        }
        // Codes: every code in both.
        for c in ErrorCode::ALL {
            assert!(
                docs.contains(&format!("`{}`", c.as_str())),
                "{c:?} not in docs/api.md"
            );
            assert!(
                doc_text.contains(&format!("`{}`", c.as_str())),
                "{c:?} not in the document"
            );
        }
        // Headers: each header either names is in the other.
        let headers = [
            "Retry-After",
            "X-Earshot-Job-Id",
            "Idempotent-Replayed",
            "Idempotency-Key",
            "Content-Disposition",
            "Range",
            "X-Earshot-Delivery",
            "X-Earshot-Event",
            "X-Earshot-Signature",
        ];
        for h in headers {
            assert!(docs.contains(h), "{h} is not in docs/api.md");
            assert!(doc_text.contains(h), "{h} is not in the document");
        }
        for h in docs
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| {
                w.starts_with("X-") || w.starts_with("Idempotent") || w.starts_with("Retry-After")
            })
            .map(|w| w.split(':').next().unwrap_or(w).trim())
        {
            assert!(
                doc_text.contains(h),
                "docs/api.md names the header {h}; the document does not"
            );
        }
    }
}
