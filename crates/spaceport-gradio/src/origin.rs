//! Where a Space can make us go: nowhere but its own origin. Everything that names a place comes
//! from the Space itself (`/config`'s `api_prefix`, a file's path, a redirect), so each is held
//! to the base URL we were given: the prefix must be a plain path (after a base, `@evil.example`
//! would make the URL's host another one, `.evil.example` another domain), every URL is built
//! with `Url::join` and checked to keep the base's origin, a redirect is followed only within
//! it, and the Hugging Face token goes only to `https` hosts on an allow-list (`*.hf.space` by
//! default), so a pipeline pointed at any other server never receives it.

use spaceport_core::{Error, ErrorCode};
use url::Url;

/// The hosts a Hugging Face token is sent to unless configured otherwise.
pub const DEFAULT_TOKEN_HOSTS: &[&str] = &["*.hf.space"];

/// The longest `api_prefix` taken (Gradio's is `/gradio_api`; a mount path adds a little).
const MAX_PREFIX_LEN: usize = 256;

/// Redirects followed within the Space's origin before giving up.
const MAX_REDIRECTS: usize = 5;

fn refused(message: String) -> Error {
    Error::upstream(ErrorCode::SpaceProtocol, false, message)
}

/// Checks `/config`'s `api_prefix`: empty, or a path of plain segments (`/gradio_api`,
/// `/mount/gradio_api`) that cannot name a host, a parent directory, a query or a port.
pub fn check_prefix(prefix: &str) -> Result<(), Error> {
    if prefix.is_empty() {
        return Ok(());
    }
    let plain = prefix.len() <= MAX_PREFIX_LEN
        && prefix.starts_with('/')
        && prefix[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(refused(format!(
            "the Space's /config names api_prefix {:.80?}, which is not a plain path",
            prefix
        )))
    }
}

/// Parses a Space's base URL (`https://owner-name.hf.space`, `http://127.0.0.1:7860/mounted`).
pub fn parse_base(base: &str) -> Result<Url, Error> {
    let url = Url::parse(base).map_err(|e| {
        Error::upstream(
            ErrorCode::SpaceUnavailable,
            false,
            format!("{base:?} is not a URL: {e}"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::upstream(
            ErrorCode::SpaceUnavailable,
            false,
            format!("{base:?} is not an http(s) URL"),
        ));
    }
    Ok(url)
}

/// `{base}{api_prefix}/{tail}` built with `Url::join` (the base's own path kept), refused unless
/// it stays on the base's origin.
pub fn space_url(base: &Url, api_prefix: &str, tail: &str) -> Result<Url, Error> {
    check_prefix(api_prefix)?;
    let mut dir = base.clone();
    if !dir.path().ends_with('/') {
        let path = format!("{}/", dir.path());
        dir.set_path(&path);
    }
    let prefix = api_prefix.trim_start_matches('/');
    let tail = tail.trim_start_matches('/');
    let relative = if prefix.is_empty() {
        // `./` keeps a tail such as `file=…:…` from ever reading as a scheme.
        format!("./{tail}")
    } else {
        format!("./{prefix}/{tail}")
    };
    let url = dir.join(&relative).map_err(|e| {
        refused(format!(
            "{relative:.80?} is not a path under the Space: {e}"
        ))
    })?;
    if url.origin() != base.origin() {
        return Err(refused(format!(
            "{relative:.80?} leads off the Space's origin {}",
            base.origin().ascii_serialization()
        )));
    }
    Ok(url)
}

/// Whether `url` is on `base`'s origin (scheme, host and port).
pub fn same_origin(base: &Url, url: &Url) -> bool {
    base.origin() == url.origin()
}

/// Redirects from a Space: followed within its origin (a trailing slash, a mount), never to
/// another host, where neither our token nor its cookies belong.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        if !same_origin(first, attempt.url()) {
            let to = attempt.url().origin().ascii_serialization();
            return attempt.error(format!("the Space redirected to another origin ({to})"));
        }
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        attempt.follow()
    })
}

/// Whether a token may go to `base`: `https`, and its host on `hosts` (`*.hf.space` matches any
/// subdomain of `hf.space`; other entries match exactly, case aside).
pub fn token_allowed(base: &Url, hosts: &[String]) -> bool {
    if base.scheme() != "https" {
        return false;
    }
    let Some(host) = base.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    hosts.iter().any(|h| {
        let h = h.trim().to_ascii_lowercase();
        match h.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == h,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> Url {
        parse_base(s).unwrap()
    }

    #[test]
    fn a_prefix_is_a_plain_path_or_nothing() {
        for ok in ["", "/gradio_api", "/mount/gradio_api", "/a-b_c.d~e"] {
            check_prefix(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "@evil.example",
            ".evil.example",
            ":8080",
            "//evil.example",
            "/../x",
            "/a/./b",
            "/a?b",
            "/a#b",
            "/a\\b",
            "gradio_api",
            "/a//b",
            "/a%2f",
        ] {
            let e = check_prefix(bad).unwrap_err();
            assert!(!e.retryable(), "{bad:?}");
        }
        assert!(check_prefix(&format!("/{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn urls_keep_the_base_path_and_origin() {
        let b = base("http://127.0.0.1:7860");
        assert_eq!(
            space_url(&b, "/gradio_api", "queue/join").unwrap().as_str(),
            "http://127.0.0.1:7860/gradio_api/queue/join"
        );
        assert_eq!(
            space_url(&b, "", "config").unwrap().as_str(),
            "http://127.0.0.1:7860/config"
        );
        let mounted = base("https://host.example/spaces/x");
        assert_eq!(
            space_url(&mounted, "/gradio_api", "queue/data?session_hash=s")
                .unwrap()
                .as_str(),
            "https://host.example/spaces/x/gradio_api/queue/data?session_hash=s"
        );
        // A file path is the Space's to name, but cannot leave its origin.
        assert_eq!(
            space_url(&b, "", "file=/tmp/gradio/a b.glb")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:7860/file=/tmp/gradio/a%20b.glb"
        );
        for tail in ["file=//evil.example/x", "file=http://evil.example/x"] {
            let u = space_url(&b, "", tail).unwrap();
            assert!(same_origin(&b, &u), "{u}");
        }
        assert!(space_url(&b, "@evil.example", "config").is_err());
    }

    #[test]
    fn the_token_goes_only_to_https_hosts_on_the_list() {
        let hosts = vec!["*.hf.space".to_string(), "spaces.internal".to_string()];
        assert!(token_allowed(&base("https://owner-app.hf.space"), &hosts));
        assert!(token_allowed(&base("https://OWNER.HF.SPACE/x"), &hosts));
        assert!(token_allowed(&base("https://spaces.internal"), &hosts));
        for no in [
            "http://owner-app.hf.space",
            "https://hf.space",
            "https://evilhf.space",
            "https://owner.hf.space.evil.example",
            "https://127.0.0.1:7860",
            "https://sub.spaces.internal",
        ] {
            assert!(!token_allowed(&base(no), &hosts), "{no}");
        }
    }
}
