//! `vggt-onnx` on the embedded stack with the demo model on ONNX Runtime: a GLB the Khronos
//! validator accepts and a predictions.npz numpy loads with every key, shape and dtype; bad models
//! and inputs fail the run with a code while the worker keeps serving; and `vggt` falls back to
//! the local model when its Space is down.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use spaceport_cli::config::{Config, PipelineOverride};

use crate::common::*;
use spaceport_testkit::{demo_model, ort_dylib};

/// A pipelines dir: the shipped files plus `vggt-onnx` copies pointing at other models.
fn pipelines_with(dir: &Path, extra: &[(&str, &Path)]) -> PathBuf {
    let src = spaceport_testkit::repo_root().join("pipelines");
    let dst = dir.join("pipelines");
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["vggt.toml", "vggt-onnx.toml"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let onnx = std::fs::read_to_string(src.join("vggt-onnx.toml")).unwrap();
    for (name, model) in extra {
        let text = onnx
            .replace("name = \"vggt-onnx\"", &format!("name = \"{name}\""))
            .replace(
                "model = \"models/vggt.onnx\"",
                &format!("model = {:?}", model.display().to_string()),
            );
        std::fs::write(dst.join(format!("{name}.toml")), text).unwrap();
    }
    dst
}

fn onnx_config(
    data: &Path,
    model: &Path,
    space_url: &str,
    pipelines_dir: Option<PathBuf>,
    max_frames: Option<usize>,
) -> Config {
    let mut cfg = Config {
        data_dir: Some(data.to_path_buf()),
        ort_dylib_path: Some(ort_dylib()),
        pipelines_dir,
        max_frames,
        hub_url: Some(String::new()),
        ..Config::default()
    };
    cfg.pipelines.insert(
        "vggt".into(),
        PipelineOverride {
            space_url: Some(space_url.into()),
            model: None,
            ..PipelineOverride::default()
        },
    );
    cfg.pipelines.insert(
        "vggt-onnx".into(),
        PipelineOverride {
            space_url: None,
            model: Some(model.display().to_string()),
            ..PipelineOverride::default()
        },
    );
    cfg
}

async fn run_pipeline(t: &TestStack, pipeline: &str, files: &[(&str, Vec<u8>)]) -> Value {
    run_to_end(&t.client, files, json!({}), json!({"pipeline": pipeline})).await
}

fn views(n: usize) -> Vec<(&'static str, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                Box::leak(format!("view{i}.png").into_boxed_str()) as &'static str,
                png(64 + i as u32 * 8, 48, 30 * i as u8),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vggt_onnx_run_writes_a_valid_glb_and_a_complete_npz() {
    let dir = tempfile::tempdir().unwrap();
    let model = demo_model(dir.path(), "vggt.onnx", &["--external-data"]);
    let port = spaceport_testkit::free_port();
    let cfg = onnx_config(
        &dir.path().join("data"),
        &model,
        &format!("http://127.0.0.1:{port}"),
        None,
        None,
    );
    let t = TestStack::start_config(cfg).await.unwrap();
    let done = run_pipeline(&t, "vggt-onnx", &views(3)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["backend"]["kind"], "onnx");
    assert_eq!(artifact_names(&done), ["predictions", "scene"]);
    let scene = done["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "scene")
        .unwrap();
    assert_eq!(scene["meta"]["cameras"], 3, "{scene}");
    assert!(scene["meta"]["points"].as_u64().unwrap() > 0);

    let out = tempfile::tempdir().unwrap();
    let id = done["id"].as_str().unwrap();
    let glb = t
        .client
        .download_artifact(id, "scene", "scene.glb", out.path())
        .await
        .unwrap();
    let report = spaceport_testkit::gltf_validate(&glb).unwrap();
    assert_eq!(report["issues"]["numErrors"], 0, "{report}");
    // The model's own counts and what the file says (as trimesh reads it) agree.
    assert_facts_match_trimesh(&scene["meta"], &glb, true);
    let npz = t
        .client
        .download_artifact(id, "predictions", "predictions.npz", out.path())
        .await
        .unwrap();
    let check = r#"
import sys, numpy as np
d = np.load(sys.argv[1])
S = 3
want = {
    "pose_enc": ((S, 9), "float32"),
    "depth": ((S, 518, 518, 1), "float32"),
    "depth_conf": ((S, 518, 518), "float32"),
    "world_points": ((S, 518, 518, 3), "float32"),
    "world_points_conf": ((S, 518, 518), "float32"),
    "images": ((S, 3, 518, 518), "float32"),
    "extrinsic": ((S, 3, 4), "float32"),
    "intrinsic": ((S, 3, 3), "float32"),
    "world_points_from_depth": ((S, 518, 518, 3), "float64"),
}
assert sorted(d.files) == sorted(want), d.files
for k, (shape, dtype) in want.items():
    assert d[k].shape == shape and d[k].dtype == dtype, (k, d[k].shape, d[k].dtype)
    assert np.isfinite(d[k]).all(), k
assert np.allclose(d["intrinsic"][:, 2, 2], 1.0)
print("npz ok")
"#;
    let output = Command::new(spaceport_testkit::venv_python().unwrap())
        .arg("-c")
        .arg(check)
        .arg(&npz)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_models_and_inputs_fail_with_a_code_and_the_worker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let good = demo_model(dir.path(), "good.onnx", &[]);
    let wrong_name = demo_model(dir.path(), "wrong-name.onnx", &["--input-name", "pixels"]);
    let wrong_rank = demo_model(dir.path(), "wrong-rank.onnx", &["--input-rank", "3"]);
    let no_data = demo_model(dir.path(), "no-data.onnx", &["--external-data"]);
    std::fs::remove_file(dir.path().join("no-data.onnx_data")).unwrap();
    let pipelines = pipelines_with(
        dir.path(),
        &[
            ("onnx-wrong-name", &wrong_name),
            ("onnx-wrong-rank", &wrong_rank),
            ("onnx-no-data", &no_data),
        ],
    );
    let port = spaceport_testkit::free_port();
    let cfg = onnx_config(
        &dir.path().join("data"),
        &good,
        &format!("http://127.0.0.1:{port}"),
        Some(pipelines),
        Some(4),
    );
    let t = TestStack::start_config(cfg).await.unwrap();

    // More images than the deployment's max_frames: refused when created, nothing uploaded.
    let five: Vec<Value> = (0..5)
        .map(|i| json!({"filename": format!("v{i}.png"), "content_type": "image/png", "size": 100}))
        .collect();
    let url = format!("{}/v1/runs", t.stack.url);
    let body = json!({"pipeline": "vggt-onnx", "inputs": {"images": five}});
    let got = send(reqwest::Client::new().post(&url).json(&body)).await;
    let e = expect_error(&got, 422, "validation_failed");
    assert_eq!(e["field"], "inputs.images", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("takes 1 to 4"),
        "{e}"
    );
    let listed = send(reqwest::Client::new().get(format!("{}/v1/pipelines", t.stack.url))).await;
    let onnx = listed.1["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "vggt-onnx")
        .cloned()
        .unwrap();
    assert_eq!(onnx["inputs"]["images"]["max"], 4, "{onnx}");

    let corrupt = vec![
        ("broken.png", b"\x89PNG\r\n\x1a\nthis is not a png".to_vec()),
        ("ok.png", png(32, 32, 1)),
    ];
    type Case<'a> = (&'a str, Vec<(&'a str, Vec<u8>)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("vggt-onnx", corrupt, "input_invalid", "broken.png"),
        ("onnx-wrong-name", views(1), "model_error", "pixels"),
        ("onnx-wrong-rank", views(1), "model_error", "rank"),
        ("onnx-no-data", views(1), "model_error", "no-data.onnx_data"),
    ];
    for (pipeline, files, code, needle) in cases {
        let done = run_pipeline(&t, pipeline, &files).await;
        assert_eq!(done["status"], "failed", "{pipeline}: {done}");
        assert_eq!(done["error"]["code"], code, "{pipeline}: {done}");
        let msg = done["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{pipeline}: {msg:?} should mention {needle:?}"
        );
        // The worker still serves: a good run right after succeeds.
        let ok = run_pipeline(&t, "vggt-onnx", &views(2)).await;
        assert_eq!(ok["status"], "succeeded", "after {pipeline}/{code}: {ok}");
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vggt_falls_back_to_the_local_model_when_its_space_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let model = demo_model(dir.path(), "vggt.onnx", &[]);
    let port = spaceport_testkit::free_port();
    let cfg = onnx_config(
        &dir.path().join("data"),
        &model,
        &format!("http://127.0.0.1:{port}"),
        None,
        None,
    );
    let t = TestStack::start_config(cfg).await.unwrap();
    let done = run_pipeline(&t, "vggt", &views(2)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["pipeline"], "vggt");
    assert_eq!(done["backend"]["kind"], "onnx", "{done}");
    assert_eq!(artifact_names(&done), ["predictions", "scene"]);
    t.stack.shutdown().await;
}

/// Creates a `vggt-render` run over run `from`'s predictions with `settings`; returns it ended.
async fn render(t: &TestStack, from: &str, settings: Value) -> Value {
    let created = t
        .client
        .create_run(
            &json!({"pipeline": "vggt-render", "settings": settings,
                    "inputs": {"predictions": [{"run": from, "artifact": "predictions"}]}}),
            None,
        )
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    wait_terminal(&t.client, id, std::time::Duration::from_secs(60))
        .await
        .unwrap()
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
async fn vggt_render_draws_a_vggt_onnx_scene_again_without_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let model = demo_model(dir.path(), "vggt.onnx", &["--external-data"]);
    let port = spaceport_testkit::free_port();
    let space = format!("http://127.0.0.1:{port}");
    let t = TestStack::start_config(onnx_config(&data, &model, &space, None, None))
        .await
        .unwrap();
    let full = run_to_end(
        &t.client,
        &views(4),
        json!({"conf_thres": 30}),
        json!({"pipeline": "vggt-onnx"}),
    )
    .await;
    assert_eq!(full["status"], "succeeded", "{full}");
    let id = full["id"].as_str().unwrap().to_string();
    t.stack.shutdown().await;

    // The same data dir, its model gone: whatever is drawn now is drawn without it.
    let gone = dir.path().join("no-such-model.onnx");
    let t = TestStack::start_config(onnx_config(&data, &gone, &space, None, None))
        .await
        .unwrap();
    let same = render(&t, &id, json!({"conf_thres": 30})).await;
    assert_eq!(same["status"], "succeeded", "{same}");
    assert_eq!(same["backend"]["kind"], "local");
    assert_eq!(
        scene(&same)["sha256"],
        scene(&full)["sha256"],
        "the same settings give the full run's GLB, byte for byte"
    );
    assert_eq!(scene(&same)["meta"], scene(&full)["meta"]);

    // New settings: fewer points, one frame and its camera, no cameras.
    let points = |r: &Value| scene(r)["meta"]["points"].as_u64().unwrap();
    let cameras = |r: &Value| scene(r)["meta"]["cameras"].as_u64().unwrap();
    let stricter = render(&t, &id, json!({"conf_thres": 80})).await;
    assert!(points(&stricter) < points(&full), "{stricter}");
    let one = render(
        &t,
        &id,
        json!({"conf_thres": 30, "frame_filter": "2: view2.png"}),
    )
    .await;
    assert_eq!(cameras(&one), 1, "{one}");
    assert!(points(&one) < points(&full));
    let bare = render(
        &t,
        &id,
        json!({"show_cam": false, "prediction_mode": "pointmap"}),
    )
    .await;
    assert_eq!(cameras(&bare), 0, "{bare}");
    let out = tempfile::tempdir().unwrap();
    for run in [&stricter, &one, &bare] {
        let glb = t
            .client
            .download_artifact(
                run["id"].as_str().unwrap(),
                "scene",
                "scene.glb",
                out.path(),
            )
            .await
            .unwrap();
        let report = spaceport_testkit::gltf_validate(&glb).unwrap();
        assert_eq!(report["issues"]["numErrors"], 0, "{report}");
        assert_facts_match_trimesh(&scene(run)["meta"], &glb, false);
    }

    // The scene as a PLY point cloud (its cameras left out); OBJ holds no points.
    let full_id = full["id"].as_str().unwrap();
    let ply = artifact_as(&t.stack.url, full_id, "scene", "ply", out.path())
        .await
        .unwrap();
    let facts = trimesh_facts(&ply);
    assert_eq!(facts["points"], scene(&full)["meta"]["points"], "{facts}");
    assert_eq!(facts["faces"], 0);
    let (status, body) = artifact_as(&t.stack.url, full_id, "scene", "obj", out.path())
        .await
        .unwrap_err();
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("ply"),
        "{body}"
    );

    // A frame the scene does not have fails the run, naming it.
    let bad = render(&t, &id, json!({"frame_filter": "9"})).await;
    assert_eq!(bad["status"], "failed", "{bad}");
    assert_eq!(bad["error"]["code"], "input_invalid");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("frame 9"),
        "{bad}"
    );
    t.stack.shutdown().await;
}
