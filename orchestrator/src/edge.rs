//! The edge's decisions, as plain functions of its configuration and a request's head (and, for
//! a create, its body): what the component in `component.rs` answers itself and what it
//! forwards, with which headers. Everything that refuses a request is core's — `authorize`,
//! `require_json`, `parse_json_body`, `validate_create` — so the edge and the API refuse the
//! same requests with the same bytes.

use spaceport_core::access::{
    Access, EDGE_PRINCIPAL_HEADER, EDGE_SECRET_HEADER, Presented, Refusal, authorize,
    check_declared_length, parse_json_body, require_json,
};
use std::collections::BTreeMap;

use spaceport_core::auth::{KeyEntry, KeyRing, Scope};
use spaceport_core::limits::{Bucket, Rate, default_rates};
use spaceport_core::outbound::{Allow, OutboundGuard};
use spaceport_core::{CreateRunRequest, PipelineSet, validate_create};

/// The request id header, set on every request forwarded and every answer.
pub const REQUEST_ID: &str = "x-request-id";

/// The most bytes a create body may have when none is configured (the API's default).
const DEFAULT_BODY_BYTES: usize = 1 << 20;

/// Hop-by-hop headers and those the edge sets itself: never passed on as the client sent them.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    EDGE_SECRET_HEADER,
    EDGE_PRINCIPAL_HEADER,
    REQUEST_ID,
];

/// What the edge is configured with (the component's environment, which Spin also provides).
pub struct EdgeConfig {
    /// The API it forwards to (`http://127.0.0.1:8080`), without a trailing slash.
    pub upstream: String,
    /// Shared with the API (`edge_secret` there): it vouches for the principals the edge names.
    pub edge_secret: String,
    pub keys: KeyRing,
    pub run_token_secret: Option<Vec<u8>>,
    pub cors_origins: Vec<String>,
    pub body_bytes: usize,
    /// What creates are checked against: the built-in pipelines (a create naming another goes
    /// on for the API to judge), parsed only when a create needs them.
    pipelines: std::sync::OnceLock<PipelineSet>,
    /// Where webhook URLs may point (the API's `outbound_allow`).
    pub guard: OutboundGuard,
    /// Each key's request rate per scope (the API's `rate_limits`, defaults included).
    pub rates: BTreeMap<Scope, Rate>,
    /// The directory token buckets are kept in, for a host without a key-value store (a WASI
    /// host that preopens one: `wasmtime serve --dir HOST::GUEST`); `None` with Spin's store.
    pub rate_dir: Option<String>,
}

impl EdgeConfig {
    /// The configuration `get` (an environment lookup) gives: `SPACEPORT_EDGE_UPSTREAM` and
    /// `SPACEPORT_EDGE_SECRET` are required; `SPACEPORT_API_KEYS`, `SPACEPORT_RUN_TOKEN_SECRET`,
    /// `SPACEPORT_CORS_ORIGINS`, `SPACEPORT_MAX_BODY_BYTES` and `SPACEPORT_OUTBOUND_ALLOW` read
    /// as the API reads them.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<EdgeConfig, String> {
        let set = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let upstream = set("SPACEPORT_EDGE_UPSTREAM")
            .ok_or("SPACEPORT_EDGE_UPSTREAM (the API's URL) is required")?
            .trim_end_matches('/')
            .to_owned();
        if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
            return Err(format!(
                "SPACEPORT_EDGE_UPSTREAM = {upstream:?} is not an http(s) URL"
            ));
        }
        let edge_secret = set("SPACEPORT_EDGE_SECRET")
            .filter(|s| s.len() >= 32)
            .ok_or(
                "SPACEPORT_EDGE_SECRET (32 characters or more, shared with the API) is required",
            )?;
        let entries: Vec<KeyEntry> = match set("SPACEPORT_API_KEYS") {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| format!("SPACEPORT_API_KEYS is not a JSON list of keys: {e}"))?,
            None => vec![],
        };
        if entries.is_empty() {
            return Err(
                "SPACEPORT_API_KEYS is empty: the edge serves the network and needs keys".into(),
            );
        }
        let keys =
            KeyRing::from_entries(&entries).map_err(|e| format!("SPACEPORT_API_KEYS: {e}"))?;
        let run_token_secret = set("SPACEPORT_RUN_TOKEN_SECRET").map(String::into_bytes);
        let list = |k: &str| -> Vec<String> {
            set(k)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let body_bytes = match set("SPACEPORT_MAX_BODY_BYTES") {
            None => DEFAULT_BODY_BYTES,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("SPACEPORT_MAX_BODY_BYTES = {v:?} is not a number"))?,
        };
        let allow = list("SPACEPORT_OUTBOUND_ALLOW")
            .iter()
            .map(|a| Allow::parse(a).map_err(|e| format!("SPACEPORT_OUTBOUND_ALLOW: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rates = default_rates();
        if let Some(json) = set("SPACEPORT_RATE_LIMITS") {
            let given: BTreeMap<String, Rate> = serde_json::from_str(&json)
                .map_err(|e| format!("SPACEPORT_RATE_LIMITS is not a JSON map of rates: {e}"))?;
            for (scope, rate) in given {
                let s = Scope::parse(&scope).ok_or_else(|| {
                    format!("SPACEPORT_RATE_LIMITS: unknown scope {scope:?} (runs:read, runs:write, admin)")
                })?;
                rates.insert(s, rate);
            }
        }
        Ok(EdgeConfig {
            rates,
            rate_dir: set("SPACEPORT_EDGE_RATE_DIR"),
            upstream,
            edge_secret,
            keys,
            run_token_secret,
            cors_origins: list("SPACEPORT_CORS_ORIGINS"),
            body_bytes,
            pipelines: std::sync::OnceLock::new(),
            guard: OutboundGuard::new(allow),
        })
    }
}

/// A request's head, as the component hands it over (header names in lower case).
pub struct Head<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a [(String, String)],
}

impl Head<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer the edge gives itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// A refusal, in the API's error shape.
    pub fn refusal(r: &Refusal) -> Answer {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if r.status == 401 {
            headers.push((
                "www-authenticate".into(),
                "Bearer realm=\"spaceport\"".into(),
            ));
        }
        Answer {
            status: r.status,
            headers,
            body: r.body().to_json(),
        }
    }
}

/// A request to pass on.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// The upstream URL, path and query as the client sent them.
    pub url: String,
    /// The headers to send: the client's (less hop-by-hop ones, its credentials and anything
    /// claiming to be the edge), the request id, and the edge's secret and principal.
    pub headers: Vec<(String, String)>,
    /// Whether the body is a JSON create, to be read and checked before it goes on.
    pub check_create: bool,
    /// The caller's key and the route's scope, whose rate is checked before it goes on.
    pub limit: Option<(String, Scope)>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Answer(Answer),
    Forward(Forward),
}

/// The request id to use: the client's when it is a plain token of at most 128 characters,
/// else `fresh`.
pub fn request_id(head: &Head<'_>, fresh: impl FnOnce() -> String) -> String {
    match head.header(REQUEST_ID) {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => fresh(),
    }
}

/// The headers every answer carries: the request id, and CORS for an allowed origin.
pub fn answer_headers(
    cfg: &EdgeConfig,
    head: &Head<'_>,
    request_id: &str,
) -> Vec<(String, String)> {
    let mut h = vec![(REQUEST_ID.to_owned(), request_id.to_owned())];
    if let Some(origin) = head
        .header("origin")
        .filter(|o| cfg.cors_origins.iter().any(|c| c == o))
    {
        h.push(("access-control-allow-origin".into(), origin.to_owned()));
        h.push((
            "access-control-expose-headers".into(),
            "x-request-id, retry-after".into(),
        ));
        h.push(("vary".into(), "origin".into()));
    }
    h
}

/// Decides a request from its head at `now_s` (Unix seconds).
pub fn decide(cfg: &EdgeConfig, head: &Head<'_>, request_id: &str, now_s: i64) -> Verdict {
    if head.method == "OPTIONS" && head.header("access-control-request-method").is_some() {
        // A preflight: allowed origins learn what they may send; others get no CORS headers.
        let mut headers = vec![];
        if head
            .header("origin")
            .is_some_and(|o| cfg.cors_origins.iter().any(|c| c == o))
        {
            headers.push((
                "access-control-allow-methods".into(),
                "GET, POST, PUT, DELETE".into(),
            ));
            headers.push((
                "access-control-allow-headers".into(),
                "authorization, content-type, idempotency-key, last-event-id, x-request-id".into(),
            ));
            headers.push(("access-control-max-age".into(), "600".into()));
        }
        return Verdict::Answer(Answer {
            status: 204,
            headers,
            body: vec![],
        });
    }
    let access = authorize(
        &cfg.keys,
        cfg.run_token_secret.as_deref(),
        Presented {
            method: head.method,
            path: head.path,
            authorization: head.header("authorization"),
            query: head.query,
        },
        now_s,
    );
    let (principal, scope) = match access {
        Access::Refused(r) => return Verdict::Answer(Answer::refusal(&r)),
        Access::Open => (None, None),
        Access::Granted(p, s) => (Some(p), Some(s)),
    };
    // Uploads are held to their declared size by their signed URL, not to the body limit.
    if !head.path.starts_with("/v1/uploads/")
        && let Err(r) = check_declared_length(head.header("content-length"), cfg.body_bytes)
    {
        return Verdict::Answer(Answer::refusal(&r));
    }
    let mut headers: Vec<(String, String)> = head
        .headers
        .iter()
        .filter(|(k, _)| !NOT_FORWARDED.contains(&k.as_str()))
        .cloned()
        .collect();
    headers.push((REQUEST_ID.into(), request_id.into()));
    if let Some(p) = &principal {
        headers.push((EDGE_SECRET_HEADER.into(), cfg.edge_secret.clone()));
        headers.push((
            EDGE_PRINCIPAL_HEADER.into(),
            serde_json::to_string(p).unwrap_or_default(),
        ));
    }
    let multipart = head.header("content-type").is_some_and(|ct| {
        ct.trim()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    });
    let url = match head.query {
        Some(q) => format!("{}{}?{q}", cfg.upstream, head.path),
        None => format!("{}{}", cfg.upstream, head.path),
    };
    Verdict::Forward(Forward {
        url,
        headers,
        check_create: head.method == "POST" && head.path == "/v1/runs" && !multipart,
        limit: principal.map(|p| p.key).zip(scope),
    })
}

/// Where the edge keeps its token buckets between requests (a host may run each request in a
/// fresh instance, so memory does not do): Spin's key-value store, or a directory.
#[allow(async_fn_in_trait)]
pub trait RateStore {
    async fn load(&self, slot: &str) -> Option<Bucket>;
    async fn save(&self, slot: &str, bucket: &Bucket);
}

/// Takes a token for `key`'s request needing `scope` at `now_ms`: a 429 with `Retry-After` (the
/// API's words) when none is left. Requests racing on one bucket may each read it before the
/// other writes it: a burst can pass by the requests in flight at once.
pub async fn rate_check<S: RateStore>(
    cfg: &EdgeConfig,
    store: &S,
    key: &str,
    scope: Scope,
    now_ms: i64,
) -> Result<(), Answer> {
    let Some(rate) = cfg.rates.get(&scope).filter(|r| r.is_on()) else {
        return Ok(());
    };
    let slot = format!("rate/{scope}/{key}");
    let (next, verdict) = Bucket::take(store.load(&slot).await, rate, now_ms);
    store.save(&slot, &next).await;
    verdict.map_err(|wait| {
        let (r, secs) = Refusal::rate_limited(key, scope, wait);
        let mut a = Answer::refusal(&r);
        a.headers.push(("retry-after".into(), secs.to_string()));
        a
    })
}

/// 64 random bits: a fresh `RandomState`'s keys, which std draws from the host's random source
/// (WASI's `random` interface in the component), so no randomness crate is needed.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Buckets as files in a directory (one per key and scope, named by the slot's hash, replaced
/// whole by a rename so a reader never sees half of one).
pub struct DirStore {
    pub dir: std::path::PathBuf,
}

impl DirStore {
    fn path(&self, slot: &str) -> std::path::PathBuf {
        use sha2::Digest;
        self.dir
            .join(hex::encode(sha2::Sha256::digest(slot.as_bytes())))
    }
}

impl RateStore for DirStore {
    async fn load(&self, slot: &str) -> Option<Bucket> {
        let text = std::fs::read(self.path(slot)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    async fn save(&self, slot: &str, bucket: &Bucket) {
        let path = self.path(slot);
        // A name of its own per writer (WASI has no process id).
        let tmp = path.with_extension(format!("tmp{:016x}", random_u64()));
        let body = serde_json::to_vec(bucket).unwrap_or_default();
        if std::fs::write(&tmp, body).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

/// Checks a JSON create body as the API would before it goes on: its type, size, shape and the
/// pipeline's rules, refused with the API's words.
pub fn check_create(cfg: &EdgeConfig, head: &Head<'_>, body: &[u8]) -> Result<(), Answer> {
    let refuse = |r: Refusal| Answer::refusal(&r);
    require_json(head.header("content-type")).map_err(refuse)?;
    if body.len() > cfg.body_bytes {
        return Err(refuse(Refusal::too_large(cfg.body_bytes)));
    }
    let req: CreateRunRequest = parse_json_body(body).map_err(refuse)?;
    let pipelines = cfg.pipelines.get_or_init(PipelineSet::builtin);
    if pipelines.get(&req.pipeline).is_err() {
        // A pipeline the edge does not carry (the API's own pipelines_dir): the API decides,
        // in its own words, rather than the edge refusing a run the API would take.
        return Ok(());
    }
    validate_create(pipelines, &cfg.guard, &req)
        .map(|_| ())
        .map_err(|e| refuse(Refusal::of_error(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spaceport_core::auth::{hash_text, key_hash};

    fn cfg() -> EdgeConfig {
        let keys = serde_json::json!([
            {"name": "writer", "tenant": "acme", "scopes": ["runs:read", "runs:write"], "hash": hash_text(&key_hash("sk_w"))},
            {"name": "reader", "tenant": "acme", "scopes": ["runs:read"], "hash": hash_text(&key_hash("sk_r"))}
        ]);
        let env = move |k: &str| -> Option<String> {
            match k {
                "SPACEPORT_EDGE_UPSTREAM" => Some("http://api.internal:8080/".into()),
                "SPACEPORT_EDGE_SECRET" => Some("s".repeat(32)),
                "SPACEPORT_API_KEYS" => Some(keys.to_string()),
                "SPACEPORT_CORS_ORIGINS" => Some("https://app.example.com".into()),
                "SPACEPORT_MAX_BODY_BYTES" => Some("2048".into()),
                _ => None,
            }
        };
        EdgeConfig::from_env(&env).unwrap()
    }

    fn head<'a>(method: &'a str, path: &'a str, headers: &'a [(String, String)]) -> Head<'a> {
        Head {
            method,
            path,
            query: None,
            headers,
        }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn refusals_are_answered_at_the_edge_and_the_rest_forwarded_as_the_edge_vouches() {
        let cfg = cfg();
        let none = h(&[]);
        let Verdict::Answer(a) = decide(&cfg, &head("GET", "/v1/runs", &none), "r1", 0) else {
            panic!("no key must be answered");
        };
        assert_eq!(a.status, 401);
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let reader = h(&[("authorization", "Bearer sk_r")]);
        let Verdict::Answer(a) = decide(&cfg, &head("POST", "/v1/runs", &reader), "r1", 0) else {
            panic!("a reader's create must be answered");
        };
        assert_eq!(a.status, 403);
        let big = h(&[("authorization", "Bearer sk_w"), ("content-length", "4096")]);
        let Verdict::Answer(a) = decide(&cfg, &head("POST", "/v1/runs", &big), "r1", 0) else {
            panic!("a long body must be answered");
        };
        assert_eq!(a.status, 413);

        // Forwarded: credentials and forged edge headers dropped, the edge's own added.
        let sent = h(&[
            ("authorization", "Bearer sk_w"),
            ("content-type", "application/json"),
            (EDGE_PRINCIPAL_HEADER, "{\"forged\": true}"),
            ("connection", "keep-alive"),
        ]);
        let Verdict::Forward(f) = decide(&cfg, &head("POST", "/v1/runs", &sent), "r1", 0) else {
            panic!("a writer's create must be forwarded");
        };
        assert_eq!(f.url, "http://api.internal:8080/v1/runs");
        assert!(f.check_create);
        let get = |k: &str| {
            f.headers
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert!(get("authorization").is_empty() && get("connection").is_empty());
        assert_eq!(get(REQUEST_ID), ["r1"]);
        assert_eq!(get(EDGE_SECRET_HEADER), ["s".repeat(32)]);
        let p: serde_json::Value = serde_json::from_str(&get(EDGE_PRINCIPAL_HEADER)[0]).unwrap();
        assert_eq!(
            (p["key"].as_str(), p["tenant"].as_str()),
            (Some("writer"), Some("acme"))
        );
        // Open routes go on without a principal.
        let Verdict::Forward(f) = decide(&cfg, &head("GET", "/healthz", &none), "r2", 0) else {
            panic!("health is open");
        };
        assert!(!f.headers.iter().any(|(k, _)| k == EDGE_SECRET_HEADER));
    }

    #[test]
    fn a_create_is_checked_with_the_apis_words() {
        let cfg = cfg();
        let json = h(&[("content-type", "application/json")]);
        let text = h(&[("content-type", "text/plain")]);
        let hd = |hs| head("POST", "/v1/runs", hs);
        assert_eq!(
            check_create(&cfg, &hd(&text), b"{}").unwrap_err().status,
            415
        );
        assert_eq!(
            check_create(&cfg, &hd(&json), b"{").unwrap_err().status,
            400
        );
        let bad = br#"{"pipeline": "vggt", "settings": {"conf_thres": 101}}"#;
        let a = check_create(&cfg, &hd(&json), bad).unwrap_err();
        assert_eq!(a.status, 422);
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["error"]["field"], "settings.conf_thres");
        // A pipeline only the API knows goes on, for the API to judge.
        assert!(check_create(&cfg, &hd(&json), br#"{"pipeline": "my-own-space"}"#).is_ok());
        let ok = br#"{"pipeline": "vggt", "inputs": {"images": [{"filename": "a.png", "content_type": "image/png", "size": 10}]}}"#;
        assert!(check_create(&cfg, &hd(&json), ok).is_ok());
    }

    #[test]
    fn ids_and_cors_follow_the_request() {
        let cfg = cfg();
        let sent = h(&[
            ("x-request-id", "abc-1"),
            ("origin", "https://app.example.com"),
        ]);
        let hd = head("GET", "/v1/runs", &sent);
        assert_eq!(request_id(&hd, || "fresh".into()), "abc-1");
        let evil = h(&[
            ("x-request-id", "a b\n"),
            ("origin", "https://evil.example"),
        ]);
        let he = head("GET", "/v1/runs", &evil);
        assert_eq!(request_id(&he, || "fresh".into()), "fresh");
        assert!(
            answer_headers(&cfg, &hd, "abc-1")
                .iter()
                .any(|(k, _)| k == "access-control-allow-origin")
        );
        assert!(
            !answer_headers(&cfg, &he, "x")
                .iter()
                .any(|(k, _)| k == "access-control-allow-origin")
        );
    }

    struct Mem(std::cell::RefCell<std::collections::HashMap<String, Bucket>>);

    impl RateStore for Mem {
        async fn load(&self, slot: &str) -> Option<Bucket> {
            self.0.borrow().get(slot).copied()
        }
        async fn save(&self, slot: &str, bucket: &Bucket) {
            self.0.borrow_mut().insert(slot.to_owned(), *bucket);
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The stores here never wait: one poll finishes them.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a store waited"),
        }
    }

    #[test]
    fn a_key_over_its_rate_is_answered_429_in_the_apis_words() {
        let mut cfg = cfg();
        cfg.rates.insert(
            Scope::RunsWrite,
            Rate {
                per_second: 0.01,
                burst: 2,
            },
        );
        let mem = Mem(Default::default());
        let dir = std::env::temp_dir().join(format!("edge-rates-{:x}", random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = DirStore { dir: dir.clone() };
        fn exercise<S: RateStore>(cfg: &EdgeConfig, store: &S) {
            let take = |now| block_on(rate_check(cfg, store, "app", Scope::RunsWrite, now));
            assert!(take(1_000).is_ok() && take(1_000).is_ok());
            let a = take(1_000).unwrap_err();
            assert_eq!(a.status, 429);
            let secs = a.headers.iter().find(|(k, _)| k == "retry-after").unwrap();
            assert_eq!(secs.1, "100");
            let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
            // Another key has its own bucket.
            assert!(block_on(rate_check(cfg, store, "other", Scope::RunsWrite, 1_000)).is_ok());
        }
        exercise(&cfg, &mem);
        exercise(&cfg, &files);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_configuration_names_what_is_missing() {
        let e = EdgeConfig::from_env(&|_| None).err().unwrap();
        assert!(e.contains("SPACEPORT_EDGE_UPSTREAM"), "{e}");
        let e = EdgeConfig::from_env(&|k| match k {
            "SPACEPORT_EDGE_UPSTREAM" => Some("http://x".into()),
            "SPACEPORT_EDGE_SECRET" => Some("short".into()),
            _ => None,
        })
        .err()
        .unwrap();
        assert!(e.contains("SPACEPORT_EDGE_SECRET"), "{e}");
    }
}
