//! `sse_v1` (Gradio 4.9–4.16), `sse_v2` (4.17–4.20) and `sse_v2.1` (4.21): the queue family
//! before `close_stream` and `/cancel` (gradio-protocol-legacy.md §7; 4.21 measured the same). The join and the session stream
//! are sse_v3's; what differs:
//! - the stream ends by EOF right after the last pending `process_completed`, so EOF before ours
//!   is a lost job and EOF after it is the normal end;
//! - `sse_v1` sends full data in every `process_generating`, `sse_v2`/`v2.1` diffs after the
//!   first (as sse_v3);
//! - there is no `/cancel`: the app's Stop dependency is called instead, and the cancelled job's
//!   stream then gets no completion at all (only heartbeats), so the run's own state says it was
//!   cancelled and poll-status lets go of the stream.

use async_trait::async_trait;
use serde_json::Value;
use spaceport_core::Error;

use crate::client::{Cookies, GradioClient};
use crate::config::{Endpoint, SpaceConfig};
use crate::handle::JobHandle;
use crate::protocol::{Wire, cancel};
use crate::stream::JobStream;

/// Speaks `sse_v1`, `sse_v2` and `sse_v2.1` (the protocol is read from `/config` and kept in
/// the handle, which decides whether diffs are applied).
pub(crate) struct SseV1;

#[async_trait]
impl Wire for SseV1 {
    async fn join(
        &self,
        client: &GradioClient,
        config: &SpaceConfig,
        endpoint: &Endpoint,
        data: &[Value],
        session_hash: &str,
        cookies: &Cookies,
    ) -> Result<JobHandle, Error> {
        super::join(client, config, endpoint, data, session_hash, cookies).await
    }

    async fn open(&self, client: &GradioClient, handle: &JobHandle) -> Result<JobStream, Error> {
        super::open_updates(client, handle).await
    }

    async fn cancel(&self, client: &GradioClient, handle: &JobHandle) -> Result<(), Error> {
        cancel::by_dependency(client, handle).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;
    use crate::protocol::queue::SessionStream;
    use crate::protocol::queue::Updates;
    use crate::stream::{JobUpdate, Outcome};

    // Captured from Gradio 4.15.0 (sse_v1): `json.dumps` spacing, full data in every update,
    // the last completion repeating the last value with is_generating true, then EOF.
    const V1_GENERATOR: &str = concat!(
        "data: {\"msg\": \"estimation\", \"event_id\": \"e1\", \"rank\": 0, \"queue_size\": 1, \"rank_eta\": null}\n\n",
        "data: {\"msg\": \"process_starts\", \"event_id\": \"e1\"}\n\n",
        "data: {\"msg\": \"process_generating\", \"event_id\": \"e1\", \"output\": {\"data\": [\"step 0\"], \"is_generating\": true}, \"success\": true}\n\n",
        "data: {\"msg\": \"process_generating\", \"event_id\": \"e1\", \"output\": {\"data\": [\"step 1\"], \"is_generating\": true}, \"success\": true}\n\n",
        "data: {\"msg\": \"process_completed\", \"event_id\": \"e1\", \"output\": {\"data\": [\"step 1\"], \"is_generating\": true}, \"success\": true}\n\n",
    );

    // sse_v2 (4.17.0): diffs after the first update, full data at completion.
    const V2_GENERATOR: &str = concat!(
        "data: {\"msg\": \"process_generating\", \"event_id\": \"e1\", \"output\": {\"data\": [\"step 0\"], \"is_generating\": true}, \"success\": true}\n\n",
        "data: {\"msg\": \"process_generating\", \"event_id\": \"e1\", \"output\": {\"data\": [[[\"replace\", [], \"step 1\"]]], \"is_generating\": true}, \"success\": true}\n\n",
        "data: {\"msg\": \"process_completed\", \"event_id\": \"e1\", \"output\": {\"data\": [\"step 1\"], \"is_generating\": false}, \"success\": true}\n\n",
    );

    async fn all(chunks: Vec<&'static str>, protocol: Protocol) -> Vec<JobUpdate> {
        let mut s = JobStream::new(Box::new(Updates::new(
            SessionStream::from_chunks("e1", chunks),
            protocol,
        )));
        let mut out = vec![];
        while let Some(u) = s.next_update().await {
            out.push(u.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn sse_v1_updates_are_full_values_and_eof_after_completion_is_the_end() {
        let got = all(vec![V1_GENERATOR], Protocol::SseV1).await;
        let generating: Vec<_> = got
            .iter()
            .filter_map(|u| match u {
                JobUpdate::Generating { outputs } => Some(outputs[0].clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            generating,
            vec![Value::from("step 0"), Value::from("step 1")]
        );
        assert_eq!(
            got.last().unwrap(),
            &JobUpdate::Finished(Outcome::Completed(vec![Value::from("step 1")]))
        );
    }

    #[tokio::test]
    async fn sse_v2_applies_diffs() {
        let got = all(vec![V2_GENERATOR], Protocol::SseV2).await;
        assert_eq!(
            got[1],
            JobUpdate::Generating {
                outputs: vec![Value::from("step 1")]
            }
        );
    }

    #[tokio::test]
    async fn eof_before_our_completion_is_a_lost_job() {
        let got = all(
            vec!["data: {\"msg\": \"process_starts\", \"event_id\": \"e1\"}\n\n"],
            Protocol::SseV1,
        )
        .await;
        assert!(
            matches!(got.last(), Some(JobUpdate::Lost { .. })),
            "{got:?}"
        );
    }
}
