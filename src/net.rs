//! The network rules for URLs that clients name (webhook receivers, audio to fetch): which
//! addresses count as public, and one resolver that refuses any other and pins what it
//! checked, so that a name re-pointed between a check and the connection (DNS rebinding)
//! cannot reach inside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Whether an IPv4 address is globally reachable unicast: not in any special-purpose block
/// of the IANA registry (RFC 6890 and successors).
fn is_global_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    let in_block = |net: [u8; 4], bits: u32| {
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        (u32::from(v4) & mask) == (u32::from_be_bytes(net) & mask)
    };
    !(o[0] == 0 // "this network"
        || in_block([10, 0, 0, 0], 8)
        || in_block([100, 64, 0, 0], 10) // carrier-grade NAT
        || in_block([127, 0, 0, 0], 8)
        || in_block([169, 254, 0, 0], 16)
        || in_block([172, 16, 0, 0], 12)
        || in_block([192, 0, 0, 0], 24) // IETF protocol assignments
        || in_block([192, 0, 2, 0], 24) // documentation
        || in_block([192, 31, 196, 0], 24) // AS112
        || in_block([192, 52, 193, 0], 24) // AMT
        || in_block([192, 88, 99, 0], 24) // 6to4 relay anycast (deprecated)
        || in_block([192, 168, 0, 0], 16)
        || in_block([192, 175, 48, 0], 24) // AS112 direct delegation
        || in_block([198, 18, 0, 0], 15) // benchmarking
        || in_block([198, 51, 100, 0], 24) // documentation
        || in_block([203, 0, 113, 0], 24) // documentation
        || o[0] >= 224) // multicast, reserved, broadcast
}

/// Whether an IPv6 address is global unicast (2000::/3 less its special-purpose blocks).
/// Addresses that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by
/// the IPv4 address they lead to.
fn is_global_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_global_v4(embedded(s[6], s[7])); // NAT64 well-known prefix
    }
    if s[0] == 0x2002 {
        return is_global_v4(embedded(s[1], s[2])); // 6to4
    }
    (s[0] & 0xE000) == 0x2000 // global unicast
        && !(s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 IETF (Teredo, ORCHID, ...)
        && !(s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        && (s[0] & 0xFFF0) != 0x3FF0 // 3fff::/20 documentation
}

/// Whether an address is one a webhook must not reach by default: anything but global
/// unicast.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !is_global_v4(v4),
        IpAddr::V6(v6) => !is_global_v6(v6),
    }
}

/// Split a URL's authority into host and port: `host`, `host:port`, `[v6]`, `[v6]:port`.
pub fn host_and_port(
    what: &str,
    authority: &str,
    default_port: u16,
) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(format!(
            "{what} has an IPv6 address without its closing ']'"
        ))?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("{what} host '[{host}]' is not an IPv6 address"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or(format!(
                    "{what}: only ':port' may follow an IPv6 address in brackets"
                ))?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "{what}: put an IPv6 address in brackets, like http://[2001:db8::1]:8080/"
                ))
            }
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{what} has no host"));
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("{what} port '{p}' is not a number from 1 to 65535"))?,
    };
    Ok((host.to_string(), port))
}

/// An HTTP client for URLs that clients name (webhook receivers, audio to fetch): connect in
/// 10 s, `timeout` in all, no redirects, statuses as answers (not errors), and unless
/// `allow_private`, [`GlobalOnly`] as its resolver, so the addresses checked are the very
/// ones connected to.
pub fn agent(allow_private: bool, timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .build();
    if allow_private {
        ureq::Agent::new_with_config(config)
    } else {
        ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            GlobalOnly,
        )
    }
}

/// Resolves like the system does, then refuses the answer if any address is not global
/// unicast. A proxy's own address is let through: the operator chose it.
#[derive(Debug)]
pub struct GlobalOnly;

impl ureq::unversioned::resolver::Resolver for GlobalOnly {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let addrs = ureq::unversioned::resolver::DefaultResolver::default()
            .resolve(uri, config, timeout)?;
        let is_proxy = config.proxy().is_some_and(|p| uri.host() == Some(p.host()));
        if !is_proxy {
            if let Some(a) = addrs.iter().find(|a| is_private(a.ip())) {
                return Err(ureq::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "host {} resolves to {}, which is not a global unicast address (loopback, private, link-local, reserved or documentation); not connecting (the operator allows that with --webhook-allow-private for webhooks, --fetch-allow-private for audio to fetch)",
                        uri.host().unwrap_or(""),
                        a.ip()
                    ),
                )));
            }
        }
        Ok(addrs)
    }
}

/// Why [`copy_capped`] stopped.
#[derive(Debug)]
pub enum Capped {
    /// More than the cap arrived.
    TooLarge,
    /// Reading failed (a timeout, a cut connection).
    Read(std::io::Error),
    /// The sink failed (a full disk).
    Write(std::io::Error),
}

/// Copy `reader` into `sink`, at most `max` bytes: a download or a file of untrusted size.
/// A reader with its own limit set one byte over `max` reports that limit as an error whose
/// text says "limit"; that too is [`Capped::TooLarge`].
pub fn copy_capped(
    reader: &mut dyn std::io::Read,
    max: u64,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<u64, Capped> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.to_string().contains("limit") => return Err(Capped::TooLarge),
            Err(e) => return Err(Capped::Read(e)),
        };
        total += n as u64;
        if total > max {
            return Err(Capped::TooLarge);
        }
        sink(&buf[..n]).map_err(Capped::Write)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_copy_stops_past_its_cap() {
        let mut out = Vec::new();
        let n = copy_capped(&mut &[7u8; 100][..], 100, &mut |c| {
            out.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!((n, out.len()), (100, 100));
        let over = copy_capped(&mut &[7u8; 101][..], 100, &mut |_| Ok(()));
        assert!(matches!(over, Err(Capped::TooLarge)));
        let full = copy_capped(&mut &[7u8; 10][..], 100, &mut |_| {
            Err(std::io::Error::other("disk full"))
        });
        assert!(matches!(full, Err(Capped::Write(_))));
    }

    #[test]
    fn ipv6_authorities_parse() {
        assert_eq!(
            host_and_port("callback_url", "[2606:4700::1111]", 443).unwrap(),
            ("2606:4700::1111".into(), 443)
        );
        assert_eq!(
            host_and_port("callback_url", "[2606:4700::1111]:81", 80).unwrap(),
            ("2606:4700::1111".into(), 81)
        );
        assert_eq!(
            host_and_port("callback_url", "example.com", 80).unwrap(),
            ("example.com".into(), 80)
        );
        assert_eq!(
            host_and_port("callback_url", "example.com:8080", 80).unwrap(),
            ("example.com".into(), 8080)
        );
        assert!(host_and_port("callback_url", "2606:4700::1111", 80)
            .unwrap_err()
            .contains("brackets"));
        assert!(host_and_port("callback_url", "[2606:4700::1111", 80).is_err());
        assert!(host_and_port("callback_url", "[not-v6]:80", 80).is_err());
        assert!(host_and_port("callback_url", "[::1]x", 80).is_err());
        assert!(host_and_port("callback_url", "example.com:99999", 80)
            .unwrap_err()
            .contains("1 to 65535"));
        assert!(host_and_port("callback_url", "example.com:0", 80).is_err());
    }
}
