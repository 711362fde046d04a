//! Chained pipelines through the embedded stack against the vggt mirror Space: `vggt-ply`
//! runs the Space, then mesh-convert on its scene, each stage a child run with its own events;
//! the chain shows both and keeps both files. A first stage that fails ends the chain with its
//! reason and never starts the second; cancelling the chain cancels its live stage.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(120);

async fn chain_run(t: &TestStack, files: &[(&str, Vec<u8>)]) -> String {
    let run = create_and_upload(
        &t.client,
        files,
        json!({"conf_thres": 20}),
        json!({"pipeline": "vggt-ply"}),
    )
    .await
    .unwrap();
    run["id"].as_str().unwrap().to_string()
}

fn children(run: &Value) -> Vec<(String, String)> {
    run["children"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["stage"].as_str().unwrap().to_string(),
                c["run"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_runs_its_stages_as_child_runs_and_keeps_their_files() {
    let mirror = MirrorSpace::start_with_env(&[("MIRROR_INSTANT", "1")]).unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let id = chain_run(&t, &[("a.png", png(40, 30, 1)), ("b.png", png(40, 30, 2))]).await;
    let done = wait_terminal(&t.client, &id, WAIT).await.unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["backend"]["kind"], "chain");
    let stages = children(&done);
    assert_eq!(
        stages.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["reconstruct", "convert"],
        "{done}"
    );
    let first = t.client.get_run(&stages[0].1, None).await.unwrap();
    let second = t.client.get_run(&stages[1].1, None).await.unwrap();
    for (child, pipeline) in [(&first, "vggt"), (&second, "mesh-convert")] {
        assert_eq!(child["status"], "succeeded", "{child}");
        assert_eq!(child["pipeline"], pipeline);
        assert_eq!(child["parent"], id.as_str());
    }
    assert_eq!(
        first["settings"]["conf_thres"], 20.0,
        "the chain's setting: {first}"
    );
    assert_eq!(second["settings"]["format"], "ply");
    assert_eq!(
        second["inputs"]["mesh"][0]["from_run"],
        json!({"run": stages[0].1, "artifact": "scene"})
    );
    // The chain's files are its stages' files.
    let by_name = |run: &Value, name: &str| {
        run["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {run}"))
    };
    assert_eq!(
        by_name(&done, "scene")["sha256"],
        by_name(&first, "scene")["sha256"]
    );
    assert_eq!(
        by_name(&done, "points")["sha256"],
        by_name(&second, "ply")["sha256"]
    );
    let dir = tempfile::tempdir().unwrap();
    let ply = t
        .client
        .download_artifact(&id, "points", "points.ply", dir.path())
        .await
        .unwrap();
    assert_eq!(
        trimesh_facts(&ply)["points"],
        by_name(&first, "scene")["meta"]["points"],
        "the scene's points, as PLY"
    );
    // Each stage shows on the chain as it starts.
    let events = t.client.events(&id, 0).await.unwrap();
    use futures::StreamExt;
    let kinds: Vec<String> = tokio::time::timeout(
        Duration::from_secs(10),
        events.map(|e| e.unwrap().kind).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    assert!(
        kinds.iter().filter(|k| *k == "run.updated").count() >= 2,
        "{kinds:?}"
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_stage_fails_the_chain_and_a_cancelled_chain_cancels_its_stage() {
    let mirror = MirrorSpace::start().unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();

    // The Space fails the first stage: the chain fails with its reason; no second stage.
    let id = chain_run(&t, &[("fail.png", png(40, 30, 1))]).await;
    let failed = wait_terminal(&t.client, &id, WAIT).await.unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        failed["error"]["code"], "space_error",
        "the stage's code: {failed}"
    );
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("reconstruct") && message.contains("mirror failure"),
        "{message}"
    );
    assert_eq!(children(&failed).len(), 1, "{failed}");

    // A slow first stage, cancelled through the chain.
    let id = chain_run(&t, &[("slow.png", png(40, 30, 2))]).await;
    let running = wait_for(&t.client, &id, WAIT, "a running stage", |r| {
        r["status"] == "running" && !children(r).is_empty()
    })
    .await
    .unwrap();
    let (_, stage) = children(&running)[0].clone();
    wait_status(&t.client, &stage, "running", WAIT)
        .await
        .unwrap();
    t.client.action(&id, "cancel").await.unwrap();
    let chain = wait_terminal(&t.client, &id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(chain["status"], "cancelled", "{chain}");
    let stage = wait_terminal(&t.client, &stage, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(stage["status"], "cancelled", "{stage}");
    // The second stage never starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let chain = t.client.get_run(&id, None).await.unwrap();
    assert_eq!(children(&chain).len(), 1, "{chain}");
    t.stack.shutdown().await;
}
