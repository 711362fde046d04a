//! The Hugging Face Hub's view of a Space, `GET {hub}/api/spaces/{owner}/{name}/runtime`:
//! whether it runs, sleeps, builds or is broken, and the commit it runs. Asked only after a Space
//! failed to answer, so a healthy Space costs no Hub call. The Hub's base URL is configurable (a
//! local stand-in in tests); the token goes only to an `https` Hub.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::AUTHORIZATION;
use serde::Deserialize;
use spaceport_core::ports::SpaceRuntime;

use crate::client::Token;

/// The public Hub.
pub const DEFAULT_HUB_URL: &str = "https://huggingface.co";

/// The most of a runtime answer read (it is a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A Hub client.
#[derive(Debug, Clone)]
pub struct Hub {
    base: url::Url,
    token: Option<Token>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct RuntimeJson {
    stage: String,
    #[serde(default)]
    sha: Option<String>,
}

/// Whether `id` is a Space id (`owner/name`, the Hub's characters only), so it can be put in a
/// URL path as it is.
fn is_space_id(id: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 96
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !s.starts_with('.')
    };
    matches!(id.split_once('/'), Some((owner, name)) if ok(owner) && ok(name))
}

impl Hub {
    /// A client for the Hub at `base`, sending `token` when `base` is `https`.
    pub fn new(base: &str, token: Option<Token>, timeout: Duration) -> Result<Hub, String> {
        let base = url::Url::parse(base).map_err(|e| format!("hub URL {base:?}: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("building the Hub client: {e}"))?;
        let token = token.filter(|_| base.scheme() == "https");
        Ok(Hub { base, token, http })
    }

    /// The Space's runtime, or why it could not be read.
    pub async fn runtime(&self, space: &str) -> Result<SpaceRuntime, String> {
        if !is_space_id(space) {
            return Err(format!("{space:?} is not a Space id"));
        }
        let url = self
            .base
            .join(&format!("api/spaces/{space}/runtime"))
            .map_err(|e| e.to_string())?;
        let mut req = self.http.get(url);
        if let Some(h) = self.token.as_ref().and_then(Token::header) {
            req = req.header(AUTHORIZATION, h);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("asking the Hub: {e}"))?;
        let status = resp.status();
        let mut body = Vec::new();
        let mut chunks = resp.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| format!("reading the Hub's answer: {e}"))?;
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!("the Hub's answer is over {MAX_ANSWER_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(format!("the Hub answered HTTP {status}"));
        }
        let json: RuntimeJson = serde_json::from_slice(&body)
            .map_err(|e| format!("the Hub's runtime answer does not read: {e}"))?;
        Ok(SpaceRuntime {
            stage: json.stage,
            sha: json.sha,
        })
    }
}

/// Each Space's commit as the Hub last said (or that it could not say), kept for the config
/// cache's time so a run costs no Hub call when the Space was asked about lately.
#[derive(Debug, Default)]
pub struct Commits(std::sync::Mutex<std::collections::HashMap<String, (Option<String>, Instant)>>);

impl Commits {
    /// The commit of `space`, asking with `ask` when none is kept or it is stale.
    pub async fn get<F, Fut>(&self, space: &str, ask: F) -> Option<String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<SpaceRuntime>>,
    {
        let kept = {
            let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.get(space)
                .filter(|(_, at)| at.elapsed() < crate::config_cache::CONFIG_TTL)
                .map(|(sha, _)| sha.clone())
        };
        if let Some(sha) = kept {
            return sha;
        }
        let sha = ask().await.and_then(|r| r.sha);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(space.to_string(), (sha.clone(), Instant::now()));
        sha
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_space_ids_make_a_path() {
        assert!(is_space_id("facebook/vggt"));
        assert!(is_space_id("Kwai-Kolors/Kolors-Virtual-Try-On"));
        for bad in [
            "vggt", "a/b/c", "../x", "a/..", "a/b?x=1", "a/b#f", "/b", "a/",
        ] {
            assert!(!is_space_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_token_goes_only_to_an_https_hub() {
        let t = || Some(Token::new("hf_x"));
        let plain = Hub::new("http://127.0.0.1:9/", t(), Duration::from_secs(1)).unwrap();
        assert!(plain.token.is_none());
        let tls = Hub::new(DEFAULT_HUB_URL, t(), Duration::from_secs(1)).unwrap();
        assert!(tls.token.is_some());
    }
}
