//! `POST /v1/batches` (many runs of one pipeline in one request), `GET /v1/batches/{id}` (how
//! far it got) and `GET /v1/batches/{id}/results` (NDJSON: one line per run, each as it ends,
//! in the order they end; the response ends after the last).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use spaceport_core::batch::CreateBatchRequest;
use spaceport_steps::batch::Batch;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::views::RunView;

type ApiResult<T> = Result<T, ApiError>;

/// How long one wait for a run of the batch to end lasts before the stream sends a keep-alive
/// newline (clients skip blank lines).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A batch: its runs and how many are in each status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchView {
    /// `bat_…`.
    pub id: String,
    pub pipeline: String,
    pub created_at: DateTime<Utc>,
    /// How many runs it has.
    pub total: usize,
    /// Runs per status (`queued`, `running`, `succeeded` …).
    pub counts: BTreeMap<String, usize>,
    /// How many have ended.
    pub finished: usize,
    /// Whether every run has ended.
    pub done: bool,
    /// Its runs in the request's order: in the answer to a create, each with its upload URLs;
    /// in `GET`, as they are now.
    pub runs: Vec<RunView>,
}

fn batch_view(batch: &Batch, runs: Vec<RunView>) -> BatchView {
    let mut counts = BTreeMap::new();
    for r in &runs {
        *counts.entry(r.status.clone()).or_insert(0) += 1;
    }
    let finished = runs
        .iter()
        .filter(|r| {
            matches!(
                r.status.as_str(),
                "succeeded" | "failed" | "cancelled" | "expired"
            )
        })
        .count();
    BatchView {
        id: batch.id.clone(),
        pipeline: batch.pipeline.clone(),
        created_at: batch.created_at,
        total: runs.len(),
        counts,
        finished,
        done: finished == runs.len(),
        runs,
    }
}

/// Creates one run per item, each with its own upload URLs and idempotency; every item is
/// checked before any run is created.
#[utoipa::path(post, path = "/v1/batches", request_body(content((CreateBatchRequest = "application/json"))),
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key with the same body returns the same batch (each run's key is `{key}/{position}` unless the item names its own)")),
    responses((status = 201, body = BatchView), (status = 200, body = BatchView, description = "an earlier batch with the same Idempotency-Key"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn create_batch(
    State(st): State<AppState>,
    Caller(api): Caller,
    req: Request,
) -> ApiResult<Response> {
    let headers = req.headers().clone();
    crate::front::require_json(&headers)?;
    let key = crate::create::idempotency_key(&headers)?;
    let body: Result<Bytes, BytesRejection> = Bytes::from_request(req, &st).await;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => crate::limits::too_large(st.gate.body_bytes),
        _ => ApiError::bad_request(None, format!("reading the request body: {e}")),
    })?;
    let parsed: CreateBatchRequest = spaceport_core::access::parse_json_body(&body)?;
    let created = api.create_batch(&parsed, key).await?;
    let mut runs = vec![];
    for c in created.runs {
        runs.push(crate::routes::view(&st, &c.run, c.uploads).await?);
    }
    let status = if created.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(batch_view(&created.batch, runs))).into_response())
}

/// The batch's runs as they are now, with counts per status.
#[utoipa::path(get, path = "/v1/batches/{id}", params(("id" = String, Path, description = "`bat_…`")),
    responses((status = 200, body = BatchView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn get_batch(
    State(st): State<AppState>,
    Caller(api): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<BatchView>> {
    let batch = api.batch(&id).await?;
    let mut runs = vec![];
    for run in api.batch_runs(&batch).await? {
        let uploads = api.uploads(&run).await?;
        runs.push(crate::routes::view(&st, &run, uploads).await?);
    }
    Ok(Json(batch_view(&batch, runs)))
}

/// NDJSON: one line per run (the run as `GET /v1/runs/{id}` shows it, artifact URLs included)
/// as each reaches a terminal state, in the order they end; a blank line every 15 s while none
/// does; the response ends after the last run's line.
#[utoipa::path(get, path = "/v1/batches/{id}/results", params(("id" = String, Path, description = "`bat_…`")),
    responses((status = 200, description = "application/x-ndjson: one run per line as each ends", content_type = "application/x-ndjson"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn batch_results(
    State(st): State<AppState>,
    Caller(api): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let batch = api.batch(&id).await?;
    let total = batch.runs.len();
    let state = (st, api, batch, HashSet::new());
    let lines = futures::stream::unfold(state, move |(st, api, batch, mut seen)| async move {
        if seen.len() >= total {
            return None;
        }
        let chunk = match api.next_finished(&batch, &seen, KEEP_ALIVE).await {
            Ok(ended) if ended.is_empty() => Ok(Bytes::from_static(b"\n")),
            Ok(ended) => {
                let mut out = Vec::new();
                let mut failed = None;
                for run in ended {
                    seen.insert(run.id.clone());
                    match crate::routes::view(&st, &run, vec![]).await {
                        Ok(v) => {
                            let _ = serde_json::to_writer(&mut out, &v);
                            out.push(b'\n');
                        }
                        Err(e) => failed = Some(std::io::Error::other(format!("{e:?}"))),
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None => Ok(Bytes::from(out)),
                }
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        // A read that failed ends the stream (the client sees it cut short and asks again).
        if chunk.is_err() {
            seen.extend(batch.runs.iter().cloned());
        }
        Some((chunk, (st, api, batch, seen)))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}
