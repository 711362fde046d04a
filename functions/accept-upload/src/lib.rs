//! The accept-upload function's handler, a library so its tests drive the same code `main` wires.

pub mod handler;
