//! API keys (`Authorization: Bearer`), who a key makes the caller ([`Caller`]), and the
//! signed audio URLs that stand in for a key where a browser cannot send one.

use super::*;
use crate::config::ApiKey;
use crate::jobs::Scope;

/// Who is calling, as the auth layer found it; every `/v1` handler gets one.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An admin key (`name`), a signed audio URL, or a service with no keys (`None`): sees
    /// every job.
    Admin(Option<String>),
    /// A client key: sees and acts on the jobs it created only.
    Client(String),
}

impl Caller {
    /// The name recorded as a new job's `client`.
    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Admin(name) => name.as_deref(),
            Caller::Client(name) => Some(name),
        }
    }

    /// The jobs it may see and act on.
    pub fn scope(&self) -> Scope {
        match self {
            Caller::Admin(_) => Scope::All,
            Caller::Client(name) => Scope::Client(name.clone()),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin(_))
    }
}

/// The key of signed audio URLs, from the secrets of the keys the service started with, in
/// a fixed order: the same keys listed in another order keep the URLs working. Keys read
/// again on SIGHUP do not change it (a URL made for a caller who could see the job stays
/// valid until it expires).
pub(super) fn url_key(keys: &[ApiKey]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"earshot signed audio URL\n");
    let mut secrets: Vec<&str> = keys.iter().map(|k| k.secret.expose()).collect();
    secrets.sort();
    secrets.dedup();
    for s in secrets {
        h.update(s.as_bytes());
        h.update(b"\n");
    }
    h.finalize().into()
}

pub(super) async fn auth(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    let keys = s.keys();
    let caller = if keys.is_empty() {
        Some(Caller::Admin(None))
    } else {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let by_key = given.and_then(|g| {
            // Every key is compared, so the time taken says nothing of which one matched.
            keys.iter()
                .fold(None, |found, k| {
                    if constant_time_eq(k.secret.expose().as_bytes(), g.as_bytes()) {
                        Some(k)
                    } else {
                        found
                    }
                })
                .map(|k| {
                    if k.admin {
                        Caller::Admin(Some(k.name.clone()))
                    } else {
                        Caller::Client(k.name.clone())
                    }
                })
        });
        by_key.or_else(|| {
            ((req.method() == Method::GET || req.method() == Method::HEAD)
                && s.signed_audio_ok(req.uri().path(), req.uri().query()))
            .then_some(Caller::Admin(None))
        })
    };
    match caller {
        Some(c) => {
            req.extensions_mut().insert(c);
            next.run(req).await
        }
        None => ApiError::of(
            ErrorCode::InvalidApiKey,
            "missing or invalid API key: send Authorization: Bearer <key>",
        )
        .into_response(),
    }
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
