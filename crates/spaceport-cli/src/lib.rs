//! The `spaceport` command's pieces, also used by the integration tests and benchmarks: layered
//! configuration, the embedded stack, an API client and the `run` command.

pub mod batch_cmd;
pub mod client;
pub mod pipelines_cmd;
pub mod run_cmd;
pub mod stack;

/// The configuration every binary shares (defaults → spaceport.toml → `SPACEPORT_*` → flags).
pub use spaceport_stack::config;
