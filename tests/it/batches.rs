//! Batches: twenty `vggt` runs in one request against a mirror that runs four jobs at once, the
//! first three slow, so results stream out of submission order as each run ends; a bad item
//! refused by position with nothing stored; the same Idempotency-Key giving the same batch; and
//! `spaceport run --batch DIR` writing each result as it arrives.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::common::*;

fn item(name: &str, bytes: &[u8]) -> Value {
    json!({"inputs": {"images": [{"filename": name, "content_type": "image/png", "size": bytes.len()}]},
           "metadata": {"name": name}})
}

/// Uploads every declared file of a created batch (`files[i]` for run i).
async fn upload_all(t: &TestStack, batch: &Value, files: &[(String, Vec<u8>)]) {
    let dir = tempfile::tempdir().unwrap();
    for (i, run) in batch["runs"].as_array().unwrap().iter().enumerate() {
        let path = dir.path().join(&files[i].0);
        std::fs::write(&path, &files[i].1).unwrap();
        for up in run["uploads"].as_array().unwrap() {
            t.client.upload(up, &path).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_twenty_streams_each_result_as_its_run_ends() {
    let mirror = MirrorSpace::start_with_env(&[("MIRROR_CONCURRENCY", "4")]).unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            let name = if i < 3 {
                format!("slow{i:02}.png")
            } else {
                format!("img{i:02}.png")
            };
            (name, png(40 + i as u32, 30, i as u8 * 10))
        })
        .collect();
    let body = json!({
        "pipeline": "vggt",
        "settings": {"conf_thres": 20},
        "runs": files.iter().map(|(n, b)| item(n, b)).collect::<Vec<_>>(),
    });
    let batch = t
        .client
        .create_batch(&body, Some("batch-20"))
        .await
        .unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("bat_"), "{id}");
    assert_eq!(batch["total"], 20);
    let submitted: Vec<String> = batch["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["batch"], id.as_str());
            assert_eq!(r["settings"]["conf_thres"], 20.0);
            r["id"].as_str().unwrap().to_string()
        })
        .collect();
    upload_all(&t, &batch, &files).await;

    let started = Instant::now();
    let stream = t.client.batch_results(&id).await.unwrap();
    futures::pin_mut!(stream);
    let mut arrived: Vec<(Duration, Value)> = vec![];
    while let Some(line) = tokio::time::timeout(Duration::from_secs(120), stream.next())
        .await
        .expect("a result within two minutes")
    {
        arrived.push((started.elapsed(), line.unwrap()));
    }
    assert_eq!(arrived.len(), 20, "one line per run");
    let order: Vec<String> = arrived
        .iter()
        .map(|(_, r)| {
            assert_eq!(r["status"], "succeeded", "{r}");
            assert!(!r["artifacts"].as_array().unwrap().is_empty(), "{r}");
            r["id"].as_str().unwrap().to_string()
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    let mut expected = submitted.clone();
    expected.sort();
    assert_eq!(sorted, expected, "each run exactly once");
    assert_ne!(
        order, submitted,
        "results come as runs end, not in submission order"
    );
    // The slow three end last, well after the first results were already out.
    let slow: Vec<&String> = submitted[..3].iter().collect();
    assert!(order[17..].iter().all(|id| slow.contains(&id)), "{order:?}");
    let (first_at, _) = &arrived[0];
    let (last_at, _) = &arrived[19];
    assert!(
        *last_at > *first_at + Duration::from_secs(4),
        "streamed as they finished: first at {first_at:?}, last at {last_at:?}"
    );

    let summary = t.client.get_batch(&id).await.unwrap();
    assert_eq!(summary["done"], true, "{summary}");
    assert_eq!(summary["finished"], 20);
    assert_eq!(summary["counts"]["succeeded"], 20);

    // The same key and body: the same batch and runs, nothing new.
    let again = t
        .client
        .create_batch(&body, Some("batch-20"))
        .await
        .unwrap();
    assert_eq!(again["id"], id.as_str());
    let again_ids: Vec<&str> = again["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(again_ids, submitted);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_item_refuses_the_whole_batch_by_its_position() {
    let port = spaceport_testkit::free_port();
    let t = TestStack::start(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let url = format!("{}/v1/batches", t.stack.url);
    let body = json!({"pipeline": "vggt", "runs": [
        item("a.png", b"xx"),
        {"inputs": {"images": [{"filename": "b.png", "content_type": "image/png", "size": 2}]},
         "settings": {"conf_thres": 500}},
    ]});
    let got = send(reqwest::Client::new().post(&url).json(&body)).await;
    let e = expect_error(&got, 422, "validation_failed");
    assert_eq!(e["field"], "runs[1].settings.conf_thres", "{e}");
    let listed = t.client.list_runs(&[]).await.unwrap();
    assert!(
        listed["runs"].as_array().unwrap().is_empty(),
        "nothing stored: {listed}"
    );
    let got = send(
        reqwest::Client::new()
            .post(&url)
            .json(&json!({"pipeline": "vggt", "runs": []})),
    )
    .await;
    assert_eq!(
        expect_error(&got, 422, "validation_failed")["field"],
        "runs"
    );
    let got = send(reqwest::Client::new().get(format!("{url}/bat_nope"))).await;
    expect_error(&got, 404, "not_found");
    let got = send(reqwest::Client::new().get(format!("{url}/..%2F..%2Fetc/results"))).await;
    assert_eq!(got.0, 404);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaceport_run_batch_writes_each_result_as_it_arrives() {
    let mirror = MirrorSpace::start().unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    // Two runs of one image each, and one run of two views in a folder.
    std::fs::create_dir_all(input.join("scene-c")).unwrap();
    std::fs::write(input.join("a.png"), png(40, 30, 1)).unwrap();
    std::fs::write(input.join("b.png"), png(41, 30, 2)).unwrap();
    std::fs::write(input.join("scene-c/left.png"), png(42, 30, 3)).unwrap();
    std::fs::write(input.join("scene-c/right.png"), png(43, 30, 4)).unwrap();
    let out = dir.path().join("out");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_spaceport"))
        .args(["run", "vggt", "--batch"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args(["--set", "conf_thres=25"])
        .env("SPACEPORT_SERVER", &t.stack.url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    for entry in ["a.png", "b.png", "scene-c"] {
        assert!(stdout.contains(&format!("{entry}: run_")), "{stdout}");
        let glb = std::fs::read(out.join(entry).join("scene.glb")).unwrap();
        assert!(glb.starts_with(b"glTF"));
    }
    let lines: Vec<Value> = std::fs::read_to_string(out.join("results.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let two = lines
        .iter()
        .find(|r| r["metadata"]["entry"] == "scene-c")
        .unwrap();
    assert_eq!(two["inputs"]["images"].as_array().unwrap().len(), 2);
    assert_eq!(two["settings"]["conf_thres"], 25.0);
    // An entry a pipeline cannot take is refused before anything is created.
    std::fs::write(input.join("notes.txt"), b"x").unwrap();
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_spaceport"))
        .args(["run", "vggt", "--batch"])
        .arg(&input)
        .env("SPACEPORT_SERVER", &t.stack.url)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("notes.txt"));
    t.stack.shutdown().await;
}
