//! Webhooks: when a job with a `callback_url` finishes, POST its JSON there, signed.
//!
//! Deliveries live in an outbox table, written in the same transaction that finishes the
//! job, so a delivery survives a crash or restart (at least once; receivers de-duplicate by
//! `X-Earshot-Delivery`). One thread sends what is due and retries failures with
//! exponential backoff. Only `http`/`https` URLs are accepted, and loopback, private and
//! link-local targets are refused unless the operator allows them: the check runs when the
//! job is created, and at each delivery on the very addresses the connection is made to (so
//! a name re-pointed in between is caught; through a proxy, on the name's addresses just
//! before); redirects are not followed.

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::net::{host_and_port, is_private};
use crate::store::{now_ms, Outbox};

/// Attempts before a delivery is given up (about 68 minutes of backoff in all).
pub const MAX_ATTEMPTS: u32 = 12;

/// Whether [`check_url`] looks the host up and refuses non-global addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// Look the host up; any loopback, private, link-local or reserved address is refused.
    Check,
    /// The form of the URL only: private targets are allowed (`--webhook-allow-private`), or
    /// the connection's own resolver checks each address it connects to.
    Skip,
}

impl Addresses {
    /// [`Addresses::Skip`] when the operator allows private targets.
    pub fn unless_private_allowed(allow_private: bool) -> Addresses {
        if allow_private {
            Addresses::Skip
        } else {
            Addresses::Check
        }
    }
}

/// Check a callback URL: scheme, host, and (with [`Addresses::Check`]) that it resolves only
/// to global unicast addresses. Returns a message a client can act on. A host that does not
/// resolve *now* passes (issue #40, item 1): a DNS hiccup at submit time must not refuse a
/// customer's voice note; each delivery resolves it again, through the resolver that refuses
/// private addresses, and retries with backoff while it does not resolve.
pub fn check_url(url: &str, addresses: Addresses) -> Result<(), String> {
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
    let (host, port) = host_and_port("callback_url", authority, default_port)?;
    if addresses == Addresses::Skip {
        return Ok(());
    }
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match (host.as_str(), port).to_socket_addrs() {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(e) => {
                tracing::info!(host = %host, error = %e, "callback host does not resolve now; each delivery resolves it again");
                return Ok(());
            }
        },
    };
    if let Some(a) = addrs.iter().find(|a| is_private(**a)) {
        return Err(format!(
            "callback_url resolves to {a}, which is not a global unicast address (loopback, private, link-local, reserved or documentation); the operator must start earshot with --webhook-allow-private to allow that"
        ));
    }
    Ok(())
}

/// The client deliveries go out on: 15 s in all, no redirects, and (unless private targets
/// are allowed) the resolver that refuses a name with any non-global address
/// ([`crate::net::agent`]). `check_url` looks the name up once; without that resolver the
/// connection would look it up again, and a name whose records change in between (DNS
/// rebinding) would pass the check with a public address and connect to a private one.
/// Through an HTTP proxy the proxy resolves the target, so only `check_url` guards it there.
fn agent(allow_private: bool) -> ureq::Agent {
    crate::net::agent(allow_private, Duration::from_secs(15))
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
    db: Arc<dyn Outbox>,
    secret: Option<String>,
    allow_private: bool,
    render: impl Fn(&crate::job::Job) -> serde_json::Value,
) {
    let agent = agent(allow_private);
    // The agent's resolver checks the addresses it connects to; only through a proxy (which
    // resolves the target itself) does the check before each delivery look the name up too.
    let addresses = if !allow_private && agent.config().proxy().is_some() {
        Addresses::Check
    } else {
        Addresses::Skip
    };
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
            let result = check_url(&d.url, addresses).and_then(|()| {
                let mut req = agent
                    .post(&d.url)
                    .header("Content-Type", "application/json")
                    .header("User-Agent", concat!("earshot/", env!("CARGO_PKG_VERSION")))
                    .header("X-Earshot-Delivery", &d.id)
                    .header("X-Earshot-Event", d.event.as_str());
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
    fn only_global_unicast_passes() {
        for url in [
            "http://192.0.0.8/x",
            "http://198.18.0.1/x",
            "http://198.19.255.255/x",
            "http://192.0.2.1/x",
            "http://240.0.0.1/x",
            "http://100.64.0.1/x",
            "http://[::127.0.0.1]:8080/x",
            "http://[64:ff9b::a9fe:a9fe]:80/x",
            "http://[2002:7f00:1::]:80/x",
            "http://[::ffff:0:7f00:1]:80/x",
            "http://[2001:db8::1]:80/x",
            "http://[100::1]:80/x",
            "http://[2001::1]/x",
            "http://[fe80::1]/x",
            "http://[fd00::1]/x",
            "http://[::]/x",
            "http://[3fff::1]/x",
        ] {
            let e = check_url(url, Addresses::Check).unwrap_err();
            assert!(e.contains("not a global unicast"), "{url}: {e}");
        }
        for url in [
            "http://93.184.216.34/x",
            "http://[2606:2800:220:1:248:1893:25c8:1946]/x",
            "https://[2606:4700::1111]:8443/hook",
            "http://[64:ff9b::5db8:d822]/x", // NAT64 of 93.184.216.34
            "http://[2002:5db8:d822::1]/x",  // 6to4 of 93.184.216.34
        ] {
            assert_eq!(check_url(url, Addresses::Check), Ok(()), "{url}");
        }
    }

    #[test]
    fn refuses_private_targets_and_odd_schemes() {
        assert!(check_url("http://127.0.0.1:9/x", Addresses::Check)
            .unwrap_err()
            .contains("--webhook-allow-private"));
        assert!(check_url("http://[::1]/x", Addresses::Check).is_err());
        assert!(check_url("http://10.1.2.3/x", Addresses::Check).is_err());
        assert!(check_url("http://169.254.169.254/latest/meta-data", Addresses::Check).is_err());
        assert!(check_url("ftp://example.com/x", Addresses::Check)
            .unwrap_err()
            .contains("not allowed"));
        assert!(check_url("http://user:pw@example.com/", Addresses::Check).is_err());
        assert!(check_url("not a url", Addresses::Check).is_err());
        assert!(check_url("http://127.0.0.1:9/x", Addresses::Skip).is_ok());
        assert!(is_private("::ffff:192.168.1.1".parse().unwrap()));
        assert!(!is_private("93.184.216.34".parse().unwrap()));
    }

    /// The addresses the adversarial pass got through (issue #13, item 8), and their
    /// neighbours; literal IPs, so no resolver is involved.
    /// A name that resolves to a private address is refused by the delivery client itself,
    /// not only by `check_url`: this is what stops a name re-pointed between the check and
    /// the connection. `localhost` stands in for such a name.
    #[test]
    fn the_client_refuses_private_addresses_when_it_connects() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://localhost:{port}/hook");

        let err = agent(false).post(&url).send("{}").unwrap_err().to_string();
        assert!(err.contains("not a global unicast address"), "{err}");
        // An address written in the URL goes through the same check.
        let literal = format!("http://127.0.0.1:{port}/hook");
        let err = agent(false)
            .post(&literal)
            .send("{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a global unicast address"), "{err}");
        listener.set_nonblocking(true).unwrap();
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "the refused client must not have connected"
        );

        // The same client with private targets allowed does connect and deliver.
        listener.set_nonblocking(false).unwrap();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let r = agent(true).post(&url).send("{}").unwrap();
        assert_eq!(r.status().as_u16(), 204);
        assert!(server.join().unwrap().starts_with("POST /hook "));
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
