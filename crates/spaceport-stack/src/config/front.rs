//! The front door's settings: the host names the API answers to and the browser origins it
//! allows, checked when the configuration loads.

use std::net::SocketAddr;

use spaceport_server::{FrontDoor, LOOPBACK_HOSTS};

use super::{Config, ConfigError, env_var, err};

impl Config {
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
