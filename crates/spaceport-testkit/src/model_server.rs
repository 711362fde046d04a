//! The model server peer (`tests/peers/model_server/app.py`): one HTTP server speaking Ollama's
//! chat API and the OpenAI-compatible chat completions API as documented, answering from the
//! images and prompt it was sent, recording every request, and failing on demand; started from
//! `.venv` and killed on drop.

use anyhow::{Context, Result, bail};

use crate::peer::{Peer, http_get_body, http_post_status, start_venv_peer};

/// A running model server mirror.
pub struct ModelServerMirror {
    peer: Peer,
    port: u16,
    url: String,
}

impl std::fmt::Debug for ModelServerMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelServerMirror")
            .field("url", &self.url)
            .finish()
    }
}

impl ModelServerMirror {
    /// Starts the mirror with extra environment (`MIRROR_TOKEN_DELAY_S`, `MIRROR_MODELS`).
    pub fn start(env: &[(&str, &str)]) -> Result<ModelServerMirror> {
        let (peer, port) = start_venv_peer(
            "tests/peers/model_server/app.py",
            env,
            "the model server answering",
        )?;
        Ok(ModelServerMirror {
            peer,
            port,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every chat request received so far, in arrival order (`protocol`, `model`, `prompt`,
    /// `system`, `images` as sha256 hex, `options`, `format`, `at`).
    pub fn requests(&self) -> Result<Vec<serde_json::Value>> {
        let out = http_get_body(self.port, "/_requests")?;
        match serde_json::from_str(&out).context("the mirror's requests")? {
            serde_json::Value::Array(a) => Ok(a),
            other => bail!("requests are not a list: {other}"),
        }
    }

    /// Makes the next `n` chat requests fail: `mode` `status` (answered `status`), `cut` (the
    /// stream stops mid-answer) or `stall` (never answered).
    pub fn fail(&self, n: u32, status: u16, mode: &str) -> Result<()> {
        let code = http_post_status(
            self.port,
            &format!("/_fail?n={n}&status={status}&mode={mode}"),
        )?;
        if code != 200 {
            bail!("the mirror answered {code} to /_fail");
        }
        Ok(())
    }

    /// What the server printed so far.
    pub fn output(&self) -> String {
        self.peer.output()
    }
}
