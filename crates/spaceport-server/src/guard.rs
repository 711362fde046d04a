//! What every request is held to before its handler, besides keys and rates: how many are
//! answered at once (past that, 503 `overloaded` with `Retry-After` rather than a queue that
//! grows without bound), how long an answer may take to start (a long poll waits at most
//! `MAX_WAIT`, so 2 minutes is a stuck handler: 503 `timed_out`), and API-shaped bodies for the
//! refusals axum makes itself (405). An upload's handler (a presigned PUT, a multipart create)
//! reads its whole body, however large, so uploads are held to the concurrency limit but not to
//! the time limit; streamed answers (downloads, event streams) are timed to their first byte.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Requests answered at once by one process.
pub const MAX_IN_FLIGHT: usize = 1024;
/// How long a handler may take to start its answer (uploads aside).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// The limits, shared by every request of one server.
pub struct Guard {
    permits: Arc<Semaphore>,
    answer_within: Duration,
}

impl Guard {
    /// `in_flight` requests at once, each answered within `answer_within`.
    pub fn new(in_flight: usize, answer_within: Duration) -> Guard {
        Guard {
            permits: Arc::new(Semaphore::new(in_flight.max(1))),
            answer_within,
        }
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(MAX_IN_FLIGHT, ANSWER_WITHIN)
    }
}

fn unavailable(code: &str, message: String) -> Response {
    let mut resp = ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: code.into(),
        message,
        field: None,
    }
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// The middleware.
pub(crate) async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let Ok(_permit) = g.permits.clone().try_acquire_owned() else {
        return unavailable(
            "overloaded",
            "the server is answering as many requests as it takes; try again".into(),
        );
    };
    // Handlers that read a whole upload (a presigned PUT, a multipart create with its files)
    // take as long as the client's bytes take to come.
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    if req.uri().path().starts_with("/v1/uploads/") || multipart {
        return next.run(req).await;
    }
    match tokio::time::timeout(g.answer_within, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(within = ?g.answer_within, "a request was not answered in time");
            unavailable(
                "timed_out",
                format!(
                    "the server did not answer within {} s; try again",
                    g.answer_within.as_secs()
                ),
            )
        }
    }
}

/// A route that exists, asked with a method it does not take: 405 in the API's error shape
/// (axum keeps the `Allow` header).
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed".into(),
        message: "this route does not take that method (see the Allow header)".into(),
        field: None,
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app(g: Guard) -> Router {
        Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/v1/uploads/x", get(|| async { "up" }))
            .route(
                "/form",
                axum::routing::post(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "read"
                }),
            )
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(Arc::new(g), guard))
    }

    async fn call(app: Router, method: &str, path: &str) -> (StatusCode, Response) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        (resp.status(), resp)
    }

    async fn error_code(resp: Response) -> String {
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["error"]["code"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_slow_answer_is_503_timed_out_in_the_api_shape() {
        let (status, resp) = call(
            app(Guard::new(4, Duration::from_millis(50))),
            "GET",
            "/slow",
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(error_code(resp).await, "timed_out");
    }

    #[tokio::test]
    async fn a_multipart_body_is_not_timed() {
        let req = Request::builder()
            .method("POST")
            .uri("/form")
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=x")
            .body(Body::empty())
            .unwrap();
        let resp = app(Guard::new(4, Duration::from_millis(50)))
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn past_the_concurrency_limit_a_request_is_503_overloaded() {
        let app = app(Guard::new(1, Duration::from_secs(10)));
        let busy = tokio::spawn(call(app.clone(), "GET", "/slow"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, resp) = call(app, "GET", "/v1/uploads/x").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error_code(resp).await, "overloaded");
        busy.abort();
    }

    #[tokio::test]
    async fn a_wrong_method_is_405_with_allow_and_the_api_shape() {
        let (status, resp) = call(app(Guard::default()), "POST", "/slow").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let allow = resp
            .headers()
            .get(header::ALLOW)
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            allow.as_deref().is_some_and(|a| a.contains("GET")),
            "{allow:?}"
        );
        assert_eq!(error_code(resp).await, "method_not_allowed");
    }
}
