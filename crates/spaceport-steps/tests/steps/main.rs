//! spaceport-steps' integration tests, one binary: the event feed under load, the sweeper and
//! leases, and the in-process hand-over between steps.

mod events;
mod relay;
mod sweep;
