//! The kinds of backend a run can be on, and the one table that says which step's queue moves a
//! run of each kind on from each status. Adding a kind is a variant here and its step; every
//! `match` on the kind (this table first) is where the compiler asks what the new kind does.

use serde::{Deserialize, Serialize};

use crate::ports::QueueName;
use crate::status::Status;

/// What runs a job. Serde spells it as stored runs and the API always have (`space`, `onnx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// A Gradio Space: submit-space → poll-status → fetch-artifact.
    Space,
    /// A local ONNX model: the reconstruct worker does the whole job.
    Onnx,
    /// A model server speaking Ollama's or the OpenAI chat API: call-model does the whole job,
    /// request by request.
    HttpModel,
    /// A function of ours over earlier artifacts (re-rendering a VGGT scene): the reconstruct
    /// worker, which holds the code, does the whole job.
    Local,
    /// Stages, each a child run of another pipeline: submit-space starts each in turn and
    /// follows it.
    Chain,
}

impl BackendKind {
    /// Every kind.
    pub const ALL: [BackendKind; 5] = [
        BackendKind::Space,
        BackendKind::Onnx,
        BackendKind::HttpModel,
        BackendKind::Local,
        BackendKind::Chain,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Space => "space",
            BackendKind::Onnx => "onnx",
            BackendKind::HttpModel => "http_model",
            BackendKind::Local => "local",
            BackendKind::Chain => "chain",
        }
    }

    /// The queue whose step moves a run of this kind on from `status`; `None` where nothing does
    /// (a `created` run waits for its inputs, a terminal run never moves again).
    ///
    /// Every queued run goes to submit-space first: it claims the run (`queued → submitting`,
    /// counting the attempt) whatever the kind, then hands it to the kind's own step.
    pub fn queue_for(self, status: Status) -> Option<QueueName> {
        use Status::*;
        match (self, status) {
            (_, Created | Succeeded | Failed | Cancelled | Expired) => None,
            (_, Queued) => Some(QueueName::SubmitSpace),
            (BackendKind::Space, Submitting) => Some(QueueName::SubmitSpace),
            (BackendKind::Space, Running) => Some(QueueName::PollStatus),
            (BackendKind::Space, Fetching) => Some(QueueName::FetchArtifact),
            // One worker runs the model and stores its files, so it redoes the whole job from
            // any live status after a crash.
            (BackendKind::Onnx, Submitting | Running | Fetching) => Some(QueueName::Reconstruct),
            // The same for a model server: the answers kept so far on the run let a step that
            // takes it over go on from the first request not yet answered.
            (BackendKind::HttpModel, Submitting | Running | Fetching) => Some(QueueName::CallModel),
            // A local function runs on the worker that holds its code, redone whole after a crash.
            (BackendKind::Local, Submitting | Running | Fetching) => Some(QueueName::Reconstruct),
            // The chain's driver lives with submit-space: it starts each stage's child run.
            (BackendKind::Chain, Submitting | Running | Fetching) => Some(QueueName::SubmitSpace),
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets code and tests compare a kind with its wire spelling.
impl PartialEq<&str> for BackendKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routing_table_sends_each_live_status_to_its_step() {
        use BackendKind::*;
        use QueueName::*;
        use Status::*;
        let want = [
            (Space, Queued, SubmitSpace),
            (Space, Submitting, SubmitSpace),
            (Space, Running, PollStatus),
            (Space, Fetching, FetchArtifact),
            (Onnx, Queued, SubmitSpace),
            (Onnx, Submitting, Reconstruct),
            (Onnx, Running, Reconstruct),
            (Onnx, Fetching, Reconstruct),
            (HttpModel, Queued, SubmitSpace),
            (HttpModel, Submitting, CallModel),
            (HttpModel, Running, CallModel),
            (HttpModel, Fetching, CallModel),
            (Local, Queued, SubmitSpace),
            (Local, Submitting, Reconstruct),
            (Local, Running, Reconstruct),
            (Local, Fetching, Reconstruct),
            (Chain, Queued, SubmitSpace),
            (Chain, Submitting, SubmitSpace),
            (Chain, Running, SubmitSpace),
            (Chain, Fetching, SubmitSpace),
        ];
        for (kind, status, queue) in want {
            assert_eq!(kind.queue_for(status), Some(queue), "{kind} {status}");
        }
        // Every (kind, non-terminal status) but `created` is covered above.
        for kind in BackendKind::ALL {
            for status in Status::ALL {
                let listed = want.iter().any(|(k, s, _)| *k == kind && *s == status);
                assert_eq!(
                    kind.queue_for(status).is_some(),
                    listed,
                    "{kind} {status}: only the statuses listed move on"
                );
                if status.is_terminal() || status == Created {
                    assert_eq!(kind.queue_for(status), None, "{kind} {status}");
                }
            }
        }
    }

    #[test]
    fn kinds_keep_their_stored_spelling() {
        for kind in BackendKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            assert_eq!(serde_json::from_value::<BackendKind>(json).unwrap(), kind);
        }
        assert!(serde_json::from_str::<BackendKind>("\"gpu\"").is_err());
    }
}
