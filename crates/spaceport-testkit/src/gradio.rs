//! The Gradio apps under `tests/peers/` (mirrors of real Spaces' APIs), started from the
//! project's `.venv` on a free port and killed on drop.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::peer::{Peer, http_get_status};
use crate::{START_TIMEOUT, free_port, repo_root, venv_python};

/// A running Gradio app under `tests/peers/`, killed on drop.
pub struct MirrorSpace {
    peer: Peer,
    port: u16,
    url: String,
    temp: tempfile::TempDir,
}

impl std::fmt::Debug for MirrorSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorSpace")
            .field("url", &self.url)
            .field("pid", &self.peer.pid())
            .finish()
    }
}

impl MirrorSpace {
    /// Starts the facebook/vggt mirror (`tests/peers/vggt_mirror/app.py`).
    pub fn start() -> Result<MirrorSpace> {
        Self::start_with_env(&[])
    }

    /// Starts the vggt mirror with extra environment (`MIRROR_DELAY_S`, `MIRROR_INSTANT` …).
    pub fn start_with_env(env: &[(&str, &str)]) -> Result<MirrorSpace> {
        Self::start_app("tests/peers/vggt_mirror/app.py", env)
    }

    /// Starts any peer app (a path relative to the repository root) that takes `--port`.
    pub fn start_app(app: &str, env: &[(&str, &str)]) -> Result<MirrorSpace> {
        let python = venv_python()?;
        let root = repo_root();
        let script = root.join(app);
        if !script.is_file() {
            bail!("no peer app at {}", script.display());
        }
        let mut last_err = None;
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..3 {
            let temp = tempfile::Builder::new()
                .prefix("spaceport-mirror-")
                .tempdir()
                .context("creating the mirror's GRADIO_TEMP_DIR")?;
            let port = free_port();
            let mut cmd = Command::new(&python);
            cmd.arg(&script)
                .arg("--port")
                .arg(port.to_string())
                .current_dir(&root)
                .env("GRADIO_ANALYTICS_ENABLED", "False")
                .env("HF_HUB_OFFLINE", "1")
                .env("GRADIO_TEMP_DIR", temp.path())
                .env("PYTHONUNBUFFERED", "1");
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut mirror = MirrorSpace {
                peer: Peer::spawn(&mut cmd, &script)?,
                port,
                url: format!("http://127.0.0.1:{port}"),
                temp,
            };
            let ready =
                mirror
                    .peer
                    .wait_until("the mirror answering /config", START_TIMEOUT, || {
                        http_get_status(port, "/config").is_ok_and(|s| s == 200)
                    });
            match ready {
                Ok(()) => return Ok(mirror),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("the mirror did not start")))
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its GRADIO_TEMP_DIR (uploads, outputs and the Space's working folder live under it).
    pub fn temp_dir(&self) -> &Path {
        self.temp.path()
    }

    /// What the server printed so far (stdout and stderr), for failure messages.
    pub fn output(&self) -> String {
        self.peer.output()
    }
}
