//! Outbound webhooks, the pieces that do not depend on where deliveries are stored: signing as
//! Standard Webhooks specifies (several secrets during a rotation, each signing every message),
//! and the outbound guard that refuses to send to loopback, private, link-local, CGNAT or cloud
//! metadata addresses unless configuration allows them, checked at create time and again
//! against the addresses a name resolves to when sending (DNS rebinding).

pub mod guard;
pub mod signing;

pub use guard::resolve;
pub use signing::{SigningSecret, sign};
pub use spaceport_core::outbound::{Allow, OutboundGuard};
