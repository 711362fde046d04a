//! Job state too large for a run's row, kept in the blob store instead. A Space on Gradio 3.x
//! sends images inline as base64 data URLs, so a `ws` job handle (which carries the call's data)
//! and a completed job's outputs can pass a megabyte, while a DynamoDB item holds 400 KB. A value
//! over `STASH_OVER` is written to `runs/{id}/job/{name}.json` and the run keeps
//! `{"stashed": key}`; readers get the value back through `unstash`. Small values, every run
//! stored so far included, pass through unchanged.

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use spaceport_core::ports::BlobStore;
use spaceport_core::{Error, RunId};

/// Values larger than this (serialized) leave the row: well under DynamoDB's 400 KB item, with
/// room for the rest of the run.
pub const STASH_OVER: usize = 32 * 1024;

/// The most a stashed value may take when read back.
const MAX_STASHED: u64 = 256 << 20;

/// The blob key of a run's stashed job value `name` (`handle-2`, `outputs-2`).
pub fn key(id: &RunId, name: &str) -> String {
    format!("runs/{id}/job/{name}.json")
}

/// The key a stashed reference names, if `v` is one.
pub fn stashed_key(v: &Value) -> Option<&str> {
    let o = v.as_object()?;
    (o.len() == 1).then(|| o.get("stashed")?.as_str())?
}

/// `value` as the run should keep it: itself when small, else a reference to the blob it was
/// written to.
pub async fn stash(
    blobs: &dyn BlobStore,
    id: &RunId,
    name: &str,
    value: Value,
) -> Result<Value, Error> {
    let text = serde_json::to_vec(&value)
        .map_err(|e| Error::Internal(format!("encoding job state {name}: {e}")))?;
    if text.len() <= STASH_OVER {
        return Ok(value);
    }
    let key = key(id, name);
    let body = futures::stream::once(async move { Ok(Bytes::from(text)) }).boxed();
    blobs.put(&key, "application/json", body).await?;
    Ok(json!({ "stashed": key }))
}

/// The value a run keeps, read back from the blob store when it was stashed.
pub async fn unstash(blobs: &dyn BlobStore, v: &Value) -> Result<Value, Error> {
    let Some(key) = stashed_key(v) else {
        return Ok(v.clone());
    };
    let mut body = blobs.get(key).await?;
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::storage(format!("reading {key}"), e))?;
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > MAX_STASHED {
            return Err(Error::Internal(format!(
                "{key} is larger than {MAX_STASHED} bytes"
            )));
        }
    }
    serde_json::from_slice(&buf).map_err(|e| Error::Internal(format!("decoding {key}: {e}")))
}

/// A list kept as the run should keep it: itself when small, else the one-element list
/// `[{"stashed": key}]` (a Space's outputs are files, text, numbers or JSON, never a lone
/// `stashed` object).
pub async fn stash_list(
    blobs: &dyn BlobStore,
    id: &RunId,
    name: &str,
    list: Vec<Value>,
) -> Result<Vec<Value>, Error> {
    match stash(blobs, id, name, Value::Array(list)).await? {
        Value::Array(small) => Ok(small),
        reference => Ok(vec![reference]),
    }
}

/// A list as it was, read back when it was stashed.
pub async fn unstash_list(blobs: &dyn BlobStore, list: &[Value]) -> Result<Vec<Value>, Error> {
    match list {
        [only] if stashed_key(only).is_some() => match unstash(blobs, only).await? {
            Value::Array(items) => Ok(items),
            other => Err(Error::Internal(format!("a stashed list holds {other:.80}"))),
        },
        _ => Ok(list.to_vec()),
    }
}

/// Deletes what `v` stashed, if anything; a failure is logged (it leaves garbage, not harm).
pub async fn forget(blobs: &dyn BlobStore, v: &Value) {
    if let Some(key) = stashed_key(v)
        && let Err(e) = blobs.delete(key).await
    {
        tracing::warn!(key, error = %e, "could not delete stashed job state");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spaceport_local::DirBlobStore;

    fn store() -> (tempfile::TempDir, DirBlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DirBlobStore::open(dir.path(), vec![7; 32], "http://127.0.0.1:9").unwrap();
        (dir, blobs)
    }

    #[tokio::test]
    async fn a_large_value_leaves_the_row_and_comes_back_whole() {
        let (_dir, blobs) = store();
        let id = RunId::new(1, 2);
        let big = json!({"data": ["data:image/png;base64,".to_string() + &"A".repeat(STASH_OVER)]});
        let kept = stash(&blobs, &id, "handle-1", big.clone()).await.unwrap();
        assert_eq!(kept, json!({"stashed": key(&id, "handle-1")}));
        assert!(kept.to_string().len() < 100);
        assert_eq!(unstash(&blobs, &kept).await.unwrap(), big);
        forget(&blobs, &kept).await;
        assert!(unstash(&blobs, &kept).await.is_err(), "forgotten");

        // Small values, and every run stored before stashing existed, pass through as they are.
        let small = json!({"root": "http://h", "event_id": "e"});
        assert_eq!(
            stash(&blobs, &id, "handle-2", small.clone()).await.unwrap(),
            small
        );
        assert_eq!(unstash(&blobs, &small).await.unwrap(), small);
    }

    #[tokio::test]
    async fn a_large_list_is_one_reference_and_a_small_one_is_itself() {
        let (_dir, blobs) = store();
        let id = RunId::new(1, 3);
        let views: Vec<Value> = (0..12)
            .map(|i| {
                json!(format!(
                    "data:image/png;base64,{}",
                    "B".repeat(STASH_OVER / 8 + i)
                ))
            })
            .collect();
        let kept = stash_list(&blobs, &id, "outputs-1", views.clone())
            .await
            .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(unstash_list(&blobs, &kept).await.unwrap(), views);
        let small = vec![json!({"path": "/tmp/a.glb"}), json!("log")];
        assert_eq!(
            stash_list(&blobs, &id, "outputs-2", small.clone())
                .await
                .unwrap(),
            small
        );
        assert_eq!(unstash_list(&blobs, &small).await.unwrap(), small);
    }

    #[test]
    fn only_a_lone_stashed_key_is_a_reference() {
        assert_eq!(
            stashed_key(&json!({"stashed": "runs/r/job/h.json"})),
            Some("runs/r/job/h.json")
        );
        assert_eq!(stashed_key(&json!({"stashed": "k", "root": "x"})), None);
        assert_eq!(stashed_key(&json!({"stashed": 3})), None);
        assert_eq!(stashed_key(&json!(["stashed"])), None);
    }
}
