//! Pipeline files: the shipped ones load, and every kind of mistake is a load error naming the
//! file and the key.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};
use spaceport_core::pipeline::{
    Arg, BackendSpec, DeclaredFile, FileForm, OutputRef, Pipeline, PipelineSet,
};

fn pipelines_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines")
}

fn vggt() -> Pipeline {
    PipelineSet::load_dir(&pipelines_dir())
        .unwrap()
        .get("vggt")
        .unwrap()
        .clone()
}

fn vggt_text() -> String {
    std::fs::read_to_string(pipelines_dir().join("vggt.toml")).unwrap()
}

#[test]
fn shipped_pipelines_load() {
    let set = PipelineSet::load_dir(&pipelines_dir()).unwrap();
    assert!(set.get("vggt").is_ok());
    let onnx = set.get("vggt-onnx").unwrap();
    assert_eq!(onnx.backend_kind(), "onnx");
    assert_eq!(
        onnx.outputs.keys().collect::<Vec<_>>(),
        ["predictions", "scene"]
    );
    assert_eq!(
        set.get("vggt").unwrap().fallback.as_deref(),
        Some("vggt-onnx")
    );
    // The fallback takes the same settings and inputs.
    assert_eq!(onnx.settings, set.get("vggt").unwrap().settings);
    assert_eq!(onnx.inputs, set.get("vggt").unwrap().inputs);
}

#[test]
fn the_builtin_pipelines_are_the_shipped_files() {
    let dir = PipelineSet::load_dir(&pipelines_dir()).unwrap();
    let builtin = PipelineSet::builtin();
    let names = |s: &PipelineSet| s.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&builtin), names(&dir));
    for name in [
        "vggt",
        "vggt-onnx",
        "kolors-tryon",
        "idm-vton",
        "hunyuan3d",
        "hunyuan3d-shape",
        "wonder3d",
    ] {
        assert_eq!(builtin.get(name).unwrap(), dir.get(name).unwrap(), "{name}");
    }
}

#[test]
fn hunyuan3d_lists_both_app_shapes_and_where_each_puts_its_mesh() {
    let set = PipelineSet::builtin();
    let p = set.get("hunyuan3d").unwrap();
    let layouts = p.layouts();
    let shapes: Vec<(&str, usize)> = layouts
        .iter()
        .map(|l| (l.name.as_str(), l.calls[0].inputs.len()))
        .collect();
    assert_eq!(shapes, [("space", 7), ("github", 13)]);
    assert_eq!(
        layouts[1].calls[0].args()[0],
        Arg::Value(Value::Null),
        "the State slot"
    );
    let glb = p.output_spec("mesh", Some("space")).unwrap();
    let obj = p.output_spec("mesh", Some("github")).unwrap();
    assert_eq!(
        (glb.content_type.as_str(), glb.filename.as_str()),
        ("model/gltf-binary", "mesh.glb")
    );
    assert_eq!(
        (obj.content_type.as_str(), obj.filename.as_str()),
        ("model/obj", "mesh.obj")
    );
    assert_eq!(
        p.output_spec("textured_mesh", Some("github"))
            .unwrap()
            .filename,
        "textured_mesh.glb"
    );
}

#[test]
fn non_file_outputs_are_picked_and_typed() {
    let set = PipelineSet::builtin();
    let kolors = set.get("kolors-tryon").unwrap();
    let got = kolors
        .extract_values(
            None,
            &[
                json!({"path": "/tmp/r.webp"}),
                json!(123.0),
                json!("Success"),
            ],
        )
        .unwrap();
    assert_eq!(Value::Object(got), json!({"seed": 123, "info": "Success"}));
    let e = kolors
        .extract_values(None, &[json!(null), json!("x"), json!("Empty image")])
        .unwrap_err();
    assert!(e.contains("\"seed\""), "{e}");
    let e = kolors.extract_values(None, &[json!(null)]).unwrap_err();
    assert!(e.contains("returned nothing"), "{e}");
}

#[test]
fn layouts_and_values_mistakes_name_their_key() {
    let base = std::fs::read_to_string(pipelines_dir().join("kolors-tryon.toml")).unwrap();
    let cases = [
        (
            base.replace("[values.info]", "[values.result]"),
            "values.result",
        ),
        (
            base.replace(
                "from = { call = 0, index = 2 }",
                "from = { call = 1, index = 2 }",
            ),
            "values.info.from",
        ),
        (
            base.replace("type = \"text\"", "type = \"blob\""),
            "unknown variant",
        ),
        (
            base.replace(
                "[backend]\nkind = \"space\"",
                "[backend]\nkind = \"space\"\nlayouts = [{ name = \"a\", calls = [] }]",
            ),
            "backend.calls",
        ),
    ];
    for (text, key) in cases {
        let e = Pipeline::from_toml("kolors-tryon.toml", &text).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains(key), "{key}: {shown}");
    }
}

#[test]
fn vggt_calls_follow_the_space() {
    let p = vggt();
    let BackendSpec::Space { space, calls, .. } = &p.backend else {
        panic!("space backend")
    };
    assert_eq!(space, "facebook/vggt");
    assert_eq!(
        calls[0].api_name.as_deref(),
        Some("/update_gallery_on_upload_1")
    );
    assert_eq!(
        calls[0].args(),
        vec![
            Arg::Value(Value::Null),
            Arg::Input {
                slot: "images".into(),
                form: FileForm::Files
            }
        ]
    );
    assert_eq!(calls[1].api_name.as_deref(), Some("/gradio_demo"));
    let args = calls[1].args();
    assert_eq!(args.len(), 8);
    assert_eq!(
        args[0],
        Arg::Output(OutputRef {
            call: 0,
            index: 1,
            item: None
        })
    );
    assert_eq!(args[2], Arg::Value(json!("All")));
    assert_eq!(args[7], Arg::Setting("prediction_mode".into()));
}

#[test]
fn settings_fill_defaults_and_map_enums() {
    let p = vggt();
    let mut given = Map::new();
    given.insert("prediction_mode".into(), json!("pointmap"));
    given.insert("conf_thres".into(), json!(45));
    let resolved = p.resolve_settings(&given).unwrap();
    assert_eq!(resolved["conf_thres"], json!(45));
    assert_eq!(resolved["show_cam"], json!(true));
    assert_eq!(resolved["mask_sky"], json!(false));
    let backend = p.backend_settings(&resolved);
    assert_eq!(backend["prediction_mode"], json!("Pointmap Branch"));
    let defaults = p.backend_settings(&p.resolve_settings(&Map::new()).unwrap());
    assert_eq!(
        defaults["prediction_mode"],
        json!("Depthmap and Camera Branch")
    );
    assert_eq!(defaults["conf_thres"], json!(50.0));
}

#[test]
fn bad_settings_name_the_field() {
    let p = vggt();
    for (body, field) in [
        (json!({"nope": 1}), "settings.nope"),
        (json!({"conf_thres": 101}), "settings.conf_thres"),
        (json!({"conf_thres": -1}), "settings.conf_thres"),
        (json!({"conf_thres": "high"}), "settings.conf_thres"),
        (json!({"show_cam": "yes"}), "settings.show_cam"),
        (
            json!({"prediction_mode": "points"}),
            "settings.prediction_mode",
        ),
    ] {
        let err = p.resolve_settings(body.as_object().unwrap()).unwrap_err();
        assert_eq!(err.field(), Some(field), "{body}");
        assert!(
            err.to_string()
                .contains(field.trim_start_matches("settings.")),
            "{err}"
        );
    }
}

#[test]
fn schema_has_ranges_defaults_and_enums() {
    let s = vggt().settings_schema();
    assert_eq!(s["properties"]["conf_thres"]["maximum"], json!(100.0));
    assert_eq!(s["properties"]["conf_thres"]["default"], json!(50.0));
    assert_eq!(
        s["properties"]["prediction_mode"]["enum"],
        json!(["depth", "pointmap"])
    );
    assert_eq!(s["additionalProperties"], json!(false));
}

fn files(n: usize, ct: &str, size: u64) -> BTreeMap<String, Vec<DeclaredFile>> {
    let v = (0..n)
        .map(|i| DeclaredFile {
            filename: format!("img{i}.png"),
            content_type: ct.into(),
            size,
        })
        .collect();
    BTreeMap::from([("images".to_string(), v)])
}

#[test]
fn inputs_are_checked_against_the_slot() {
    let p = vggt();
    p.check_inputs(&files(3, "image/png", 100)).unwrap();
    assert_eq!(
        p.check_inputs(&files(0, "image/png", 100))
            .unwrap_err()
            .code(),
        "validation_failed"
    );
    assert_eq!(
        p.check_inputs(&files(201, "image/png", 100))
            .unwrap_err()
            .code(),
        "validation_failed"
    );
    assert_eq!(
        p.check_inputs(&files(1, "image/gif", 100))
            .unwrap_err()
            .code(),
        "unsupported_media_type"
    );
    let err = p
        .check_inputs(&files(1, "image/png", 20_000_001))
        .unwrap_err();
    assert_eq!(err.code(), "payload_too_large");
    assert_eq!(err.field(), Some("inputs.images[0].size"));
    for bad in ["../x.png", "a/b.png", "x\0.png", "..", ""] {
        let mut d = files(1, "image/png", 10);
        d.get_mut("images").unwrap()[0].filename = bad.into();
        let err = p.check_inputs(&d).unwrap_err();
        assert_eq!(err.field(), Some("inputs.images[0].filename"), "{bad:?}");
    }
}

fn load_err(text: &str) -> String {
    Pipeline::from_toml("vggt.toml", text)
        .unwrap_err()
        .to_string()
}

#[test]
fn unknown_keys_are_load_errors() {
    let text = vggt_text().replace("deadline_s = 900", "deadline_s = 900\ncolour = \"red\"");
    let e = load_err(&text);
    assert!(e.starts_with("vggt.toml:") && e.contains("colour"), "{e}");
    let text = vggt_text().replace("minimum = 0\n", "minimum = 0\nminimun = 1\n");
    assert!(load_err(&text).contains("minimun"));
}

#[test]
fn bad_references_are_load_errors() {
    let e =
        load_err(&vggt_text().replace("{ setting = \"mask_sky\" }", "{ setting = \"mask_skye\" }"));
    assert!(
        e.contains("backend.calls[1].inputs[6].setting") && e.contains("mask_skye"),
        "{e}"
    );
    let e = load_err(&vggt_text().replace(
        "{ input = \"images\", as = \"files\" }",
        "{ input = \"photos\" }",
    ));
    assert!(e.contains("backend.calls[0].inputs[1].input"), "{e}");
    let e = load_err(&vggt_text().replace(
        "{ output = { call = 0, index = 1 } }",
        "{ output = { call = 1, index = 1 } }",
    ));
    assert!(e.contains("backend.calls[1].inputs[0].output"), "{e}");
    let e = load_err(&vggt_text().replace(
        "from = { call = 1, index = 0 }",
        "from = { call = 4, index = 0 }",
    ));
    assert!(e.contains("outputs.scene.from"), "{e}");
    let e =
        load_err(&vggt_text().replace("{ value = \"All\" }", "{ value = \"All\", null = true }"));
    assert!(e.contains("backend.calls[1].inputs[2]"), "{e}");
}

#[test]
fn out_of_range_defaults_are_load_errors() {
    let e = load_err(&vggt_text().replace("default = 50", "default = 150"));
    assert!(e.contains("settings.conf_thres.default"), "{e}");
    let e = load_err(&vggt_text().replace("default = \"depth\"", "default = \"mesh\""));
    assert!(e.contains("settings.prediction_mode.default"), "{e}");
}

#[test]
fn a_missing_fallback_is_a_load_error() {
    let text = vggt_text().replace("fallback = \"vggt-onnx\"", "fallback = \"nowhere\"");
    let e = PipelineSet::from_files([("vggt.toml", text.as_str())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("fallback") && e.contains("nowhere"), "{e}");
}

#[test]
fn space_url_override_applies() {
    let mut set = PipelineSet::load_dir(&pipelines_dir()).unwrap();
    set.set_space_url("vggt", "http://127.0.0.1:7860/").unwrap();
    let BackendSpec::Space { url, .. } = &set.get("vggt").unwrap().backend else {
        panic!()
    };
    assert_eq!(url.as_deref(), Some("http://127.0.0.1:7860"));
    assert_eq!(
        spaceport_core::pipeline::space_base_url("facebook/vggt"),
        "https://facebook-vggt.hf.space"
    );
}
