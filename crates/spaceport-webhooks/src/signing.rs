//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, one per configured secret, space-separated, so receivers holding
//! either the old or the new secret verify during a rotation. Secrets are `whsec_` + base64 of
//! the key bytes, as the reference libraries read them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing secret's key bytes. Its Debug never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// A secret that is not `whsec_` + base64 of at least 24 bytes.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret must be whsec_ followed by base64 of at least 24 random bytes ({0})")]
pub struct BadSecret(&'static str);

impl SigningSecret {
    /// Parses `whsec_<base64>` (the value itself is never part of the error).
    pub fn parse(text: &str) -> Result<SigningSecret, BadSecret> {
        let b64 = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(BadSecret("it does not start with whsec_"))?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| BadSecret("the rest is not base64"))?;
        if key.len() < 24 {
            return Err(BadSecret("the key is shorter than 24 bytes"));
        }
        Ok(SigningSecret(key))
    }

    /// A secret over `key` (tests, and `spaceport webhooks new-secret`).
    pub fn from_key(key: Vec<u8>) -> SigningSecret {
        SigningSecret(key)
    }

    /// The secret as configuration spells it.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header value of message `id` sent at `timestamp` (Unix seconds)
/// with `body`: one `v1,` signature per secret, in order (the current one first).
pub fn sign(secrets: &[SigningSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.signature(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_and_never_show() {
        let s = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(s.to_whsec(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(!format!("{s:?}").contains("MfKQ"));
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_c2hvcnQ=",
        ] {
            let e = SigningSecret::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("MfKQ") && !e.contains("!!!"), "{e}");
        }
    }

    #[test]
    fn the_specs_example_signs_as_published() {
        // The example of the Standard Webhooks specification.
        let s = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&[s], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_secret_signs_during_a_rotation() {
        let old = SigningSecret::from_key(vec![1; 32]);
        let new = SigningSecret::from_key(vec![2; 32]);
        let header = sign(&[new.clone(), old.clone()], "msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&[new], "msg_1", 1, b"{}"));
        assert_eq!(parts[1], sign(&[old], "msg_1", 1, b"{}"));
    }
}
