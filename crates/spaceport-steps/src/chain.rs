//! A chain run's driver (submit-space hands it every message of a `chain` run): it starts each
//! stage as a child run of the stage's pipeline — inputs copied inside the blob store from the
//! chain's own inputs or an earlier stage's artifacts, settings mapped — follows it, and when
//! the last stage succeeded copies the artifacts the chain names into the chain run and ends it
//! `succeeded`. A stage that fails, expires or is cancelled ends the chain `failed` with the
//! stage's reason; cancelling the chain cancels its live stage (`Accept::cancel`). Each child is
//! inserted under an Idempotency-Key of the chain and stage, so a driver that crashes between
//! inserting a child and recording it finds the same child again.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, json};
use spaceport_core::pipeline::{Pipeline, StageSpec, toml_to_json};
use spaceport_core::ports::{Idempotency, InsertOutcome};
use spaceport_core::{
    Artifact, BackendInfo, ChildRun, Error, ErrorCode, EventType, InputFile, InputSource,
    InputState, Progress, Run, RunId, Status,
};

use crate::runs::{Mutated, Runs};
use crate::{Outcome, artifacts};

/// How often a chain looks at its live stage.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Moves chain run `id` on: starts its next stage, follows the live one, or ends it.
pub(crate) async fn drive(runs: &Runs, id: &RunId) -> Result<Outcome, Error> {
    let parent = runs.load(id).await?;
    if parent.status.is_terminal() {
        return Ok(Outcome::Done);
    }
    if runs.expire_run(id).await? {
        return Ok(Outcome::Done);
    }
    let pipeline = runs.pipelines.get(&parent.pipeline)?;
    let stages = pipeline.stages();
    let Some(last) = parent.children.last() else {
        return start(runs, &parent, pipeline, 0).await;
    };
    let index = stages
        .iter()
        .position(|s| s.name == last.stage)
        .ok_or_else(|| Error::Internal(format!("chain {id} has no stage {:?}", last.stage)))?;
    let Some(child) = runs.store.get(&last.run).await? else {
        runs.fail_run(
            id,
            ErrorCode::Internal,
            &format!("stage {:?}'s run {} is gone", last.stage, last.run),
            false,
        )
        .await?;
        return Ok(Outcome::Done);
    };
    match child.status {
        Status::Succeeded if index + 1 < stages.len() => {
            start(runs, &parent, pipeline, index + 1).await
        }
        Status::Succeeded => finish(runs, &parent, pipeline).await,
        Status::Failed | Status::Expired | Status::Cancelled => {
            let (code, retryable, why) = match &child.error {
                Some(e) => (e.code, e.retryable, e.message.clone()),
                None => (ErrorCode::Internal, false, String::new()),
            };
            let message = format!(
                "stage {:?} ({}, run {}) {}{}{why}",
                last.stage,
                child.pipeline,
                child.id,
                child.status,
                if why.is_empty() { "" } else { ": " }
            );
            runs.fail_run(id, code, &message, retryable).await?;
            Ok(Outcome::Done)
        }
        _ => {
            follow(runs, &parent, index, stages.len(), &child).await?;
            Ok(Outcome::RetryAfter(FOLLOW_EVERY))
        }
    }
}

/// Shows the live stage on the chain run (a change only when the stage's status or stage
/// moved, so a follow adds no event per look).
async fn follow(
    runs: &Runs,
    parent: &Run,
    index: usize,
    count: usize,
    child: &Run,
) -> Result<(), Error> {
    let progress = stage_progress(index, count, child);
    if parent.progress == progress {
        return Ok(());
    }
    let now = runs.clock.now();
    runs.mutate(&parent.id, |run| {
        if run.status.is_terminal() || run.progress == progress {
            return Ok(false);
        }
        run.set_progress(progress.clone(), now);
        Ok(true)
    })
    .await?;
    Ok(())
}

fn stage_progress(index: usize, count: usize, child: &Run) -> Progress {
    let stage = child.progress.stage.clone().unwrap_or_default();
    Progress {
        stage: Some(format!(
            "stage {} of {count}: {}",
            index + 1,
            child.metadata["stage"].as_str().unwrap_or(&child.pipeline)
        )),
        fraction: Some(
            (index as f64 + child.progress.fraction.unwrap_or(0.0).clamp(0.0, 1.0)) / count as f64,
        ),
        queue_rank: child.progress.queue_rank,
        queue_size: child.progress.queue_size,
        eta_s: child.progress.eta_s,
        message: Some(format!(
            "{} ({}) {}{}",
            child.pipeline,
            child.id,
            child.status,
            if stage.is_empty() {
                String::new()
            } else {
                format!(", {stage}")
            }
        )),
        ..Progress::default()
    }
}

/// Starts stage `index` of the chain as a child run, and records it on the chain.
async fn start(
    runs: &Runs,
    parent: &Run,
    pipeline: &Pipeline,
    index: usize,
) -> Result<Outcome, Error> {
    let stage = &pipeline.stages()[index];
    let child = match make_child(runs, parent, stage).await {
        Ok(child) => child,
        Err(e @ (Error::Validation { .. } | Error::NotFound { .. })) => {
            // The chain's file and the stage's disagree, or an input is gone: nothing retrying fixes.
            runs.fail_run(
                &parent.id,
                ErrorCode::InputInvalid,
                &format!("stage {:?} cannot start: {e}", stage.name),
                false,
            )
            .await?;
            return Ok(Outcome::Done);
        }
        Err(e) => return Err(e),
    };
    let now = runs.clock.now();
    let count = pipeline.stages().len();
    let m = runs
        .mutate(&parent.id, |run| {
            if run.status.is_terminal() || run.children.iter().any(|c| c.run == child.id) {
                return Ok(false);
            }
            if run.status == Status::Submitting {
                run.transition(Status::Running, now)?;
            } else {
                run.record(EventType::Updated, now);
            }
            run.children.push(ChildRun {
                stage: stage.name.clone(),
                run: child.id.clone(),
            });
            run.progress = stage_progress(index, count, &child);
            Ok(true)
        })
        .await?;
    if let Mutated::Unchanged(run) = &m
        && run.status.is_terminal()
    {
        // Cancelled while the stage was being made: the stage goes too.
        if let Err(e) = runs.cancel_run(&child.id).await {
            tracing::warn!(run = %child.id, error = %e, "could not cancel a chain's stage");
        }
        return Ok(Outcome::Done);
    }
    Ok(Outcome::RetryAfter(FOLLOW_EVERY))
}

/// The child run of `stage`, inserted and queued (or the one inserted before, found by its key).
async fn make_child(runs: &Runs, parent: &Run, stage: &StageSpec) -> Result<Run, Error> {
    let target = runs.pipelines.get(&stage.pipeline)?;
    let now = runs.clock.now();
    let id = RunId::new(now.timestamp_millis().max(0) as u64, rand::random());
    let mut inputs: BTreeMap<String, Vec<InputFile>> = BTreeMap::new();
    let mut copied = vec![];
    let result = async {
        for (slot, src) in &stage.inputs {
            let mut list = vec![];
            let sources: Vec<(InputFile, Option<InputSource>)> = match (&src.input, &src.stage) {
                (Some(own), _) => parent
                    .inputs
                    .get(own)
                    .into_iter()
                    .flatten()
                    .map(|f| (f.clone(), None))
                    .collect(),
                (None, Some(from)) => {
                    let artifact = stage_artifact(
                        runs,
                        parent,
                        from,
                        src.artifact.as_deref().unwrap_or_default(),
                    )
                    .await?;
                    let file = InputFile {
                        filename: artifact.filename.clone(),
                        content_type: artifact.content_type.clone(),
                        size: artifact.size,
                        sha256: Some(artifact.sha256.clone()),
                        state: InputState::Landed,
                        key: artifact.key.clone(),
                        url: None,
                        from_run: None,
                    };
                    let run_id = parent
                        .children
                        .iter()
                        .find(|c| c.stage == *from)
                        .map(|c| c.run.to_string())
                        .unwrap_or_default();
                    vec![(
                        file,
                        Some(InputSource {
                            run: run_id,
                            artifact: artifact.name.clone(),
                        }),
                    )]
                }
                (None, None) => vec![],
            };
            for (i, (f, from_run)) in sources.into_iter().enumerate() {
                let key = Run::input_key(&id, slot, i);
                let meta = runs.blobs.copy(&f.key, &key).await?;
                copied.push(key.clone());
                list.push(InputFile {
                    key,
                    sha256: Some(meta.sha256),
                    state: InputState::Landed,
                    url: None,
                    from_run,
                    ..f
                });
            }
            inputs.insert(slot.clone(), list);
        }
        let mut given = Map::new();
        for (name, opt) in &stage.settings {
            let v = match (&opt.setting, &opt.value) {
                (Some(s), _) => match parent.settings.get(s) {
                    Some(v) => v.clone(),
                    None => continue,
                },
                (None, Some(v)) => toml_to_json(v),
                (None, None) => continue,
            };
            given.insert(name.clone(), v);
        }
        let settings = target.resolve_settings(&given)?;
        let backend = BackendInfo::new(target.backend_kind(), target.target());
        let mut metadata = Map::new();
        metadata.insert("chain".into(), json!(parent.id.as_str()));
        metadata.insert("stage".into(), json!(stage.name));
        let mut run = Run {
            inputs,
            settings,
            metadata,
            tenant: parent.tenant.clone(),
            parent: Some(parent.id.clone()),
            cache: parent.cache,
            // The stage has what is left of the chain's time, no more.
            ..Run::new(
                id.clone(),
                &stage.pipeline,
                backend,
                now,
                parent.deadline_at,
            )
        };
        run.transition(Status::Queued, now)?;
        let key = Idempotency {
            key: format!("chain/{}/{}", parent.id, stage.name),
            request_hash: "chain-stage".into(),
        };
        Ok::<Run, Error>(match runs.store.insert(&run, Some(&key)).await? {
            InsertOutcome::Inserted => {
                runs.changed(&run.id);
                runs.notify_webhooks(&run).await;
                runs.hand_on(&run).await?;
                run
            }
            InsertOutcome::Existing(first) => {
                // Made before a crash: that one is the stage; these copies are not wanted.
                for key in &copied {
                    let _ = runs.blobs.delete(key).await;
                }
                copied.clear();
                *first
            }
        })
    }
    .await;
    if result.is_err() {
        for key in &copied {
            let _ = runs.blobs.delete(key).await;
        }
    }
    result
}

/// Artifact `name` of the chain's stage `stage` (which succeeded before a later stage starts).
async fn stage_artifact(
    runs: &Runs,
    parent: &Run,
    stage: &str,
    name: &str,
) -> Result<Artifact, Error> {
    let child = parent
        .children
        .iter()
        .find(|c| c.stage == stage)
        .ok_or_else(|| Error::Internal(format!("stage {stage:?} has not run")))?;
    let run = runs.load(&child.run).await?;
    run.artifacts
        .iter()
        .find(|a| a.name == name)
        .cloned()
        .ok_or_else(|| {
            Error::validation(
                format!("stages.{stage}"),
                format!("stage {stage:?} ({}) made no artifact {name:?}", run.id),
            )
        })
}

/// The last stage succeeded: the chain's artifacts are copied from its stages and it ends.
async fn finish(runs: &Runs, parent: &Run, pipeline: &Pipeline) -> Result<Outcome, Error> {
    let mut stored = vec![];
    for (name, spec) in &pipeline.outputs {
        let (Some(stage), Some(artifact)) = (&spec.stage, &spec.artifact) else {
            continue;
        };
        let a = match stage_artifact(runs, parent, stage, artifact).await {
            Ok(a) => a,
            Err(Error::Validation { .. }) if spec.optional => continue,
            Err(Error::Validation { message, .. }) => {
                runs.fail_run(&parent.id, ErrorCode::ModelError, &message, false)
                    .await?;
                return Ok(Outcome::Done);
            }
            Err(e) => return Err(e),
        };
        // The stage's own file name and type (a Space's `image/*` resolved), under the chain.
        let key = Run::artifact_key(&parent.id, name, &a.filename);
        runs.blobs.copy(&a.key, &key).await?;
        stored.push(Artifact {
            name: name.clone(),
            key,
            ..a
        });
    }
    let now = runs.clock.now();
    runs.mutate(&parent.id, |run| {
        if run.status.is_terminal() {
            return Ok(false);
        }
        if run.status == Status::Submitting {
            run.transition(Status::Running, now)?;
        }
        run.transition(Status::Fetching, now)?;
        artifacts::record_success(run, &stored, now)?;
        Ok(true)
    })
    .await?;
    Ok(Outcome::Done)
}
