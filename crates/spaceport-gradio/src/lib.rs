//! A resumable Gradio client and the `SpaceBackend` built on it. A job is joined with a session
//! hash we choose and persisted as a [`JobHandle`], so any process can open its event stream later;
//! each wire protocol lives in its own module. What a Space may send is bounded (`bounds`) and
//! where it may send us is its own origin (`origin`).

pub mod backend;
pub mod bounds;
pub mod check;
pub mod client;
pub mod config;
pub mod config_cache;
pub mod error;
pub mod files;
pub mod handle;
pub mod hub;
pub mod origin;
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
