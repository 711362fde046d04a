//! The protocol matrix: one small app (tests/peers/matrix/app.py, the fn_index layout of
//! gradio-protocol-legacy.md) run through our client and backend on every Gradio release the
//! test setup installs, one per wire protocol: 3.50.2 (`ws`), 4.8.0 (`sse`), 4.15.0 (`sse_v1`), 4.17.0
//! (`sse_v2`), 4.21.0 (`sse_v2.1`), 4.44.1 (`sse_v3`, routes at the root) and 6.31.0 (`sse_v3` under `/gradio_api`).
//! Each checks discovery, an image in and out, an unnamed endpoint by fn_index, State kept in
//! the job's session across two calls, a file in and a file out, a generator's updates (diffs
//! applied where the version sends them) with progress, an error's text, and a cancel.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::Digest;
use spaceport_core::RunId;
use spaceport_core::ports::{JobInput, SpaceBackend, SpaceEvent, SpaceJob};
use spaceport_gradio::backend::new_session_hash;
use spaceport_gradio::{ClientOptions, Cookies, GradioClient, JobUpdate, Outcome, Protocol};
use spaceport_testkit::{Gradio, MirrorSpace, matrix_pipeline};

use crate::support::{backend, events, fixture, rand_u128};

fn input(name: &str, mime: &str, bytes: Vec<u8>) -> JobInput {
    let bytes = Bytes::from(bytes);
    JobInput {
        filename: name.into(),
        content_type: mime.into(),
        size: bytes.len() as u64,
        body: futures::stream::once(async move { Ok(bytes) }).boxed(),
    }
}

/// Runs `calls` (the last of them joined and watched to its end) and returns the last call's
/// outputs with the handle they can be downloaded through.
async fn run(url: &str, calls: &str, inputs: Vec<(&str, JobInput)>) -> Result<(Value, Vec<Value>)> {
    let p = matrix_pipeline(calls);
    let job = SpaceJob {
        run_id: RunId::new(1, rand_u128()),
        space: "test/matrix".into(),
        url: url.into(),
        layouts: p.layouts(),
        settings: Default::default(),
        inputs: inputs
            .into_iter()
            .map(|(slot, f)| (slot.to_string(), vec![f]))
            .collect(),
    };
    let b = backend();
    let handle = b.submit(job).await?.handle;
    let evs = events(&b, &handle).await?;
    match evs.last() {
        Some(SpaceEvent::Completed { outputs }) => Ok((handle, outputs.clone())),
        other => bail!("expected a completion, got {other:?} after {evs:?}"),
    }
}

async fn download(handle: &Value, file: &Value) -> Result<Vec<u8>> {
    let (mut body, _) = backend().download(handle, file).await?;
    let mut out = vec![];
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Reads updates until `stop` says so or the stream ends (bounded).
async fn updates_until(
    stream: &mut spaceport_gradio::JobStream,
    wait: Duration,
    stop: impl Fn(&JobUpdate) -> bool,
) -> Result<Vec<JobUpdate>> {
    let mut out = vec![];
    let _ = tokio::time::timeout(wait, async {
        while let Some(u) = stream.next_update().await {
            let u = u?;
            let done = stop(&u);
            out.push(u);
            if done {
                break;
            }
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    Ok(out)
}

async fn matrix(g: Gradio) -> Result<()> {
    let mirror = MirrorSpace::start_under(
        g,
        "tests/peers/matrix/app.py",
        &[],
        &[("MATRIX_STEP_S", "0.3")],
    )?;
    let url = mirror.url();
    let client = GradioClient::new(url, ClientOptions::default())?;
    let config = client.config(&Cookies::default()).await?;
    let shown = || mirror.output();

    // Discovery.
    assert_eq!(config.protocol.as_str(), g.protocol());
    assert_eq!(config.version.as_deref(), Some(g.version()));
    let prefix = if g == Gradio::V6 { "/gradio_api" } else { "" };
    assert_eq!(config.api_prefix, prefix);
    let double = config.by_fn_index(1).context("fn_index 1")?;
    assert_eq!(double.api_name, None, "fn_index 1 is unnamed on {g:?}");
    assert!(config.endpoint("accumulate").unwrap().inputs[0].is_state());
    assert_eq!(config.canceller_of(3).map(|e| e.fn_index), Some(5));

    // An image in and out: 3.x takes and returns base64 data URLs, 4.x+ files.
    let png = fixture("red.png");
    let (w, h) = {
        let i = image::load_from_memory(&png)?;
        (i.width(), i.height())
    };
    let (handle, out) = run(
        url,
        r#"{ api_name = "/process", inputs = [{ input = "image", as = "image" }, { value = 2 }, { value = true }] }"#,
        vec![("image", input("in.png", "image/png", png.clone()))],
    )
    .await
    .with_context(shown)?;
    let img = image::load_from_memory(&download(&handle, &out[0]).await?)?;
    assert_eq!((img.width(), img.height()), (h, w), "transposed on {g:?}");
    let text = out[1].as_str().unwrap();
    assert!(
        text.starts_with(&format!("size=({w}, {h}) mode=RGB n=2")),
        "{text}"
    );

    // An unnamed endpoint, called by fn_index (3.x answers floats).
    let (_, out) = run(
        url,
        r#"{ fn_index = 1, inputs = [{ value = 21 }] }"#,
        vec![],
    )
    .await?;
    assert_eq!(out[0].as_f64(), Some(42.0), "{out:?}");

    // State: two calls of one job share its session, so the second sees the first's total.
    let (_, out) = run(
        url,
        r#"{ api_name = "/accumulate", inputs = [{ null = true }, { value = 5 }] },
           { api_name = "/accumulate", inputs = [{ null = true }, { value = 7 }] }"#,
        vec![],
    )
    .await?;
    assert_eq!(out[0], Value::Null, "a State output comes back null");
    let total = out[1].as_str().unwrap();
    assert!(total == "total=12" || total == "total=12.0", "{total}");

    // A file in (uploaded) and a file out (served).
    let doc = b"hello matrix\n".to_vec();
    let (_, out) = run(
        url,
        r#"{ api_name = "/file_info", inputs = [{ input = "doc", as = "file" }] }"#,
        vec![("doc", input("in.txt", "text/plain", doc.clone()))],
    )
    .await?;
    let sha = hex::encode(sha2::Sha256::digest(&doc));
    let info = out[0].as_str().unwrap();
    assert!(
        info.contains(&format!("size={} sha256={sha}", doc.len())),
        "{info}"
    );
    let (handle, out) = run(
        url,
        r#"{ api_name = "/make_file", inputs = [{ value = "hello file" }] }"#,
        vec![],
    )
    .await?;
    assert_eq!(download(&handle, &out[0]).await?, b"hello file");

    // A generator: every step seen in full (diffs applied on sse_v2 and later), with progress.
    let slow = config.endpoint("slow").unwrap().clone();
    let session = new_session_hash();
    let cookies = Cookies::default();
    let handle = client
        .join(&config, &slow, &[json!(3)], &session, &cookies)
        .await?;
    let mut stream = client.open(&handle).await?;
    let got = updates_until(&mut stream, Duration::from_secs(60), JobUpdate::is_terminal).await?;
    let steps: Vec<Value> = got
        .iter()
        .filter_map(|u| match u {
            JobUpdate::Generating { outputs } => Some(outputs[0].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        vec![json!("step 0"), json!("step 1"), json!("step 2")],
        "{g:?}: {got:?}"
    );
    assert!(
        got.iter().any(|u| matches!(u, JobUpdate::Progress { .. })),
        "{g:?} reports gr.Progress: {got:?}"
    );
    assert!(
        got.contains(&JobUpdate::Log {
            message: "slow: 3 steps".into()
        }),
        "{g:?} passes gr.Info on: {got:?}"
    );
    assert_eq!(
        got.last(),
        Some(&JobUpdate::Finished(Outcome::Completed(vec![json!(
            "step 2"
        )])))
    );

    // The Space's error text.
    let handle = client
        .join(&config, &slow, &[json!(-1)], &new_session_hash(), &cookies)
        .await?;
    let got = client.open(&handle).await?.finish().await?;
    match got {
        Ok(Outcome::Failed(m)) => assert!(m.contains("negative number not allowed"), "{m}"),
        other => bail!("{g:?}: expected a failure, got {other:?}"),
    }

    // Cancel: /cancel on sse_v3, the Stop dependency elsewhere. The generator stops either way;
    // what the stream says after it depends on the version.
    let handle = client
        .join(&config, &slow, &[json!(40)], &new_session_hash(), &cookies)
        .await?;
    let mut stream = client.open(&handle).await?;
    let first = updates_until(&mut stream, Duration::from_secs(30), |u| {
        matches!(u, JobUpdate::Generating { .. })
    })
    .await?;
    assert!(
        matches!(first.last(), Some(JobUpdate::Generating { .. })),
        "{g:?}: {first:?}"
    );
    client.cancel(&handle).await?;
    let after = updates_until(&mut stream, Duration::from_secs(4), JobUpdate::is_terminal).await?;
    let generated = after
        .iter()
        .filter(|u| matches!(u, JobUpdate::Generating { .. }))
        .count();
    assert!(
        generated <= 2,
        "{g:?} kept generating after the cancel: {after:?}"
    );
    match (config.protocol, after.last()) {
        (Protocol::SseV3, Some(JobUpdate::Finished(Outcome::Cancelled))) => {}
        (Protocol::Ws, Some(JobUpdate::Lost { .. })) => {}
        // No completion on sse, sse_v1, sse_v2 and sse_v2.1 after a cancel: the stream only carries
        // heartbeats, and the run's own state says it was cancelled.
        (Protocol::Sse | Protocol::SseV1 | Protocol::SseV2 | Protocol::SseV2_1, last) => {
            assert!(
                !last.is_some_and(JobUpdate::is_terminal),
                "{g:?}: {after:?}"
            )
        }
        (p, last) => bail!("{g:?} ({p}): unexpected end after a cancel: {last:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn matrix_gradio_3_50_ws() -> Result<()> {
    matrix(Gradio::V3_50).await
}

#[tokio::test]
async fn matrix_gradio_4_8_sse() -> Result<()> {
    matrix(Gradio::V4_8).await
}

#[tokio::test]
async fn matrix_gradio_4_15_sse_v1() -> Result<()> {
    matrix(Gradio::V4_15).await
}

#[tokio::test]
async fn matrix_gradio_4_17_sse_v2() -> Result<()> {
    matrix(Gradio::V4_17).await
}

#[tokio::test]
async fn matrix_gradio_4_21_sse_v2_1() -> Result<()> {
    matrix(Gradio::V4_21).await
}

#[tokio::test]
async fn matrix_gradio_4_44_sse_v3_at_the_root() -> Result<()> {
    matrix(Gradio::V4_44).await
}

#[tokio::test]
async fn matrix_gradio_6_sse_v3_under_gradio_api() -> Result<()> {
    matrix(Gradio::V6).await
}
