//! Batches: many runs of one pipeline created in one request (each its own run, uploads and
//! idempotency), summarised, and their results handed out as each run ends. A batch is a small
//! record in the blob store (`batches/{id}`: its tenant, pipeline and run ids), written once
//! every run of it exists; the runs name it (`Run::batch`).

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use spaceport_core::batch::{CreateBatchRequest, validate_batch};
use spaceport_core::create::request_hash;
use spaceport_core::limits::Usage;
use spaceport_core::ports::Idempotency;
use spaceport_core::{Error, Run, RunId};

use crate::inputs::read_all;
use crate::{Accept, Created};

/// A batch as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// `bat_…`.
    pub id: String,
    pub tenant: String,
    pub pipeline: String,
    pub created_at: DateTime<Utc>,
    /// Its runs, in the order of the request.
    pub runs: Vec<RunId>,
}

/// A created (or, with the same Idempotency-Key, found) batch and its runs.
pub struct CreatedBatch {
    pub batch: Batch,
    pub runs: Vec<Created>,
    /// The key was used before: nothing new was created.
    pub existing: bool,
}

fn record_key(id: &str) -> String {
    format!("batches/{id}")
}

/// Whether `id` looks like a batch id (so a malformed one is a plain 404, never a blob path).
fn is_batch_id(id: &str) -> bool {
    id.strip_prefix("bat_").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

impl Accept {
    /// Creates every run of the batch after checking them all (a rejected batch stores
    /// nothing). With `key`, each run's Idempotency-Key is `{key}/{position}` unless the item
    /// names its own, so the same request again returns the same batch.
    pub async fn create_batch(
        &self,
        req: &CreateBatchRequest,
        key: Option<String>,
    ) -> Result<CreatedBatch, Error> {
        let news = validate_batch(&self.runs().pipelines, &self.runs().config.outbound, req)?;
        let tenant = self.tenant_or_local().to_string();
        // The caps hold for the whole batch before any run of it is stored.
        let caps = &self.runs().config.caps;
        if caps.any() {
            let usage = self.runs().store.usage(&tenant).await?;
            let more = news.len() as u64 - 1;
            let bytes: u64 = news
                .iter()
                .flat_map(|n| n.inputs.values().flatten())
                .map(|f| f.size)
                .sum();
            caps.admit(
                &tenant,
                Usage {
                    runs_in_flight: usage.runs_in_flight + more,
                    ..usage
                },
                bytes,
            )?;
        }
        let now = self.runs().clock.now();
        let mint = || RunId::new(now.timestamp_millis().max(0) as u64, rand::random());
        let mut id = format!("bat_{}", &mint().as_str()["run_".len()..]);
        let mut created: Vec<Created> = vec![];
        for (i, (req, item)) in req.run_requests().iter().zip(&req.runs).enumerate() {
            let idempotency = item
                .idempotency_key
                .clone()
                .or_else(|| key.as_ref().map(|k| format!("{k}/{i}")))
                .map(|k| Idempotency {
                    key: k,
                    request_hash: request_hash(&serde_json::to_value(req).unwrap_or_default()),
                });
            let c = self
                .create_with(
                    req,
                    idempotency,
                    mint(),
                    &Default::default(),
                    Some(id.as_str()),
                )
                .await?;
            // The same request again: it answers with the batch its first run belongs to.
            if i == 0
                && c.existing
                && let Some(old) = &c.run.batch
            {
                id = old.clone();
            }
            created.push(c);
        }
        let existing = created.iter().all(|c| c.existing);
        let batch = Batch {
            id: id.clone(),
            tenant,
            pipeline: req.pipeline.clone(),
            created_at: now,
            runs: created.iter().map(|c| c.run.id.clone()).collect(),
        };
        let batch = match (existing, self.read_batch(&id).await?) {
            (true, Some(old)) => old,
            _ => {
                let body =
                    serde_json::to_vec(&batch).map_err(|e| Error::Internal(e.to_string()))?;
                let stream = futures::stream::once(async move { Ok(Bytes::from(body)) }).boxed();
                self.blobs()
                    .put(&record_key(&id), "application/json", stream)
                    .await?;
                batch
            }
        };
        Ok(CreatedBatch {
            batch,
            runs: created,
            existing,
        })
    }

    async fn read_batch(&self, id: &str) -> Result<Option<Batch>, Error> {
        if !is_batch_id(id) || self.blobs().head(&record_key(id)).await?.is_none() {
            return Ok(None);
        }
        let text = read_all(self.blobs().get(&record_key(id)).await?).await?;
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::Internal(format!("batch {id} does not decode: {e}")))
    }

    /// The batch `id` of this view's tenant (`NotFound` for another tenant's, as for runs).
    pub async fn batch(&self, id: &str) -> Result<Batch, Error> {
        let not_found = || Error::NotFound {
            what: "batch",
            id: id.to_string(),
        };
        let batch = self.read_batch(id).await?.ok_or_else(not_found)?;
        match self.tenant() {
            Some(t) if t != batch.tenant => Err(not_found()),
            _ => Ok(batch),
        }
    }

    /// The batch's runs as they are now, in the batch's order.
    pub async fn batch_runs(&self, batch: &Batch) -> Result<Vec<Run>, Error> {
        let mut out = vec![];
        for id in &batch.runs {
            out.push(self.load(id).await?);
        }
        Ok(out)
    }

    /// The runs of `batch` that have ended and are not in `seen`, in the order they ended;
    /// waits up to `max` for one when none has.
    pub async fn next_finished(
        &self,
        batch: &Batch,
        seen: &HashSet<RunId>,
        max: Duration,
    ) -> Result<Vec<Run>, Error> {
        let pending: HashSet<RunId> = batch
            .runs
            .iter()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        // Listen before reading, so an end between the read and the wait is not missed.
        let mut listener = self.runs().listen();
        let until = tokio::time::Instant::now() + max;
        loop {
            let mut ended = vec![];
            for id in &pending {
                let run = self.load(id).await?;
                if run.status.is_terminal() {
                    ended.push(run);
                }
            }
            let now = tokio::time::Instant::now();
            if !ended.is_empty() || pending.is_empty() || now >= until {
                ended.sort_by_key(|r| (r.finished_at, r.id.clone()));
                return Ok(ended);
            }
            listener.any_changed(&pending, until - now).await;
        }
    }
}
