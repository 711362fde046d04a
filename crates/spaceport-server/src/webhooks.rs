//! Webhook deliveries over HTTP: a run's delivery log, redelivery of one message (same
//! `webhook-id`, so a receiver that already processed it can tell), and the dead-letter list of
//! messages whose every attempt failed.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use spaceport_core::RunId;
use spaceport_core::create::parse_page_limit;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::views::{DeliveryList, DeliveryView};

/// A run's webhook deliveries, oldest first, each with its attempts.
#[utoipa::path(get, path = "/v1/runs/{id}/deliveries",
    params(("id" = String, Path)),
    responses((status = 200, body = DeliveryList), (status = 404, body = ErrorBody)))]
pub(crate) async fn run_deliveries(
    State(st): State<AppState>,
    Caller(api): Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    let id = RunId::parse(&id)?;
    api.get(&id).await?; // the caller's run, or 404
    let log = st.webhooks.log(&id).await?;
    Ok(Json(DeliveryList {
        deliveries: log.iter().map(DeliveryView::from).collect(),
        next_cursor: None,
    }))
}

/// Sends a delivery again now, whatever its state: same id, same body, attempts kept.
#[utoipa::path(post, path = "/v1/runs/{id}/deliveries/{delivery_id}/redeliver",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = DeliveryView), (status = 404, body = ErrorBody)))]
pub(crate) async fn redeliver(
    State(st): State<AppState>,
    Caller(api): Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(axum::http::StatusCode, Json<DeliveryView>), ApiError> {
    let id = RunId::parse(&id)?;
    api.get(&id).await?; // the caller's run, or 404
    let d = st.webhooks.redeliver(&id, &delivery).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(DeliveryView::from(&d)),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeadParams {
    state: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// The dead-letter list: deliveries whose every attempt failed, a page at a time (in id order).
#[utoipa::path(get, path = "/v1/deliveries",
    params(("state" = Option<String>, Query, description = "`dead` (the only list kept across runs)"),
           ("after" = Option<String>, Query, description = "a next_cursor from an earlier page"),
           ("limit" = Option<usize>, Query, description = "1 to 100, default 20")),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody)))]
pub(crate) async fn dead_letters(
    State(st): State<AppState>,
    Caller(api): Caller,
    ApiQuery(p): ApiQuery<DeadParams>,
) -> Result<Json<DeliveryList>, ApiError> {
    match p.state.as_deref() {
        None | Some("") | Some("dead") => {}
        Some(other) => {
            return Err(ApiError::bad_request(
                Some("state".into()),
                format!(
                    "state = {other:?}: only the dead-letter list (state=dead) is listed across runs; a run's deliveries are at /v1/runs/{{id}}/deliveries"
                ),
            ));
        }
    }
    let limit = parse_page_limit(p.limit.as_deref()).map_err(ApiError::malformed)?;
    // One more than asked tells whether a next page exists.
    let mut page = st
        .webhooks
        .dead(
            api.tenant(),
            p.after.as_deref().filter(|a| !a.is_empty()),
            limit + 1,
        )
        .await?;
    let next_cursor = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|d| d.id.clone())
    } else {
        None
    };
    Ok(Json(DeliveryList {
        deliveries: page.iter().map(DeliveryView::from).collect(),
        next_cursor,
    }))
}
