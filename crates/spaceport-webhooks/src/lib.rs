//! Outbound HTTP, the pieces that do not depend on where deliveries are stored: signing as
//! Standard Webhooks specifies (several secrets during a rotation, each signing every message),
//! the send-time half of the outbound guard (the addresses a name resolves to, against DNS
//! rebinding), `HttpSender`, the `WebhookSender` that makes one bounded attempt, and
//! `HttpFetcher`, which fetches URL inputs under the same guard.

pub mod fetch;
pub mod guard;
pub mod sender;
pub mod signing;

pub use fetch::HttpFetcher;
pub use guard::resolve;
pub use sender::HttpSender;
pub use signing::{SigningSecret, sign};
pub use spaceport_core::outbound::{Allow, OutboundGuard};
