//! A run's results: each file streamed into the blob store at a fixed key (so a repeated fetch
//! overwrites instead of duplicating) and recorded with its size and sha256, then the run ended
//! `succeeded`. fetch-artifact (files from a Space) and reconstruct (files a model wrote) share it.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use spaceport_core::pipeline::OutputSpec;
use spaceport_core::ports::{BlobStore, ByteStream};
use spaceport_core::{Artifact, Error, Progress, Run, RunId, Status, lease};

/// Streams `body` into the artifact `name` of run `id`, as the pipeline's output `spec` says.
pub(crate) async fn store(
    blobs: &dyn BlobStore,
    id: &RunId,
    name: &str,
    spec: &OutputSpec,
    body: ByteStream,
    meta: Map<String, Value>,
) -> Result<Artifact, Error> {
    let key = Run::artifact_key(id, name, &spec.filename);
    let stored = blobs.put(&key, &spec.content_type, body).await?;
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
