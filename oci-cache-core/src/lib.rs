//! The protocol core of oci-cache: repository names and references, digests and their
//! verification, manifests and media types, the upstream client with bearer-token auth,
//! request routing to upstreams, and the pull-through [`Engine`] (manifest and blob
//! resolution, single-flight fills that clients read while they grow).
//!
//! It does no HTTP serving: `oci-cache-server` adapts it to HTTP. Another service can embed
//! it with its own [`BlobStore`] and [`TagStore`].

#![forbid(unsafe_code)]

pub mod auth;
mod engine;
mod error;
pub mod gc;
pub mod manifest;
pub mod name;
pub mod prefetch;
pub mod range;
pub mod route;
mod upstream;
mod upstreams;

pub use engine::{
    BlobBody, BlobFile, BlobResponse, Engine, EngineConfig, ManifestResponse, Referrers,
    RunningFill, StatsSnapshot, TagList, REFERRERS_MEDIA_TYPE,
};
pub use error::EngineError;
// Everything a storage backend names when it implements `BlobStore` and `TagStore`, so an
// embedder with its own storage needs no direct dependency on oci-cache-storage.
pub use oci_cache_storage::{
    BlobMeta, BlobStore, BlobStream, BlobWriter, ByteRange, CommitOutcome, Digest, DigestError,
    ListPage, ResolvedRange, StorageError, TagKey, TagRecord, TagStore, Verifier,
};
pub use upstream::{
    install_crypto_provider, BodyKind, Credentials, RateLimit, TargetRefusal, UpstreamClient,
    UpstreamConfig, UpstreamError, UpstreamManifest, UpstreamStatsSnapshot, LATENCY_BUCKETS,
    MAX_TAG_LIST_BYTES, MAX_TOKEN_BYTES,
};
pub use upstreams::{RouteError, Upstreams};
