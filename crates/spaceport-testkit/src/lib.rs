//! Real peers for integration tests: the Gradio apps under `tests/peers/` started from the
//! project's `.venv` on a free port, and the Khronos glTF validator. Every wait is bounded and
//! every process started here is killed when its guard drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a mirror may take until `/config` answers.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (the folder holding `Cargo.lock`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("Cargo.lock").is_file() && p.join("crates").is_dir())
        .unwrap_or(here)
        .to_path_buf()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// The Python of the project's test venv, or an error saying how to make it.
pub fn venv_python() -> Result<PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    if !python.is_file() {
        bail!(
            "{} is missing: run `bash scripts/test-env.sh` to install the test peers",
            python.display()
        );
    }
    Ok(python)
}

/// A running Gradio app under `tests/peers/`, killed on drop.
pub struct MirrorSpace {
    child: Child,
    port: u16,
    url: String,
    temp: tempfile::TempDir,
    output: Arc<Mutex<String>>,
}

impl std::fmt::Debug for MirrorSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorSpace")
            .field("url", &self.url)
            .field("pid", &self.child.id())
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
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd
                .spawn()
                .with_context(|| format!("starting {}", script.display()))?;
            let output = Arc::new(Mutex::new(String::new()));
            for pipe in [
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
            ]
            .into_iter()
            .flatten()
            {
                let sink = output.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        let mut out = sink.lock().unwrap_or_else(|e| e.into_inner());
                        out.push_str(&line);
                        out.push('\n');
                    }
                });
            }
            let mirror = MirrorSpace {
                child,
                port,
                url: format!("http://127.0.0.1:{port}"),
                temp,
                output,
            };
            let mut mirror = mirror;
            match mirror.wait_ready(START_TIMEOUT) {
                Ok(()) => return Ok(mirror),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("the mirror did not start")))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the mirror exited ({status}) before answering /config:\n{}",
                    self.output()
                );
            }
            if http_get_status(self.port, "/config").is_ok_and(|s| s == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "the mirror did not answer /config within {limit:?}:\n{}",
            self.output()
        )
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
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MirrorSpace {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The HTTP status of `GET path` on 127.0.0.1:port (a tiny HTTP/1.0 client: no runtime needed).
fn http_get_status(port: u16, path: &str) -> std::io::Result<u16> {
    let addr = ("127.0.0.1", port);
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 16];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))
}

/// Validates a GLB/glTF file with the Khronos glTF validator; returns its JSON report (check
/// `report["issues"]["numErrors"]`). Fails only when the validator cannot run or report.
pub fn gltf_validate(path: &Path) -> Result<serde_json::Value> {
    let root = repo_root();
    if !root.join("tests/node/node_modules/gltf-validator").is_dir() {
        bail!("the glTF validator is missing: run `bash scripts/test-env.sh`");
    }
    let out = Command::new("node")
        .arg(root.join("tests/node/validate-gltf.mjs"))
        .arg(path)
        .current_dir(&root)
        .output()
        .context("running node tests/node/validate-gltf.mjs")?;
    let code = out.status.code();
    if !matches!(code, Some(0) | Some(1)) {
        bail!(
            "the glTF validator failed ({:?}): {}",
            code,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing the glTF validator's report")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_holds_the_workspace() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("crates/spaceport-core").is_dir());
    }

    #[test]
    fn free_port_can_be_bound() {
        let port = free_port();
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
