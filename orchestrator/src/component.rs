//! The route: every request goes through `edge::decide`; an answer is sent as it is, anything
//! else is forwarded to the API with its body streamed through (a JSON create is read first,
//! bounded, and checked), and the API's answer is streamed back with the request id and CORS.

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::Full;
use spaceport_core::access::Refusal;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{HeaderName, HeaderValue, IntoResponse, Request, send};
use spin_sdk::http_service;
use spin_sdk::wasip3::http::types;

use crate::edge::{self, Answer, DirStore, EdgeConfig, Head, Verdict};

/// Buckets in Spin's default key-value store.
#[cfg(feature = "spin-kv")]
struct SpinKv(spin_sdk::key_value::Store);

#[cfg(feature = "spin-kv")]
impl edge::RateStore for SpinKv {
    async fn load(&self, slot: &str) -> Option<spaceport_core::limits::Bucket> {
        self.0.get_json(slot).await.ok().flatten()
    }

    async fn save(&self, slot: &str, bucket: &spaceport_core::limits::Bucket) {
        if let Err(e) = self.0.set_json(slot, bucket).await {
            eprintln!("spaceport edge: saving a rate bucket: {e}");
        }
    }
}

fn now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// A fresh request id: a random draw and the time's nanoseconds.
fn fresh_id() -> String {
    format!(
        "req_{:016x}{:08x}",
        edge::random_u64(),
        now().subsec_nanos()
    )
}

fn answer(a: Answer, extra: &[(String, String)]) -> spin_sdk::http::Result<types::Response> {
    let mut b = spin_sdk::http::Response::builder().status(a.status);
    for (k, v) in a.headers.iter().chain(extra) {
        b = b.header(k.as_str(), v.as_str());
    }
    Ok(b.body(Full::new(Bytes::from(a.body)))?.into_response()?)
}

#[http_service]
async fn handle(req: Request) -> spin_sdk::http::Result<types::Response> {
    let cfg = match EdgeConfig::from_env(&|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spaceport edge: {e}");
            return answer(
                Answer {
                    status: 500,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: spaceport_core::error::ErrorBody::new(
                        "internal",
                        "the edge is misconfigured",
                        None,
                    )
                    .to_json(),
                },
                &[],
            );
        }
    };
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let head = Head {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
    };
    let id = edge::request_id(&head, fresh_id);
    let extra = edge::answer_headers(&cfg, &head, &id);
    let forward = match edge::decide(&cfg, &head, &id, now().as_secs() as i64) {
        Verdict::Answer(a) => return answer(a, &extra),
        Verdict::Forward(f) => f,
    };
    if let Some((key, scope)) = &forward.limit {
        let now_ms = now().as_millis() as i64;
        let limited = match &cfg.rate_dir {
            Some(dir) => {
                let store = DirStore { dir: dir.into() };
                edge::rate_check(&cfg, &store, key, *scope, now_ms).await
            }
            #[cfg(feature = "spin-kv")]
            None => match spin_sdk::key_value::Store::open_default().await {
                Ok(store) => edge::rate_check(&cfg, &SpinKv(store), key, *scope, now_ms).await,
                Err(e) => {
                    eprintln!("spaceport edge: no key-value store for rate limits: {e}");
                    Ok(())
                }
            },
            // No store to keep buckets in: the API behind still limits each key.
            #[cfg(not(feature = "spin-kv"))]
            None => Ok(()),
        };
        if let Err(a) = limited {
            return answer(a, &extra);
        }
    }
    let mut out = spin_sdk::http::Request::builder()
        .method(parts.method.clone())
        .uri(forward.url.as_str());
    for (k, v) in &forward.headers {
        out = out.header(k.as_str(), v.as_str());
    }
    let mut resp = if forward.check_create {
        // Read at most the limit (and one byte more, to know it was passed).
        let mut read = Vec::new();
        let mut chunks = body.stream();
        while let Some(chunk) = chunks.next().await {
            read.extend_from_slice(
                &chunk.map_err(|e| spin_sdk::http::Error::other(e.to_string()))?,
            );
            if read.len() > cfg.body_bytes {
                return answer(Answer::refusal(&Refusal::too_large(cfg.body_bytes)), &extra);
            }
        }
        if let Err(a) = edge::check_create(&cfg, &head, &read) {
            return answer(a, &extra);
        }
        send(out.body(Full::new(Bytes::from(read)))?).await?
    } else {
        send(out.body(body)?).await?
    };
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    // The API's body goes back as it comes, streamed.
    Ok(resp.into_response()?)
}
