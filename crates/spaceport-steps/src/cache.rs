//! The result cache: a run that asks for exactly what an earlier run of its tenant got (same
//! pipeline, backend revision, settings and input files; `spaceport_core::cache`) is answered
//! with that run's results at once, copied within the blob store, without a call to the Space.
//! An entry is the blob `cache/{key}` naming the run that made the results; it is written when
//! that run succeeds and read back only while the run still holds them (not deleted).

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use spaceport_core::pipeline::BackendSpec;
use spaceport_core::ports::{BlobStore, SpaceBackend};
use spaceport_core::{Artifact, Error, Progress, Run, RunId, Status, cache};

use crate::inputs::read_all;
use crate::runs::{Mutated, Runs};

/// What the cache says about a run about to be submitted.
pub(crate) enum Lookup {
    /// An earlier run made these results.
    Hit(Box<Run>),
    /// Nothing yet: the run's results are kept under this key when it succeeds (`None`: not
    /// cacheable, e.g. the Space's revision could not be read).
    Miss(Option<String>),
}

/// Looks the run up (Space pipelines only, on the run's first submission, unless it opted out).
pub(crate) async fn lookup(
    runs: &Runs,
    space: &dyn SpaceBackend,
    run: &Run,
) -> Result<Lookup, Error> {
    if !run.cache || !run.backend.attempts.is_empty() {
        return Ok(Lookup::Miss(None));
    }
    let pipeline = runs.pipelines.get(run.backend_pipeline())?;
    let BackendSpec::Space { space: id, .. } = &pipeline.backend else {
        return Ok(Lookup::Miss(None));
    };
    let Some(url) = pipeline.backend.space_url() else {
        return Ok(Lookup::Miss(None));
    };
    let Some(revision) = space.revision(id, &url).await else {
        return Ok(Lookup::Miss(None));
    };
    let Some(key) = cache::result_key(run, &revision) else {
        return Ok(Lookup::Miss(None));
    };
    let blobs = runs.blobs.as_ref();
    let entry = cache::entry_key(&key);
    if blobs.head(&entry).await?.is_none() {
        return Ok(Lookup::Miss(Some(key)));
    }
    let text = read_all(blobs.get(&entry).await?).await?;
    let source = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["run"].as_str().map(str::to_string))
        .and_then(|s| RunId::parse(&s).ok());
    let usable = match &source {
        Some(id) => runs.store.get(id).await?.filter(|r| {
            r.status == Status::Succeeded
                && r.deleted_at.is_none()
                && r.tenant == run.tenant
                && !r.artifacts.is_empty()
        }),
        None => None,
    };
    match usable {
        Some(source) => Ok(Lookup::Hit(Box::new(source))),
        None => {
            // The results are gone (deleted, or never whole): forget the entry.
            let _ = blobs.delete(&entry).await;
            Ok(Lookup::Miss(Some(key)))
        }
    }
}

/// Ends run `id` `succeeded` with copies of `source`'s artifacts and outputs. False when the
/// copy failed (the source's files went meanwhile) or the run moved on: submit as usual.
pub(crate) async fn answer(runs: &Runs, id: &RunId, source: &Run) -> Result<bool, Error> {
    let blobs = runs.blobs.as_ref();
    let mut copies: Vec<Artifact> = vec![];
    for a in &source.artifacts {
        let key = Run::artifact_key(id, &a.name, &a.filename);
        let copied = match blobs.get(&a.key).await {
            Ok(body) => blobs.put(&key, &a.content_type, body).await,
            Err(e) => Err(e),
        };
        match copied {
            Ok(meta) if meta.sha256 == a.sha256 => copies.push(Artifact { key, ..a.clone() }),
            other => {
                tracing::info!(run = %id, from = %source.id, "the cached results could not be copied ({other:?}); submitting instead");
                let keys: Vec<String> = copies.iter().map(|c| c.key.clone()).collect();
                runs.discard(id, blobs, &keys).await;
                return Ok(false);
            }
        }
    }
    let now = runs.clock.now();
    let mutated = runs
        .mutate(id, |run| {
            if run.status != Status::Queued {
                return Ok(false);
            }
            for s in [Status::Submitting, Status::Running, Status::Fetching] {
                run.transition(s, now)?;
            }
            run.cache_hit = true;
            run.cached_from = Some(source.id.clone());
            run.outputs = source.outputs.clone();
            run.append_logs(source.logs.iter().cloned());
            crate::artifacts::record_success(run, &copies, now)?;
            run.progress = Progress {
                stage: Some("cache_hit".into()),
                fraction: Some(1.0),
                message: Some(format!("the results of {} (the same job)", source.id)),
                ..Progress::default()
            };
            Ok(true)
        })
        .await?;
    if let Mutated::Unchanged(_) = mutated {
        // Another worker moved the run on first, maybe answering it from the cache into these
        // very keys: they go only if the run does not hold them (`discard`).
        let keys: Vec<String> = copies.iter().map(|c| c.key.clone()).collect();
        runs.discard(id, blobs, &keys).await;
        return Ok(false);
    }
    Ok(true)
}

/// Keeps a run that just succeeded as the answer for its key.
pub(crate) async fn remember(blobs: &dyn BlobStore, run: &Run) {
    let Some(key) = run.cache_key.as_deref().filter(|_| !run.cache_hit) else {
        return;
    };
    let body = json!({"run": run.id.to_string()}).to_string();
    let stream = futures::stream::once(async move { Ok(Bytes::from(body)) }).boxed();
    if let Err(e) = blobs
        .put(&cache::entry_key(key), "application/json", stream)
        .await
    {
        tracing::warn!(run = %run.id, error = %e, "could not keep the run's results for the cache");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;
    use spaceport_core::ports::{BlobStore, RunStore, SystemClock};
    use spaceport_core::{Artifact, PipelineSet, Run, Status};
    use spaceport_local::LocalStack;

    use crate::{Ports, Steps, StepsConfig};

    /// Two workers answering one queued run from the cache (a duplicate message): the second
    /// copies into the same keys, finds the run already answered, and must leave the copies
    /// the first recorded (it deleted them, leaving a succeeded run without its files).
    #[tokio::test]
    async fn the_worker_that_loses_an_answer_leaves_the_winners_files() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStack::open(dir.path(), "http://127.0.0.1").unwrap();
        let steps = Steps::new(
            Arc::new(PipelineSet::builtin()),
            Ports {
                store: local.store.clone(),
                queue: local.queue.clone(),
                blobs: local.blobs.clone(),
                space: Arc::new(spaceport_gradio::GradioBackend::new(Default::default())),
                model: None,
                chat: Arc::new(spaceport_chat::HttpChat::new().unwrap()),
                clock: Arc::new(SystemClock),
                deliveries: local.store.clone(),
                sender: Arc::new(spaceport_testkit::fakes::NoWebhooks),
                sink: None,
                fetcher: None,
            },
            StepsConfig::default(),
        );
        let now = chrono::Utc::now();
        let mut source = spaceport_contract::sample_run("vggt", now);
        let key = Run::artifact_key(&source.id, "scene", "scene.glb");
        let body = futures::stream::once(async { Ok(bytes::Bytes::from_static(b"glTF")) }).boxed();
        let meta = local
            .blobs
            .put(&key, "model/gltf-binary", body)
            .await
            .unwrap();
        source.artifacts.push(Artifact {
            name: "scene".into(),
            filename: "scene.glb".into(),
            content_type: "model/gltf-binary".into(),
            size: meta.size,
            sha256: meta.sha256,
            key,
            meta: Default::default(),
        });
        let mut target = spaceport_contract::sample_run("vggt", now);
        target.transition(Status::Queued, now).unwrap();
        local.store.insert(&target, None).await.unwrap();

        assert!(
            super::answer(&steps.runs, &target.id, &source)
                .await
                .unwrap()
        );
        assert!(
            !super::answer(&steps.runs, &target.id, &source)
                .await
                .unwrap()
        );
        let answered = local.store.get(&target.id).await.unwrap().unwrap();
        assert_eq!(answered.status, Status::Succeeded);
        let file = &answered.artifacts[0].key;
        assert!(
            local.blobs.head(file).await.unwrap().is_some(),
            "the succeeded run's artifact file is there"
        );
    }
}
