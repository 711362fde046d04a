//! A run's results: each file streamed into the blob store at a fixed key (so a repeated fetch
//! overwrites instead of duplicating) and recorded with its size and sha256, then the run ended
//! `succeeded`. fetch-artifact (files from a Space) and reconstruct (files a model wrote) share it.
//! An artifact is capped at its spec's `max_bytes`, and a failure of the backend's own while it
//! streams is the run's error (`artifact_download_failed`), not the store's.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Map, Value};
use spaceport_core::facts::{Format, Inspector};
use spaceport_core::pipeline::OutputSpec;
use spaceport_core::ports::{BlobStore, ByteStream};
use spaceport_core::{Artifact, Error, ErrorCode, Progress, Run, RunId, Status, lease};

/// Where the artifact `name` of run `id` is kept.
pub(crate) fn key(id: &RunId, name: &str, spec: &OutputSpec) -> String {
    Run::artifact_key(id, name, &spec.filename)
}

/// Streams `body` into the artifact `name` of run `id`, as the pipeline's output `spec` says.
pub(crate) async fn store(
    blobs: &dyn BlobStore,
    id: &RunId,
    name: &str,
    spec: &OutputSpec,
    body: ByteStream,
    meta: Map<String, Value>,
) -> Result<Artifact, Error> {
    let key = key(id, name, spec);
    let failure = Arc::new(Mutex::new(None));
    let body = guarded(body, name, spec.max_bytes(), failure.clone());
    // A 3D file's counts and bounds, learnt as it passes (`spaceport_core::facts`).
    let inspector = Format::of(&spec.content_type, &spec.filename)
        .map(|f| Arc::new(Mutex::new(Inspector::new(f))));
    let body = match &inspector {
        Some(i) => {
            let i = i.clone();
            body.inspect(move |chunk| {
                if let Ok(c) = chunk {
                    i.lock().unwrap_or_else(|p| p.into_inner()).feed(c);
                }
            })
            .boxed()
        }
        None => body,
    };
    let stored = match blobs.put(&key, &spec.content_type, body).await {
        Ok(stored) => stored,
        Err(e) => {
            let theirs = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(theirs.unwrap_or(e));
        }
    };
    let mut meta = meta;
    if let Some(i) = inspector {
        let facts = i.lock().unwrap_or_else(|p| p.into_inner()).finish();
        // What the backend said itself (a model's own counts) stands.
        for (k, v) in facts {
            meta.entry(k).or_insert(v);
        }
    }
    Ok(Artifact {
        name: name.to_string(),
        filename: spec.filename.clone(),
        content_type: spec.content_type.clone(),
        size: stored.size,
        sha256: stored.sha256,
        key,
        meta,
    })
}

/// `body` as the store reads it: at most `max` bytes, and a failure of the backend's own (its
/// transfer broke, or it sent more than `max`) kept in `failure` for the caller, since the store
/// sees only that its body failed.
fn guarded(
    body: ByteStream,
    name: &str,
    max: u64,
    failure: Arc<Mutex<Option<Error>>>,
) -> ByteStream {
    let name = name.to_string();
    let mut seen = 0u64;
    body.map(move |chunk| {
        let err = match chunk {
            Ok(c) if seen + c.len() as u64 <= max => {
                seen += c.len() as u64;
                return Ok(c);
            }
            Ok(_) => Error::upstream(
                ErrorCode::ArtifactDownloadFailed,
                false,
                format!("output {name} is larger than its max_bytes ({max} bytes); nothing of it was kept"),
            ),
            Err(e) => Error::upstream(
                ErrorCode::ArtifactDownloadFailed,
                true,
                format!("the transfer of output {name} broke off: {e}"),
            ),
        };
        let message = err.to_string();
        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
        Err(std::io::Error::other(message))
    })
    .boxed()
}

/// An output whose content type is a wildcard (`image/*`: the Space picks PNG or WebP by its
/// Gradio version) takes the type the backend gave when it is of that kind, with the matching
/// extension; otherwise the spec stands.
pub(crate) fn resolve_format(mut spec: OutputSpec, backend_type: Option<&str>) -> OutputSpec {
    let Some(major) = spec.content_type.strip_suffix("/*") else {
        return spec;
    };
    let given = backend_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| {
            t.split_once('/')
                .is_some_and(|(m, sub)| m == major && !sub.is_empty() && sub != "*")
        });
    let Some(given) = given else {
        spec.content_type = "application/octet-stream".into();
        return spec;
    };
    let ext = match given.as_str() {
        "image/jpeg" => "jpg",
        "image/svg+xml" => "svg",
        other => other.split('/').nth(1).unwrap_or("bin"),
    };
    let stem = spec
        .filename
        .rsplit_once('.')
        .map_or(spec.filename.as_str(), |(stem, _)| stem)
        .to_string();
    spec.filename = format!("{stem}.{ext}");
    spec.content_type = given;
    spec
}

/// Ends a `fetching` run `succeeded` with its artifacts, dropping the worker's lease.
pub(crate) fn record_success(
    run: &mut Run,
    artifacts: &[Artifact],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    lease::clear(run);
    run.artifacts = artifacts.to_vec();
    run.progress = Progress {
        stage: Some("done".into()),
        fraction: Some(1.0),
        ..Progress::default()
    };
    run.transition(Status::Succeeded, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(content_type: &str) -> OutputSpec {
        OutputSpec {
            content_type: content_type.into(),
            filename: "result.img".into(),
            from: None,
            optional: false,
            max_bytes: None,
            stage: None,
            artifact: None,
        }
    }

    #[test]
    fn a_wildcard_type_takes_the_backends_when_it_fits() {
        let s = resolve_format(spec("image/*"), Some("image/webp"));
        assert_eq!(
            (s.content_type.as_str(), s.filename.as_str()),
            ("image/webp", "result.webp")
        );
        let s = resolve_format(spec("image/*"), Some("image/jpeg; charset=x"));
        assert_eq!(
            (s.content_type.as_str(), s.filename.as_str()),
            ("image/jpeg", "result.jpg")
        );
        let s = resolve_format(spec("image/*"), Some("text/html"));
        assert_eq!(s.content_type, "application/octet-stream");
        let s = resolve_format(spec("image/png"), Some("image/webp"));
        assert_eq!(
            (s.content_type.as_str(), s.filename.as_str()),
            ("image/png", "result.img")
        );
    }
}
