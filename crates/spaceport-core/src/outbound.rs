//! Where Spaceport may send requests it is told to make (webhook URLs, later URL inputs): not to
//! loopback, private, link-local, CGNAT, unique-local or cloud metadata addresses, nor to
//! unspecified, multicast or broadcast ones — unless configuration allows the host or its
//! network (`outbound_allow`: `127.0.0.1`, `10.0.0.0/8`, `hooks.internal`). This is the check of
//! a URL as given (the same at every edge, wasm included); the sender checks the addresses the
//! name resolves to again right before sending (`spaceport-webhooks`), against DNS rebinding.

#[cfg(test)]
use std::net::Ipv6Addr;
use std::net::{IpAddr, Ipv4Addr};

use crate::error::Error;
use ipnet::IpNet;
use url::{Host, Url};

/// One `outbound_allow` entry: a host name or an address network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    Host(String),
    Net(IpNet),
}

impl Allow {
    /// Parses a host name, an address (a one-address network) or a CIDR.
    pub fn parse(text: &str) -> Result<Allow, String> {
        let t = text.trim().trim_start_matches('[').trim_end_matches(']');
        if t.is_empty() {
            return Err("an empty entry".into());
        }
        if let Ok(net) = t.parse::<IpNet>() {
            return Ok(Allow::Net(net));
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Allow::Net(IpNet::from(ip)));
        }
        if t.contains('/') {
            return Err(format!("{t:?} is not a network (like 10.0.0.0/8)"));
        }
        Ok(Allow::Host(t.to_ascii_lowercase()))
    }
}

/// Decides whether an outbound request may go to a URL.
#[derive(Debug, Clone, Default)]
pub struct OutboundGuard {
    allow: Vec<Allow>,
}

/// Why an address is off limits, or `None` when it is a public one.
pub fn restricted(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return restricted_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if first & 0xfe00 == 0xfc00 {
                // fc00::/7 holds AWS's IPv6 metadata address fd00:ec2::254 too.
                Some("a unique-local (private) address")
            } else {
                None
            }
        }
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("the unspecified network")
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("a cloud metadata address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_private() {
        Some("a private address")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("a shared (CGNAT) address")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("a multicast, broadcast or reserved address")
    } else {
        None
    }
}

impl OutboundGuard {
    /// A guard allowing what `allow` names besides public addresses.
    pub fn new(allow: Vec<Allow>) -> OutboundGuard {
        OutboundGuard { allow }
    }

    /// Whether `outbound_allow` names this host.
    pub fn allowed_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allow
            .iter()
            .any(|a| matches!(a, Allow::Host(h) if *h == host))
    }

    /// Whether `outbound_allow` covers this address.
    pub fn allowed_ip(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allow
            .iter()
            .any(|a| matches!(a, Allow::Net(n) if n.contains(&ip)))
    }

    /// Checks a URL as given: http(s), a host, and — when the host is an address — an allowed
    /// one. `field` names the request field in the error.
    pub fn check_url(&self, field: &str, url: &str) -> Result<Url, Error> {
        let parsed = Url::parse(url)
            .map_err(|e| Error::validation(field, format!("{field} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::validation(
                field,
                format!("{field} must be an http(s) URL"),
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Error::validation(
                field,
                format!("{field} must not carry credentials"),
            ));
        }
        match parsed.host() {
            None => Err(Error::validation(field, format!("{field} has no host"))),
            Some(Host::Domain(d)) => {
                if self.allowed_host(d) {
                    return Ok(parsed.clone());
                }
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") || d == "metadata.google.internal"
                {
                    return Err(refused(field, &d, "a loopback or metadata name"));
                }
                Ok(parsed.clone())
            }
            Some(Host::Ipv4(ip)) => self.check_ip(field, &parsed, IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(field, &parsed, IpAddr::V6(ip)),
        }
    }

    fn check_ip(&self, field: &str, url: &Url, ip: IpAddr) -> Result<Url, Error> {
        match restricted(ip) {
            Some(why) if !self.allowed_ip(ip) => Err(refused(field, &ip.to_string(), why)),
            _ => Ok(url.clone()),
        }
    }
}

/// The error of a destination off limits.
pub fn refused(field: &str, what: &str, why: &str) -> Error {
    Error::validation(
        field,
        format!(
            "{field} points at {what}, {why}; outbound requests go only to public addresses unless outbound_allow names them"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_restricted_and_public_ones_are_not() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(restricted(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in [
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "::",
            "ff02::1",
        ] {
            assert!(restricted(v6(ip)).is_some(), "{ip}");
        }
        assert!(
            restricted(v6("::ffff:127.0.0.1")).is_some(),
            "a mapped loopback"
        );
        for ip in ["8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1"] {
            assert!(restricted(ip.parse().unwrap()).is_none(), "{ip}");
        }
        assert!(restricted(v6("2606:4700:4700::1111")).is_none());
    }

    #[test]
    fn urls_are_checked_as_given_unless_allowed() {
        let g = OutboundGuard::default();
        for bad in [
            "ftp://example.com/x",
            "http://user:pw@example.com/",
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost/hook",
            "not a url",
        ] {
            let e = g.check_url("webhook.url", bad).unwrap_err();
            assert_eq!(e.field(), Some("webhook.url"), "{bad}");
        }
        assert!(
            g.check_url("webhook.url", "https://example.com/hooks")
                .is_ok()
        );
        let allowed = OutboundGuard::new(vec![
            Allow::parse("127.0.0.1").unwrap(),
            Allow::parse("10.0.0.0/8").unwrap(),
            Allow::parse("Hooks.Internal").unwrap(),
        ]);
        assert!(allowed.check_url("u", "http://127.0.0.1:9/x").is_ok());
        assert!(allowed.check_url("u", "http://10.9.8.7/x").is_ok());
        assert!(allowed.check_url("u", "http://hooks.internal/x").is_ok());
        assert!(allowed.check_url("u", "http://192.168.0.1/x").is_err());
        assert!(Allow::parse("10.0.0.0/99").is_err());
    }
}
