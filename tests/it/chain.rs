//! Chained pipelines through the embedded stack against mirror Spaces: `vggt-ply` runs the vggt
//! Space, then mesh-convert on its scene; `segment-then-3d` runs the background-removal Space,
//! then Hunyuan3D-2's shape generation on the cut-out. Each stage is a child run with its own
//! events; the chain shows both and keeps the files. A first stage that fails ends the chain with
//! its reason and never starts the second; cancelling the chain cancels its live stage.

use std::time::Duration;

use serde_json::{Value, json};
use spaceport_cli::config::PipelineOverride;
use spaceport_testkit::{Gradio, gltf_validate};

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

/// The succeeded chain `done`'s child runs, checked to be its `stages` (name, pipeline) in order,
/// each succeeded and naming the chain as its parent.
async fn succeeded_stages(t: &TestStack, done: &Value, stages: &[(&str, &str)]) -> Vec<Value> {
    assert_eq!(done["status"], "succeeded", "{done}");
    let got = children(done);
    assert_eq!(
        got.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        stages.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "{done}"
    );
    let mut runs = Vec::new();
    for ((_, run), (_, pipeline)) in got.iter().zip(stages) {
        let child = t.client.get_run(run, None).await.unwrap();
        assert_eq!(child["status"], "succeeded", "{child}");
        assert_eq!(child["pipeline"], *pipeline);
        assert_eq!(child["parent"], done["id"]);
        runs.push(child);
    }
    runs
}

/// Waits until stage `index` of chain `id` runs, cancels the chain, and checks both end
/// cancelled; the chain's stages (name, run) as they were.
async fn cancel_during_stage(t: &TestStack, id: &str, index: usize) -> Vec<(String, String)> {
    let running = wait_for(&t.client, id, WAIT, "the stage running", |r| {
        r["status"] == "running" && children(r).len() > index
    })
    .await
    .unwrap();
    let stages = children(&running);
    wait_status(&t.client, &stages[index].1, "running", WAIT)
        .await
        .unwrap();
    t.client.action(id, "cancel").await.unwrap();
    for run in [id, stages[index].1.as_str()] {
        let ended = wait_terminal(&t.client, run, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(ended["status"], "cancelled", "{ended}");
    }
    stages
}

/// Artifact `name` of `run`, as the API lists it.
fn artifact<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_runs_its_stages_as_child_runs_and_keeps_their_files() {
    let mirror = MirrorSpace::start_with_env(&[("MIRROR_INSTANT", "1")]).unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let id = chain_run(&t, &[("a.png", png(40, 30, 1)), ("b.png", png(40, 30, 2))]).await;
    let done = wait_terminal(&t.client, &id, WAIT).await.unwrap();
    assert_eq!(done["backend"]["kind"], "chain");
    let runs = succeeded_stages(
        &t,
        &done,
        &[("reconstruct", "vggt"), ("convert", "mesh-convert")],
    )
    .await;
    let (first, second) = (&runs[0], &runs[1]);
    let stages = children(&done);
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
    assert_eq!(
        artifact(&done, "scene")["sha256"],
        artifact(first, "scene")["sha256"]
    );
    assert_eq!(
        artifact(&done, "points")["sha256"],
        artifact(second, "ply")["sha256"]
    );
    let dir = tempfile::tempdir().unwrap();
    let ply = t
        .client
        .download_artifact(&id, "points", "points.ply", dir.path())
        .await
        .unwrap();
    assert_eq!(
        trimesh_facts(&ply)["points"],
        artifact(first, "scene")["meta"]["points"],
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
    cancel_during_stage(&t, &id, 0).await;
    // The second stage never starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let chain = t.client.get_run(&id, None).await.unwrap();
    assert_eq!(children(&chain).len(), 1, "{chain}");
    t.stack.shutdown().await;
}

/// The two Spaces of `segment-then-3d` (the Hunyuan3D mirror with `hunyuan_env`) and a stack
/// whose pipelines call them.
async fn segment_stack(hunyuan_env: &[(&str, &str)]) -> (MirrorSpace, MirrorSpace, TestStack) {
    let (segmenter, hunyuan) = std::thread::scope(|s| {
        let segmenter = s.spawn(|| {
            MirrorSpace::start_app(
                "tests/peers/background_removal_mirror/app.py",
                &[("MIRROR_INSTANT", "1")],
            )
        });
        let hunyuan = MirrorSpace::start_under(
            Gradio::V6,
            "tests/peers/hunyuan3d_mirror/app.py",
            &["--layout", "live"],
            hunyuan_env,
        );
        (segmenter.join().unwrap().unwrap(), hunyuan.unwrap())
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), segmenter.url());
    for (pipeline, url) in [
        ("remove-background", segmenter.url()),
        ("hunyuan3d-shape", hunyuan.url()),
    ] {
        cfg.pipelines.insert(
            pipeline.into(),
            PipelineOverride {
                space_url: Some(url.into()),
                ..PipelineOverride::default()
            },
        );
    }
    let t = TestStack::start_config(cfg).await.unwrap();
    (segmenter, hunyuan, TestStack { dir, ..t })
}

/// An object (a red block) on a plain light background, `name`d for the mirrors' hooks.
fn object_photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        if (16..48).contains(&x) && (12..36).contains(&y) {
            image::Rgb([200, 40, 30])
        } else {
            image::Rgb([235, 235, 230])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn segment_run(t: &TestStack, name: &str) -> String {
    create_in_slots(
        t,
        "segment-then-3d",
        &[("image", name, object_photo())],
        json!({"seed": 7, "steps": 20}),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_then_3d_cuts_the_object_out_then_reconstructs_the_cut_out() {
    let (segmenter, hunyuan, t) = segment_stack(&[("MIRROR_INSTANT", "1")]).await;
    let id = segment_run(&t, "object.png").await;
    let done = wait_terminal(&t.client, &id, WAIT).await.unwrap();
    let runs = succeeded_stages(
        &t,
        &done,
        &[
            ("segment", "remove-background"),
            ("reconstruct", "hunyuan3d-shape"),
        ],
    )
    .await;
    let (segment, reconstruct) = (&runs[0], &runs[1]);
    let stages = children(&done);
    // The chain's settings reach the reconstruction; its own background removal is off.
    assert_eq!(reconstruct["settings"]["seed"], 7);
    assert_eq!(reconstruct["settings"]["remove_background"], false);
    assert_eq!(
        reconstruct["inputs"]["image"][0]["from_run"],
        json!({"run": stages[0].1, "artifact": "cutout"})
    );

    // The cut-out: the photo's size, the background transparent, the object opaque.
    let dir = tempfile::tempdir().unwrap();
    let cutout = t
        .client
        .download_artifact(&id, "cutout", "cutout.png", dir.path())
        .await
        .unwrap();
    let rgba = image::open(&cutout).unwrap().to_rgba8();
    assert_eq!(rgba.dimensions(), (64, 48));
    assert_eq!(rgba.get_pixel(2, 2)[3], 0, "the background is cut away");
    assert_eq!(
        rgba.get_pixel(30, 20).0,
        [200, 40, 30, 255],
        "the object stays"
    );
    let line = log_line(&segmenter.output(), "SEGMENT").expect("the segmenter's SEGMENT line");
    let seen: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(seen["kept"], 32 * 24, "{seen}");

    // The mesh: made from the cut-out as it was, without a second background removal.
    let mesh = t
        .client
        .download_artifact(&id, "mesh", "mesh.glb", dir.path())
        .await
        .unwrap();
    let report = gltf_validate(&mesh).unwrap();
    assert_eq!(report["issues"]["numErrors"], 0, "{report}");
    assert!(trimesh_facts(&mesh)["faces"].as_u64().unwrap() > 0);
    let line = log_line(&hunyuan.output(), "GENERATE").expect("the GENERATE line");
    let seen: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(seen["image"], json!([64, 48]), "{seen}");
    assert_eq!(seen["check_box_rembg"], false, "{seen}");
    assert_eq!(seen["seed"], 7, "{seen}");
    for (name, stage) in [("cutout", segment), ("mesh", reconstruct)] {
        assert_eq!(
            artifact(&done, name)["sha256"],
            artifact(stage, name)["sha256"]
        );
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_then_3d_fails_with_its_segmenter_and_cancels_its_reconstruction() {
    // Every reconstruction takes 60 s: long enough to be cancelled while it runs.
    let (_segmenter, hunyuan, t) = segment_stack(&[("MIRROR_DELAY_S", "60")]).await;

    let id = segment_run(&t, "fail.png").await;
    let failed = wait_terminal(&t.client, &id, WAIT).await.unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "space_error", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("segment") && message.contains("mirror failure"),
        "{message}"
    );
    assert_eq!(children(&failed).len(), 1, "no reconstruction: {failed}");

    let id = segment_run(&t, "object.png").await;
    let stages = cancel_during_stage(&t, &id, 1).await;
    let first = t.client.get_run(&stages[0].1, None).await.unwrap();
    assert_eq!(
        first["status"], "succeeded",
        "the finished stage stays: {first}"
    );
    let second = wait_terminal(&t.client, &stages[1].1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(second["status"], "cancelled", "{second}");
    assert!(
        log_line(&hunyuan.output(), "GENERATE").is_none(),
        "the reconstruction was cut short"
    );
    t.stack.shutdown().await;
}
