//! `POST /v1/runs`: a JSON body declaring the files to upload (or URLs to fetch), or — for the
//! clients that send everything at once — a `multipart/form-data` form whose text fields are the
//! JSON body's (`pipeline`, `settings` and `metadata` as JSON, …) and whose files stream
//! straight into the blob store under their slot's name. `?wait=N` (or `Prefer: wait=N`) holds
//! the answer until the run ends, up to N seconds. The answer carries a run token when the
//! server issues them.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Map, Value};
use spaceport_core::create::request_hash;
use spaceport_core::ports::Idempotency;
use spaceport_core::run_token::RunToken;
use spaceport_core::{CreateRunRequest, Error, Run};
use spaceport_steps::{Accept, Created};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::routes::parse_wait;
use crate::views::RunView;

type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, Deserialize)]
pub(crate) struct CreateParams {
    wait: Option<String>,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    Ok(spaceport_core::access::parse_json_body(body)?)
}

/// Creates a run. With a JSON body the answer lists where to upload each declared file (URL
/// inputs are fetched first); with a multipart form (text fields as in the JSON body, with
/// `settings`, `metadata` and `webhook` as JSON text; each file part named after its input
/// slot) the files come with it and the run is queued at once. `?wait=N` answers when the run
/// ends or after N seconds (at most 60).
#[utoipa::path(post, path = "/v1/runs", request_body(content(
        (CreateRunRequest = "application/json"),
        (Object = "multipart/form-data")
    )),
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key with the same body returns the same run"),
           ("wait" = Option<f64>, Query, description = "answer when the run ends or after this many seconds (at most 60 are waited; `Prefer: wait=N` says the same)")),
    responses((status = 201, body = RunView), (status = 200, body = RunView, description = "an earlier run with the same Idempotency-Key"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn create_run(
    State(st): State<AppState>,
    Caller(api): Caller,
    ApiQuery(p): ApiQuery<CreateParams>,
    req: Request,
) -> ApiResult<Response> {
    let headers = req.headers().clone();
    let wait = wait_of(p.wait.as_deref(), &headers)?;
    let key = idempotency_key(&headers)?;
    let created = if is_multipart(&headers) {
        crate::front::check_form_origin(&headers, &st.front)?;
        let stalled = crate::limits::Stalled::default();
        let body = crate::limits::idle_bounded(req.into_body(), st.gate.upload_idle, &stalled);
        match create_from_form(&api, &headers, body, key, st.gate.body_bytes).await {
            Ok(created) => created,
            Err(_) if stalled.happened() => {
                return Err(crate::limits::Stalled::error(st.gate.upload_idle));
            }
            Err(e) => return Err(e),
        }
    } else {
        crate::front::require_json(&headers)?;
        // A body sent without a length is cut off at the limit as it is read.
        let body: Result<Bytes, BytesRejection> = Bytes::from_request(req, &st).await;
        let body = body.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => crate::limits::too_large(st.gate.body_bytes),
            _ => ApiError::bad_request(None, format!("reading the request body: {e}")),
        })?;
        let parsed: CreateRunRequest = parse_json(&body)?;
        let idempotency = key.map(|key| Idempotency {
            key,
            request_hash: request_hash(&serde_json::from_slice(&body).unwrap_or(Value::Null)),
        });
        api.create(&parsed, idempotency).await?
    };
    let status = if created.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let (mut run, mut uploads) = (created.run, created.uploads);
    if let Some(wait) = wait.filter(|_| !run.status.is_terminal()) {
        run = wait_until_done(&api, &run, wait).await?;
        uploads = api.uploads(&run).await?;
    }
    let mut view = crate::routes::view(&st, &run, uploads).await?;
    if let Some(tokens) = &st.gate.run_tokens {
        let exp = chrono::Utc::now()
            + chrono::Duration::from_std(tokens.ttl).unwrap_or(chrono::Duration::minutes(15));
        let grant = RunToken {
            run: run.id.clone(),
            tenant: run.tenant.clone(),
            exp: exp.timestamp(),
        };
        view.run_token = Some(grant.mint(&tokens.secret));
        view.run_token_expires_at = Some(exp);
    }
    Ok((status, Json(view)).into_response())
}

/// `?wait=N`, else `Prefer: wait=N` (RFC 7240, as Replicate reads it), at most `MAX_WAIT`.
fn wait_of(query: Option<&str>, headers: &HeaderMap) -> ApiResult<Option<Duration>> {
    let prefer = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| p.trim().strip_prefix("wait="))
                .map(str::to_owned)
        });
    let (field, text) = match (query.filter(|q| !q.is_empty()), prefer) {
        (Some(q), _) => ("wait", q.to_owned()),
        (None, Some(p)) => ("Prefer", p),
        (None, None) => return Ok(None),
    };
    Ok(Some(parse_wait(field, text.trim())?))
}

/// The run once it has ended, or as it is when `wait` has passed.
async fn wait_until_done(api: &Accept, run: &Run, wait: Duration) -> ApiResult<Run> {
    let until = tokio::time::Instant::now() + wait;
    let mut run = run.clone();
    while !run.status.is_terminal() {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        run = api.wait(&run.id, Some(run.status), left).await?;
    }
    Ok(run)
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    // Visible ASCII, no spaces: what the document's pattern says.
    let ok = |k: &[u8]| (1..=255).contains(&k.len()) && k.iter().all(|b| (0x21..=0x7e).contains(b));
    Some(v.as_bytes())
        .filter(|k| ok(k))
        .map(|k| Some(String::from_utf8_lossy(k).into_owned()))
        .ok_or_else(|| {
            ApiError::bad_request(
                Some("Idempotency-Key".into()),
                "Idempotency-Key must be 1 to 255 visible ASCII characters, no spaces",
            )
        })
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

fn bad_form(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(None, format!("malformed multipart form: {e}"))
}

/// Creates a run from a multipart form: text fields first (at least `pipeline` before the
/// files, so each file is held to its slot's limit as it streams), files in the order of their
/// slots. Whatever fails, the files already stored are deleted.
async fn create_from_form(
    api: &Accept,
    headers: &HeaderMap,
    body: spaceport_core::ports::ByteStream,
    key: Option<String>,
    text_limit: usize,
) -> ApiResult<Created> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(ct).map_err(bad_form)?;
    let mut form = multer::Multipart::new(body, boundary);
    let mut shot = api.one_shot().await?;
    let mut fields = Map::new();
    let read: ApiResult<()> = async {
        let mut text_bytes = 0usize;
        while let Some(mut field) = form.next_field().await.map_err(bad_form)? {
            let name = field
                .name()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad_form("a part has no name"))?
                .to_owned();
            if let Some(filename) = field.file_name().map(str::to_owned) {
                let content_type = field
                    .content_type()
                    .map(|m| m.essence_str().to_owned())
                    .ok_or_else(|| {
                        ApiError::from(Error::validation(
                            format!("inputs.{name}"),
                            format!("file part {filename:?} has no Content-Type"),
                        ))
                    })?;
                let pipeline = fields.get("pipeline").and_then(Value::as_str);
                let stream = Box::pin(field.map_err(std::io::Error::other));
                shot.add_file(pipeline, &name, &filename, &content_type, stream)
                    .await?;
                continue;
            }
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
                text_bytes += chunk.len();
                if text_bytes > text_limit {
                    return Err(crate::limits::too_large(text_limit));
                }
                text.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(text)
                .map_err(|_| ApiError::bad_request(Some(name.clone()), "not UTF-8 text"))?;
            let value = match name.as_str() {
                "settings" | "metadata" | "webhook" | "deadline_s" | "inputs" => {
                    serde_json::from_str(&text).map_err(|e| {
                        ApiError::bad_request(
                            Some(name.clone()),
                            format!("{name} is not JSON: {e}"),
                        )
                    })?
                }
                _ => Value::String(text),
            };
            if fields.insert(name.clone(), value).is_some() {
                return Err(ApiError::bad_request(
                    Some(name.clone()),
                    format!("{name} is given twice"),
                ));
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = read {
        shot.abandon().await;
        return Err(e);
    }
    let body = Value::Object(fields.clone());
    let req: CreateRunRequest = match parse_json(&serde_json::to_vec(&body).unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => {
            shot.abandon().await;
            return Err(e);
        }
    };
    // The same fields and the same files' bytes are the same request.
    let idempotency = key.map(|key| {
        let mut canonical = fields;
        canonical.insert("files".into(), Value::Array(shot.file_digests()));
        Idempotency {
            key,
            request_hash: request_hash(&Value::Object(canonical)),
        }
    });
    Ok(shot.create(req, idempotency).await?)
}
