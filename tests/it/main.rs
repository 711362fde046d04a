//! Integration suites against real peers: the embedded stack (SQLite + blob directory + the
//! Gradio client) and the vggt mirror Space (a real Gradio server), through the HTTP API.

mod bad_input;
mod batches;
mod blobs;
mod cache;
mod chain;
mod common;
mod concurrency;
mod crash;
mod derived;
mod duplicates;
mod edge;
mod events;
mod failures;
mod front_door;
mod fuzz;
mod hostile;
mod keys;
mod landing;
mod limits;
mod load;
mod models;
mod oneshot;
mod onnx;
mod openapi;
mod page;
mod pipelines_check;
mod run_tokens;
mod runs;
mod spaces;
mod tenants;
mod webhooks;
