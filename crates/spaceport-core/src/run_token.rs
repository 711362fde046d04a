//! Run tokens: a short-lived credential good for one run only — its status, events and
//! artifacts — so a browser can follow the run it started without holding an API key.
//! `rt_<payload>.<signature>`: the payload names the run, its tenant and the expiry (base64url
//! JSON); the signature is HMAC-SHA256 of the payload under the server's secret. Stateless, so
//! the server, the Lambda and the edge verify the same token with the same secret and no store.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::RunId;

/// The prefix of every run token.
pub const RUN_TOKEN_PREFIX: &str = "rt_";

/// What a run token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunToken {
    pub run: RunId,
    pub tenant: String,
    /// Unix seconds after which it is refused.
    pub exp: i64,
}

/// Why a presented run token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunTokenError {
    #[error("the run token is malformed")]
    Malformed,
    #[error("the run token's signature does not verify")]
    BadSignature,
    #[error("the run token expired")]
    Expired,
}

fn mac(secret: &[u8], payload: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    m.update(payload.as_bytes());
    m
}

impl RunToken {
    /// The token, signed with `secret`.
    pub fn mint(&self, secret: &[u8]) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let sig = URL_SAFE_NO_PAD.encode(mac(secret, &payload).finalize().into_bytes());
        format!("{RUN_TOKEN_PREFIX}{payload}.{sig}")
    }

    /// The grant of `token` if `secret` signed it and it has not expired at `now_s`. The
    /// signature is checked (in constant time) before the payload is read.
    pub fn verify(secret: &[u8], token: &str, now_s: i64) -> Result<RunToken, RunTokenError> {
        let rest = token
            .strip_prefix(RUN_TOKEN_PREFIX)
            .ok_or(RunTokenError::Malformed)?;
        let (payload, sig) = rest.split_once('.').ok_or(RunTokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| RunTokenError::Malformed)?;
        mac(secret, payload)
            .verify_slice(&sig)
            .map_err(|_| RunTokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| RunTokenError::Malformed)?;
        let grant: RunToken =
            serde_json::from_slice(&json).map_err(|_| RunTokenError::Malformed)?;
        if now_s >= grant.exp {
            return Err(RunTokenError::Expired);
        }
        Ok(grant)
    }

    /// Whether the grant covers `method path`: reading its run, its events and its artifacts.
    pub fn allows(&self, method: &str, path: &str) -> bool {
        if method != "GET" && method != "HEAD" {
            return false;
        }
        let Some(rest) = path
            .strip_prefix("/v1/runs/")
            .and_then(|p| p.strip_prefix(self.run.as_str()))
        else {
            return false;
        };
        rest.is_empty()
            || rest == "/events"
            || rest
                .strip_prefix("/artifacts/")
                .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> RunToken {
        RunToken {
            run: RunId::new(1_700_000_000_000, 7),
            tenant: "acme".into(),
            exp: 1_000,
        }
    }

    #[test]
    fn a_token_verifies_until_it_expires_and_only_under_its_secret() {
        let t = grant().mint(b"secret");
        assert!(t.starts_with("rt_"));
        assert_eq!(RunToken::verify(b"secret", &t, 999), Ok(grant()));
        assert_eq!(
            RunToken::verify(b"secret", &t, 1_000),
            Err(RunTokenError::Expired)
        );
        assert_eq!(
            RunToken::verify(b"other", &t, 0),
            Err(RunTokenError::BadSignature)
        );
        // A payload changed to another run no longer matches its signature.
        let other = RunToken {
            run: RunId::new(1_700_000_000_000, 8),
            ..grant()
        }
        .mint(b"secret");
        let forged = format!(
            "{}.{}",
            other.split_once('.').unwrap().0,
            t.split_once('.').unwrap().1
        );
        assert_eq!(
            RunToken::verify(b"secret", &forged, 0),
            Err(RunTokenError::BadSignature)
        );
        for junk in ["", "rt_", "rt_abc", "sk_x.y", "rt_a.%%"] {
            assert!(RunToken::verify(b"secret", junk, 0).is_err(), "{junk}");
        }
    }

    #[test]
    fn a_grant_reads_its_run_only() {
        let g = grant();
        let run = format!("/v1/runs/{}", g.run);
        assert!(g.allows("GET", &run));
        assert!(g.allows("GET", &format!("{run}/events")));
        assert!(g.allows("GET", &format!("{run}/artifacts/glb")));
        assert!(!g.allows("POST", &format!("{run}/cancel")));
        assert!(!g.allows("DELETE", &run));
        assert!(!g.allows("GET", &format!("{run}/deliveries")));
        assert!(!g.allows("GET", &format!("{run}0")));
        assert!(!g.allows("GET", "/v1/runs"));
        assert!(!g.allows("GET", "/v1/events"));
        let other = RunId::new(1_700_000_000_000, 8);
        assert!(!g.allows("GET", &format!("/v1/runs/{other}")));
    }
}
