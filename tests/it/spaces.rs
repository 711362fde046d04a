//! Every shipped Space pipeline run end to end on the embedded stack against its mirror (a real
//! Gradio server of the version the Space runs, tests/peers/*_mirror): a real run to
//! `succeeded`, its artifacts decoded (images at the size the Space gives, meshes through the
//! Khronos validator or trimesh) and its non-file `outputs` asserted. Wonder3D also shows what a
//! crash does on `ws`, where a job lives only as long as its websocket: a new attempt.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use spaceport_cli::config::PipelineOverride;
use spaceport_testkit::{Gradio, gltf_validate};

use crate::common::*;

const RUN_WAIT: Duration = Duration::from_secs(120);

/// A stack whose `pipeline` calls the mirror at `url`.
async fn stack_for(pipeline: &str, url: &str) -> Result<TestStack> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path(), url);
    cfg.pipelines.insert(
        pipeline.into(),
        PipelineOverride {
            space_url: Some(url.into()),
            model: None,
            ..PipelineOverride::default()
        },
    );
    let t = TestStack::start_config(cfg).await?;
    Ok(TestStack { dir, ..t })
}

/// Creates a run of `pipeline` with one file per slot, uploads them and waits for its end.
async fn run(
    t: &TestStack,
    pipeline: &str,
    files: &[(&str, &str, Vec<u8>)],
    settings: Value,
) -> Result<Value> {
    let id = create_in_slots(t, pipeline, files, settings).await?;
    wait_terminal(&t.client, &id, RUN_WAIT).await
}

/// Downloads artifact `name` of run `done`; checks its size and returns its path.
async fn artifact(
    t: &TestStack,
    done: &Value,
    name: &str,
    dir: &Path,
) -> Result<std::path::PathBuf> {
    let a = done["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .with_context(|| format!("no artifact {name} in {done}"))?;
    let id = done["id"].as_str().unwrap();
    let path = t
        .client
        .download_artifact(id, name, a["filename"].as_str().unwrap(), dir)
        .await?;
    assert_eq!(std::fs::metadata(&path)?.len(), a["size"].as_u64().unwrap());
    Ok(path)
}

/// A PNG of noise: it barely compresses, so its data URL is about 4/3 of w*h*3 bytes.
pub(crate) fn noisy_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v =
            (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).wrapping_mul(2_246_822_519);
        image::Rgb([(v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn image_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

fn assert_valid_glb(path: &Path) {
    let report = gltf_validate(path).unwrap();
    assert_eq!(
        report["issues"]["numErrors"],
        0,
        "{}: {report}",
        path.display()
    );
}

/// The artifact `name` of `done`, as the API listed it.
fn listed<'a>(done: &'a Value, name: &str) -> &'a Value {
    done["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no artifact {name} in {done}"))
}

fn ok(done: &Value) {
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kolors_tryon_on_gradio_4_44() {
    let mirror =
        MirrorSpace::start_under(Gradio::V4_44, "tests/peers/kolors_mirror/app.py", &[], &[])
            .unwrap();
    let t = stack_for("kolors-tryon", mirror.url()).await.unwrap();
    let done = run(
        &t,
        "kolors-tryon",
        &[
            ("person", "person.png", png(60, 90, 1)),
            ("garment", "shirt.png", png(40, 40, 2)),
        ],
        json!({"seed": 7, "randomize_seed": false}),
    )
    .await
    .unwrap();
    ok(&done);
    assert_eq!(
        done["outputs"],
        json!({"seed": 7, "info": "Success"}),
        "{done}"
    );
    let dir = tempfile::tempdir().unwrap();
    let result = artifact(&t, &done, "result", dir.path()).await.unwrap();
    assert_eq!(image_size(&result), (60, 90), "the person's size");
    // Gradio 4.44 serves WebP: the wildcard artifact takes the Space's type.
    let a = &done["artifacts"][0];
    assert_eq!(
        (a["content_type"].as_str(), a["filename"].as_str()),
        (Some("image/webp"), Some("result.webp"))
    );

    // A random seed comes back as the one used.
    let done = run(
        &t,
        "kolors-tryon",
        &[
            ("person", "p.png", png(30, 30, 3)),
            ("garment", "g.png", png(30, 30, 4)),
        ],
        json!({}),
    )
    .await
    .unwrap();
    ok(&done);
    assert!(done["outputs"]["seed"].is_i64(), "{done}");
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idm_vton_on_gradio_4_17() {
    let mirror = MirrorSpace::start_under(
        Gradio::V4_17,
        "tests/peers/idm_vton_mirror/app.py",
        &[],
        &[],
    )
    .unwrap();
    let t = stack_for("idm-vton", mirror.url()).await.unwrap();
    let done = run(
        &t,
        "idm-vton",
        &[("person", "person.png", png(60, 80, 1)), ("garment", "shirt.png", png(40, 50, 2))],
        json!({"garment_description": "a red shirt", "denoise_steps": 25, "seed": 5, "auto_crop": true}),
    )
    .await
    .unwrap();
    ok(&done);
    let dir = tempfile::tempdir().unwrap();
    let result = artifact(&t, &done, "result", dir.path()).await.unwrap();
    let mask = artifact(&t, &done, "mask", dir.path()).await.unwrap();
    // With auto-crop the result keeps the photo's size; the mask is the model's 768x1024.
    assert_eq!(image_size(&result), (60, 80));
    assert_eq!(image_size(&mask), (768, 1024));
    let line = log_line(&mirror.output(), "TRYON").expect("the mirror's TRYON line");
    let seen: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(seen["garment_des"], "a red shirt");
    assert_eq!(
        (seen["denoise_steps"].as_f64(), seen["seed"].as_f64()),
        (Some(25.0), Some(5.0))
    );
    assert_eq!(
        (
            seen["is_checked"].as_bool(),
            seen["is_checked_crop"].as_bool()
        ),
        (Some(true), Some(true))
    );
    t.stack.shutdown().await;
}

/// Runs `pipeline` against the Hunyuan3D mirror in `layout`; returns the run and the stored layout.
async fn hunyuan(
    pipeline: &str,
    gradio: Gradio,
    layout: &str,
) -> (Value, String, MirrorSpace, TestStack) {
    let mirror = MirrorSpace::start_under(
        gradio,
        "tests/peers/hunyuan3d_mirror/app.py",
        &["--layout", layout],
        &[],
    )
    .unwrap();
    let t = stack_for(pipeline, mirror.url()).await.unwrap();
    let done = run(
        &t,
        pipeline,
        &[("image", "object.png", png(48, 40, 9))],
        json!({"seed": 99, "octree_resolution": "256", "steps": 20}),
    )
    .await
    .unwrap();
    ok(&done);
    let stored = t.stored(done["id"].as_str().unwrap()).await;
    let chosen = stored.job().layout.unwrap_or_default();
    (done, chosen, mirror, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hunyuan3d_live_space_layout_on_gradio_6() {
    let (done, layout, _mirror, t) = hunyuan("hunyuan3d", Gradio::V6, "live").await;
    assert_eq!(layout, "space");
    let dir = tempfile::tempdir().unwrap();
    for name in ["mesh", "textured_mesh"] {
        let path = artifact(&t, &done, name, dir.path()).await.unwrap();
        assert!(
            path.to_string_lossy().ends_with(".glb"),
            "{}",
            path.display()
        );
        assert_valid_glb(&path);
        // Its meta says what trimesh reads from it.
        assert_facts_match_trimesh(&listed(&done, name)["meta"], &path, true);
        assert!(listed(&done, name)["meta"]["faces"].as_u64() > Some(100));

        // Converted on request, then kept: trimesh reads the GLB's vertices, faces and bounds.
        let id = done["id"].as_str().unwrap();
        let glb = trimesh_facts(&path);
        for format in ["obj", "ply"] {
            let converted = artifact_as(&t.stack.url, id, name, format, dir.path())
                .await
                .unwrap_or_else(|e| panic!("{name} as {format}: {e:?}"));
            let facts = trimesh_facts(&converted);
            for k in ["vertices", "faces", "points"] {
                assert_eq!(
                    facts[k], glb[k],
                    "{name} as {format}: {k}: {facts} vs {glb}"
                );
            }
            for corner in 0..2 {
                for axis in 0..3 {
                    let (a, b) = (
                        facts["bounds"][corner][axis].as_f64().unwrap(),
                        glb["bounds"][corner][axis].as_f64().unwrap(),
                    );
                    assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{facts} vs {glb}");
                }
            }
            let run = t.client.get_run(id, None).await.unwrap();
            let kept = listed(&run, &format!("{name}.{format}"));
            assert_eq!(kept["meta"]["converted_from"], name, "{kept}");
            assert_facts_match_trimesh(&kept["meta"], &converted, true);
        }
    }
    // The same conversion as a run of its own (mesh-convert) on the mesh artifact.
    let id = done["id"].as_str().unwrap();
    let created = t
        .client
        .create_run(
            &json!({"pipeline": "mesh-convert", "settings": {"format": "obj"},
                    "inputs": {"mesh": [{"run": id, "artifact": "mesh"}]}}),
            None,
        )
        .await
        .unwrap();
    let converted = wait_terminal(&t.client, created["id"].as_str().unwrap(), RUN_WAIT)
        .await
        .unwrap();
    ok(&converted);
    assert_eq!(
        artifact_names(&converted),
        ["obj"],
        "only the format asked for"
    );
    let obj = artifact(&t, &converted, "obj", dir.path()).await.unwrap();
    let (facts, glb) = (
        trimesh_facts(&obj),
        trimesh_facts(&artifact(&t, &done, "mesh", dir.path()).await.unwrap()),
    );
    assert_eq!(
        (&facts["vertices"], &facts["faces"]),
        (&glb["vertices"], &glb["faces"])
    );

    // Asked again: the kept file, not a second conversion; a mesh has no third format.
    let run = t
        .client
        .get_run(done["id"].as_str().unwrap(), None)
        .await
        .unwrap();
    let before = run["artifacts"].as_array().unwrap().len();
    artifact_as(
        &t.stack.url,
        done["id"].as_str().unwrap(),
        "mesh",
        "ply",
        dir.path(),
    )
    .await
    .unwrap();
    let run = t
        .client
        .get_run(done["id"].as_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(run["artifacts"].as_array().unwrap().len(), before);
    let (status, body) = artifact_as(
        &t.stack.url,
        done["id"].as_str().unwrap(),
        "mesh",
        "stl",
        dir.path(),
    )
    .await
    .unwrap_err();
    assert_eq!(status, 400, "{body}");
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hunyuan3d_github_layout_with_its_state_slot_on_gradio_4_44() {
    let (done, layout, mirror, t) = hunyuan("hunyuan3d", Gradio::V4_44, "github").await;
    assert_eq!(layout, "github");
    let dir = tempfile::tempdir().unwrap();
    let mesh = artifact(&t, &done, "mesh", dir.path()).await.unwrap();
    assert!(
        mesh.to_string_lossy().ends_with("mesh.obj"),
        "{}",
        mesh.display()
    );
    assert_facts_match_trimesh(&listed(&done, "mesh")["meta"], &mesh, false);
    assert!(listed(&done, "mesh")["meta"]["faces"].as_u64() > Some(100));
    let textured = artifact(&t, &done, "textured_mesh", dir.path())
        .await
        .unwrap();
    assert_valid_glb(&textured);
    assert_facts_match_trimesh(&listed(&done, "textured_mesh")["meta"], &textured, true);
    let line = log_line(&mirror.output(), "GENERATE").expect("the mirror's GENERATE line");
    let seen: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(seen["seed"].as_f64(), Some(99.0), "{seen}");
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hunyuan3d_shape_on_the_github_layout_on_gradio_4_44() {
    let (done, layout, _mirror, t) = hunyuan("hunyuan3d-shape", Gradio::V4_44, "github").await;
    assert_eq!(layout, "github");
    assert_eq!(done["artifacts"].as_array().unwrap().len(), 1, "{done}");
    let dir = tempfile::tempdir().unwrap();
    let mesh = artifact(&t, &done, "mesh", dir.path()).await.unwrap();
    assert_valid_glb(&mesh);
    assert_facts_match_trimesh(&listed(&done, "mesh")["meta"], &mesh, true);
    assert!(listed(&done, "mesh")["meta"]["faces"].as_u64() > Some(100));
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wonder3d_on_gradio_3_50_over_ws_by_fn_index() {
    let mirror = MirrorSpace::start_under(
        Gradio::V3_50,
        "tests/peers/wonder3d_mirror/app.py",
        &[],
        &[],
    )
    .unwrap();
    let t = stack_for("wonder3d", mirror.url()).await.unwrap();
    let done = run(
        &t,
        "wonder3d",
        // Large enough that its call's data URL (the handle of call 2) passes the stash's bound.
        &[("image", "object.png", noisy_png(256, 256))],
        json!({"seed": 7, "steps": 20}),
    )
    .await
    .unwrap();
    ok(&done);
    let arts = done["artifacts"].as_array().unwrap();
    assert_eq!(arts.len(), 12, "{done}");
    let dir = tempfile::tempdir().unwrap();
    for kind in ["color", "normal"] {
        for view in [
            "front",
            "front_right",
            "right",
            "back",
            "left",
            "front_left",
        ] {
            let path = artifact(&t, &done, &format!("{kind}_{view}"), dir.path())
                .await
                .unwrap();
            assert_eq!(image_size(&path), (256, 256), "{}", path.display());
        }
    }
    // Twelve inline images would pass a DynamoDB item's 400 KB: they waited in the blob store,
    // and the run's row stayed small.
    let stored = t.stored(done["id"].as_str().unwrap()).await;
    let row = serde_json::to_vec(&stored).unwrap().len();
    assert!(row < 64 * 1024, "the run's row holds {row} bytes");
    let outputs = stored.job().outputs.unwrap_or_default();
    assert!(
        outputs.len() == 1 && outputs[0]["stashed"].is_string(),
        "{} outputs kept on the row",
        outputs.len()
    );
    let handle = stored.job().handle.unwrap_or_default();
    assert!(
        handle["stashed"].is_string(),
        "the handle stayed on the row"
    );
    let kept = outputs[0]["stashed"].as_str().unwrap().to_string();
    let blobs = t.stack.steps.ports.blobs.clone();
    assert!(blobs.get(&kept).await.is_ok());
    let line = log_line(&mirror.output(), "RUN_PIPELINE").expect("the mirror's RUN_PIPELINE line");
    let seen: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (seen["seed"].as_f64(), seen["steps"].as_f64()),
        (Some(7.0), Some(20.0)),
        "{seen}"
    );
    t.stack.shutdown().await;
}
