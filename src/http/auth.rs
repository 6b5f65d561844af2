//! API keys (`Authorization: Bearer`) and the signed audio URLs that stand in for them.

use super::*;

pub(super) fn url_key(keys: &[Secret]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"earshot signed audio URL\n");
    // In a fixed order: the same keys listed in another order keep the URLs working.
    let mut keys: Vec<&Secret> = keys.iter().collect();
    keys.sort_by(|a, b| a.expose().cmp(b.expose()));
    keys.dedup_by(|a, b| a.expose() == b.expose());
    for k in keys {
        h.update(k.expose().as_bytes());
        h.update(b"\n");
    }
    h.finalize().into()
}

pub(super) async fn auth(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if s.cfg.api_keys.is_empty() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(k)
            if s.cfg
                .api_keys
                .iter()
                .any(|key| constant_time_eq(key.expose().as_bytes(), k.trim().as_bytes())) =>
        {
            next.run(req).await
        }
        _ if (req.method() == Method::GET || req.method() == Method::HEAD)
            && s.signed_audio_ok(req.uri().path(), req.uri().query()) =>
        {
            next.run(req).await
        }
        _ => ApiError::of(
            ErrorCode::InvalidApiKey,
            "missing or invalid API key: send Authorization: Bearer <key>",
        )
        .into_response(),
    }
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
