//! A run's input files as a backend takes them: slot by slot, sorted by filename unless the slot
//! says `given`, each opened from the blob store as a stream. submit-space streams them to a
//! Space and reconstruct hands them to a local model; both fail `upload_missing` the same way.

use futures::StreamExt;
use spaceport_core::pipeline::{InputOrder, Pipeline};
use spaceport_core::ports::{BlobStore, ByteStream};
use spaceport_core::{Error, ErrorCode, InputFile, Run};

/// The run's files per slot, in the order the pipeline hands them to its backend.
pub(crate) fn ordered<'a>(pipeline: &Pipeline, run: &'a Run) -> Vec<(&'a str, Vec<&'a InputFile>)> {
    run.inputs
        .iter()
        .map(|(slot, files)| {
            let mut files: Vec<&InputFile> = files.iter().collect();
            if pipeline
                .inputs
                .get(slot)
                .is_none_or(|s| s.order == InputOrder::Filename)
            {
                files.sort_by(|a, b| a.filename.cmp(&b.filename));
            }
            (slot.as_str(), files)
        })
        .collect()
}

/// Opens one input file; a file gone from storage fails the run `upload_missing`.
pub(crate) async fn open(
    blobs: &dyn BlobStore,
    slot: &str,
    file: &InputFile,
) -> Result<ByteStream, Error> {
    blobs.get(&file.key).await.map_err(|e| match e {
        Error::NotFound { .. } => Error::upstream(
            ErrorCode::UploadMissing,
            false,
            format!(
                "input {slot} file {:?} is missing from storage",
                file.filename
            ),
        ),
        other => other,
    })
}

/// Reads at most the first `n` bytes of a stream (and drops the rest unread).
pub(crate) async fn read_head(mut stream: ByteStream, n: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match stream.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| Error::storage("reading a blob", e))?;
                let take = (n - out.len()).min(chunk.len());
                out.extend_from_slice(&chunk[..take]);
            }
            None => break,
        }
    }
    Ok(out)
}

/// Reads a stream to its end (for a local model, which takes whole images).
pub(crate) async fn read_all(mut stream: ByteStream) -> Result<Vec<u8>, Error> {
    let mut out = vec![];
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|e| Error::storage("reading a blob", e))?);
    }
    Ok(out)
}
