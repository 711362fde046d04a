//! `GET /v1/runs/{id}/artifacts/{name}?format=obj|ply`: a GLB artifact in another format, made
//! the first time it is asked for and kept as an artifact of the run (`scene.ply`, with its
//! facts and `converted_from`), so the next request is a plain download and the run's deletion
//! or retention takes it with the rest. The conversion is `spaceport_mesh`'s, on a blocking
//! thread, of a GLB read whole: bounded by `MAX_CONVERT_BYTES`.

use chrono::{DateTime, Utc};
use futures::stream;
use serde_json::{Map, json};
use spaceport_core::facts::Format;
use spaceport_core::pipeline::OutputSpec;
use spaceport_core::{Artifact, Error, RunId, Status};
use spaceport_mesh::{ConvertError, MeshFormat};

use crate::accept::Accept;
use crate::{artifacts, inputs};

/// The largest GLB converted on request (a VGGT scene of 200 frames is about 400 MiB; this
/// reads the file whole and holds the geometry beside it).
pub const MAX_CONVERT_BYTES: u64 = 512 << 20;

impl Accept {
    /// Artifact `name` of run `id` as `format` (`obj`, `ply`; the artifact's own format or
    /// empty: the artifact itself), with a short-lived download URL.
    pub async fn artifact_as(
        &self,
        id: &RunId,
        name: &str,
        format: &str,
    ) -> Result<(Artifact, String, DateTime<Utc>), Error> {
        if format.is_empty() {
            return self.artifact(id, name).await;
        }
        let to = MeshFormat::parse(format)
            .ok_or_else(|| Error::validation("format", format!("{format:?} is not obj or ply")))?;
        let run = self.get(id).await?;
        let source = crate::reads::artifact_of(&run, name)?;
        let own = Format::of(&source.content_type, &source.filename);
        let same = matches!(
            (own, to),
            (Some(Format::Obj), MeshFormat::Obj) | (Some(Format::Ply), MeshFormat::Ply)
        );
        if same {
            return self.presigned(source).await;
        }
        if own != Some(Format::Glb) {
            return Err(Error::validation(
                "format",
                format!(
                    "artifact {name:?} is {}; only a GLB converts",
                    source.content_type
                ),
            ));
        }
        let derived = format!("{name}.{}", to.extension());
        if let Ok(kept) = crate::reads::artifact_of(&run, &derived) {
            return self.presigned(kept).await;
        }
        if source.size > MAX_CONVERT_BYTES {
            return Err(Error::PayloadTooLarge {
                field: Some("format".into()),
                message: format!(
                    "artifact {name:?} is {} bytes; at most {MAX_CONVERT_BYTES} convert on request",
                    source.size
                ),
            });
        }
        let glb = inputs::read_all(self.blobs().get(&source.key).await?).await?;
        let bytes = tokio::task::spawn_blocking(move || spaceport_mesh::convert(&glb, to))
            .await
            .map_err(|e| Error::Internal(format!("the conversion thread failed: {e}")))?
            .map_err(|e| match e {
                ConvertError::Unsupported(m) => Error::validation("format", m),
                ConvertError::Parse(m) => {
                    Error::Internal(format!("artifact {name:?} cannot be read as a GLB: {m}"))
                }
            })?;
        let stem = source
            .filename
            .rsplit_once('.')
            .map_or(source.filename.as_str(), |(s, _)| s);
        let spec = OutputSpec {
            content_type: to.content_type().into(),
            filename: format!("{stem}.{}", to.extension()),
            from: None,
            optional: false,
            max_bytes: None,
            stage: None,
            artifact: None,
        };
        let mut meta = Map::new();
        meta.insert("converted_from".into(), json!(name));
        let body = Box::pin(stream::once(async move { Ok(bytes.into()) }));
        let stored =
            artifacts::store(self.blobs().as_ref(), id, &derived, &spec, body, meta).await?;
        // Kept on the run (once: a second converter meanwhile wrote the same bytes to the same
        // key). A run deleted meanwhile keeps nothing: the copy goes too.
        let kept = &stored;
        let m = self
            .runs()
            .mutate(id, |run| {
                if run.status != Status::Succeeded
                    || run.deleted_at.is_some()
                    || run.artifacts.iter().any(|a| a.name == kept.name)
                {
                    return Ok(false);
                }
                run.artifacts.push(kept.clone());
                Ok(true)
            })
            .await?;
        if m.run().deleted_at.is_some() {
            self.blobs().delete(&stored.key).await?;
            return Err(Error::NotFound {
                what: "artifact",
                id: format!("{id}/{name}"),
            });
        }
        self.presigned(stored).await
    }
}
