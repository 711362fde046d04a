//! Replica stickiness: Hugging Face's front sets a cookie that routes a browser to the same
//! replica, and a multi-call pipeline must send it back on every later request of the job or
//! its second call may reach a replica that never saw the first. Here a small proxy in front of
//! the vggt mirror plays that front: it sets `replica=…` on the first answer and records the
//! Cookie header of every request; the job (upload, two calls, their streams, the download)
//! must carry it throughout, across the handle's trip through JSON.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt;

use crate::support::{backend, completed, default_settings, events, job, shared};
use spaceport_core::ports::SpaceBackend;

/// Each request's path and Cookie header, in order.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Clone)]
struct Front {
    upstream: String,
    http: reqwest::Client,
    seen: Seen,
}

async fn forward(State(front): State<Front>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let cookie = req
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    front.seen.lock().unwrap().push((path.clone(), cookie));
    let mut out = front
        .http
        .request(req.method().clone(), format!("{}{path}", front.upstream));
    for (k, v) in req.headers() {
        if k != "host" {
            out = out.header(k, v);
        }
    }
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let resp = out.body(body).send().await.expect("the mirror answers");
    let mut builder = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        builder = builder.header(k, v);
    }
    // The front pins the client to a replica with the first answer it gives.
    builder = builder.header("set-cookie", "replica=r7; Path=/; HttpOnly");
    builder
        .body(Body::from_stream(resp.bytes_stream()))
        .expect("a response")
}

/// Starts the front before `upstream`: its URL, what it sees, and its task.
async fn start_front(upstream: &str) -> Result<(String, Seen, tokio::task::JoinHandle<()>)> {
    let front = Front {
        upstream: upstream.to_string(),
        http: reqwest::Client::new(),
        seen: Arc::default(),
    };
    let seen = front.seen.clone();
    let app = axum::Router::new().fallback(forward).with_state(front);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, seen, server))
}

fn config_reads(seen: &Seen) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.ends_with("/config"))
        .count()
}

#[tokio::test]
async fn a_backend_reads_a_spaces_config_once_and_again_when_a_layout_stops_fitting() -> Result<()>
{
    let mirror = shared();
    let (url, seen, server) = start_front(mirror.url()).await?;
    let backend = backend();
    for _ in 0..3 {
        backend
            .submit(job(&url, &["a.png"], default_settings()))
            .await?;
    }
    assert_eq!(config_reads(&seen), 1, "three submits, one reading");

    // A call the kept reading does not have: read again before giving up, then fail.
    let mut bad = job(&url, &["a.png"], default_settings());
    bad.layouts[0].calls[1].api_name = Some("/gradio_demo_v2".into());
    let e = backend.submit(bad).await.unwrap_err();
    assert!(e.to_string().contains("/gradio_demo_v2"), "{e}");
    assert_eq!(config_reads(&seen), 2, "a second look before the error");

    // That reading was fresh, so it stays: the next good submit reads nothing.
    backend
        .submit(job(&url, &["a.png"], default_settings()))
        .await?;
    assert_eq!(config_reads(&seen), 2);
    server.abort();
    Ok(())
}

#[tokio::test]
async fn every_request_of_a_two_call_job_carries_the_replica_cookie() -> Result<()> {
    let mirror = shared();
    let (url, seen, server) = start_front(mirror.url()).await?;

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
    server.abort();

    let seen = seen.lock().unwrap().clone();
    let (first, rest) = seen.split_first().expect("requests went through the front");
    assert!(first.0.ends_with("/config"), "{seen:?}");
    assert!(first.1.is_none(), "{seen:?}");
    for kind in ["/upload", "/queue/join", "/queue/data", "/file="] {
        assert!(
            rest.iter().any(|(p, _)| p.contains(kind)),
            "no {kind} request: {seen:?}"
        );
    }
    for (path, cookie) in rest {
        assert_eq!(
            cookie.as_deref(),
            Some("replica=r7"),
            "{path} went without the replica cookie"
        );
    }
    Ok(())
}
