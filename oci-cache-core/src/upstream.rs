//! The client for one upstream registry: anonymous, Basic or Docker bearer-token access,
//! redirects followed without leaking credentials to another host and never to where a
//! hostile upstream should not send us (`guard`), bounded timeouts and bodies.

mod body;
mod breaker;
mod client;
mod config;
mod error;
mod guard;
mod policy;
mod ratelimit;
mod stats;
mod token;

pub use body::{BodyKind, MAX_TAG_LIST_BYTES, MAX_TOKEN_BYTES};
pub use client::{install_crypto_provider, UpstreamClient, UpstreamManifest};
pub use config::{Credentials, UpstreamConfig};
pub use error::UpstreamError;
pub use guard::TargetRefusal;
pub use ratelimit::RateLimit;
pub use stats::{UpstreamStatsSnapshot, LATENCY_BUCKETS};
