//! Spaceport's domain: runs and their status machine, pipeline specs and settings validation,
//! and the ports (run store, queue, blob store, space backend, clock) that adapters implement.
//! No async runtime, no SDKs: this crate also builds for wasm32-wasip2 (the edge component uses it).

pub mod access;
pub mod auth;
pub mod backend;
pub mod batch;
pub mod cache;
pub mod create;
pub mod error;
pub mod event;
pub mod facts;
pub mod ids;
pub mod job;
pub mod lease;
pub mod limits;
pub mod outbound;
pub mod pipeline;
pub mod ports;
pub mod run;
pub mod run_token;
pub mod sniff;
pub mod status;
pub mod webhook;

pub use backend::BackendKind;
pub use create::{CreateRunRequest, DeclaredInput, NewRun, validate_create};
pub use error::{Error, ErrorCode, Result};
pub use event::{EventType, RunEvent, TextDelta};
pub use ids::RunId;
pub use job::{JobState, Lease};
pub use pipeline::{Pipeline, PipelineSet};
pub use run::{
    Artifact, Attempt, BackendInfo, ChildRun, InputFile, InputSource, InputState, LOCAL_TENANT,
    Progress, Run, RunError, StartMode,
};
pub use status::Status;
