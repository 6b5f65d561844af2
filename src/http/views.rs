//! How stored things are shown: a job as the API shows it, and a finished job's transcript
//! in the format asked for.

use super::*;

/// A job as the API shows it, with its webhook's delivery state.
pub(super) fn job_view(s: &AppState, shown: &Shown) -> crate::jobs::JobView {
    let j = &shown.job;
    let mut v = crate::jobs::job_json(j, shown.delivery.as_ref());
    // A job still fetching its audio has none to play yet.
    v.audio_url = j.has_audio().then(|| s.audio_url(&j.id));
    // A running recording long enough to go in pieces says how far it has got.
    v.progress = s
        .queue
        .progress(&j.id)
        .filter(|_| j.status == Status::Running)
        .map(|p| crate::jobs::ProgressView {
            fraction: if p.total_s > 0.0 {
                (p.done_s / p.total_s).clamp(0.0, 1.0)
            } else {
                0.0
            },
            audio_seconds_done: p.done_s,
            audio_seconds: p.total_s,
        });
    v
}

/// A done job's transcript in `format`, with the content type that format has.
pub(super) fn render_transcript(j: &Job, format: Format) -> ApiResult<Response> {
    let mut result = j
        .result
        .clone()
        .ok_or_else(|| ApiError::internal("the job has no transcript"))?;
    // Words are always stored (the inbox seeks by them); the API returns them when asked.
    let opts = &j.options;
    if !opts.word_timestamps {
        result.transcript.words = None;
    }
    let (t, task) = (&result.transcript, opts.task());
    Ok(match format {
        Format::VerboseJson => Json(result.verbose_json()).into_response(),
        Format::Json => Json(output::to_json(t, format, task).unwrap_or_default()).into_response(),
        Format::Txt => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            output::render(t, format, task),
        )
            .into_response(),
        Format::Srt => (
            [(header::CONTENT_TYPE, "application/x-subrip; charset=utf-8")],
            output::render(t, format, task),
        )
            .into_response(),
        Format::Vtt => (
            [(header::CONTENT_TYPE, "text/vtt; charset=utf-8")],
            output::render(t, format, task),
        )
            .into_response(),
    })
}
