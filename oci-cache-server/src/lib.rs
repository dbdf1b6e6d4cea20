//! An embeddable HTTP service speaking the pull side of the OCI distribution API over
//! [`oci_cache_core::Engine`], plus the configuration of the `oci-cache` binary.
//!
//! [`CacheService`] is a `tower_service::Service` for any request body, so it can be served
//! by hyper directly (through `hyper_util::service::TowerToHyperService`) or mounted in
//! another hyper or axum application.
//!
//! The `oci-cache` binary needs the `cli` feature (on by default), which adds only what the
//! binary uses: clap, tracing-subscriber and indicatif. An application embedding
//! the service can depend on this crate with `default-features = false`.

#![forbid(unsafe_code)]

pub mod auth;
mod body;
pub mod config;
mod endpoint;
mod error;
mod handler;
pub mod metrics;
mod ops;
mod outcome;
pub mod peers;
mod query;
mod readiness;
mod serve;
mod service;
mod status;
pub mod tls;
mod zero_copy;

pub use body::{Body, BodyError};
pub use error::{error_response, ApiError};
pub use serve::{serve, serve_with, serve_with_limit, ServeOptions};
pub use service::{CacheService, Role};
