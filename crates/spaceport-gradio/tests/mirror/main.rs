//! The Gradio client and backend against the facebook/vggt mirror (a real Gradio 6.31 server from
//! tests/peers/vggt_mirror). Tests whose assertions depend on the Space's single worker (queue
//! rank, cancel) start their own mirror; the others share one per test binary.

mod matrix;
mod sticky;
mod support;

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use serde_json::{Value, json};
use spaceport_core::ErrorCode;
use spaceport_core::pipeline::BackendSpec;
use spaceport_core::ports::{SpaceBackend, SpaceEvent};
use spaceport_gradio::{
    ClientOptions, Cookies, GradioBackend, GradioClient, JobHandle, Protocol, QueueJob, Token,
};
use spaceport_testkit::{MirrorSpace, free_port, gltf_validate};

use support::*;

#[tokio::test]
async fn discovery_reads_the_vggt_api_as_the_pipeline_assumes() -> Result<()> {
    let mirror = shared();
    let client = GradioClient::new(mirror.url(), ClientOptions::default())?;
    let cfg = client.config(&Cookies::default()).await?;
    assert_eq!(cfg.protocol, Protocol::SseV3);
    assert_eq!(cfg.api_prefix, "/gradio_api");
    assert_eq!(cfg.version.as_deref(), Some("6.31.0"));

    let upload = cfg.endpoint("/update_gallery_on_upload_1").unwrap();
    assert_eq!((upload.inputs.len(), upload.outputs.len()), (2, 4));
    assert!(upload.trigger_id.is_some());
    assert!(cfg.endpoint("/update_gallery_on_upload").is_some());
    let demo = cfg.endpoint("/gradio_demo").unwrap();
    assert_eq!((demo.inputs.len(), demo.outputs.len()), (8, 3));
    let BackendSpec::Space { calls, .. } = vggt().backend else {
        unreachable!()
    };
    for call in &calls {
        cfg.resolve(call)?;
    }

    // The component types behind the indices vggt.toml uses (call 0 output 1, call 1 output 0).
    let info: Value = reqwest::get(format!("{}/gradio_api/info", mirror.url()))
        .await?
        .json()
        .await?;
    let comps = |ep: &str, key: &str| -> Vec<String> {
        info["named_endpoints"][ep][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["component"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        comps("/update_gallery_on_upload_1", "parameters"),
        ["Video", "File"]
    );
    assert_eq!(
        comps("/update_gallery_on_upload_1", "returns"),
        ["Model3d", "Textbox", "Gallery", "Markdown"]
    );
    assert_eq!(
        comps("/gradio_demo", "parameters"),
        [
            "Textbox", "Slider", "Dropdown", "Checkbox", "Checkbox", "Checkbox", "Checkbox",
            "Radio"
        ]
    );
    assert_eq!(
        comps("/gradio_demo", "returns"),
        ["Model3d", "Markdown", "Dropdown"]
    );
    Ok(())
}

#[tokio::test]
async fn a_two_call_vggt_run_returns_a_glb_the_validator_accepts() -> Result<()> {
    let mirror = shared();
    let backend = backend();
    let handle = backend
        .submit(job(
            mirror.url(),
            &["a.png", "b.png", "c.png"],
            default_settings(),
        ))
        .await?
        .handle;
    let evs = events(&backend, &handle).await?;
    let outputs = completed(&evs);
    assert_eq!(outputs.len(), 3);
    let glb = &outputs[0];
    assert!(glb["path"].as_str().unwrap().ends_with(".glb"), "{glb}");

    let (mut stream, _content_type) = backend.download(&handle, glb).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("scene.glb");
    let mut bytes = vec![];
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    assert_eq!(&bytes[..4], b"glTF");
    std::fs::write(&path, &bytes)?;
    let report = gltf_validate(&path)?;
    assert_eq!(report["issues"]["numErrors"], 0, "{report}");
    Ok(())
}

#[tokio::test]
async fn settings_reach_the_space_in_their_positions_and_images_arrive_sorted() -> Result<()> {
    let mirror = shared();
    let backend = backend();
    let mut settings = serde_json::Map::new();
    settings.insert("conf_thres".into(), json!(37.5));
    settings.insert("mask_black_bg".into(), json!(true));
    settings.insert("mask_white_bg".into(), json!(false));
    settings.insert("show_cam".into(), json!(false));
    settings.insert("mask_sky".into(), json!(true));
    settings.insert("prediction_mode".into(), json!("Pointmap Branch"));
    let handle = backend
        .submit(job(mirror.url(), &["c.png", "a.png", "b.png"], settings))
        .await?
        .handle;
    let outputs = completed(&events(&backend, &handle).await?);
    let (echo, images) = echoed(&outputs);
    assert!(
        echo["target_dir"]
            .as_str()
            .unwrap()
            .starts_with("input_images_"),
        "{echo}"
    );
    let expected = json!({
        "conf_thres": 37.5, "frame_filter": "All", "mask_black_bg": true,
        "mask_white_bg": false, "show_cam": false, "mask_sky": true,
        "prediction_mode": "Pointmap Branch",
    });
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&echo[k], v, "setting {k} in {echo}");
    }
    // The same values by position, in the Space's argument order.
    let log = outputs[1].as_str().unwrap();
    let args: Value = serde_json::from_str(
        log.lines()
            .find_map(|l| l.strip_prefix("ARGS "))
            .expect("an ARGS line"),
    )?;
    assert_eq!(
        args,
        json!([
            echo["target_dir"],
            37.5,
            "All",
            true,
            false,
            false,
            true,
            "Pointmap Branch"
        ])
    );
    assert_eq!(images, ["a.png", "b.png", "c.png"]);
    Ok(())
}

#[tokio::test]
async fn a_failing_image_gives_failed_with_the_spaces_message() -> Result<()> {
    let mirror = shared();
    let backend = backend();
    let handle = backend
        .submit(job(
            mirror.url(),
            &["a.png", "x_fail.png"],
            default_settings(),
        ))
        .await?
        .handle;
    let evs = events(&backend, &handle).await?;
    match last(&evs) {
        SpaceEvent::Failed { message, .. } => {
            assert!(message.contains("mirror failure"), "{message}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_wrong_port_is_space_unavailable_and_retryable() -> Result<()> {
    let url = format!("http://127.0.0.1:{}", free_port());
    let backend = backend();
    let err = backend
        .submit(job(&url, &["a.png"], default_settings()))
        .await
        .unwrap_err();
    assert_eq!(
        upstream_code(&err),
        (ErrorCode::SpaceUnavailable, true),
        "{err}"
    );

    let handle = JobHandle::Queue(QueueJob {
        root: url,
        api_prefix: "/gradio_api".into(),
        protocol: Protocol::SseV3,
        fn_index: 4,
        session_hash: "nosuchsession".into(),
        event_id: "nosuchevent".into(),
        cookies: String::new(),
    })
    .to_json();
    let err = backend.watch(&handle).await.err().expect("watch fails");
    assert_eq!(
        upstream_code(&err),
        (ErrorCode::SpaceUnavailable, true),
        "{err}"
    );
    let err = backend.cancel(&handle).await.unwrap_err();
    assert_eq!(
        upstream_code(&err),
        (ErrorCode::SpaceUnavailable, true),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_handle_as_json_is_picked_up_by_a_fresh_backend_and_streams_to_completion() -> Result<()>
{
    let mirror = shared();
    let stored: String = {
        let submitter = backend();
        let handle = submitter
            .submit(job(mirror.url(), &["a.png", "b.png"], default_settings()))
            .await?
            .handle;
        serde_json::to_string(&handle)?
    };
    // The job runs and its messages wait at the Space while nobody reads them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let handle: Value = serde_json::from_str(&stored)?;
    let JobHandle::Queue(parsed) = JobHandle::from_json(&handle)? else {
        panic!("not a queue handle")
    };
    assert_eq!(parsed.root, mirror.url());
    assert_eq!(parsed.protocol, Protocol::SseV3);

    let watcher = backend();
    let evs = events(&watcher, &handle).await?;
    let outputs = completed(&evs);
    assert!(evs.iter().any(|e| is_stage(e, "running")), "{evs:?}");
    let (mut body, _) = watcher.download(&handle, &outputs[0]).await?;
    let first = body.next().await.expect("some bytes")?;
    assert_eq!(&first[..4], b"glTF");
    Ok(())
}

#[tokio::test]
async fn an_unknown_session_hash_is_lost() -> Result<()> {
    let mirror = shared();
    let handle = JobHandle::Queue(QueueJob {
        root: mirror.url().to_string(),
        api_prefix: "/gradio_api".into(),
        protocol: Protocol::SseV3,
        fn_index: 4,
        session_hash: "neverjoined1".into(),
        event_id: "0123456789abcdef".into(),
        cookies: String::new(),
    })
    .to_json();
    let evs = events(&backend(), &handle).await?;
    assert!(matches!(last(&evs), SpaceEvent::Lost { .. }), "{evs:?}");
    assert_eq!(evs.len(), 1, "{evs:?}");
    Ok(())
}

#[tokio::test]
async fn a_stream_dropped_mid_job_never_delivers_the_result() -> Result<()> {
    let mirror = MirrorSpace::start()?;
    let backend = backend();
    let handle = backend
        .submit(job(mirror.url(), &["a_slow.png"], default_settings()))
        .await?
        .handle;
    {
        let mut stream = backend.watch(&handle).await?;
        let first = tokio::time::timeout(EVENT_WAIT, stream.next()).await?;
        assert!(first.is_some());
    }
    // Gradio either forgets the session (`session_not_found` on the next open) or, when it noticed
    // the disconnect between messages, drops the job and keeps the session alive with heartbeats
    // only. Either way the result never comes: the job (10 s) ends well within this window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut stream = backend.watch(&handle).await?;
    let mut seen = vec![];
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(ev) = stream.next().await {
            let lost = matches!(ev, Ok(SpaceEvent::Lost { .. }));
            seen.push(ev);
            if lost {
                break;
            }
        }
    })
    .await;
    assert!(
        seen.iter()
            .all(|e| !matches!(e, Ok(SpaceEvent::Completed { .. }))),
        "{seen:?}"
    );
    assert!(
        seen.is_empty() || matches!(seen.last(), Some(Ok(SpaceEvent::Lost { .. }))),
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_slow_job_reports_progress_and_a_second_job_sees_its_queue_rank() -> Result<()> {
    let mirror = MirrorSpace::start()?;
    let backend = backend();
    let slow = backend
        .submit(job(
            mirror.url(),
            &["a.png", "b_slow.png"],
            default_settings(),
        ))
        .await?
        .handle;
    let slow_watch = Watched::start(&backend, &slow).await?;
    slow_watch
        .wait_for("running", |e| is_stage(e, "running"))
        .await?;

    let second = backend
        .submit(job(mirror.url(), &["c.png"], default_settings()))
        .await?
        .handle;
    let second_watch = Watched::start(&backend, &second).await?;

    let slow_events: Vec<SpaceEvent> = slow_watch.end().await?.into_iter().map(|e| e.1).collect();
    completed(&slow_events);
    let fractions: Vec<f64> = slow_events
        .iter()
        .filter_map(|e| match e {
            SpaceEvent::Progress(p) => p.fraction,
            _ => None,
        })
        .collect();
    assert!(fractions.len() >= 5, "{slow_events:?}");
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    assert!(
        slow_events.iter().any(|e| matches!(e,
            SpaceEvent::Progress(p) if p.message.as_deref() == Some("reconstructing"))),
        "{slow_events:?}"
    );

    let second_events: Vec<SpaceEvent> =
        second_watch.end().await?.into_iter().map(|e| e.1).collect();
    completed(&second_events);
    let queued = second_events
        .iter()
        .find_map(|e| match e {
            SpaceEvent::Progress(p) if p.stage.as_deref() == Some("queued_at_space") => Some(p),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no queue estimation: {second_events:?}"));
    assert!(queued.queue_rank.is_some(), "{queued:?}");
    assert!(queued.queue_size.unwrap_or(0) >= 1, "{queued:?}");
    Ok(())
}

#[tokio::test]
async fn cancel_while_queued_and_while_running_end_cancelled_and_free_the_worker() -> Result<()> {
    let mirror = MirrorSpace::start()?;
    let backend = backend();
    let running = backend
        .submit(job(mirror.url(), &["a_slow.png"], default_settings()))
        .await?
        .handle;
    let running_watch = Watched::start(&backend, &running).await?;
    running_watch
        .wait_for(
            "progress",
            |e| matches!(e, SpaceEvent::Progress(p) if p.fraction.is_some()),
        )
        .await?;

    let queued = backend
        .submit(job(mirror.url(), &["b_slow.png"], default_settings()))
        .await?
        .handle;
    let queued_watch = Watched::start(&backend, &queued).await?;
    queued_watch
        .wait_for("queued", |e| is_stage(e, "queued_at_space"))
        .await?;
    backend.cancel(&queued).await?;
    let queued_events = queued_watch.end().await?;
    assert_eq!(
        queued_events.last().unwrap().1,
        SpaceEvent::Cancelled,
        "{queued_events:?}"
    );

    let cancelled_at = Instant::now();
    backend.cancel(&running).await?;
    let running_events = running_watch.end().await?;
    assert_eq!(
        running_events.last().unwrap().1,
        SpaceEvent::Cancelled,
        "{running_events:?}"
    );

    // The slow job had about 8 s left; the worker must take the next job well before that.
    let next = backend
        .submit(job(mirror.url(), &["c.png"], default_settings()))
        .await?
        .handle;
    let next_events = events(&backend, &next).await?;
    completed(&next_events);
    let took = cancelled_at.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "the next job took {took:?} after the cancel"
    );
    Ok(())
}

#[tokio::test]
async fn the_token_never_shows_in_debug_output_or_errors() -> Result<()> {
    const SECRET: &str = "hf_SpaceportSecretToken123";
    let backend = GradioBackend::with_token(SECRET);
    assert!(!format!("{backend:?}").contains(SECRET));
    let client = GradioClient::new(
        shared().url(),
        ClientOptions {
            token: Some(Token::new(SECRET)),
            ..Default::default()
        },
    )?;
    assert!(!format!("{client:?}").contains(SECRET));

    // The mirror ignores the header: a whole run with it works, and its errors do not show it.
    let handle = backend
        .submit(job(shared().url(), &["a.png"], default_settings()))
        .await?
        .handle;
    completed(&events(&backend, &handle).await?);
    let url = format!("http://127.0.0.1:{}", free_port());
    let err = backend
        .submit(job(&url, &["a.png"], default_settings()))
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(SECRET));
    let JobHandle::Queue(mut h) = JobHandle::from_json(&handle)? else {
        panic!("not a queue handle")
    };
    h.api_prefix = "/nope".into();
    let err = backend
        .cancel(&JobHandle::Queue(h).to_json())
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(SECRET), "{err:?}");
    Ok(())
}

const HANDLE_ENV: &str = "SPACEPORT_TEST_HANDLE";

/// Run by `a_handle_is_picked_up_by_another_process` in a child process; ignored otherwise.
#[tokio::test]
#[ignore = "a child-process helper, started by another test"]
async fn child_process_watches_the_handle_from_its_environment() -> Result<()> {
    let handle: Value = serde_json::from_str(&std::env::var(HANDLE_ENV)?)?;
    let backend = backend();
    let outputs = completed(&events(&backend, &handle).await?);
    let (mut body, _) = backend.download(&handle, &outputs[0]).await?;
    let mut size = 0;
    while let Some(chunk) = body.next().await {
        size += chunk?.len();
    }
    println!("CHILD COMPLETED glb_bytes={size}");
    Ok(())
}

#[tokio::test]
async fn a_handle_is_picked_up_by_another_process() -> Result<()> {
    let mirror = shared();
    let handle = backend()
        .submit(job(mirror.url(), &["a.png", "b.png"], default_settings()))
        .await?
        .handle;
    let exe = std::env::current_exe()?;
    let out = tokio::time::timeout(
        EVENT_WAIT,
        tokio::process::Command::new(exe)
            .args([
                "--exact",
                "child_process_watches_the_handle_from_its_environment",
                "--ignored",
                "--nocapture",
            ])
            .env(HANDLE_ENV, serde_json::to_string(&handle)?)
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD COMPLETED glb_bytes="),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn the_mirror_delay_env_slows_every_reconstruction() -> Result<()> {
    let mirror = MirrorSpace::start_with_env(&[("MIRROR_DELAY_S", "3")])?;
    let backend = backend();
    let handle = backend
        .submit(job(mirror.url(), &["a.png"], default_settings()))
        .await?
        .handle;
    let watched = Watched::start(&backend, &handle).await?;
    let started = watched
        .wait_for("running", |e| is_stage(e, "running"))
        .await?;
    let evs = watched.end().await?;
    let (ended, last) = evs.last().unwrap();
    assert!(matches!(last, SpaceEvent::Completed { .. }), "{evs:?}");
    assert!(
        ended.duration_since(started) >= Duration::from_millis(2900),
        "{:?}",
        ended.duration_since(started)
    );
    Ok(())
}
