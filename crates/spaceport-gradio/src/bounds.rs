//! How much of a Space's answer is read: every body read whole has a cap, so a Space that
//! streams a multi-GB `/config`, an endless join answer or an endless error page costs us at
//! most that cap, and fails the call as `space_protocol` (it will not be better next time).

use futures::StreamExt;
use reqwest::Response;
use spaceport_core::Error;

use crate::error::HttpError;
use crate::protocol::protocol_error;

/// `/config` and `/info`: a large app's config (many components, examples) is a few MiB.
pub const MAX_CONFIG_BYTES: usize = 16 << 20;
/// Answers that are a few fields (join, upload paths, cancel).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// The part of an error answer kept to tell what went wrong.
pub const MAX_ERROR_BYTES: usize = 64 << 10;
/// One SSE line, and one record's data: a message carries file references, never the files
/// (Gradio 3.x's inline images travel on `ws`, whose own cap is its frame size).
pub const MAX_SSE_BYTES: usize = 16 << 20;

/// Reads `resp`'s body, failing as soon as it passes `limit` bytes (or says it will).
pub(crate) async fn read_capped(
    doing: &'static str,
    resp: Response,
    limit: usize,
) -> Result<Vec<u8>, Error> {
    let over = || protocol_error(format!("{doing}: the answer is over {limit} bytes"));
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(over());
    }
    let mut body = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| HttpError::transport(doing, e))?;
        if out.len() + chunk.len() > limit {
            return Err(over());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The start of an error answer (at most `MAX_ERROR_BYTES`), as text; what does not fit, or
/// does not come in time, is left unread.
pub(crate) async fn error_text(resp: Response) -> String {
    let mut body = resp.bytes_stream();
    let mut out = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = body.next().await {
            let room = MAX_ERROR_BYTES - out.len();
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= MAX_ERROR_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    String::from_utf8_lossy(&out).into_owned()
}
