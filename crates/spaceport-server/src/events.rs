//! Run events over HTTP: a run's events as Server-Sent Events (resumable with `Last-Event-ID`,
//! heartbeat comments, ending after the terminal event) or as JSON with `?after=N&format=json`,
//! and the feed of every run's events (`GET /v1/events`) for integrations that poll.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use spaceport_core::create::parse_page_limit;
use spaceport_core::ports::FeedQuery;
use spaceport_core::{EventType, RunEvent, RunId};
use spaceport_steps::Accept;

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::views::{EventList, EventView, FeedView};

/// Events read per page of a stream.
const PAGE: usize = 100;
/// How often an idle stream sends a comment, so proxies keep it open and the client knows the
/// server is there (Gradio's own heartbeat is 15 s too).
const HEARTBEAT: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
pub(crate) struct EventsParams {
    after: Option<String>,
    format: Option<String>,
}

fn bad(field: &str, message: String) -> ApiError {
    ApiError::bad_request(Some(field.into()), message)
}

/// Where a client resumes: `Last-Event-ID` (what an EventSource sends back), else `?after=`,
/// else the beginning.
fn resume_point(headers: &HeaderMap, after: Option<&str>) -> Result<u64, ApiError> {
    if let Some(v) = headers.get("last-event-id") {
        let text = v.to_str().unwrap_or_default();
        return text.trim().parse().map_err(|_| {
            bad(
                "Last-Event-ID",
                format!("Last-Event-ID {text:?} is not an event sequence number"),
            )
        });
    }
    match after {
        None => Ok(0),
        Some(a) => a
            .parse()
            .map_err(|_| bad("after", format!("after = {a:?} is not a sequence number"))),
    }
}

/// A run's events: Server-Sent Events (`id:` the sequence number, `event:` the type, `data:` the
/// event) from where the client resumes to the terminal event; with `format=json`, those after
/// `after` as one list.
#[utoipa::path(get, path = "/v1/runs/{id}/events",
    params(("id" = String, Path), ("after" = Option<u64>, Query, description = "resume after this sequence number"),
           ("format" = Option<String>, Query, description = "`json` for a list instead of a stream"),
           ("Last-Event-ID" = Option<u64>, Header, description = "resume after this sequence number (takes precedence)")),
    responses((status = 200, description = "text/event-stream, or the list with format=json", content(
                  (EventList = "application/json"), (String = "text/event-stream"))),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn run_events(
    Caller(api): Caller,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<EventsParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = RunId::parse(&id)?;
    let after = resume_point(&headers, p.after.as_deref())?;
    match p.format.as_deref() {
        Some("json") => {
            let events = api.events(&id, after, 1000).await?;
            let next_after = events.last().map_or(after, |e| e.seq);
            Ok(Json(EventList {
                events: events.iter().map(EventView::from).collect(),
                next_after,
            })
            .into_response())
        }
        None | Some("") | Some("sse") => {
            // 404 before the stream starts, not inside it.
            api.get(&id).await?;
            let stream = follow(api, id, after).map(|e| Ok::<_, Infallible>(sse_event(&e)));
            Ok(Sse::new(stream)
                .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("keep-alive"))
                .into_response())
        }
        Some(other) => Err(bad(
            "format",
            format!("format = {other:?} is not json (leave it out for a stream)"),
        )),
    }
}

fn sse_event(e: &RunEvent) -> Event {
    let data = serde_json::to_string(&EventView::from(e)).unwrap_or_else(|_| "{}".into());
    Event::default()
        .id(e.seq.to_string())
        .event(e.kind.as_str())
        .data(data)
}

/// A run's events after `after`, as they are recorded, ending after the terminal one (or at once
/// when the run ended before `after`). A storage error ends the stream; the client resumes.
fn follow(api: Accept, id: RunId, after: u64) -> impl futures::Stream<Item = RunEvent> {
    futures::stream::unfold(
        (api, id, after, false),
        |(api, id, after, done)| async move {
            if done {
                return None;
            }
            // Listen before reading, so a change between the read and the wait is not missed.
            let mut listener = api.runs().listen();
            loop {
                let events = match api.events(&id, after, PAGE).await {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(run = %id, error = %e, "ending an event stream");
                        return None;
                    }
                };
                if let Some(last) = events.last() {
                    let (seq, ended) = (last.seq, events.iter().any(|e| e.kind.is_terminal()));
                    return Some((events, (api, id, seq, ended)));
                }
                match api.get(&id).await {
                    Ok(run) if run.status.is_terminal() && after >= run.event_seq => return None,
                    Ok(_) => {}
                    Err(_) => return None,
                }
                listener.changed(&id, HEARTBEAT).await;
            }
        },
    )
    .flat_map(futures::stream::iter)
}

#[derive(Debug, Deserialize)]
pub(crate) struct FeedParams {
    after: Option<String>,
    types: Option<String>,
    limit: Option<String>,
}

/// Every run's events (the caller's tenant's) in commit order, a page at a time: pass `next_cursor` back as `after`.
#[utoipa::path(get, path = "/v1/events",
    params(("after" = Option<String>, Query, description = "a next_cursor from an earlier page"),
           ("types" = Option<String>, Query, description = "comma-separated event types (run.succeeded,run.failed)"),
           ("limit" = Option<usize>, Query, description = "1 to 100, default 20")),
    responses((status = 200, body = FeedView), (status = 400, body = ErrorBody)))]
pub(crate) async fn feed(
    Caller(api): Caller,
    ApiQuery(p): ApiQuery<FeedParams>,
) -> Result<Json<FeedView>, ApiError> {
    let limit = parse_page_limit(p.limit.as_deref()).map_err(ApiError::malformed)?;
    let mut types = vec![];
    for t in p
        .types
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(|t| t.trim_matches(|c: char| c.is_ascii_whitespace()))
    {
        if t.is_empty() {
            continue;
        }
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        types.push(EventType::parse(t).ok_or_else(|| {
            bad(
                "types",
                format!("unknown event type {t:?} (known: {})", known.join(", ")),
            )
        })?);
    }
    let page = api
        .feed(&FeedQuery {
            tenant: None, // the caller's own: `api` is confined to its tenant
            after: p.after.filter(|a| !a.is_empty()),
            types,
            limit,
        })
        .await
        .map_err(|e| match e.field() {
            // A malformed cursor is a malformed request.
            Some(_) => ApiError::malformed(e),
            None => e.into(),
        })?;
    Ok(Json(FeedView {
        events: page.events.iter().map(EventView::from).collect(),
        next_cursor: page.next_cursor,
        has_more: page.has_more,
    }))
}
