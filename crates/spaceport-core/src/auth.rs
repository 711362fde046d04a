//! API keys: who is calling and what they may do. Keys are `sk_` and 64 hex digits (256 random
//! bits); configuration holds only their SHA-256 (a fast hash is enough for keys that random:
//! there is nothing to guess), each with a name, a tenant and scopes. Every key's hash is
//! compared with the presented one in constant time, all of them every time, so the answer's
//! timing says nothing about which keys exist. Shared by the server, the Lambda and the edge.

use serde::{Deserialize, Serialize};
use sha2::Digest;
use subtle::ConstantTimeEq;

/// The prefix of every API key.
pub const KEY_PREFIX: &str = "sk_";
/// The prefix of a stored key hash.
pub const HASH_PREFIX: &str = "sha256:";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Read runs, their events, artifacts and deliveries.
    #[serde(rename = "runs:read")]
    RunsRead,
    /// Create, start, cancel, retry and delete runs; redeliver webhooks.
    #[serde(rename = "runs:write")]
    RunsWrite,
    /// Everything, and the lists that span runs (the dead-letter list).
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::RunsRead, Scope::RunsWrite, Scope::Admin];

    /// Its name (`runs:read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::Admin => "admin",
        }
    }

    /// The scope named `s`.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s.trim())
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configured key: its hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    pub tenant: String,
    pub scopes: Vec<Scope>,
    /// The SHA-256 of the key.
    pub hash: [u8; 32],
    /// A revoked key is refused like an unknown one.
    pub revoked: bool,
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The key's name (for logs); `local` without keys.
    pub key: String,
    pub tenant: String,
    pub scopes: Vec<Scope>,
    /// Set for a run token: the one run it may read.
    pub run: Option<crate::RunId>,
}

impl Principal {
    /// The caller on a server without keys (loopback only): one local tenant, every scope.
    pub fn local() -> Principal {
        Principal {
            key: "local".into(),
            tenant: crate::LOCAL_TENANT.into(),
            scopes: Scope::ALL.to_vec(),
            run: None,
        }
    }

    /// Whether it may act with `scope` (`admin` may do everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// A key made of 32 random bytes (the caller's: core takes no randomness source, so it builds
/// for wasm without one).
pub fn format_key(random: [u8; 32]) -> String {
    format!("{KEY_PREFIX}{}", hex::encode(random))
}

/// The SHA-256 of `key`.
pub fn key_hash(key: &str) -> [u8; 32] {
    sha2::Sha256::digest(key.as_bytes()).into()
}

/// `sha256:<hex>`, as configuration stores a key.
pub fn hash_text(hash: &[u8; 32]) -> String {
    format!("{HASH_PREFIX}{}", hex::encode(hash))
}

/// Reads `sha256:<64 hex digits>`.
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex_part = text.trim().strip_prefix(HASH_PREFIX)?;
    let bytes = hex::decode(hex_part).ok()?;
    bytes.try_into().ok()
}

/// An API key as configuration holds it (`[[api_keys]]`, or JSON in `SPACEPORT_API_KEYS`): its
/// hash, never the key (`spaceport keys new` prints both once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Names the key in logs and errors.
    pub name: String,
    /// The tenant its runs belong to.
    pub tenant: String,
    /// `runs:read`, `runs:write`, `admin`.
    pub scopes: Vec<String>,
    /// `sha256:<64 hex digits>` of the key.
    pub hash: String,
    /// A revoked key is refused like an unknown one.
    #[serde(default)]
    pub revoked: bool,
}

/// The configured keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<ApiKey>,
}

impl KeyRing {
    pub fn new(keys: Vec<ApiKey>) -> KeyRing {
        KeyRing { keys }
    }

    /// The keys `entries` list, each checked: a name used once, a tenant, known scopes and a
    /// well-formed hash. The error names the entry at fault.
    pub fn from_entries(entries: &[KeyEntry]) -> Result<KeyRing, String> {
        let mut names = std::collections::BTreeSet::new();
        let mut keys = vec![];
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        for k in entries {
            if !plain(&k.name) || !names.insert(k.name.clone()) {
                return Err(format!(
                    "key name {:?} must be letters, digits, '-', '_' or '.', used once",
                    k.name
                ));
            }
            if !plain(&k.tenant) {
                return Err(format!(
                    "key {}: tenant {:?} must be letters, digits, '-', '_' or '.'",
                    k.name, k.tenant
                ));
            }
            let scopes = k
                .scopes
                .iter()
                .map(|s| {
                    Scope::parse(s).ok_or_else(|| {
                        format!(
                            "key {}: unknown scope {s:?} (runs:read, runs:write, admin)",
                            k.name
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if scopes.is_empty() {
                return Err(format!("key {} has no scope", k.name));
            }
            let hash = parse_hash(&k.hash).ok_or_else(|| {
                format!(
                    "key {}: hash must be sha256:<64 hex digits> (spaceport keys new prints it)",
                    k.name
                )
            })?;
            keys.push(ApiKey {
                name: k.name.clone(),
                tenant: k.tenant.clone(),
                scopes,
                hash,
                revoked: k.revoked,
            });
        }
        Ok(KeyRing::new(keys))
    }

    /// Whether no key is configured (a loopback server then runs as one local tenant).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The principal of `presented`, if it is a live key: compared with every key's hash in
    /// constant time, without stopping at a match.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let hash = key_hash(presented);
        let mut found: Option<&ApiKey> = None;
        for k in &self.keys {
            let same: bool = k.hash.ct_eq(&hash).into();
            if same {
                found = Some(k);
            }
        }
        found.filter(|k| !k.revoked).map(|k| Principal {
            key: k.name.clone(),
            tenant: k.tenant.clone(),
            scopes: k.scopes.clone(),
            run: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(vec![
            ApiKey {
                name: "ci".into(),
                tenant: "acme".into(),
                scopes: vec![Scope::RunsRead],
                hash: key_hash("sk_reader"),
                revoked: false,
            },
            ApiKey {
                name: "old".into(),
                tenant: "acme".into(),
                scopes: vec![Scope::Admin],
                hash: key_hash("sk_revoked"),
                revoked: true,
            },
        ])
    }

    #[test]
    fn only_live_keys_authenticate() {
        let r = ring();
        let p = r.authenticate("sk_reader").unwrap();
        assert_eq!((p.key.as_str(), p.tenant.as_str()), ("ci", "acme"));
        assert!(p.allows(Scope::RunsRead) && !p.allows(Scope::RunsWrite));
        assert_eq!(r.authenticate("sk_revoked"), None);
        assert_eq!(r.authenticate("sk_unknown"), None);
        assert_eq!(r.authenticate(""), None);
        assert!(Principal::local().allows(Scope::Admin));
    }

    #[test]
    fn hashes_and_scopes_read_back() {
        let h = key_hash("sk_x");
        assert_eq!(parse_hash(&hash_text(&h)), Some(h));
        assert_eq!(parse_hash("sha256:abc"), None);
        assert_eq!(parse_hash(&hex::encode(h)), None);
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(Scope::parse("runs:admin"), None);
        // `admin` implies the others.
        let admin = Principal {
            key: "a".into(),
            tenant: "t".into(),
            scopes: vec![Scope::Admin],
            run: None,
        };
        assert!(admin.allows(Scope::RunsWrite));
    }
}
