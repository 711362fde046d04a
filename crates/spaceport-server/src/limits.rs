//! Request limits: the size of an API request body (uploads have their own, the declared size),
//! how long an upload's body may stall (`idle_bounded`: a client trickling bytes, or gone
//! silent, must not hold a connection and a request slot for ever), and each key's (or run
//! token's) request rate per scope, a token bucket (core's `Bucket`) held in memory. A request
//! over a limit is refused: 413 `payload_too_large`, 408 `request_timeout`, 429 `rate_limited`
//! with `Retry-After`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use spaceport_core::auth::{Principal, Scope};
use spaceport_core::limits::{Bucket, Rate};

use crate::error::ApiError;

/// The most bytes an API request body may have when none is configured: a create body is a few
/// KiB (inputs are uploaded, not sent).
pub const DEFAULT_BODY_BYTES: usize = 1 << 20;

/// How long an upload's body may go without a byte when none is configured.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(30);

/// Set by `idle_bounded` when the body it bounds went silent too long.
#[derive(Clone, Default)]
pub(crate) struct Stalled(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Stalled {
    /// Whether the body stalled.
    pub(crate) fn happened(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The 408 a stalled upload is answered with.
    pub(crate) fn error(idle: Duration) -> ApiError {
        ApiError {
            status: axum::http::StatusCode::REQUEST_TIMEOUT,
            code: "request_timeout".into(),
            message: format!(
                "the upload body sent nothing for {} s; it was abandoned and nothing was stored",
                idle.as_secs()
            ),
            field: None,
        }
    }
}

/// `body`'s bytes, failing (and marking `stalled`) when `idle` passes without one.
pub(crate) fn idle_bounded(
    body: axum::body::Body,
    idle: Duration,
    stalled: &Stalled,
) -> futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>> {
    use futures::StreamExt;
    let flag = stalled.0.clone();
    let stream = body.into_data_stream();
    futures::stream::unfold(Some(stream), move |state| {
        let flag = flag.clone();
        async move {
            let mut stream = state?;
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    let e = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no bytes for {} s", idle.as_secs()),
                    );
                    Some((Err(e), None))
                }
            }
        }
    })
    .boxed()
}

/// Buckets kept before the refilled ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

/// Each key's buckets, one per scope it calls with. Keys are configured, so the map is bounded
/// by keys × scopes. (One process's view: several servers behind a balancer each allow the
/// rate; the edge keeps its buckets in a shared store.)
pub struct RateLimiter {
    rates: BTreeMap<Scope, Rate>,
    buckets: Mutex<HashMap<(String, Scope), Bucket>>,
    epoch: Instant,
}

impl RateLimiter {
    /// Limits each key to `rates` (a scope without a rate, or with a zero one, is unlimited).
    pub fn new(rates: BTreeMap<Scope, Rate>) -> RateLimiter {
        RateLimiter {
            rates,
            buckets: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    /// Takes a token for `principal`'s request needing `scope`: how long to wait when none is
    /// left. The local tenant of a server without keys is not limited.
    pub fn take(&self, principal: &Principal, scope: Scope) -> Result<(), Duration> {
        let Some(rate) = self.rates.get(&scope).filter(|r| r.is_on()) else {
            return Ok(());
        };
        if principal == &Principal::local() {
            return Ok(());
        }
        // Monotonic: a wall clock stepping back must not refill or drain buckets.
        let now_ms = self.epoch.elapsed().as_millis() as i64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            // Run tokens get buckets too, one per run: forget the buckets that have refilled
            // (a fresh one is the same), so the map stays bounded.
            let full_after = |r: &Rate| (f64::from(r.burst) / r.per_second * 1000.0) as i64;
            let rates = &self.rates;
            buckets.retain(|(_, s), b| {
                rates
                    .get(s)
                    .is_some_and(|r| now_ms - b.at_ms < full_after(r))
            });
        }
        let slot = (principal.key.clone(), scope);
        let (next, verdict) = Bucket::take(buckets.get(&slot).copied(), rate, now_ms);
        buckets.insert(slot, next);
        verdict
    }
}

/// 429 `rate_limited`, saying when to come back (core's words, shared with the edge).
pub fn rate_limited(key: &str, scope: Scope, wait: Duration) -> Response {
    let (refusal, secs) = spaceport_core::access::Refusal::rate_limited(key, scope, wait);
    let mut r = ApiError::from(refusal).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// 413 `payload_too_large` for a body over `limit` bytes.
pub fn too_large(limit: usize) -> ApiError {
    spaceport_core::access::Refusal::too_large(limit).into()
}

/// Refuses, from its headers alone, a body declared longer than `limit`. (A body sent without a
/// length is cut off at the limit as it is read.)
pub fn check_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    Ok(spaceport_core::access::check_declared_length(
        declared, limit,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Principal {
        Principal {
            key: name.into(),
            tenant: "acme".into(),
            scopes: vec![Scope::Admin],
            run: None,
        }
    }

    #[test]
    fn each_key_and_scope_has_its_own_bucket() {
        let limiter = RateLimiter::new(BTreeMap::from([(
            Scope::RunsWrite,
            Rate {
                per_second: 0.001,
                burst: 2,
            },
        )]));
        let (a, b) = (key("a"), key("b"));
        assert!(limiter.take(&a, Scope::RunsWrite).is_ok());
        assert!(limiter.take(&a, Scope::RunsWrite).is_ok());
        let wait = limiter.take(&a, Scope::RunsWrite).unwrap_err();
        assert!(wait > Duration::from_secs(900), "{wait:?}");
        // Another key, another scope (unlimited here), the local tenant: not held back.
        assert!(limiter.take(&b, Scope::RunsWrite).is_ok());
        for _ in 0..10 {
            assert!(limiter.take(&a, Scope::RunsRead).is_ok());
            assert!(limiter.take(&Principal::local(), Scope::RunsWrite).is_ok());
        }
        let r = rate_limited("a", Scope::RunsWrite, wait);
        assert_eq!(r.status(), 429);
        let secs: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(secs, wait.as_secs_f64().ceil() as u64);
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused() {
        let mut h = HeaderMap::new();
        assert!(check_length(&h, 10).is_ok());
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(10));
        assert!(check_length(&h, 10).is_ok());
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(11));
        assert_eq!(check_length(&h, 10).unwrap_err().status, 413);
    }
}
