//! For operators: `/readyz`, `/metrics`, and the per-route request counter behind them.

use super::*;

pub(super) async fn count_requests(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let r = next.run(req).await;
    *s.requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((route, r.status().as_u16()))
        .or_default() += 1;
    r
}

pub(super) async fn readyz(State(s): State<Shared>) -> Response {
    let (db_ok, store) = s
        .queue
        .ready()
        .await
        .unwrap_or_else(|e| (false, Err(std::io::Error::other(e))));
    let free = free_disk_mb(&s.cfg.data_dir);
    let disk_ok = free.is_some_and(|f| f >= s.cfg.min_free_disk_mb);
    let store_ok = store.is_ok();
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: the audio store does not answer");
    }
    let ready = db_ok && disk_ok && store_ok;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "model": {"loaded": true, "name": s.model_name, "path": s.queue.engine.model_path(), "backend": s.queue.engine.backend().name, "gpu": s.queue.engine.backend().device, "flash_attn": s.queue.engine.backend().flash_attn},
        "database": {"writable": db_ok},
        "audio_store": {"ok": store_ok},
        "disk": {"free_mb": free, "min_free_mb": s.cfg.min_free_disk_mb, "ok": disk_ok},
        "workers": s.queue.workers,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub(super) async fn metrics(State(s): State<Shared>) -> Response {
    use std::fmt::Write;
    let mut out = String::new();
    out.push_str("# HELP earshot_http_requests_total HTTP requests by route and status.\n# TYPE earshot_http_requests_total counter\n");
    for ((route, status), n) in s.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(
            out,
            "earshot_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
        );
    }
    out.push_str("# HELP earshot_jobs Jobs by status.\n# TYPE earshot_jobs gauge\n");
    let counts: HashMap<Status, i64> = s.queue.count_by_status().await.into_iter().collect();
    for &st in Status::ALL {
        let _ = writeln!(
            out,
            "earshot_jobs{{status=\"{st}\"}} {}",
            counts.get(&st).copied().unwrap_or(0)
        );
    }
    out.push_str("# HELP earshot_cpu_feature The CPU features whisper.cpp's kernels use (1 each): how=\"build\" compiled in, how=\"run_time\" chosen on this CPU.\n# TYPE earshot_cpu_feature gauge\n");
    let cpu = crate::engine::cpu_features();
    for (how, names) in [("build", &cpu.built), ("run_time", &cpu.chosen)] {
        for f in names {
            let _ = writeln!(
                out,
                "earshot_cpu_feature{{feature=\"{f}\",how=\"{how}\"}} 1"
            );
        }
    }
    out.push_str("# HELP earshot_jobs_submitted_total Jobs submitted since start, by client (API key name; empty without keys).\n# TYPE earshot_jobs_submitted_total counter\n");
    {
        let by_client = s.submitted.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<_> = by_client.iter().collect();
        names.sort();
        for (client, n) in names {
            let _ = writeln!(
                out,
                "earshot_jobs_submitted_total{{client=\"{}\"}} {n}",
                client.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
    }
    out.push_str("# HELP earshot_review_needed_total Finished jobs a person should listen to, since start.\n# TYPE earshot_review_needed_total counter\n");
    let _ = writeln!(
        out,
        "earshot_review_needed_total {}",
        s.queue.stats.review_needed.load(Ordering::Relaxed)
    );
    out.push_str("# HELP earshot_review_reasons_total Finished jobs by review reason, since start.\n# TYPE earshot_review_reasons_total counter\n");
    for (i, r) in crate::engine::review::Reason::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "earshot_review_reasons_total{{reason=\"{}\"}} {}",
            r.code(),
            s.queue.stats.review_reasons[i].load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP earshot_queue_depth Jobs waiting for a worker.\n# TYPE earshot_queue_depth gauge\nearshot_queue_depth {}", counts.get(&Status::Queued).copied().unwrap_or(0));
    let _ = writeln!(out, "# HELP earshot_workers_busy Workers transcribing now.\n# TYPE earshot_workers_busy gauge\nearshot_workers_busy {}", s.queue.stats.busy.load(Ordering::SeqCst));
    let audio = s.queue.stats.audio_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let took = s.queue.stats.processing_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let _ = writeln!(out, "# HELP earshot_audio_seconds_total Audio transcribed.\n# TYPE earshot_audio_seconds_total counter\nearshot_audio_seconds_total {audio}");
    let _ = writeln!(
        out,
        "# HELP earshot_real_time_factor Audio seconds per processing second, since start.\n# TYPE earshot_real_time_factor gauge\nearshot_real_time_factor {}",
        if took > 0.0 { audio / took } else { 0.0 }
    );
    out.push_str("# HELP earshot_processing_seconds Time to decode and transcribe one job.\n# TYPE earshot_processing_seconds histogram\n");
    let h = s
        .queue
        .stats
        .histogram
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut cum = 0u64;
    for (i, b) in crate::jobs::BUCKETS_S.iter().enumerate() {
        cum += h.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "earshot_processing_seconds_bucket{{le=\"{b}\"}} {cum}");
    }
    cum += h.get(crate::jobs::BUCKETS_S.len()).copied().unwrap_or(0);
    let _ = writeln!(out, "earshot_processing_seconds_bucket{{le=\"+Inf\"}} {cum}\nearshot_processing_seconds_sum {took}\nearshot_processing_seconds_count {cum}");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
