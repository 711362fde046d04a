//! One-shot creates: a run whose input files come with the request — the parts of a multipart
//! form, or URLs the API fetches — instead of through presigned uploads. Each file streams
//! straight to its run's input key (the run id is drawn first), counted against the slot's
//! size limit as it goes — or another run's artifact the store copies; then the run is created with those inputs landed, and queued at once
//! when none is left to upload. Whatever fails, the files stored for it are deleted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use spaceport_core::ports::{BlobMeta, ByteStream, Idempotency};
use spaceport_core::{CreateRunRequest, DeclaredInput, Error, Run, RunId, Status, sniff};

use crate::accept::{Accept, Created, Landed};

/// A run being put together from the files of one request.
pub struct OneShot {
    accept: Accept,
    id: RunId,
    /// Files stored so far, by slot and index.
    stored: BTreeMap<(String, usize), (DeclaredInput, Landed)>,
}

impl Accept {
    /// Starts a one-shot create: a fresh run id its files are stored under. A tenant already
    /// at its cap on runs in flight is refused before any byte is stored.
    pub async fn one_shot(&self) -> Result<OneShot, Error> {
        self.admit(self.tenant_or_local(), 0).await?;
        let id = RunId::new(
            self.runs().clock.now().timestamp_millis().max(0) as u64,
            rand::random(),
        );
        Ok(OneShot {
            accept: self.clone(),
            id,
            stored: BTreeMap::new(),
        })
    }
}

/// `body`, failing once more than `max` bytes have passed (and setting `over`), its first
/// bytes kept in `head` as they pass (what its type is told from, with no second read).
fn capped(
    body: ByteStream,
    max: u64,
    over: Arc<AtomicBool>,
    head: Arc<Mutex<Vec<u8>>>,
) -> ByteStream {
    let mut seen = 0u64;
    Box::pin(body.map(move |chunk| {
        let chunk = chunk?;
        if seen < sniff::SNIFF_BYTES as u64 {
            let mut head = head.lock().unwrap_or_else(|p| p.into_inner());
            let take = (sniff::SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        seen += chunk.len() as u64;
        if seen > max {
            over.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other(format!("over {max} bytes")));
        }
        Ok(chunk)
    }))
}

impl OneShot {
    /// The run's id.
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// The most bytes a file of `slot` may have: the slot's limit when the pipeline is known,
    /// else the largest any pipeline takes (the create checks the slot's own afterwards).
    fn max_bytes(&self, pipeline: Option<&str>, slot: &str) -> u64 {
        let pipelines = &self.accept.runs().pipelines;
        let of = |p: &spaceport_core::Pipeline| p.inputs.get(slot).map(|s| s.max_bytes);
        match pipeline.and_then(|p| pipelines.get(p).ok()) {
            Some(p) => of(p).unwrap_or(0),
            None => pipelines.iter().filter_map(of).max().unwrap_or(0),
        }
    }

    /// `slot/index/sha256` of each file stored so far (what an Idempotency-Key's request hash
    /// covers of a form's files).
    pub fn file_digests(&self) -> Vec<serde_json::Value> {
        self.stored
            .iter()
            .map(|((slot, i), (_, l))| format!("{slot}/{i}/{}", l.sha256).into())
            .collect()
    }

    /// The next index of `slot`.
    fn next_index(&self, slot: &str) -> usize {
        self.stored.keys().filter(|(s, _)| s == slot).count()
    }

    async fn store(
        &mut self,
        field: String,
        pipeline: Option<&str>,
        slot: &str,
        index: usize,
        content_type: &str,
        body: ByteStream,
    ) -> Result<BlobMeta, Error> {
        let max = self.max_bytes(pipeline, slot);
        if max == 0 {
            return Err(Error::validation(
                format!("inputs.{slot}"),
                format!(
                    "pipeline {:?} has no input slot {slot:?}",
                    pipeline.unwrap_or("(none named)")
                ),
            ));
        }
        let key = Run::input_key(&self.id, slot, index);
        let over = Arc::new(AtomicBool::new(false));
        let head = Arc::new(Mutex::new(Vec::with_capacity(sniff::SNIFF_BYTES)));
        let put = self
            .accept
            .blobs()
            .put(
                &key,
                content_type,
                capped(body, max, over.clone(), head.clone()),
            )
            .await;
        match put {
            Ok(meta) if meta.size == 0 => {
                self.accept.blobs().delete(&key).await?;
                Err(Error::validation(
                    format!("{field}.size"),
                    "the file is empty",
                ))
            }
            Ok(meta) => {
                // Bytes that are not the declared type are refused here, as a presigned upload's
                // are when they land, before a run exists to reach a Space or model.
                let head = std::mem::take(&mut *head.lock().unwrap_or_else(|p| p.into_inner()));
                if let Some(why) = sniff::mismatch(content_type, &head) {
                    self.accept.blobs().delete(&key).await?;
                    return Err(Error::UnsupportedMediaType {
                        field: Some(field),
                        message: format!("{why}; declare the type the bytes are"),
                    });
                }
                Ok(meta)
            }
            Err(_) if over.load(Ordering::Relaxed) => Err(Error::PayloadTooLarge {
                field: Some(format!("{field}.size")),
                message: format!("the file is over the slot's limit of {max} bytes"),
            }),
            Err(e) => Err(e),
        }
    }

    /// Stores a file of `slot` from a form, in the order the slot's files came.
    pub async fn add_file(
        &mut self,
        pipeline: Option<&str>,
        slot: &str,
        filename: &str,
        content_type: &str,
        body: ByteStream,
    ) -> Result<(), Error> {
        let index = self.next_index(slot);
        let field = format!("inputs.{slot}[{index}]");
        spaceport_core::pipeline::check_filename(&format!("{field}.filename"), filename)?;
        let meta = self
            .store(field, pipeline, slot, index, content_type, body)
            .await?;
        let declared = DeclaredInput {
            filename: Some(filename.to_owned()),
            content_type: Some(content_type.to_owned()),
            size: Some(meta.size),
            ..DeclaredInput::default()
        };
        let landed = Landed {
            sha256: meta.sha256,
            url: None,
            from: None,
        };
        self.stored
            .insert((slot.to_owned(), index), (declared, landed));
        Ok(())
    }

    /// Fetches URL input `index` of `slot` (as declared: its filename and content type are
    /// optional and, when given, must match) and stores it.
    pub async fn add_url(
        &mut self,
        pipeline: &str,
        slot: &str,
        index: usize,
        declared: &DeclaredInput,
    ) -> Result<(), Error> {
        let field = format!("inputs.{slot}[{index}]");
        let url = declared.url.as_deref().unwrap_or_default();
        let fetcher = self.accept.fetcher().ok_or_else(|| {
            Error::validation(
                format!("{field}.url"),
                "this server fetches no URL inputs; upload the file",
            )
        })?;
        let fetched = fetcher.fetch(&format!("{field}.url"), url).await?;
        let content_type = match (&declared.content_type, &fetched.content_type) {
            (Some(d), _) => d.clone(),
            (None, Some(f)) => f.clone(),
            (None, None) => {
                return Err(Error::validation(
                    format!("{field}.content_type"),
                    "the server gave no Content-Type; declare content_type",
                ));
            }
        };
        // Refuse a type the slot does not take before reading the body.
        if let Ok(p) = self.accept.runs().pipelines.get(pipeline)
            && let Some(spec) = p.inputs.get(slot)
            && !spec.content_types.contains(&content_type)
        {
            return Err(Error::UnsupportedMediaType {
                field: Some(format!("{field}.content_type")),
                message: format!(
                    "{url} is {content_type:?}; {slot} takes {}",
                    spec.content_types.join(", ")
                ),
            });
        }
        if let (Some(len), max) = (fetched.length, self.max_bytes(Some(pipeline), slot))
            && len > max
            && max > 0
        {
            return Err(Error::PayloadTooLarge {
                field: Some(format!("{field}.size")),
                message: format!("{url} is {len} bytes; the slot's limit is {max} bytes"),
            });
        }
        let filename = declared
            .filename
            .clone()
            .unwrap_or_else(|| filename_of(&fetched.final_url, index));
        let meta = self
            .store(
                field.clone(),
                Some(pipeline),
                slot,
                index,
                &content_type,
                fetched.body,
            )
            .await?;
        if let Some(size) = declared.size
            && size != meta.size
        {
            self.accept
                .blobs()
                .delete(&Run::input_key(&self.id, slot, index))
                .await?;
            return Err(Error::validation(
                format!("{field}.size"),
                format!("{size} bytes declared; {url} gave {}", meta.size),
            ));
        }
        self.stored.insert(
            (slot.to_owned(), index),
            (
                DeclaredInput {
                    filename: Some(filename),
                    content_type: Some(content_type),
                    size: Some(meta.size),
                    ..DeclaredInput::default()
                },
                Landed {
                    sha256: meta.sha256,
                    from: None,
                    url: Some(url.to_owned()),
                },
            ),
        );
        Ok(())
    }

    /// Takes artifact `declared.artifact` of run `declared.run` as input `index` of `slot`:
    /// the run must be this tenant's (another tenant's is as unknown as a missing one) and
    /// succeeded, the artifact still stored, of a type the slot takes and within its limit. The
    /// bytes are copied inside the blob store (a hard link on disk, `CopyObject` on S3), never
    /// through the API, so the new run keeps them whatever becomes of the old one.
    pub async fn add_run_artifact(
        &mut self,
        pipeline: &str,
        slot: &str,
        index: usize,
        declared: &DeclaredInput,
    ) -> Result<(), Error> {
        let field = format!("inputs.{slot}[{index}]");
        let bad = |k: &str, m: String| Error::validation(format!("{field}.{k}"), m);
        let run_id = declared.run.as_deref().unwrap_or_default();
        let name = declared.artifact.as_deref().unwrap_or_default();
        let id =
            RunId::parse(run_id).map_err(|_| bad("run", format!("{run_id:?} is not a run id")))?;
        let source = match self.accept.get(&id).await {
            Ok(run) => run,
            Err(Error::NotFound { .. }) => return Err(bad("run", format!("no run {run_id}"))),
            Err(e) => return Err(e),
        };
        if source.status != Status::Succeeded {
            return Err(bad(
                "run",
                format!(
                    "run {run_id} is {}; only a succeeded run's artifacts are inputs",
                    source.status
                ),
            ));
        }
        if source.deleted_at.is_some() {
            return Err(bad("run", format!("run {run_id}'s files were deleted")));
        }
        let Some(artifact) = source.artifacts.iter().find(|a| a.name == name) else {
            let names: Vec<&str> = source.artifacts.iter().map(|a| a.name.as_str()).collect();
            return Err(bad(
                "artifact",
                format!(
                    "run {run_id} has no artifact {name:?} (it has {})",
                    names.join(", ")
                ),
            ));
        };
        if let Some(t) = &declared.content_type
            && *t != artifact.content_type
        {
            return Err(bad(
                "content_type",
                format!(
                    "artifact {name:?} is {:?}, not {t:?}",
                    artifact.content_type
                ),
            ));
        }
        if let Some(spec) = self
            .accept
            .runs()
            .pipelines
            .get(pipeline)
            .ok()
            .and_then(|p| p.inputs.get(slot))
            && !spec.content_types.contains(&artifact.content_type)
        {
            return Err(Error::UnsupportedMediaType {
                field: Some(format!("{field}.artifact")),
                message: format!(
                    "artifact {name:?} of run {run_id} is {:?}; {slot} takes {}",
                    artifact.content_type,
                    spec.content_types.join(", ")
                ),
            });
        }
        let max = self.max_bytes(Some(pipeline), slot);
        if artifact.size > max {
            return Err(Error::PayloadTooLarge {
                field: Some(format!("{field}.artifact")),
                message: format!(
                    "artifact {name:?} is {} bytes; the slot's limit is {max} bytes",
                    artifact.size
                ),
            });
        }
        if let Some(size) = declared.size
            && size != artifact.size
        {
            return Err(bad(
                "size",
                format!("artifact {name:?} is {} bytes, not {size}", artifact.size),
            ));
        }
        let key = Run::input_key(&self.id, slot, index);
        let meta = match self.accept.blobs().copy(&artifact.key, &key).await {
            Ok(meta) => meta,
            Err(Error::NotFound { .. }) => {
                return Err(bad(
                    "artifact",
                    format!("artifact {name:?} of run {run_id} is no longer stored"),
                ));
            }
            Err(e) => return Err(e),
        };
        let filename = declared
            .filename
            .clone()
            .unwrap_or_else(|| artifact.filename.clone());
        spaceport_core::pipeline::check_filename(&format!("{field}.filename"), &filename)?;
        self.stored.insert(
            (slot.to_owned(), index),
            (
                DeclaredInput {
                    filename: Some(filename),
                    content_type: Some(artifact.content_type.clone()),
                    size: Some(meta.size),
                    ..DeclaredInput::default()
                },
                Landed {
                    sha256: meta.sha256,
                    url: None,
                    from: Some((run_id.to_owned(), name.to_owned())),
                },
            ),
        );
        Ok(())
    }

    /// Creates the run from `req` with the stored files in their places (a form's files are
    /// appended to their slots; URL inputs replaced by what was fetched). On any failure, and
    /// when an Idempotency-Key returns an earlier run, the stored files are deleted.
    pub async fn create(
        self,
        mut req: CreateRunRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<Created, Error> {
        for ((slot, index), (declared, _)) in &self.stored {
            let files = req.inputs.entry(slot.clone()).or_default();
            if *index < files.len() {
                files[*index] = declared.clone();
            } else {
                files.push(declared.clone());
            }
        }
        let landed: BTreeMap<(String, usize), Landed> = self
            .stored
            .iter()
            .map(|(k, (_, l))| (k.clone(), l.clone()))
            .collect();
        let created = self
            .accept
            .create_with(&req, idempotency, self.id.clone(), &landed, None)
            .await;
        match created {
            Ok(c) if !c.existing => Ok(c),
            other => {
                self.abandon().await;
                other
            }
        }
    }

    /// Deletes what was stored (a request that failed part way).
    pub async fn abandon(self) {
        for (slot, index) in self.stored.keys() {
            let key = Run::input_key(&self.id, slot, *index);
            if let Err(e) = self.accept.blobs().delete(&key).await {
                tracing::warn!(%key, error = %e, "could not delete an abandoned input");
            }
        }
    }
}

/// A filename for a URL input: the last segment of its path when it is a plain name, else
/// `input-<index>`.
fn filename_of(url: &str, index: usize) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
        })
        .filter(|s| spaceport_core::pipeline::check_filename("f", s).is_ok())
        .unwrap_or_else(|| format!("input-{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_its_file_when_it_can() {
        assert_eq!(
            filename_of("https://x.org/a/photo%201.jpg?s=2", 0),
            "photo%201.jpg"
        );
        assert_eq!(filename_of("https://x.org/", 3), "input-3");
        assert_eq!(filename_of("https://x.org/a/..", 1), "input-1");
    }
}
