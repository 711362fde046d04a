//! Replica stickiness: Hugging Face's front sets a cookie that routes a browser to the same
//! replica, and a multi-call pipeline must send it back on every later request of the job or
//! its second call may reach a replica that never saw the first. Here the testkit's front
//! before the vggt mirror plays that front: it sets `replica=…` on every answer and records the
//! Cookie header of every request; the job (upload, two calls, their streams, the download)
//! must carry it throughout, across the handle's trip through JSON.

use anyhow::Result;
use futures::StreamExt;

use crate::support::{backend, completed, default_settings, events, job, shared};
use spaceport_core::ports::SpaceBackend;
use spaceport_testkit::SpaceFront;

fn config_reads(front: &SpaceFront) -> usize {
    front
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/config"))
        .count()
}

#[tokio::test]
async fn a_backend_reads_a_spaces_config_once_and_again_when_a_layout_stops_fitting() -> Result<()>
{
    let mirror = shared();
    let front = SpaceFront::start(mirror.url()).await?;
    let url = front.url.clone();
    let backend = backend();
    for _ in 0..3 {
        backend
            .submit(job(&url, &["a.png"], default_settings()))
            .await?;
    }
    assert_eq!(config_reads(&front), 1, "three submits, one reading");

    // A call the kept reading does not have: read again before giving up, then fail.
    let mut bad = job(&url, &["a.png"], default_settings());
    bad.layouts[0].calls[1].api_name = Some("/gradio_demo_v2".into());
    let e = backend.submit(bad).await.unwrap_err();
    assert!(e.to_string().contains("/gradio_demo_v2"), "{e}");
    assert_eq!(config_reads(&front), 2, "a second look before the error");

    // That reading was fresh, so it stays: the next good submit reads nothing.
    backend
        .submit(job(&url, &["a.png"], default_settings()))
        .await?;
    assert_eq!(config_reads(&front), 2);
    Ok(())
}

#[tokio::test]
async fn every_request_of_a_two_call_job_carries_the_replica_cookie() -> Result<()> {
    let mirror = shared();
    let front = SpaceFront::start(mirror.url()).await?;
    front.set_cookie("replica=r7");
    let url = front.url.clone();

    let backend = backend();
    let submitted = backend
        .submit(job(&url, &["a.png", "b.png"], default_settings()))
        .await?;
    // Another process picks the job up from its stored handle.
    let stored: serde_json::Value = serde_json::from_str(&submitted.handle.to_string())?;
    let outputs = completed(&events(&backend, &stored).await?);
    let (mut body, _) = backend.download(&stored, &outputs[0]).await?;
    while let Some(chunk) = body.next().await {
        chunk?;
    }

    let seen = front.seen();
    let (first, rest) = seen.split_first().expect("requests went through the front");
    assert!(first.path.ends_with("/config"), "{seen:?}");
    assert!(first.cookie.is_none(), "{seen:?}");
    for kind in ["/upload", "/queue/join", "/queue/data", "/file="] {
        assert!(
            rest.iter().any(|s| s.path.contains(kind)),
            "no {kind} request: {seen:?}"
        );
    }
    for s in rest {
        assert_eq!(
            s.cookie.as_deref(),
            Some("replica=r7"),
            "{} went without the replica cookie",
            s.path
        );
    }
    Ok(())
}
