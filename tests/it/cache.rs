//! The result cache: a second run asking for exactly what a succeeded run got (same pipeline,
//! Space revision, settings and input files) succeeds at once with copies of its artifacts and
//! no request at all to the Space (the front before the mirror records every request, and the
//! mirror logs every reconstruction); `"cache": false`, other settings or a deleted source run
//! go to the Space.

use serde_json::{Value, json};
use spaceport_testkit::SpaceFront;

use crate::common::*;

fn reconstructions(mirror: &MirrorSpace) -> usize {
    mirror
        .output()
        .lines()
        .filter(|l| l.trim().starts_with("INFLIGHT "))
        .count()
}

async fn run(t: &TestStack, settings: Value, extra: Value) -> Value {
    let files = [("left.png", png(40, 30, 7)), ("right.png", png(44, 30, 99))];
    let done = run_to_end(&t.client, &files, settings, extra).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    done
}

fn scene(run: &Value) -> &Value {
    run["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "scene")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_run_is_answered_from_the_cache_without_calling_the_space() {
    let mirror = MirrorSpace::start().unwrap();
    let front = SpaceFront::start(mirror.url()).await.unwrap();
    let t = TestStack::start(&front.url).await.unwrap();

    let first = run(&t, json!({"conf_thres": 30}), json!({})).await;
    assert_eq!(first["cache_hit"], false);
    assert_eq!(reconstructions(&mirror), 1);
    let requests = front.seen().len();

    let second = run(&t, json!({"conf_thres": 30}), json!({})).await;
    assert_eq!(second["cache_hit"], true, "{second}");
    assert_eq!(second["cached_from"], first["id"]);
    assert_eq!(second["progress"]["stage"], "cache_hit");
    assert_eq!(second["backend"]["attempt"], 0, "no attempt at the Space");
    assert_eq!(reconstructions(&mirror), 1, "{}", mirror.output());
    assert_eq!(front.seen().len(), requests, "no request reached the Space");
    assert_eq!(second["outputs"], first["outputs"]);
    // Its own copy of the same bytes.
    assert_eq!(scene(&second)["sha256"], scene(&first)["sha256"]);
    assert_eq!(scene(&second)["size"], scene(&first)["size"]);
    let dir = tempfile::tempdir().unwrap();
    let id = second["id"].as_str().unwrap();
    let path = t
        .client
        .download_artifact(id, "scene", "scene.glb", dir.path())
        .await
        .unwrap();
    assert!(std::fs::read(&path).unwrap().starts_with(b"glTF"));
    // The copy says what the scene holds, as the first run's artifact did and trimesh reads
    // it: with the camera frusta the Space drew (show_cam is on by default).
    assert_eq!(scene(&second)["meta"], scene(&first)["meta"]);
    assert_facts_match_trimesh(&scene(&second)["meta"], &path, true);
    assert!(
        scene(&second)["meta"]["cameras"].as_u64() > Some(0),
        "{}",
        scene(&second)
    );

    // Opting out, or asking for something else, goes to the Space.
    let fresh = run(&t, json!({"conf_thres": 30}), json!({"cache": false})).await;
    assert_eq!(fresh["cache_hit"], false);
    assert_eq!(reconstructions(&mirror), 2);
    let other = run(&t, json!({"conf_thres": 31}), json!({})).await;
    assert_eq!(other["cache_hit"], false);
    assert_eq!(reconstructions(&mirror), 3);

    // Once the source run's files are deleted, the next identical run calls the Space again
    // (and its results answer the one after).
    t.client
        .delete_run(first["id"].as_str().unwrap())
        .await
        .unwrap();
    let again = run(&t, json!({"conf_thres": 30}), json!({})).await;
    assert_eq!(again["cache_hit"], false, "{again}");
    assert_eq!(reconstructions(&mirror), 4);
    let after = run(&t, json!({"conf_thres": 30}), json!({})).await;
    assert_eq!(after["cached_from"], again["id"]);
    // The hit's own copy outlives its source's deletion.
    t.client
        .delete_run(second["id"].as_str().unwrap())
        .await
        .unwrap();
    let (status, _) = send(reqwest::Client::new().get(format!(
        "{}/v1/runs/{}/artifacts/scene",
        t.stack.url,
        after["id"].as_str().unwrap()
    )))
    .await;
    assert!(status == 200 || status == 302, "{status}");
    t.stack.shutdown().await;
}
