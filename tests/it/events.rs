//! Run events through the API, against the mirror Space: a run's events tell its story numbered
//! without gaps; a Server-Sent Events client that drops mid-run and resumes with `Last-Event-ID`
//! gets every later event exactly once and the stream ends after the terminal one; the feed of
//! every run's events pages with its cursor and filters by type.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::common::*;

/// One Server-Sent Event: its `id:`, `event:` and `data:` (as JSON).
#[derive(Debug, Clone)]
struct Sse {
    id: u64,
    event: String,
    data: Value,
}

/// Reads a `text/event-stream` answer: events as they come, heartbeat comments counted, until
/// the server ends it, `stop` says so, or `within` passes (a bounded wait).
async fn read_stream(
    resp: reqwest::Response,
    within: Duration,
    mut stop: impl FnMut(&[Sse]) -> bool,
) -> (Vec<Sse>, bool) {
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/event-stream"), "content type {ct}");
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut got = vec![];
    let until = Instant::now() + within;
    loop {
        let chunk = match tokio::time::timeout_at(until.into(), body.next()).await {
            Err(_) => panic!("the stream did not end within {within:?}; got {got:?}"),
            Ok(None) => return (got, true),
            Ok(Some(c)) => c.expect("reading the stream"),
        };
        buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse::<u64>().expect("a numeric id"));
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(v.trim()).expect("JSON data"));
                }
            }
            if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                got.push(Sse { id, event, data });
                if stop(&got) {
                    return (got, false);
                }
            }
        }
    }
}

fn events_url(t: &TestStack, id: &str) -> String {
    format!("{}/v1/runs/{id}/events", t.stack.url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_events_tell_its_story_numbered_without_gaps() {
    let mirror = MirrorSpace::start().unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let run = create_and_upload(
        &t.client,
        &[("a.png", png(40, 30, 1)), ("b.png", png(40, 30, 2))],
        json!({}),
        json!({}),
    )
    .await
    .unwrap();
    let id = run["id"].as_str().unwrap();
    let done = wait_terminal(&t.client, id, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");

    let (status, list) =
        send(reqwest::Client::new().get(format!("{}?format=json", events_url(&t, id)))).await;
    assert_eq!(status, 200, "{list}");
    let events = list["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gaps");
    assert_eq!(list["next_after"], json!(seqs.len()));
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "run.created", "{types:?}");
    assert_eq!(types[1], "run.queued", "{types:?}");
    assert_eq!(types[2], "run.started", "{types:?}");
    assert_eq!(*types.last().unwrap(), "run.succeeded", "{types:?}");
    assert_eq!(
        types.iter().filter(|t| **t == "run.succeeded").count(),
        1,
        "{types:?}"
    );
    for e in events {
        assert_eq!(e["run_id"], id);
        assert!(e["id"].as_str().unwrap().starts_with("evt_"), "{e}");
    }
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses[1], "queued");
    assert_eq!(*statuses.last().unwrap(), "succeeded");

    // After the last event there is nothing, and a finished run's stream ends at once.
    let (_, after) = send(reqwest::Client::new().get(format!(
        "{}?format=json&after={}",
        events_url(&t, id),
        seqs.len()
    )))
    .await;
    assert_eq!(after["events"], json!([]), "{after}");
    let resp = reqwest::Client::new()
        .get(events_url(&t, id))
        .header("Last-Event-ID", seqs.len().to_string())
        .send()
        .await
        .unwrap();
    let (got, ended) = read_stream(resp, Duration::from_secs(10), |_| false).await;
    assert!(got.is_empty() && ended, "{got:?}");

    // Bad input is refused clearly; an unknown run is 404.
    let (status, e) =
        send(reqwest::Client::new().get(format!("{}?after=two", events_url(&t, id)))).await;
    assert_eq!(status, 400, "{e}");
    expect_error(&(status, e), 400, "validation_failed");
    let unknown = "run_01JD8X5V3W0000000000000000";
    let got = send(reqwest::Client::new().get(events_url(&t, unknown))).await;
    expect_error(&got, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_that_resumes_with_last_event_id_gets_every_later_event_once() {
    let mirror = MirrorSpace::start().unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    // A slow image: the Space reports progress for about 10 s.
    let run = create_and_upload(
        &t.client,
        &[("slow.png", png(40, 30, 3))],
        json!({}),
        json!({}),
    )
    .await
    .unwrap();
    let id = run["id"].as_str().unwrap();

    // Read until the first progress event, then drop the connection mid-run.
    let resp = reqwest::Client::new()
        .get(events_url(&t, id))
        .send()
        .await
        .unwrap();
    let (first, ended) = read_stream(resp, Duration::from_secs(60), |got| {
        got.iter().any(|e| e.event == "run.progress")
    })
    .await;
    assert!(!ended, "the run is still going: {first:?}");
    let last = first.last().unwrap().id;

    // Resume where it stopped; the stream ends by itself after the terminal event.
    let resp = reqwest::Client::new()
        .get(events_url(&t, id))
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .unwrap();
    let (rest, ended) = read_stream(resp, Duration::from_secs(90), |_| false).await;
    assert!(ended, "the stream ends after the terminal event");
    let all: Vec<&Sse> = first.iter().chain(&rest).collect();
    let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "every event exactly once, in order: {ids:?}"
    );
    assert_eq!(all.last().unwrap().event, "run.succeeded");
    for e in &all {
        assert_eq!(e.data["seq"], e.id);
        assert_eq!(e.data["type"], e.event);
    }
    // The stream said what the list says.
    let (_, list) =
        send(reqwest::Client::new().get(format!("{}?format=json", events_url(&t, id)))).await;
    let listed: Vec<u64> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_pages_every_runs_events_and_filters_by_type() {
    let mirror = MirrorSpace::start().unwrap();
    let t = TestStack::start(mirror.url()).await.unwrap();
    let mut ids = vec![];
    for i in 0..3u8 {
        let run = create_and_upload(
            &t.client,
            &[("a.png", png(40, 30, i))],
            json!({}),
            json!({}),
        )
        .await
        .unwrap();
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        wait_terminal(&t.client, id, Duration::from_secs(90))
            .await
            .unwrap();
    }
    let feed = |query: String| {
        let url = format!("{}/v1/events?{query}", t.stack.url);
        async move { send(reqwest::Client::new().get(url)).await }
    };
    let mut seen: Vec<(String, u64)> = vec![];
    let mut after = String::new();
    for _ in 0..1000 {
        let (status, page) = feed(format!("limit=3&after={after}")).await;
        assert_eq!(status, 200, "{page}");
        for e in page["events"].as_array().unwrap() {
            seen.push((
                e["run_id"].as_str().unwrap().to_owned(),
                e["seq"].as_u64().unwrap(),
            ));
        }
        if page["has_more"] != true {
            break;
        }
        after = page["next_cursor"].as_str().unwrap().to_owned();
    }
    for id in &ids {
        let (_, list) =
            send(reqwest::Client::new().get(format!("{}?format=json", events_url(&t, id)))).await;
        let want: Vec<(String, u64)> = list["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (id.clone(), e["seq"].as_u64().unwrap()))
            .collect();
        let got: Vec<(String, u64)> = seen.iter().filter(|(r, _)| r == id).cloned().collect();
        assert_eq!(got, want, "run {id}: each event once, in the run's order");
    }

    let (status, page) = feed("types=run.succeeded,run.failed&limit=100".into()).await;
    assert_eq!(status, 200, "{page}");
    let types: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["run.succeeded"; 3], "{page}");
    expect_error(
        &feed("types=run.exploded".into()).await,
        400,
        "validation_failed",
    );
    expect_error(
        &feed("after=garbage".into()).await,
        400,
        "validation_failed",
    );
    expect_error(&feed("limit=0".into()).await, 400, "validation_failed");
}
