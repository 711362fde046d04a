//! A started peer process: its output collected line by line for failure messages, readiness
//! waited for with a bound, and the process killed (SIGKILL) when its guard drops. Every peer of
//! this crate (Gradio mirrors, moto, SeaweedFS) is one of these.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The HTTP status of `GET path` on 127.0.0.1:port (a tiny HTTP/1.0 client: no runtime needed).
pub(crate) fn http_get_status(port: u16, path: &str) -> std::io::Result<u16> {
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

/// The body of `GET path` on 127.0.0.1:port (HTTP/1.0, read to the end).
pub(crate) fn http_get_body(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    match text.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.to_owned()),
        None => Err(std::io::Error::other("an answer without a body")),
    }
}

/// The HTTP status of an empty `POST path` on 127.0.0.1:port (a peer's control endpoint).
pub(crate) fn http_post_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:.40}")))
}

/// Starts a small HTTP peer of ours (`app`, a Python script under the repository, run by the
/// test venv with `--port`), waiting until its `/_ready` answers 200; returns it and its port.
/// A port found free can be taken before the peer binds it: three ports are tried.
pub(crate) fn start_venv_peer(app: &str, env: &[(&str, &str)], what: &str) -> Result<(Peer, u16)> {
    let python = crate::venv_python()?;
    let script = crate::repo_root().join(app);
    let mut last_err = None;
    for _ in 0..3 {
        let port = crate::free_port();
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .env("PYTHONUNBUFFERED", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut peer = Peer::spawn(&mut cmd, &script)?;
        match peer.wait_until(what, crate::START_TIMEOUT, || {
            http_get_status(port, "/_ready").is_ok_and(|s| s == 200)
        }) {
            Ok(()) => return Ok((peer, port)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("{what}: did not start")))
}

/// A started peer process: its stdout and stderr lines are collected, and it is killed
/// (SIGKILL) when dropped.
pub(crate) struct Peer {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Peer {
    /// Spawns `cmd` with piped output; `what` names it in errors.
    pub(crate) fn spawn(cmd: &mut Command, what: &Path) -> Result<Peer> {
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
    pub(crate) fn wait_until(
        &mut self,
        what: &str,
        limit: Duration,
        ready: impl Fn() -> bool,
    ) -> Result<()> {
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

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}
