//! The run page in a real browser (tests/browser/page.test.mjs: Debian's chromium driven by
//! playwright-core) against the embedded stack behind an API key, with run tokens on, and the
//! vggt and Kolors mirror Spaces: the key asked for once, a validation error at its field, a
//! vggt run followed to `succeeded` with its scene drawn in the 3D canvas, cancel and retry, a
//! try-on result beside its photo, the live runs list, and a phone holding only a run token.
//! axe-core's WCAG 2.1 A/AA rules pass at each state. The runs the page made are then checked
//! through the API. Screenshots of each state are kept
//! in `target/tmp/page-screenshots/`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use spaceport_cli::config::{Config, PipelineOverride, Secret};
use spaceport_testkit::{Gradio, repo_root};

use crate::common::*;

/// The whole browser session: seven states, three runs to their end.
const BROWSER_WITHIN: Duration = Duration::from_secs(360);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_page_does_the_whole_job_in_a_browser() {
    // The vggt mirror takes 3 s per reconstruction, so a run can be cancelled mid-way.
    let vggt = MirrorSpace::start_with_env(&[("MIRROR_DELAY_S", "3")]).expect("vggt mirror");
    let kolors =
        MirrorSpace::start_under(Gradio::V4_44, "tests/peers/kolors_mirror/app.py", &[], &[])
            .expect("kolors mirror");
    let (key, entry) = api_key("page", "acme", &["runs:read", "runs:write"]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        api_keys: vec![entry],
        run_token_secret: Some(Secret::new("page-test-run-token-secret-0123456789")),
        run_token_ttl_s: Some(600),
        ..config(dir.path(), vggt.url())
    };
    cfg.pipelines.insert(
        "kolors-tryon".into(),
        PipelineOverride {
            space_url: Some(kolors.url().into()),
            ..PipelineOverride::default()
        },
    );
    let t = TestStack::start_config(cfg).await.unwrap();
    let client = t.client.clone().with_key(Some(key.clone()));

    let files = write_files(
        dir.path(),
        &[
            ("person.png", png(96, 128, 3)),
            ("garment.png", png(64, 64, 9)),
        ],
    );
    let examples = repo_root().join("examples/vggt");
    let images: Vec<String> = (0..3)
        .map(|i| examples.join(format!("view{i}.png")).display().to_string())
        .collect();
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("page-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    let mut node = tokio::process::Command::new("node");
    node.arg(repo_root().join("tests/browser/page.test.mjs"))
        .arg(&t.stack.url)
        .arg(&shots)
        .env("PAGE_KEY", &key)
        .env("PAGE_IMAGES", images.join(":"))
        .env("PAGE_PERSON", &files[0])
        .env("PAGE_GARMENT", &files[1])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(BROWSER_WITHIN, node.output())
        .await
        .expect("the browser session ends within its bound")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PAGE RESULT "))
        .expect("the session's result line");
    let result: Value = serde_json::from_str(line).unwrap();
    println!("{}", serde_json::to_string_pretty(&result).unwrap());

    // What the page showed is what the API says.
    let id = |k: &str| result[k].as_str().unwrap().to_string();
    let vggt_run = client.get_run(&id("vggt"), None).await.unwrap();
    assert_eq!(vggt_run["status"], "succeeded");
    assert_eq!(vggt_run["settings"]["conf_thres"], 40.0);
    assert_eq!(vggt_run["inputs"]["images"].as_array().unwrap().len(), 3);
    let cancelled = client.get_run(&id("cancelled"), None).await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    let retried = client.get_run(&id("retried"), None).await.unwrap();
    assert_eq!(retried["retry_of"], id("cancelled"));
    let tryon = client.get_run(&id("tryon"), None).await.unwrap();
    assert_eq!(tryon["status"], "succeeded");
    assert!(
        result["validation_message"]
            .as_str()
            .unwrap()
            .contains("conf_thres")
    );
    // No run was made by the refused form: the page's runs are the ones it reported.
    let listed = client.list_runs(&[("limit", "50".into())]).await.unwrap();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 5, "{listed}");
    for name in [
        "01-key-dialog",
        "02-validation-error",
        "03-vggt-succeeded",
        "04-cancelled",
        "05-tryon",
        "06-runs",
        "07-phone-run",
    ] {
        let png = shots.join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&png)
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "{}",
            png.display()
        );
    }
}
