//! `spaceport pipelines check` and `pipelines new` against the live mirrors: every shipped Space
//! pipeline fits the Space it is for; five broken files each fail (exit 1) naming their slot;
//! a file written by `new` loads and fits the Space it came from.

use std::path::Path;
use std::process::{Command, Output};

use spaceport_testkit::{Gradio, repo_root};

use crate::common::MirrorSpace;

fn spaceport(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spaceport"))
        .args(args)
        .env("SPACEPORT_DATA_DIR", std::env::temp_dir())
        .output()
        .expect("running spaceport")
}

fn shown(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn check(file: &Path, url: &str) -> Output {
    spaceport(&["pipelines", "check", file.to_str().unwrap(), "--space", url])
}

fn shipped(name: &str) -> std::path::PathBuf {
    repo_root().join("pipelines").join(format!("{name}.toml"))
}

fn assert_fits(name: &str, url: &str) {
    let o = check(&shipped(name), url);
    assert!(o.status.success(), "{name}: {}", shown(&o));
    assert!(shown(&o).contains("fits the Space"), "{}", shown(&o));
}

/// A copy of shipped `name` with `from` replaced by `to`, checked: it must fail naming `key`.
fn assert_broken(dir: &Path, name: &str, from: &str, to: &str, url: &str, key: &str, says: &str) {
    let text = std::fs::read_to_string(shipped(name)).unwrap();
    assert!(text.contains(from), "{name} has no {from:?}");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    let o = check(&path, url);
    let out = shown(&o);
    assert_eq!(o.status.code(), Some(1), "{name}: {out}");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("{name}: no line for {key}: {out}"));
    assert!(line.contains(says), "{name}: {line:?} should say {says:?}");
}

#[test]
fn the_vggt_pipeline_fits_the_vggt_mirror() {
    let m = MirrorSpace::start().unwrap();
    assert_fits("vggt", m.url());
}

#[test]
fn kolors_fits_and_a_renamed_endpoint_or_a_missing_input_is_named() {
    let m = MirrorSpace::start_under(Gradio::V4_44, "tests/peers/kolors_mirror/app.py", &[], &[])
        .unwrap();
    assert_fits("kolors-tryon", m.url());
    let dir = tempfile::tempdir().unwrap();
    // 1. An unknown api_name.
    assert_broken(
        dir.path(),
        "kolors-tryon",
        "api_name = \"/tryon\"",
        "api_name = \"/try_on\"",
        m.url(),
        "backend.calls[0]:",
        "no endpoint \"/try_on\" (it has /tryon",
    );
    // 2. The wrong number of inputs.
    assert_broken(
        dir.path(),
        "kolors-tryon",
        "      { setting = \"randomize_seed\" },       # gr.Checkbox\n",
        "",
        m.url(),
        "backend.calls[0].inputs:",
        "takes 4 inputs",
    );

    // `new` writes a file that loads and fits.
    let o = spaceport(&[
        "pipelines",
        "new",
        "--space",
        m.url(),
        "--api-name",
        "/tryon",
        "--name",
        "tryon",
    ]);
    assert!(o.status.success(), "{}", shown(&o));
    let path = dir.path().join("tryon.toml");
    std::fs::write(&path, &o.stdout).unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    for expected in [
        "as = \"image\"",
        "[settings.randomize_seed]",
        "[outputs.result]",
        "[values.seed_used]",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let o = check(&path, m.url());
    assert!(o.status.success(), "{}", shown(&o));
}

#[test]
fn idm_vton_fits_and_a_setting_on_a_component_of_another_type_is_named() {
    let m = MirrorSpace::start_under(
        Gradio::V4_17,
        "tests/peers/idm_vton_mirror/app.py",
        &[],
        &[],
    )
    .unwrap();
    assert_fits("idm-vton", m.url());
    let dir = tempfile::tempdir().unwrap();
    // 3. A boolean setting where the Space has a Number (denoise_steps' slot).
    assert_broken(
        dir.path(),
        "idm-vton",
        "{ setting = \"denoise_steps\" }",
        "{ setting = \"auto_crop\" }",
        m.url(),
        "backend.calls[0].inputs[5]:",
        "setting \"auto_crop\" is a boolean, but the Space's component is a number",
    );
}

#[test]
fn hunyuan3d_fits_both_app_shapes_and_an_unlisted_enum_value_is_named() {
    for (gradio, layout, fits) in [
        (Gradio::V6, "live", "\"space\""),
        (Gradio::V4_44, "github", "\"github\""),
    ] {
        let m = MirrorSpace::start_under(
            gradio,
            "tests/peers/hunyuan3d_mirror/app.py",
            &["--layout", layout],
            &[],
        )
        .unwrap();
        for name in ["hunyuan3d", "hunyuan3d-shape"] {
            let o = check(&shipped(name), m.url());
            assert!(o.status.success(), "{name} on {layout}: {}", shown(&o));
            assert!(
                shown(&o).contains(&format!("ok: layout {fits}")),
                "{name} on {layout}: {}",
                shown(&o)
            );
        }
        if layout == "live" {
            // 4. An enum value the Dropdown does not list.
            let dir = tempfile::tempdir().unwrap();
            assert_broken(
                dir.path(),
                "hunyuan3d",
                "\"512\" = 512",
                "\"1024\" = 1024",
                m.url(),
                "backend.layouts[0].calls[0].inputs[5]:",
                "1024 is not among the choices of the dropdown",
            );
        }
    }
}

#[test]
fn wonder3d_fits_and_a_missing_output_is_named() {
    let m = MirrorSpace::start_under(
        Gradio::V3_50,
        "tests/peers/wonder3d_mirror/app.py",
        &[],
        &[],
    )
    .unwrap();
    assert_fits("wonder3d", m.url());
    let dir = tempfile::tempdir().unwrap();
    // 5. An output the endpoint does not have.
    assert_broken(
        dir.path(),
        "wonder3d",
        "from = { call = 1, index = 11 }",
        "from = { call = 1, index = 12 }",
        m.url(),
        "outputs.normal_front_left.from:",
        "has 12 outputs",
    );
    // A fn_index-only endpoint scaffolds too.
    let o = spaceport(&[
        "pipelines",
        "new",
        "--space",
        m.url(),
        "--fn-index",
        "2",
        "--name",
        "w",
    ]);
    assert!(o.status.success(), "{}", shown(&o));
    let path = dir.path().join("w.toml");
    std::fs::write(&path, &o.stdout).unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("fn_index = 2"));
    assert!(check(&path, m.url()).status.success());
}
