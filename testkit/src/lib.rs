//! The test harness of oci-cache, shared by the end-to-end tests of
//! `oci-cache-server`, the engine tests of `oci-cache-core`, the storage and
//! example tests, and the end-to-end benchmarks (`oci-cache-benches`).
//!
//! - [`net`]: [`free_port`] (the one way to pick a port), [`http_status`],
//!   and bounded polling: [`wait_until`], [`wait_until_async`].
//! - [`tools`]: [`require_tool`] (a missing tool fails loudly, never skips),
//!   [`require_root`], [`short_tempdir`].
//! - [`process`]: [`Proc`], a kill-on-drop child with its logs in files;
//!   [`start_server`] (free port, readiness, retry on a lost port race);
//!   [`run_with_timeout`], [`run_ok`].
//! - [`registry`]: the real CNCF distribution registry (`docker-registry`),
//!   plain, behind token auth or as a proxy; [`access_log`] parses its
//!   request log.
//! - [`cache`]: the `oci-cache` binary ([`OciCache`]); [`fleet`]: the config of replicas
//!   on one bucket.
//! - [`s3`]: a real S3 server (`s3s-fs`, [`s3::S3Server`]).
//! - [`fake_upstream`]: [`FakeUpstream`], a fake registry that answers
//!   honestly from a [`FakeContent`] or misbehaves on purpose
//!   ([`FaultMode`]: wrong digest, short, reset, stall, slow, hang, 503).
//! - [`digest`]: `sha256:HEX` digests via coreutils' `sha256sum` (fast in
//!   debug builds), deterministic pseudo-random bytes.
//!
//! Every server binds 127.0.0.1 only; every wait is bounded. Setting
//! `OCI_CACHE_E2E_KEEP=1` keeps every temporary directory (configs, logs,
//! storage) after the test.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod access_log;
pub mod cache;
pub mod digest;
pub mod fake_upstream;
pub mod fleet;
pub mod net;
pub mod process;
pub mod registry;
pub mod s3;
pub mod tools;

pub use access_log::AccessRecord;
pub use cache::{CacheOptions, OciCache};
pub use digest::{pseudo_random_bytes, sha256_bytes, sha256_file, Sha256Pipe};
pub use fake_upstream::{FakeContent, FakeRepo, FakeStats, FakeUpstream, FaultMode};
pub use net::{dead_url, free_port, http_status, wait_until, wait_until_async, Local};
pub use process::{describe_failure, run_ok, run_with_timeout, start_server, Proc, ServerSpec};
pub use registry::{Registry, RegistryOptions, RegistryS3, TokenAuth};
pub use tools::{find_tool, require_root, require_tool, short_tempdir};
