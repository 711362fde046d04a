//! `sse_v3` (Gradio 4.38–6.x), the queue family's newest: the session stream ends with
//! `close_stream`, a generator's updates after the first are diffs, and `POST {prefix}/cancel`
//! ends a job with an empty `output` (gradio-protocol.md §3, gradio-protocol-legacy.md §5).

use async_trait::async_trait;
use serde_json::Value;
use spaceport_core::Error;

use crate::client::{Cookies, GradioClient};
use crate::config::{Endpoint, SpaceConfig};
use crate::handle::JobHandle;
use crate::protocol::Wire;
use crate::stream::JobStream;

/// Speaks `sse_v3`.
pub(crate) struct SseV3;

#[async_trait]
impl Wire for SseV3 {
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
        let job = super::queue_job(handle)?;
        let req = client
            .http()
            .post(client.url(&job.api_prefix, "cancel")?)
            .timeout(client.options().request_timeout)
            .json(&serde_json::json!({
                "session_hash": job.session_hash,
                "fn_index": job.fn_index,
                "event_id": job.event_id,
            }));
        client
            .send(
                "cancelling the Space's job",
                req,
                &Cookies::parse(&job.cookies),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;
    use crate::protocol::diff::GeneratingState;
    use crate::protocol::message::{Message, outcome, parse_message, progress_summary};
    use crate::protocol::queue::SessionStream;
    use crate::protocol::queue::Updates;
    use crate::sse::SseParser;
    use crate::stream::JobUpdate;
    use crate::stream::Outcome;

    // Lines captured from Gradio 6.31.0 (gradio-protocol.md §3).
    const CAPTURED: &str = concat!(
        "data: {\"msg\":\"estimation\",\"event_id\":\"e1\",\"rank\":0,\"queue_size\":1,\"rank_eta\":null}\n\n",
        "data: {\"msg\":\"process_starts\",\"event_id\":\"e1\",\"eta\":null}\n\n",
        "data: {\"msg\":\"progress\",\"event_id\":\"e1\",\"progress_data\":[{\"index\":0,\"length\":6,\"unit\":\"steps\",\"progress\":null,\"desc\":\"working\"}]}\n\n",
        "data: {\"msg\":\"heartbeat\",\"event_id\":null}\n\n",
        "data: {\"msg\":\"process_generating\",\"event_id\":\"e1\",\"output\":{\"data\":[\"chunk 0\"],\"is_generating\":true},\"success\":true}\n\n",
        "data: {\"msg\":\"process_generating\",\"event_id\":\"e1\",\"output\":{\"data\":[[[\"replace\",[],\"chunk 1\"]]],\"is_generating\":true}}\n\n",
        "data: {\"msg\":\"process_completed\",\"event_id\":\"e1\",\"output\":{\"data\":[{\"path\":\"/tmp/g/scene.glb\",\"url\":\"http://127.0.0.1:7861/gradio_api/file=/tmp/g/scene.glb\",\"size\":128,\"orig_name\":\"scene.glb\",\"mime_type\":null,\"is_stream\":false,\"meta\":{\"_type\":\"gradio.FileData\"}},\"got 2 images\"],\"is_generating\":false,\"duration\":0.003,\"average_duration\":0.003,\"render_config\":null,\"changed_state_ids\":[],\"used_cache\":null},\"success\":true,\"title\":null,\"used_cache\":null}\n\n",
        "data: {\"msg\":\"close_stream\",\"event_id\":null}\n\n",
    );

    fn messages(text: &str) -> Vec<Message> {
        SseParser::new()
            .feed(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|r| parse_message(&r.data).unwrap())
            .collect()
    }

    #[test]
    fn a_captured_stream_parses_in_order() {
        let m = messages(CAPTURED);
        assert_eq!(m.len(), 8);
        assert_eq!(
            m[0],
            Message::Estimation {
                event_id: Some("e1".into()),
                rank: Some(0),
                queue_size: Some(1),
                rank_eta: None
            }
        );
        assert!(matches!(&m[1], Message::ProcessStarts { eta: None, .. }));
        let Message::Progress { units, .. } = &m[2] else {
            panic!("{:?}", m[2])
        };
        assert_eq!(progress_summary(units), (Some(0.0), Some("working".into())));
        assert_eq!(m[3], Message::Heartbeat);
        assert_eq!(m[7], Message::CloseStream);
        let Message::ProcessCompleted {
            success,
            output,
            title,
            ..
        } = &m[6]
        else {
            panic!("{:?}", m[6])
        };
        let Outcome::Completed(data) = outcome(*success, output, title.as_deref()).unwrap() else {
            panic!("not completed")
        };
        assert_eq!(data[0]["path"], "/tmp/g/scene.glb");
        assert_eq!(data[1], "got 2 images");
    }

    #[test]
    fn generating_messages_are_full_then_diffs() {
        let m = messages(CAPTURED);
        let mut state = GeneratingState::default();
        for msg in &m {
            if let Message::ProcessGenerating { output, .. } = msg {
                state.apply(output).unwrap();
            }
        }
        assert_eq!(state.current().unwrap(), &[Value::from("chunk 1")]);
    }

    #[test]
    fn an_error_in_the_function_is_a_failure_with_its_text() {
        let m = messages(
            "data: {\"msg\":\"process_completed\",\"output\":{\"error\":\"could not convert string to float: 'notanumber'\",\"visible\":true},\"success\":false,\"title\":\"Error\"}\n\n",
        );
        let Message::ProcessCompleted {
            success,
            output,
            title,
            ..
        } = &m[0]
        else {
            panic!()
        };
        assert_eq!(
            outcome(*success, output, title.as_deref()).unwrap(),
            Outcome::Failed("could not convert string to float: 'notanumber'".into())
        );
    }

    #[test]
    fn a_cancel_is_a_success_without_data() {
        let m = messages(
            "data: {\"msg\":\"process_completed\",\"event_id\":\"e2\",\"output\":{},\"success\":true}\n\n",
        );
        let Message::ProcessCompleted {
            success, output, ..
        } = &m[0]
        else {
            panic!()
        };
        assert_eq!(outcome(*success, output, None).unwrap(), Outcome::Cancelled);
    }

    #[test]
    fn an_unknown_session_is_an_unexpected_error() {
        let m = messages(
            "data: {\"msg\":\"unexpected_error\",\"event_id\":null,\"message\":\"404: Not Found\",\"session_not_found\":true,\"success\":false}\n\n",
        );
        assert_eq!(
            m[0],
            Message::UnexpectedError {
                message: "404: Not Found".into(),
                session_not_found: true
            }
        );
    }

    fn updates(chunks: Vec<&'static str>) -> JobStream {
        JobStream::new(Box::new(Updates::new(
            SessionStream::from_chunks("e1", chunks),
            Protocol::SseV3,
        )))
    }

    async fn all(mut s: JobStream) -> Vec<JobUpdate> {
        let mut out = vec![];
        while let Some(u) = s.next_update().await {
            out.push(u.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_captured_stream_reads_as_updates_to_its_outcome() {
        let got = all(updates(vec![CAPTURED])).await;
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(
            got[0],
            JobUpdate::Queued {
                rank: Some(0),
                queue_size: Some(1),
                eta_s: None
            }
        );
        assert_eq!(got[1], JobUpdate::Started { eta_s: None });
        assert_eq!(
            got[2],
            JobUpdate::Progress {
                fraction: Some(0.0),
                message: Some("working".into())
            }
        );
        assert_eq!(
            got[4],
            JobUpdate::Generating {
                outputs: vec![Value::from("chunk 1")]
            }
        );
        let JobUpdate::Finished(Outcome::Completed(data)) = &got[5] else {
            panic!("{:?}", got[5])
        };
        assert_eq!(data[1], "got 2 images");
    }

    #[tokio::test]
    async fn other_events_are_skipped_and_a_close_before_ours_is_lost() {
        let got = all(updates(vec![concat!(
            "data: {\"msg\":\"process_completed\",\"event_id\":\"e0\",\"output\":{\"data\":[1]},\"success\":true}\n\n",
            "data: {\"msg\":\"close_stream\",\"event_id\":null}\n\n",
        )]))
        .await;
        assert_eq!(
            got,
            vec![JobUpdate::Lost {
                reason: "the Space closed the stream before the job completed".into()
            }]
        );
    }

    #[tokio::test]
    async fn an_unknown_session_is_lost_with_the_spaces_message() {
        let got = all(updates(vec![
            "data: {\"msg\":\"unexpected_error\",\"event_id\":null,\"message\":\"404: Not Found\",\"session_not_found\":true,\"success\":false}\n\n",
        ]))
        .await;
        assert_eq!(
            got,
            vec![JobUpdate::Lost {
                reason: "the Space does not know the session (404: Not Found)".into()
            }]
        );
    }
}
