//! The client for one upstream registry: anonymous, Basic or Docker bearer-token access,
//! redirects followed without leaking credentials to another host, bounded timeouts.

mod breaker;
mod client;
mod config;
mod error;
mod policy;
mod ratelimit;
mod stats;
mod token;

pub use client::{install_crypto_provider, UpstreamClient, UpstreamManifest};
pub use config::{Credentials, UpstreamConfig};
pub use error::UpstreamError;
pub use ratelimit::RateLimit;
pub use stats::{UpstreamStatsSnapshot, LATENCY_BUCKETS};
