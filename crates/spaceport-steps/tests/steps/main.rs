//! spaceport-steps' integration tests, one binary: the event feed under load, the sweeper and
//! leases, and the in-process hand-over between steps.

mod events;
mod relay;
mod sweep;

use std::sync::Arc;

use spaceport_core::ports::{Clock, Queue, SpaceBackend};
use spaceport_local::LocalStack;
use spaceport_steps::Ports;

/// The ports of a process on `local`'s store and blobs, with `queue`, `space` and `clock`, no
/// model runtime and no webhooks.
fn ports(
    local: &LocalStack,
    queue: Arc<dyn Queue>,
    space: Arc<dyn SpaceBackend>,
    clock: Arc<dyn Clock>,
) -> Ports {
    Ports {
        store: local.store.clone(),
        queue,
        blobs: local.blobs.clone(),
        space,
        model: None,
        chat: Arc::new(spaceport_chat::HttpChat::new().unwrap()),
        clock,
        deliveries: local.store.clone(),
        sender: Arc::new(spaceport_testkit::fakes::NoWebhooks),
        sink: None,
        fetcher: None,
    }
}
