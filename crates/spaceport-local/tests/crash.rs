//! Kill -9 in the middle of writing: a child process (this test binary, re-run in child mode)
//! inserts runs, sends messages and writes blobs, printing each one once its call returned; the
//! parent SIGKILLs it mid-stream, reopens the data dir and finds everything acknowledged, and no
//! half-written blob.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use spaceport_core::RunId;
use spaceport_core::ports::{BlobStore, Queue, QueueName, RunStore};
use spaceport_local::LocalStack;

const CHILD_ENV: &str = "SPACEPORT_CRASH_CHILD_DIR";
const ACKED_BEFORE_KILL: usize = 40;

/// Child mode: writes forever; the parent kills it. Does nothing when run as a plain test.
#[tokio::test]
async fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let stack = LocalStack::open(&dir, "http://127.0.0.1:1").unwrap();
    for i in 0u64.. {
        let run = spaceport_contract::sample_run("crash", Utc::now());
        stack.store.insert(&run, None).await.unwrap();
        println!("run {}", run.id);
        let msg = stack
            .queue
            .send(QueueName::SubmitSpace, &format!("m{i}"), Duration::ZERO)
            .await
            .unwrap();
        println!("msg {msg}");
        // Every other blob big enough that the kill often lands inside a file write; the rest
        // small enough to be rows of the database file.
        let chunk = Bytes::from(vec![(i % 251) as u8; 64 * 1024]);
        let chunks = if i % 2 == 0 { 8 } else { 1 };
        let body = futures::stream::iter((0..chunks).map(move |_| Ok(chunk.clone()))).boxed();
        let key = format!("runs/{}/inputs/images/0", run.id);
        stack.blobs.put(&key, "image/png", body).await.unwrap();
        println!("blob {key}");
    }
}

#[test]
fn acknowledged_writes_survive_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < ACKED_BEFORE_KILL {
        let line = lines.next().expect("the child stopped writing").unwrap();
        if let Some((kind, what)) = line.split_once(' ')
            && matches!(kind, "run" | "msg" | "blob")
        {
            acked.push((kind.to_owned(), what.to_owned()));
        }
    }
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let stack = LocalStack::open(dir.path(), "http://127.0.0.1:1").unwrap();
        let ok: String = {
            let db = rusqlite::Connection::open(stack.db.path()).unwrap();
            db.query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(ok, "ok");
        let mut messages = std::collections::HashSet::new();
        loop {
            let got = stack
                .queue
                .receive(QueueName::SubmitSpace, 100, Duration::from_secs(60))
                .await
                .unwrap();
            if got.is_empty() {
                break;
            }
            messages.extend(got.into_iter().map(|d| d.message_id));
        }
        for (kind, what) in &acked {
            match kind.as_str() {
                "run" => assert!(
                    stack
                        .store
                        .get(&RunId::parse(what).unwrap())
                        .await
                        .unwrap()
                        .is_some(),
                    "acknowledged run {what} was lost"
                ),
                "msg" => assert!(
                    messages.contains(what),
                    "acknowledged message {what} was lost"
                ),
                _ => assert!(
                    stack.blobs.head(what).await.unwrap().is_some(),
                    "acknowledged blob {what} was lost"
                ),
            }
        }
        // Every visible object, acknowledged or not, is whole: its bytes match its header.
        let mut checked = 0;
        // Rows of the database file and files alike (`keys` lists both).
        for key in stack.blobs.keys().await.unwrap() {
            let meta = stack.blobs.head(&key).await.unwrap().unwrap();
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut body = stack.blobs.get(&key).await.unwrap();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.unwrap();
                size += chunk.len() as u64;
                hasher.update(&chunk);
            }
            assert_eq!(size, meta.size, "{key} is cut short");
            assert_eq!(
                hex::encode(hasher.finalize()),
                meta.sha256,
                "{key} is corrupt"
            );
            checked += 1;
        }
        assert!(checked >= ACKED_BEFORE_KILL / 3 - 1, "only {checked} blobs");
    });
}
