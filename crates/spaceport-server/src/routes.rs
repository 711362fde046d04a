//! Route handlers. Each parses and checks the request, calls one steps operation, and shapes
//! the answer; a rejected request changes nothing that is stored.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use spaceport_core::create::{parse_page_limit, parse_status_filter};
use spaceport_core::ports::{ListQuery, QueueName};
use spaceport_core::{Run, RunId};
use utoipa::OpenApi;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::views::{
    ArtifactView, AttemptView, ChildRunView, CreateRunRequest, DeliveryList, DeliveryView,
    EventList, EventView, FeedView, InputSourceView, PipelineList, RunList, RunView, TextView,
};

type ApiResult<T> = Result<T, ApiError>;

/// The OpenAPI document, generated from the handlers and view types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Spaceport API",
        version = "1",
        description = "Images in, 3D model or picture out: durable asynchronous jobs on Gradio Spaces and local models."
    ),
    paths(
        list_pipelines,
        get_pipeline,
        crate::create::create_run,
        crate::batches::create_batch,
        crate::batches::get_batch,
        crate::batches::batch_results,
        list_runs,
        get_run,
        start_run,
        cancel_run,
        retry_run,
        delete_run,
        get_artifact,
        crate::events::run_events,
        crate::events::feed,
        crate::webhooks::run_deliveries,
        crate::webhooks::redeliver,
        crate::webhooks::dead_letters,
        healthz,
        readyz
    ),
    components(schemas(
        CreateRunRequest,
        spaceport_core::batch::CreateBatchRequest,
        spaceport_core::batch::BatchItem,
        crate::batches::BatchView,
        RunView,
        RunList,
        PipelineList,
        ErrorBody,
        EventView,
        TextView,
        InputSourceView,
        ChildRunView,
        EventList,
        FeedView,
        DeliveryView,
        DeliveryList,
        AttemptView
    ))
)]
pub struct ApiDoc;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::page::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/pipelines", get(list_pipelines))
        .route("/v1/pipelines/{name}", get(get_pipeline))
        .route("/v1/runs", post(crate::create::create_run).get(list_runs))
        .route("/v1/runs/{id}", get(get_run).delete(delete_run))
        .route("/v1/batches", post(crate::batches::create_batch))
        .route("/v1/batches/{id}", get(crate::batches::get_batch))
        .route(
            "/v1/batches/{id}/results",
            get(crate::batches::batch_results),
        )
        .route("/v1/runs/{id}/start", post(start_run))
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route("/v1/runs/{id}/retry", post(retry_run))
        .route("/v1/runs/{id}/artifacts/{name}", get(get_artifact))
        .route("/v1/runs/{id}/events", get(crate::events::run_events))
        .route("/v1/events", get(crate::events::feed))
        .route(
            "/v1/runs/{id}/deliveries",
            get(crate::webhooks::run_deliveries),
        )
        .route(
            "/v1/runs/{id}/deliveries/{delivery_id}/redeliver",
            post(crate::webhooks::redeliver),
        )
        .route("/v1/deliveries", get(crate::webhooks::dead_letters))
        .route("/v1/uploads/{*key}", put(upload))
        .route("/v1/blobs/{*key}", get(download))
        .method_not_allowed_fallback(crate::guard::method_not_allowed)
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn openapi(State(st): State<AppState>) -> Json<Value> {
    Json(crate::contract::document(&st.api.runs().pipelines))
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Store, queues and blob store are reachable; queue depths and the oldest message's age per step.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "a dependency is down")))]
async fn readyz(State(st): State<AppState>) -> Response {
    let runs = st.api.runs();
    let mut queues = serde_json::Map::new();
    let mut ok = true;
    let mut problems = vec![];
    if let Err(e) = runs
        .store
        .list(&ListQuery {
            limit: 1,
            ..ListQuery::default()
        })
        .await
    {
        ok = false;
        problems.push(format!("run store: {e}"));
    }
    for q in QueueName::ALL {
        match runs.queue.stats(q).await {
            Ok(s) => {
                queues.insert(
                    q.as_str().into(),
                    serde_json::to_value(s).unwrap_or(Value::Null),
                );
            }
            Err(e) => {
                ok = false;
                problems.push(format!("queue {}: {e}", q.as_str()));
            }
        }
    }
    if let Err(e) = st.api.blobs().head("readyz/probe").await {
        ok = false;
        problems.push(format!("blob store: {e}"));
    }
    // Each limited backend: the runs holding its slots and those waiting, in line order.
    let mut backends = serde_json::Map::new();
    match runs.slot_books().await {
        Ok(books) => {
            for (key, book) in books {
                backends.insert(
                    key,
                    json!({"in_flight": book.holders.len(), "waiting": book.waiters.len(),
                           "holders": book.holders, "waiters": book.waiters}),
                );
            }
        }
        Err(e) => {
            ok = false;
            problems.push(format!("backend slots: {e}"));
        }
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"status": if ok {"ok"} else {"unavailable"}, "queues": queues, "backends": backends, "problems": problems}))).into_response()
}

/// Every pipeline.
#[utoipa::path(get, path = "/v1/pipelines", responses((status = 200, body = PipelineList)))]
async fn list_pipelines(State(st): State<AppState>) -> Json<PipelineList> {
    Json(PipelineList {
        pipelines: st
            .api
            .runs()
            .pipelines
            .iter()
            .map(|p| p.describe())
            .collect(),
    })
}

/// One pipeline: inputs, settings (a JSON Schema), outputs.
#[utoipa::path(get, path = "/v1/pipelines/{name}", params(("name" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_pipeline(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(st.api.runs().pipelines.get(&name)?.describe()))
}

pub(crate) async fn view(
    st: &AppState,
    run: &Run,
    uploads: Vec<spaceport_steps::Upload>,
) -> ApiResult<RunView> {
    let mut artifacts = vec![];
    for a in &run.artifacts {
        let (url, url_expires_at) = st
            .api
            .blobs()
            .presign_download(&a.key, Some(&a.filename), st.api.runs().config.download_ttl)
            .await?;
        artifacts.push(ArtifactView {
            name: a.name.clone(),
            filename: a.filename.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
            url,
            url_expires_at,
            meta: a.meta.clone(),
        });
    }
    Ok(RunView::new(run, uploads, artifacts))
}

async fn full_view(st: &AppState, run: &Run) -> ApiResult<RunView> {
    let uploads = st.api.uploads(run).await?;
    view(st, run, uploads).await
}

fn run_id(s: &str) -> ApiResult<RunId> {
    Ok(RunId::parse(s)?)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    status: Option<String>,
    pipeline: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Runs, newest first.
#[utoipa::path(get, path = "/v1/runs",
    params(("status" = Option<String>, Query), ("pipeline" = Option<String>, Query), ("limit" = Option<usize>, Query, description = "1 to 100, default 20"), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = RunList), (status = 400, body = ErrorBody)))]
async fn list_runs(
    State(st): State<AppState>,
    Caller(api): Caller,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<RunList>> {
    let status = parse_status_filter(p.status.as_deref()).map_err(ApiError::malformed)?;
    let limit = parse_page_limit(p.limit.as_deref()).map_err(ApiError::malformed)?;
    let page = api
        .list(&ListQuery {
            tenant: None, // the caller's own: `api` is confined to its tenant
            status,
            pipeline: p.pipeline.filter(|s| !s.is_empty()),
            limit,
            cursor: p.cursor.filter(|s| !s.is_empty()),
        })
        .await
        .map_err(|e| match e.field() {
            // A malformed cursor is a malformed request.
            Some("cursor") => ApiError::malformed(e),
            _ => e.into(),
        })?;
    let mut runs = vec![];
    for r in &page.runs {
        runs.push(view(&st, r, vec![]).await?);
    }
    Ok(Json(RunList {
        runs,
        next_cursor: page.next_cursor,
    }))
}

/// The longest wait a request is held for (`?wait=` on a run or a create).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// A number of seconds to wait (`field` names where it came from), at most `MAX_WAIT`.
pub(crate) fn parse_wait(field: &str, text: &str) -> ApiResult<Duration> {
    let secs: f64 = text
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| {
            ApiError::bad_request(
                Some(field.into()),
                format!("wait = {text:?} must be a number of seconds"),
            )
        })?;
    // Capped before converting: a huge number of seconds is no Duration.
    Ok(Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())))
}

#[derive(Debug, Deserialize)]
struct WaitParams {
    wait: Option<String>,
}

/// A run. `?wait=N` holds the request up to N seconds (at most 60) until its status changes.
#[utoipa::path(get, path = "/v1/runs/{id}", params(("id" = String, Path), ("wait" = Option<u64>, Query)),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody)))]
async fn get_run(
    State(st): State<AppState>,
    Caller(api): Caller,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<WaitParams>,
) -> ApiResult<Json<RunView>> {
    let id = run_id(&id)?;
    let run = match p.wait.as_deref() {
        None => api.get(&id).await?,
        Some(w) => api.wait(&id, None, parse_wait("wait", w)?).await?,
    };
    Ok(Json(full_view(&st, &run).await?))
}

/// Queues a run created with `"start": "manual"` once its inputs have landed.
#[utoipa::path(post, path = "/v1/runs/{id}/start", params(("id" = String, Path)), responses((status = 200, body = RunView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn start_run(
    State(st): State<AppState>,
    Caller(api): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    let run = api.start(&run_id(&id)?).await?;
    Ok(Json(full_view(&st, &run).await?))
}

/// Cancels a live run and stops its job at the Space or worker.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", params(("id" = String, Path)), responses((status = 200, body = RunView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_run(
    State(st): State<AppState>,
    Caller(api): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    let run = api.cancel(&run_id(&id)?).await?;
    Ok(Json(full_view(&st, &run).await?))
}

/// A new run with the same inputs and settings (`retry_of` set).
#[utoipa::path(post, path = "/v1/runs/{id}/retry",
    params(("id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "The same key for the same run returns the first retry")),
    responses((status = 201, body = RunView), (status = 200, body = RunView, description = "the retry made earlier with the same Idempotency-Key"),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retry_run(
    State(st): State<AppState>,
    Caller(api): Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let id = run_id(&id)?;
    let idempotency =
        crate::create::idempotency_key(&headers)?.map(|key| spaceport_core::ports::Idempotency {
            key,
            request_hash: spaceport_core::create::request_hash(
                &serde_json::json!({"retry": id.as_str()}),
            ),
        });
    let created = api.retry(&id, idempotency).await?;
    let status = if created.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(full_view(&st, &created.run).await?)).into_response())
}

/// Deletes a finished run's inputs and artifacts; the record stays, marked `deleted_at`.
#[utoipa::path(delete, path = "/v1/runs/{id}", params(("id" = String, Path)), responses((status = 200, body = RunView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_run(
    State(st): State<AppState>,
    Caller(api): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    let run = api.delete(&run_id(&id)?).await?;
    Ok(Json(full_view(&st, &run).await?))
}

/// Redirects to a signed, short-lived URL of the artifact.
#[derive(Debug, Deserialize)]
struct ArtifactParams {
    format: Option<String>,
}

/// An artifact: `302` to its signed URL. `?format=obj|ply` converts a GLB the first time it is
/// asked for and keeps the result as an artifact of its own (`scene.ply`).
#[utoipa::path(get, path = "/v1/runs/{id}/artifacts/{name}", params(("id" = String, Path), ("name" = String, Path), ("format" = Option<String>, Query)),
    responses((status = 302, description = "to the signed URL"), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_artifact(
    Caller(api): Caller,
    Path((id, name)): Path<(String, String)>,
    ApiQuery(p): ApiQuery<ArtifactParams>,
) -> ApiResult<Response> {
    let format = p.format.unwrap_or_default();
    if !["", "obj", "ply"].contains(&format.to_ascii_lowercase().as_str()) {
        return Err(ApiError::bad_request(
            Some("format".into()),
            format!("format = {format:?} must be obj or ply"),
        ));
    }
    let (_, url, _) = api.artifact_as(&run_id(&id)?, &name, &format).await?;
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

fn signed(st: &AppState) -> ApiResult<&std::sync::Arc<dyn crate::SignedBlobs>> {
    st.signed_blobs
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this server does not serve blobs"))
}

async fn upload(
    State(st): State<AppState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let blobs = signed(&st)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len == 0
    {
        return Err(ApiError::bad_request(None, "the upload body is empty"));
    }
    // Checked before a byte is stored: a replayed URL must not replace what the run recorded.
    st.api.upload_open(&key).await?;
    let stalled = crate::limits::Stalled::default();
    let stream = crate::limits::idle_bounded(body, st.gate.upload_idle, &stalled);
    let meta = match blobs
        .accept_upload(&key, query.as_deref().unwrap_or(""), ct, stream)
        .await
    {
        Ok(meta) => meta,
        Err(_) if stalled.happened() => {
            return Err(crate::limits::Stalled::error(st.gate.upload_idle));
        }
        Err(e) => return Err(e.into()),
    };
    let run = st.api.input_landed(&key, &meta).await?;
    // Bytes that are not what was declared failed the run; the uploader hears it too.
    if let Some(e) = run.as_ref().and_then(|r| r.error.as_ref())
        && e.code == spaceport_core::ErrorCode::InputInvalid
    {
        return Err(spaceport_core::Error::UnsupportedMediaType {
            field: None,
            message: format!("{}; the run failed input_invalid", e.message),
        }
        .into());
    }
    Ok(Json(json!({"size": meta.size, "sha256": meta.sha256})))
}

async fn download(
    State(st): State<AppState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let blobs = signed(&st)?;
    let (stream, meta, filename) = blobs
        .serve_download(&key, query.as_deref().unwrap_or(""))
        .await?;
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        meta.content_type
            .parse()
            .unwrap_or(header::HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, meta.size.into());
    if let Some(f) = filename
        && let Ok(v) = format!("attachment; filename=\"{}\"", f.replace('"', "")).parse()
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = format!("\"{}\"", meta.sha256).parse() {
        h.insert(header::ETAG, v);
    }
    Ok(resp)
}
