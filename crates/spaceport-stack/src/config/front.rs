//! The front door's settings: the API keys, the host names the API answers to and the browser
//! origins it allows, checked when the configuration loads.

use std::net::SocketAddr;
use std::time::Duration;

use spaceport_core::auth::{KeyRing, Scope};
use spaceport_core::limits::default_rates;
use spaceport_server::{
    DEFAULT_BODY_BYTES, FrontDoor, Gate, LOOPBACK_HOSTS, RateLimiter, RunTokens, UPLOAD_IDLE,
};

use super::{Config, ConfigError, env_var, err};

/// An API key as configuration holds it (core's, shared with the edge).
pub use spaceport_core::auth::KeyEntry as ApiKeyConfig;

impl Config {
    /// The API keys `api_keys` lists, each checked: a name used once, a tenant, known scopes
    /// and a well-formed hash.
    pub fn key_ring(&self) -> Result<KeyRing, ConfigError> {
        KeyRing::from_entries(&self.api_keys)
            .map_err(|e| err(format!("{}: {e}", env_var("api_keys"))))
    }

    /// `self`, if it has API keys: what an API behind a gateway (the accept-upload Lambda)
    /// needs, since no loopback address stands in for them there.
    pub fn require_api_keys(self) -> Result<Config, ConfigError> {
        if self.api_keys.is_empty() {
            return Err(err(format!(
                "{} is empty: an API served to the network needs keys (spaceport keys new; the template's ApiKeys parameter)",
                env_var("api_keys")
            )));
        }
        Ok(self)
    }

    /// Who may call the API and how much: the keys, each key's rates per scope and the most
    /// bytes a request body may have; checked when the configuration loads.
    pub fn gate(&self) -> Result<Gate, ConfigError> {
        let var = env_var("rate_limits");
        let mut rates = default_rates();
        for (scope, rate) in &self.rate_limits {
            let s = Scope::parse(scope).ok_or_else(|| {
                err(format!(
                    "{var}: unknown scope {scope:?} (runs:read, runs:write, admin)"
                ))
            })?;
            if !rate.per_second.is_finite() || rate.per_second < 0.0 {
                return Err(err(format!(
                    "{var}: {scope}: per_second must be a number of requests, 0 or more"
                )));
            }
            rates.insert(s, *rate);
        }
        let body_bytes = match self.max_body_bytes {
            None => DEFAULT_BODY_BYTES,
            Some(n) if (1024..=1 << 30).contains(&n) => n as usize,
            Some(n) => {
                return Err(err(format!(
                    "{}: {n} must be between 1024 and 1073741824 bytes",
                    env_var("max_body_bytes")
                )));
            }
        };
        let upload_idle = match self.upload_idle_s {
            None => UPLOAD_IDLE,
            Some(s) if (1..=3600).contains(&s) => Duration::from_secs(s),
            Some(s) => {
                return Err(err(format!(
                    "{}: {s} must be between 1 and 3600 seconds",
                    env_var("upload_idle_s")
                )));
            }
        };
        let ttl = match self.run_token_ttl_s {
            None => 900,
            Some(s) if (10..=86_400).contains(&s) => s,
            Some(s) => {
                return Err(err(format!(
                    "{}: {s} must be between 10 and 86400 seconds",
                    env_var("run_token_ttl_s")
                )));
            }
        };
        let secret = match &self.run_token_secret {
            // An empty value (the template's default) is none.
            Some(s) if s.expose().is_empty() => None,
            Some(s) if s.expose().len() < 32 => {
                return Err(err(format!(
                    "{}: use at least 32 characters (openssl rand -base64 32)",
                    env_var("run_token_secret")
                )));
            }
            Some(s) => Some(s.expose().as_bytes().to_vec()),
            None => None,
        };
        Ok(Gate {
            keys: self.key_ring()?,
            rates: RateLimiter::new(rates),
            body_bytes,
            upload_idle,
            run_tokens: secret.map(|secret| RunTokens {
                secret,
                ttl: Duration::from_secs(ttl),
            }),
            edge_secret: match &self.edge_secret {
                Some(s) if s.expose().is_empty() => None,
                Some(s) if s.expose().len() < 32 => {
                    return Err(err(format!(
                        "{}: use at least 32 characters (openssl rand -base64 32)",
                        env_var("edge_secret")
                    )));
                }
                Some(s) => Some(s.expose().as_bytes().to_vec()),
                None => None,
            },
        })
    }

    /// What the API lets in when serving on `bound` (`None`: behind a gateway, as a Lambda).
    /// Host names are checked where `public_hosts` names some (loopback names added) or where
    /// the server is bound to a loopback address; otherwise a gateway in front routes by host.
    pub fn front_door(&self, bound: Option<SocketAddr>) -> Result<FrontDoor, ConfigError> {
        let var = env_var("public_hosts");
        let mut hosts = vec![];
        for h in &self.public_hosts {
            let name = h.trim().trim_end_matches('.').to_ascii_lowercase();
            let plain = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
            if !plain {
                return Err(err(format!(
                    "{var}: {h:?} is not a host name (no scheme, port or path: api.example.com)"
                )));
            }
            hosts.push(name);
        }
        let loopback = bound.is_some_and(|a| a.ip().is_loopback());
        let hosts = if hosts.is_empty() && !loopback {
            None
        } else {
            hosts.extend(LOOPBACK_HOSTS.map(str::to_owned));
            Some(hosts)
        };
        let var = env_var("cors_origins");
        for o in &self.cors_origins {
            let ok = url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && !o.ends_with('/')
                    && u.query().is_none()
            });
            if !ok {
                return Err(err(format!(
                    "{var}: {o:?} is not an origin (scheme://host[:port], as a browser sends it: https://app.example.com)"
                )));
            }
        }
        Ok(FrontDoor {
            hosts,
            cors_origins: self.cors_origins.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        let good = ApiKeyConfig {
            name: "ci".into(),
            tenant: "acme".into(),
            scopes: vec!["runs:read".into()],
            hash: spaceport_core::auth::hash_text(&spaceport_core::auth::key_hash("sk_x")),
            revoked: false,
        };
        let with = |k: Vec<ApiKeyConfig>| Config {
            api_keys: k,
            ..Config::default()
        };
        let ring = with(vec![good.clone()]).key_ring().unwrap();
        assert_eq!(ring.authenticate("sk_x").unwrap().tenant, "acme");
        for bad in [
            ApiKeyConfig {
                scopes: vec!["runs:all".into()],
                ..good.clone()
            },
            ApiKeyConfig {
                scopes: vec![],
                ..good.clone()
            },
            ApiKeyConfig {
                hash: "sk_x".into(),
                ..good.clone()
            },
            ApiKeyConfig {
                tenant: "".into(),
                ..good.clone()
            },
        ] {
            let e = with(vec![bad]).key_ring().unwrap_err().to_string();
            assert!(e.contains("SPACEPORT_API_KEYS") && e.contains("ci"), "{e}");
        }
        let e = with(vec![good.clone(), good]).key_ring().unwrap_err();
        assert!(e.to_string().contains("used once"), "{e}");
    }

    fn cfg(hosts: &[&str], origins: &[&str]) -> Config {
        Config {
            public_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            cors_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
    }

    #[test]
    fn hosts_are_checked_on_loopback_or_where_named() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let f = cfg(&[], &[]).front_door(Some(local)).unwrap();
        assert_eq!(f.hosts.unwrap(), LOOPBACK_HOSTS);
        assert_eq!(cfg(&[], &[]).front_door(Some(any)).unwrap().hosts, None);
        assert_eq!(cfg(&[], &[]).front_door(None).unwrap().hosts, None);
        let f = cfg(&["API.example.com"], &[])
            .front_door(Some(any))
            .unwrap();
        assert_eq!(f.hosts.unwrap()[0], "api.example.com");
        for bad in ["https://api.example.com", "api.example.com/x", ""] {
            let e = cfg(&[bad], &[]).front_door(None).unwrap_err().to_string();
            assert!(e.contains("SPACEPORT_PUBLIC_HOSTS"), "{e}");
        }
    }

    #[test]
    fn origins_are_origins() {
        assert!(
            cfg(&[], &["https://app.example.com", "http://localhost:3000"])
                .front_door(None)
                .is_ok()
        );
        for bad in [
            "*",
            "https://app.example.com/",
            "app.example.com",
            "https://a.example/x",
        ] {
            let e = cfg(&[], &[bad]).front_door(None).unwrap_err().to_string();
            assert!(e.contains("SPACEPORT_CORS_ORIGINS"), "{bad}: {e}");
        }
    }
}
