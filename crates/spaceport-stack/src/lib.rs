//! How every Spaceport binary is put together: one typed configuration (`Config`: defaults, a
//! TOML file, `SPACEPORT_*` variables) and one factory (`Stack::from_config`) that builds the
//! ports it names and the steps over them. Cargo features choose which adapters a binary links:
//! `embedded` (SQLite + a directory), `aws` (DynamoDB, SQS, S3), `ort` (local models on ONNX Runtime),
//! and the outbound clients it wires (`spaces`, `model-servers`, `webhooks`, `url-inputs`;
//! `all-clients`): a Lambda links only its own step's.

#[cfg(not(any(feature = "embedded", feature = "aws")))]
compile_error!("spaceport-stack needs storage: enable its `embedded` or `aws` feature");

pub mod config;
mod stack;
#[cfg(not(all(feature = "spaces", feature = "model-servers", feature = "webhooks")))]
mod unbuilt;

pub use config::{Config, ConfigError, ModelProvider, PipelineOverride, Secret, Storage};
pub use stack::{OpenOptions, Stack, StackError};
