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
    let body = blobs.get(&file.key).await.map_err(|e| match e {
        Error::NotFound { .. } => Error::upstream(
            ErrorCode::UploadMissing,
            false,
            format!(
                "input {slot} file {:?} is missing from storage",
                file.filename
            ),
        ),
        other => other,
    })?;
    Ok(dropped_at_end(body))
}

/// As `open`, but the file is opened only when its bytes are first asked for (and closed when
/// they end): a job's inputs go out one after another in one request, so only the one being
/// sent holds a handle and a read buffer, however many the run has. Missing inputs are still
/// found here, before anything is sent.
pub(crate) async fn open_lazily(
    blobs: std::sync::Arc<dyn BlobStore>,
    slot: &str,
    file: &InputFile,
) -> Result<ByteStream, Error> {
    let missing = || {
        Error::upstream(
            ErrorCode::UploadMissing,
            false,
            format!(
                "input {slot} file {:?} is missing from storage",
                file.filename
            ),
        )
    };
    if blobs.head(&file.key).await?.is_none() {
        return Err(missing());
    }
    let key = file.key.clone();
    let body = futures::stream::once(async move {
        blobs
            .get(&key)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map(|opened| match opened {
        Ok(body) => dropped_at_end(body),
        Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
    })
    .flatten();
    Ok(body.boxed())
}

/// `body`, its reader (file handle and read buffer) dropped as soon as it ends: a job's inputs
/// go out one after another in one request, and each finished one must not keep its buffer
/// until the last is sent (200 inputs held 64 KiB each).
fn dropped_at_end(body: ByteStream) -> ByteStream {
    let mut inner = Some(body);
    futures::stream::poll_fn(move |cx| {
        let Some(s) = inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let next = s.poll_next_unpin(cx);
        if matches!(next, std::task::Poll::Ready(None)) {
            inner = None;
        }
        next
    })
    .boxed()
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
