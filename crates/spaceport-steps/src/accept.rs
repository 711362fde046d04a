//! accept-upload: the operations behind the HTTP API — create a run (with Idempotency-Key),
//! hand out presigned uploads, record landed inputs and queue the run when all are there; start,
//! cancel (reaching the backend), retry, delete, artifacts, listing and waiting for a change.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spaceport_core::create::has_fetched_inputs;
use spaceport_core::ports::{
    BlobMeta, BlobStore, Idempotency, InputFetcher, InsertOutcome, SpaceBackend,
};
use spaceport_core::{
    BackendInfo, CreateRunRequest, Error, ErrorCode, InputFile, InputSource, InputState,
    LOCAL_TENANT, Run, RunId, StartMode, Status, sniff, validate_create,
};

use crate::runs::{Mutated, Runs};

/// Where to upload one declared input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    pub slot: String,
    pub index: usize,
    pub method: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

/// An input stored before its run was created (a one-shot create's file or URL input).
#[derive(Debug, Clone, PartialEq)]
pub struct Landed {
    pub sha256: String,
    /// The URL it was fetched from, for a URL input.
    pub url: Option<String>,
    /// The run and artifact it was copied from, for an artifact input.
    pub from: Option<(String, String)>,
}

/// The result of `create`.
#[derive(Debug, Clone)]
pub struct Created {
    pub run: Run,
    pub uploads: Vec<Upload>,
    /// True when an Idempotency-Key returned a run created earlier.
    pub existing: bool,
}

/// The API's operations over the run store, the queues, the blob store and (to stop jobs) the
/// Space backend.
#[derive(Clone)]
pub struct Accept {
    runs: Runs,
    blobs: Arc<dyn BlobStore>,
    space: Arc<dyn SpaceBackend>,
    /// Set: every operation acts on this tenant's runs only (another's are `NotFound`), and
    /// creates runs for it. `None`: the operator's view of every run; new runs are `local`'s.
    tenant: Option<String>,
    /// Fetches URL inputs; `None` where this process fetches none.
    fetcher: Option<Arc<dyn InputFetcher>>,
}

impl Accept {
    /// The operations over their ports, over every tenant's runs.
    pub fn new(runs: Runs, blobs: Arc<dyn BlobStore>, space: Arc<dyn SpaceBackend>) -> Accept {
        Accept {
            runs,
            blobs,
            space,
            tenant: None,
            fetcher: None,
        }
    }

    /// The same operations, fetching URL inputs with `fetcher`.
    pub fn with_fetcher(mut self, fetcher: Option<Arc<dyn InputFetcher>>) -> Accept {
        self.fetcher = fetcher;
        self
    }

    /// What fetches URL inputs, if this process fetches them.
    pub(crate) fn fetcher(&self) -> Option<&Arc<dyn InputFetcher>> {
        self.fetcher.as_ref()
    }

    /// The same operations confined to `tenant`'s runs: what the API hands each caller, so no
    /// route can reach another tenant's run, list or feed.
    pub fn for_tenant(&self, tenant: impl Into<String>) -> Accept {
        Accept {
            tenant: Some(tenant.into()),
            ..self.clone()
        }
    }

    /// The tenant this view is confined to (`None`: every tenant).
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Reads a run this view may see; another tenant's is `NotFound`, exactly like a run that
    /// does not exist, so ids say nothing across tenants. (A run's tenant never changes, so a
    /// check before a conditional write holds for the write.)
    pub(crate) async fn load(&self, id: &RunId) -> Result<Run, Error> {
        let run = self.runs.load(id).await?;
        match &self.tenant {
            Some(t) if *t != run.tenant => Err(Error::NotFound {
                what: "run",
                id: id.to_string(),
            }),
            _ => Ok(run),
        }
    }

    /// The run operations shared with the steps (store, queues, pipelines, tunables).
    pub fn runs(&self) -> &Runs {
        &self.runs
    }

    /// The blob store (for `/readyz` and artifact URLs).
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Creates a run and its upload URLs. The request is checked by core's `validate_create`
    /// first; with `idempotency`, the same key and body return the same run and the same key
    /// with another body is a conflict. A rejected request stores nothing.
    pub async fn create(
        &self,
        req: &CreateRunRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<Created, Error> {
        if has_fetched_inputs(req) {
            // Checked as it stands first: nothing is fetched for a request that cannot run.
            validate_create(&self.runs.pipelines, &self.runs.config.outbound, req)?;
            let mut shot = self.one_shot().await?;
            for (slot, files) in &req.inputs {
                for (i, f) in files.iter().enumerate() {
                    let added = match (&f.url, &f.run) {
                        (Some(_), _) => shot.add_url(&req.pipeline, slot, i, f).await,
                        (None, Some(_)) => shot.add_run_artifact(&req.pipeline, slot, i, f).await,
                        (None, None) => continue,
                    };
                    if let Err(e) = added {
                        shot.abandon().await;
                        return Err(e);
                    }
                }
            }
            return shot.create(req.clone(), idempotency).await;
        }
        let id = RunId::new(
            self.runs.clock.now().timestamp_millis().max(0) as u64,
            rand::random(),
        );
        self.create_with(req, idempotency, id, &BTreeMap::new(), None)
            .await
    }

    /// The tenant new runs belong to.
    pub(crate) fn tenant_or_local(&self) -> &str {
        self.tenant.as_deref().unwrap_or(LOCAL_TENANT)
    }

    /// `create` for run `id`, some of whose inputs are already stored at their keys (`landed`,
    /// by slot and index, with where they came from: a one-shot create), in `batch` if one is
    /// named. A run whose every input has landed is queued as it is created.
    pub(crate) async fn create_with(
        &self,
        req: &CreateRunRequest,
        idempotency: Option<Idempotency>,
        id: RunId,
        landed: &BTreeMap<(String, usize), Landed>,
        batch: Option<&str>,
    ) -> Result<Created, Error> {
        if has_fetched_inputs(req) {
            return Err(Error::Internal(
                "URL inputs reach create_with unfetched".into(),
            ));
        }
        let new = validate_create(&self.runs.pipelines, &self.runs.config.outbound, req)?;
        if new.webhook.is_some() && !self.runs.config.webhook.can_sign {
            return Err(Error::validation(
                "webhook",
                "this server signs webhooks and has no signing secret: configure webhook_secrets (SPACEPORT_WEBHOOK_SECRETS)",
            ));
        }
        let pipeline = self.runs.pipelines.get(&new.pipeline)?;
        let tenant = self.tenant_or_local();
        // Keys are the client's own names: two tenants may use the same one.
        let idempotency = idempotency.map(|i| Idempotency {
            key: format!("{tenant}/{}", i.key),
            ..i
        });
        self.admit(tenant, new.inputs.values().flatten().map(|f| f.size).sum())
            .await?;
        let now = self.runs.clock.now();
        let inputs = new
            .inputs
            .iter()
            .map(|(slot, files)| {
                let list = files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let stored = landed.get(&(slot.clone(), i));
                        InputFile {
                            filename: f.filename.clone(),
                            content_type: f.content_type.clone(),
                            size: f.size,
                            sha256: stored.map(|l| l.sha256.clone()),
                            state: if stored.is_some() {
                                InputState::Landed
                            } else {
                                InputState::Pending
                            },
                            key: Run::input_key(&id, slot, i),
                            url: stored.and_then(|l| l.url.clone()),
                            from_run: stored
                                .and_then(|l| l.from.clone())
                                .map(|(run, artifact)| InputSource { run, artifact }),
                        }
                    })
                    .collect();
                (slot.clone(), list)
            })
            .collect();
        let backend = BackendInfo::new(pipeline.backend_kind(), pipeline.target());
        let deadline_at = now + chrono::Duration::seconds(new.deadline_s as i64);
        let mut run = Run {
            settings: new.settings,
            inputs,
            metadata: new.metadata,
            start: new.start,
            webhook: new
                .webhook
                .map(|w| serde_json::to_value(w).unwrap_or_default()),
            tenant: tenant.to_owned(),
            cache: new.cache,
            batch: batch.map(str::to_string),
            ..Run::new(id, &pipeline.name, backend, now, deadline_at)
        };
        let queue_now = run.all_inputs_landed() && run.start == StartMode::Auto;
        if queue_now {
            run.transition(Status::Queued, now)?;
        }
        match self.runs.store.insert(&run, idempotency.as_ref()).await? {
            InsertOutcome::Inserted => {
                self.runs.changed(&run.id);
                self.runs.notify_webhooks(&run).await;
                if queue_now {
                    self.runs.hand_on(&run).await?;
                }
                let uploads = self.uploads(&run).await?;
                Ok(Created {
                    run,
                    uploads,
                    existing: false,
                })
            }
            InsertOutcome::Existing(run) => {
                let uploads = self.uploads(&run).await?;
                Ok(Created {
                    run: *run,
                    uploads,
                    existing: true,
                })
            }
        }
    }

    /// Whether `tenant` may add a run declaring `declared` bytes under its caps. Checked before
    /// the write, not in it: creates racing at a cap's edge may overshoot it by the creates in
    /// flight at that moment (the rate limit bounds them).
    pub(crate) async fn admit(&self, tenant: &str, declared: u64) -> Result<(), Error> {
        let caps = &self.runs.config.caps;
        if !caps.any() {
            return Ok(());
        }
        let usage = self.runs.store.usage(tenant).await?;
        caps.admit(tenant, usage, declared)
    }

    /// Presigned uploads for the run's inputs that have not landed (none once it left `created`).
    pub async fn uploads(&self, run: &Run) -> Result<Vec<Upload>, Error> {
        let mut out = vec![];
        if run.status != Status::Created {
            return Ok(out);
        }
        for (slot, files) in &run.inputs {
            for (index, f) in files.iter().enumerate() {
                if f.state != InputState::Pending || f.url.is_some() {
                    continue;
                }
                let t = self
                    .blobs
                    .presign_upload(&f.key, &f.content_type, f.size, self.runs.config.upload_ttl)
                    .await?;
                out.push(Upload {
                    slot: slot.clone(),
                    index,
                    method: t.method,
                    url: t.url,
                    fields: t.fields,
                    headers: t.headers,
                    expires_at: t.expires_at,
                });
            }
        }
        Ok(out)
    }

    /// Whether an upload to input `key` may store its bytes: only while the run waits for that
    /// input. A URL replayed after its input landed, or after the run moved on or was deleted,
    /// is refused (409) and stores nothing, so the bytes a backend sees are the bytes whose
    /// sha256 the run records.
    pub async fn upload_open(&self, key: &str) -> Result<(), Error> {
        let Some(id) = run_id_of_key(key) else {
            return Ok(());
        };
        let Some(run) = self.runs.store.get(&id).await? else {
            return Err(Error::Conflict(format!("run {id} does not exist")));
        };
        if run.deleted_at.is_some() {
            return Err(Error::Conflict(format!(
                "run {id} was deleted; its inputs take no uploads"
            )));
        }
        let input = run
            .inputs
            .iter()
            .flat_map(|(slot, fs)| fs.iter().enumerate().map(move |(i, f)| (slot, i, f)))
            .find(|(_, _, f)| f.key == key);
        match input {
            Some((slot, i, f)) if f.state == InputState::Landed => Err(Error::Conflict(format!(
                "input {slot}[{i}] ({}) already landed with sha256 {}; a run's inputs do not change once uploaded",
                f.filename,
                f.sha256.as_deref().unwrap_or("?")
            ))),
            _ if run.status != Status::Created => Err(Error::Conflict(format!(
                "run {id} is already {}; its inputs take no uploads",
                run.status
            ))),
            _ => Ok(()),
        }
    }

    /// Records that the input stored under `key` has landed (an object-created event). Queues
    /// the run when every input is there and it starts by itself. Unknown keys are ignored; an
    /// input whose bytes are not its declared type fails the run `input_invalid`.
    pub async fn input_landed(&self, key: &str, meta: &BlobMeta) -> Result<Option<Run>, Error> {
        let Some(id) = run_id_of_key(key) else {
            return Ok(None);
        };
        // Bytes that are not the declared type fail the run now, before a Space or model sees them.
        if let Some(run) = self.runs.store.get(&id).await?
            && run.status == Status::Created
            && let Some((slot, i, f)) = run.inputs.iter().find_map(|(slot, fs)| {
                fs.iter()
                    .enumerate()
                    .find(|(_, f)| f.key == key)
                    .map(|(i, f)| (slot, i, f))
            })
        {
            let head =
                crate::inputs::read_head(self.blobs.get(key).await?, sniff::SNIFF_BYTES).await?;
            if let Some(why) = sniff::mismatch(&f.content_type, &head) {
                let message = format!("input {slot}[{i}] ({}): {why}", f.filename);
                self.runs
                    .fail_run(&id, ErrorCode::InputInvalid, &message, false)
                    .await?;
                return Ok(Some(self.runs.load(&id).await?));
            }
        }
        let now = self.runs.clock.now();
        let mutated = self
            .runs
            .mutate_handing_on(&id, |run| {
                if run.status != Status::Created {
                    return Ok(false);
                }
                let Some(f) = run.inputs.values_mut().flatten().find(|f| f.key == key) else {
                    return Ok(false);
                };
                if f.state == InputState::Landed
                    && f.sha256.as_deref() == Some(meta.sha256.as_str())
                {
                    return Ok(false);
                }
                f.state = InputState::Landed;
                f.sha256 = Some(meta.sha256.clone());
                if run.all_inputs_landed() && run.start == StartMode::Auto {
                    run.transition(Status::Queued, now)?;
                }
                Ok(true)
            })
            .await?;
        Ok(Some(mutated.run().clone()))
    }

    /// `POST /runs/{id}/start`: queues a run whose inputs have all landed.
    pub async fn start(&self, id: &RunId) -> Result<Run, Error> {
        self.load(id).await?;
        let now = self.runs.clock.now();
        let mutated = self
            .runs
            .mutate_handing_on(id, |run| {
                if run.status.is_terminal() {
                    return Err(Error::InvalidState(format!(
                        "run {} is already {}",
                        run.id, run.status
                    )));
                }
                if run.status != Status::Created {
                    return Ok(false);
                }
                let missing: Vec<String> = run
                    .inputs
                    .iter()
                    .flat_map(|(slot, fs)| {
                        fs.iter()
                            .enumerate()
                            .filter(|(_, f)| f.state != InputState::Landed)
                            .map(move |(i, f)| format!("{slot}[{i}] ({})", f.filename))
                    })
                    .collect();
                if !missing.is_empty() {
                    return Err(Error::InvalidState(format!(
                        "inputs not uploaded yet: {}",
                        missing.join(", ")
                    )));
                }
                run.transition(Status::Queued, now)?;
                Ok(true)
            })
            .await?;
        Ok(mutated.run().clone())
    }

    /// `POST /runs/{id}/cancel`: ends the run `cancelled` and stops the job at the backend.
    pub async fn cancel(&self, id: &RunId) -> Result<Run, Error> {
        self.load(id).await?;
        let run = match self.runs.cancel_run(id).await? {
            Mutated::Changed(run) => run,
            Mutated::Unchanged(run) => {
                return Err(Error::InvalidState(format!(
                    "run {} is already {}; only a live run can be cancelled",
                    run.id, run.status
                )));
            }
        };
        if let Some(handle) = run.job_handle() {
            self.runs
                .cancel_at_backend(self.space.as_ref(), &run, handle)
                .await;
        }
        // A chain's live stage goes with it (and the next never starts).
        for child in &run.children {
            match Box::pin(self.cancel(&child.run)).await {
                Ok(_) | Err(Error::InvalidState(_)) => {}
                Err(e) => {
                    tracing::warn!(run = %child.run, error = %e, "could not cancel a chain's stage")
                }
            }
        }
        Ok(run)
    }

    /// `POST /runs/{id}/retry`: a new run with the same inputs and settings, `retry_of` set.
    /// The inputs are copied inside the blob store (a hard link on disk, `CopyObject` on S3),
    /// so no byte passes through the request. With an Idempotency-Key, asking again returns the
    /// first retry (`existing`).
    pub async fn retry(
        &self,
        id: &RunId,
        idempotency: Option<Idempotency>,
    ) -> Result<Created, Error> {
        let old = self.load(id).await?;
        if !old.status.is_terminal() {
            return Err(Error::InvalidState(format!(
                "run {} is still {}; retry a finished run",
                old.id, old.status
            )));
        }
        if old.deleted_at.is_some() {
            return Err(Error::InvalidState(format!(
                "run {} was deleted; its inputs are gone",
                old.id
            )));
        }
        if old
            .inputs
            .values()
            .flatten()
            .any(|f| f.state != InputState::Landed)
        {
            return Err(Error::InvalidState(format!(
                "run {} never received all its inputs",
                old.id
            )));
        }
        self.admit(
            &old.tenant,
            old.inputs.values().flatten().map(|f| f.size).sum(),
        )
        .await?;
        let now = self.runs.clock.now();
        let new_id = RunId::new(now.timestamp_millis().max(0) as u64, rand::random());
        let mut inputs = BTreeMap::new();
        for (slot, files) in &old.inputs {
            let mut list = vec![];
            for (i, f) in files.iter().enumerate() {
                let key = Run::input_key(&new_id, slot, i);
                let meta = self.blobs.copy(&f.key, &key).await?;
                list.push(InputFile {
                    key,
                    sha256: Some(meta.sha256),
                    state: InputState::Landed,
                    ..f.clone()
                });
            }
            inputs.insert(slot.clone(), list);
        }
        let deadline = old.deadline_at - old.created_at;
        // A retry starts on its pipeline's own backend, whatever the old run failed over to.
        let pipeline = self.runs.pipelines.get(&old.pipeline)?;
        let backend = BackendInfo::new(pipeline.backend_kind(), pipeline.target());
        let mut run = Run {
            inputs,
            settings: old.settings.clone(),
            metadata: old.metadata.clone(),
            webhook: old.webhook.clone(),
            retry_of: Some(old.id.clone()),
            tenant: old.tenant.clone(),
            // A retry asks for the job to run again, not for the results it may already have.
            cache: false,
            ..Run::new(new_id, &old.pipeline, backend, now, now + deadline)
        };
        run.transition(Status::Queued, now)?;
        match self.runs.store.insert(&run, idempotency.as_ref()).await? {
            InsertOutcome::Inserted => {
                self.runs.changed(&run.id);
                self.runs.notify_webhooks(&run).await;
                self.runs.hand_on(&run).await?;
                Ok(Created {
                    run,
                    uploads: vec![],
                    existing: false,
                })
            }
            InsertOutcome::Existing(first) => {
                // The key was used before: the copies made for this ask are not wanted.
                for f in run.inputs.values().flatten() {
                    if let Err(e) = self.blobs.delete(&f.key).await {
                        tracing::warn!(key = %f.key, error = %e, "could not delete an unused copy");
                    }
                }
                Ok(Created {
                    run: *first,
                    uploads: vec![],
                    existing: true,
                })
            }
        }
    }

    /// `DELETE /runs/{id}`: deletes a finished run's inputs and artifacts; the record stays, marked.
    pub async fn delete(&self, id: &RunId) -> Result<Run, Error> {
        let run = self.load(id).await?;
        if !run.status.is_terminal() {
            return Err(Error::InvalidState(format!(
                "run {} is still {}; cancel it before deleting",
                run.id, run.status
            )));
        }
        self.runs.delete_data(&run, "request").await
    }
}

/// The run a blob key belongs to (`runs/<id>/…`).
pub fn run_id_of_key(key: &str) -> Option<RunId> {
    let rest = key.strip_prefix("runs/")?;
    RunId::parse(rest.split('/').next()?).ok()
}
