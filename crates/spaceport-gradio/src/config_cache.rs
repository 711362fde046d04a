//! `/config` kept per Space for a while, so a submit does not read it again every time (one
//! round trip, and on a busy Space a slow one). A submit that fails with a config older than its
//! own reading drops it, so the next one reads the Space afresh: a Space that was redeployed
//! with other endpoints is seen at once, and a layout that no longer fits is tried once more
//! against a fresh reading before the submit fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spaceport_core::Error;

use crate::client::{Cookies, GradioClient};
use crate::config::SpaceConfig;

/// How long a reading is used before it is read again regardless.
pub const CONFIG_TTL: Duration = Duration::from_secs(300);

/// The readings, by the Space's base URL.
#[derive(Debug)]
pub struct ConfigCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Arc<SpaceConfig>, Instant)>>,
}

impl Default for ConfigCache {
    fn default() -> Self {
        ConfigCache::new(CONFIG_TTL)
    }
}

/// A reading, and whether it was made for this caller (a fresh one needs no second look).
pub struct Reading {
    pub config: Arc<SpaceConfig>,
    pub fresh: bool,
}

impl ConfigCache {
    /// A cache whose readings last `ttl`.
    pub fn new(ttl: Duration) -> ConfigCache {
        ConfigCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<SpaceConfig>, Instant)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Space's config: a recent reading, else a new one (sending the job's cookies).
    pub async fn get(&self, client: &GradioClient, cookies: &Cookies) -> Result<Reading, Error> {
        if let Some((config, at)) = self.lock().get(client.base())
            && at.elapsed() < self.ttl
        {
            return Ok(Reading {
                config: config.clone(),
                fresh: false,
            });
        }
        self.read(client, cookies).await
    }

    /// Reads the Space's config now and keeps it.
    pub async fn read(&self, client: &GradioClient, cookies: &Cookies) -> Result<Reading, Error> {
        let config = Arc::new(client.config(cookies).await?);
        self.lock()
            .insert(client.base().to_string(), (config.clone(), Instant::now()));
        Ok(Reading {
            config,
            fresh: true,
        })
    }

    /// Drops the reading of the Space at `base`.
    pub fn forget(&self, base: &str) {
        self.lock().remove(base);
    }
}
