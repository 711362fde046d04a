//! The send-time half of the outbound guard: the addresses a URL's name resolves to are checked
//! right before a request goes out (DNS rebinding: a name that was public when the URL was given
//! may point inside later), and the request is pinned to the addresses that were checked.

use std::net::SocketAddr;

use spaceport_core::Error;
use spaceport_core::outbound::{OutboundGuard, refused, restricted};
use url::Url;

/// Resolves the URL's host and checks every address it names: the addresses to connect to.
pub async fn resolve(
    guard: &OutboundGuard,
    field: &str,
    url: &Url,
) -> Result<Vec<SocketAddr>, Error> {
    let host = url
        .host_str()
        .ok_or_else(|| Error::validation(field, format!("{field} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let host_allowed = guard.allowed_host(&host);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| {
            Error::upstream(
                spaceport_core::ErrorCode::Internal,
                true,
                format!("{field}: cannot resolve {host}: {e}"),
            )
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::upstream(
            spaceport_core::ErrorCode::Internal,
            true,
            format!("{field}: {host} resolves to no address"),
        ));
    }
    for a in &addrs {
        if let Some(why) = restricted(a.ip())
            && !host_allowed
            && !guard.allowed_ip(a.ip())
        {
            return Err(refused(field, &format!("{host} ({})", a.ip()), why));
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spaceport_core::outbound::Allow;

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_when_sending() {
        let g = OutboundGuard::default();
        // What the name resolves to decides, whatever it looks like.
        let url = Url::parse("http://127.0.0.1.nip.invalid/").unwrap();
        assert!(resolve(&g, "u", &url).await.is_err(), "unresolvable");
        let url = Url::parse("http://localhost:9/").unwrap();
        let e = resolve(&g, "u", &url).await.unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let allowed = OutboundGuard::new(vec![
            Allow::parse("127.0.0.0/8").unwrap(),
            Allow::parse("::1").unwrap(),
        ]);
        let addrs = resolve(&allowed, "u", &url).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
    }
}
