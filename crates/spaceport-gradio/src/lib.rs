//! A resumable Gradio client and the `SpaceBackend` built on it. A job is joined with a session
//! hash we choose and persisted as a [`JobHandle`], so any process can open its event stream later;
//! each wire protocol (`sse_v3` today; `ws`, `sse_v1`/`v2` later) lives in its own module.

pub mod backend;
pub mod check;
pub mod client;
pub mod config;
pub mod config_cache;
pub mod error;
pub mod files;
pub mod handle;
pub mod hub;
pub mod protocol;
pub mod scaffold;
pub mod sse;
pub mod stream;

pub use backend::GradioBackend;
pub use client::{ClientOptions, Cookies, GradioClient, Token};
pub use config::{Endpoint, SpaceConfig};
pub use handle::{JobHandle, QueueJob};
pub use protocol::{Message, ProgressUnit, Protocol};
pub use stream::{JobStream, JobUpdate, Outcome};
