//! Spaceport's edge orchestrator: a Spin component in front of the API (`spaceport serve` or the
//! AWS API) that authenticates every request, checks create bodies, applies CORS, gives every
//! request an id, and forwards every route with bodies streamed both ways. The decisions are
//! plain functions in `edge.rs`, tested natively; `component.rs` holds the route and the I/O,
//! built for `wasm32-wasip2`.

pub mod edge;

#[cfg(target_arch = "wasm32")]
mod component;
