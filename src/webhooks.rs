//! Webhooks: when a job with a `callback_url` finishes, POST its JSON there, signed.
//!
//! Deliveries live in an outbox table, written in the same transaction that finishes the
//! job, so a delivery survives a crash or restart (at least once; receivers de-duplicate by
//! `X-Earshot-Delivery`). One thread sends what is due and retries failures with
//! exponential backoff. Only `http`/`https` URLs are accepted, and loopback, private and
//! link-local targets are refused unless the operator allows them: the check runs when the
//! job is created and again before each delivery, and redirects are not followed.

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::storage::{now_ms, Db};

/// Attempts before a delivery is given up (about 68 minutes of backoff in all).
pub const MAX_ATTEMPTS: u32 = 12;

/// Whether an address is one a webhook must not reach by default.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && (o[1] & 0xC0) == 64) // 100.64.0.0/10 (carrier-grade NAT)
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xFE00) == 0xFC00 // unique local
                || (seg[0] & 0xFFC0) == 0xFE80 // link-local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Check a callback URL: scheme, host, and (unless allowed) that it resolves only to public
/// addresses. Returns a message a client can act on.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("callback_url must be an absolute http or https URL")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        other => {
            return Err(format!(
                "callback_url scheme '{other}' is not allowed (http or https only)"
            ))
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("callback_url must not carry credentials".into());
    }
    if authority.is_empty() {
        return Err("callback_url has no host".into());
    }
    if allow_private {
        return Ok(());
    }
    let host_port = if authority.starts_with('[')
        || authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
    {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let addrs: Vec<_> = host_port
        .to_socket_addrs()
        .map_err(|e| format!("callback_url host does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err("callback_url host does not resolve".into());
    }
    if let Some(a) = addrs.iter().find(|a| is_private(a.ip())) {
        return Err(format!(
            "callback_url resolves to {} (loopback, private or link-local); the operator must start earshot with --webhook-allow-private to allow that",
            a.ip()
        ));
    }
    Ok(())
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Backoff before attempt `n + 1`, after `n` failures: 1 s, 2 s, 4 s, ... capped at 30 min.
pub fn backoff_ms(failures: u32) -> i64 {
    (1000i64 << failures.min(11)).min(30 * 60 * 1000)
}

/// The delivery loop. Runs until the process ends.
pub fn run(
    db: Arc<Db>,
    secret: Option<String>,
    allow_private: bool,
    render: impl Fn(&crate::storage::Job) -> serde_json::Value,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(15)))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    loop {
        let due = match db.due_deliveries(16) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "could not read the webhook outbox");
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
        };
        if due.is_empty() {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        for d in due {
            let span = tracing::info_span!("webhook", delivery = %d.id, job = %d.job_id);
            let _g = span.enter();
            let Ok(Some(job)) = db.get(&d.job_id) else {
                let _ = db.delivery_gave_up(&d.id, "the job no longer exists");
                continue;
            };
            let body = render(&job).to_string();
            let result = check_url(&d.url, allow_private).and_then(|()| {
                let mut req = agent
                    .post(&d.url)
                    .header("Content-Type", "application/json")
                    .header("User-Agent", concat!("earshot/", env!("CARGO_PKG_VERSION")))
                    .header("X-Earshot-Delivery", &d.id)
                    .header("X-Earshot-Event", &d.event);
                if let Some(s) = &secret {
                    req = req.header("X-Earshot-Signature", signature(s, body.as_bytes()));
                }
                match req.send(body.as_bytes()) {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!(
                        "the receiver answered HTTP {}",
                        r.status().as_u16()
                    )),
                    Err(e) => Err(format!("{e}")),
                }
            });
            match result {
                Ok(()) => {
                    tracing::info!(attempt = d.attempts + 1, "webhook delivered");
                    let _ = db.delivery_done(&d.id);
                }
                Err(e) if d.attempts + 1 >= MAX_ATTEMPTS => {
                    tracing::warn!(error = %e, "webhook given up");
                    let _ = db.delivery_gave_up(&d.id, &e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt = d.attempts + 1, "webhook failed; will retry");
                    let _ = db.delivery_retry(&d.id, &e, now_ms() + backoff_ms(d.attempts));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_targets_and_odd_schemes() {
        assert!(check_url("http://127.0.0.1:9/x", false)
            .unwrap_err()
            .contains("--webhook-allow-private"));
        assert!(check_url("http://[::1]/x", false).is_err());
        assert!(check_url("http://10.1.2.3/x", false).is_err());
        assert!(check_url("http://169.254.169.254/latest/meta-data", false).is_err());
        assert!(check_url("ftp://example.com/x", false)
            .unwrap_err()
            .contains("not allowed"));
        assert!(check_url("http://user:pw@example.com/", false).is_err());
        assert!(check_url("not a url", false).is_err());
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
        assert!(is_private("::ffff:192.168.1.1".parse().unwrap()));
        assert!(!is_private("93.184.216.34".parse().unwrap()));
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(backoff_ms(0), 1000);
        assert_eq!(backoff_ms(3), 8000);
        assert_eq!(backoff_ms(30), 30 * 60 * 1000);
    }
}
