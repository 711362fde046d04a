//! The Gradio apps under `tests/peers/` (mirrors of real Spaces' APIs), started under one of
//! the Gradio versions the test setup installs (the project's `.venv` for 6.x, a
//! `.venv-gradio-<version>` each for the older protocols) on a free port, and killed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::peer::{Peer, http_get_status};
use crate::{START_TIMEOUT, free_port, repo_root, venv_python};

/// A Gradio release the test peers run under, one per wire protocol (gradio-protocol-legacy.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gradio {
    /// 3.50.2: `ws`, no `protocol` in `/config`.
    V3_50,
    /// 4.8.0: `sse`, one stream per job.
    V4_8,
    /// 4.15.0: `sse_v1`.
    V4_15,
    /// 4.17.0: `sse_v2`.
    V4_17,
    /// 4.21.0: `sse_v2.1`.
    V4_21,
    /// 4.44.1: `sse_v3` without the `/gradio_api` prefix.
    V4_44,
    /// 6.31.0 (the project's `.venv`): `sse_v3` under `/gradio_api`.
    V6,
}

impl Gradio {
    /// Every version, oldest first.
    pub const ALL: [Gradio; 7] = [
        Gradio::V3_50,
        Gradio::V4_8,
        Gradio::V4_15,
        Gradio::V4_17,
        Gradio::V4_21,
        Gradio::V4_44,
        Gradio::V6,
    ];

    /// The release, as `/config`'s `version` says it.
    pub fn version(self) -> &'static str {
        match self {
            Gradio::V3_50 => "3.50.2",
            Gradio::V4_8 => "4.8.0",
            Gradio::V4_15 => "4.15.0",
            Gradio::V4_17 => "4.17.0",
            Gradio::V4_21 => "4.21.0",
            Gradio::V4_44 => "4.44.1",
            Gradio::V6 => "6.31.0",
        }
    }

    /// The protocol `/config` names (`ws` when it names none).
    pub fn protocol(self) -> &'static str {
        match self {
            Gradio::V3_50 => "ws",
            Gradio::V4_8 => "sse",
            Gradio::V4_15 => "sse_v1",
            Gradio::V4_17 => "sse_v2",
            Gradio::V4_21 => "sse_v2.1",
            Gradio::V4_44 | Gradio::V6 => "sse_v3",
        }
    }

    /// The Python of the venv this version is installed in, or how to make it.
    pub fn python(self) -> Result<PathBuf> {
        if self == Gradio::V6 {
            return venv_python();
        }
        let python = repo_root()
            .join(format!(".venv-gradio-{}", self.version()))
            .join("bin/python");
        if !python.is_file() {
            bail!(
                "{} is missing: run `bash scripts/test-env.sh` to install the test peers",
                python.display()
            );
        }
        Ok(python)
    }
}

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
        Self::start_under(Gradio::V6, app, &[], env)
    }

    /// Starts a peer app under `gradio`, with extra arguments (`--layout github`).
    pub fn start_under(
        gradio: Gradio,
        app: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<MirrorSpace> {
        let python = gradio.python()?;
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
                .args(args)
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

/// A pipeline over the protocol-matrix app (tests/peers/matrix/app.py) whose one layout is
/// `calls` (TOML, the inside of `calls = [...]`), with an `image` slot and a `doc` slot and one
/// artifact from the last call's first output.
pub fn matrix_pipeline(calls: &str) -> spaceport_core::pipeline::Pipeline {
    let last = calls.matches("inputs =").count().saturating_sub(1);
    let text = format!(
        r#"
name = "matrix"
title = "protocol matrix"
[backend]
kind = "space"
space = "test/matrix"
calls = [{calls}]
[inputs.image]
min = 0
max = 1
content_types = ["image/png"]
max_bytes = 1000000
[inputs.doc]
min = 0
max = 1
content_types = ["text/plain"]
max_bytes = 1000000
[outputs.first]
content_type = "application/octet-stream"
filename = "first.bin"
from = {{ call = {last}, index = 0 }}
"#
    );
    spaceport_core::pipeline::Pipeline::from_toml("matrix.toml", &text)
        .expect("a valid matrix pipeline")
}
