//! The end-to-end harness: real servers and clients (CNCF distribution behind a
//! token server, skopeo, containerd) around the `oci-cache` binary.
//!
//! Built on the workspace's shared harness, `oci-cache-testkit` (testkit/):
//! every spawned process is killed on drop and prints its log tail when the
//! test panics; every wait is bounded. Missing tools fail loudly (never skip).
//!
//! Needs: `docker-registry`, `skopeo`, `containerd`/`ctr` (Debian packages of
//! those names), python3, openssl, coreutils; root for containerd. The
//! multi-upstream tests (e2e_multi, e2e_private_upstream, e2e_client_configs) also need `dockerd`/`docker` (Debian
//! package `docker.io`) and `htpasswd` (Debian package `apache2-utils`).
//! Environment: `RUST_LOG` is passed to the cache; `OCI_CACHE_E2E_KEEP=1`
//! keeps every temporary directory (configs, logs, storage) after the test.
#![allow(dead_code, unreachable_pub, unused_imports)]
#![allow(
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    clippy::new_without_default
)]
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod big_blob;
pub mod cache;
pub mod cache_home;
pub mod containerd;
pub mod docker;
pub mod fetch;
pub mod lifecycle;
pub mod lifecycle_e2e;
pub mod multi;
pub mod rt;
pub mod s3;
pub mod seed;
pub mod skopeo;
pub mod token_server;
pub mod upload;

// The shared harness (testkit/): ports, waits, processes, tools, the
// registry, digests and the fake upstream, under the module names these
// tests have always used.
pub use oci_cache_testkit::{access_log, digest, fake_upstream, net, process, registry, tools};

pub use access_log::AccessRecord;
pub use cache::Cache;
pub use containerd::{write_hosts_toml, Containerd};
pub use digest::{pseudo_random_bytes, sha256_bytes, sha256_file, Sha256Pipe};
pub use docker::Dockerd;
pub use fake_upstream::{FakeContent, FakeUpstream, FaultMode};
pub use fetch::{fetch, Answer, Auth};
pub use net::{dead_url, free_port, http_status, wait_until};
pub use registry::Registry;
pub use seed::{child_manifests, seed_images, Image, SeedOptions, Seeded};
pub use skopeo::{
    skopeo_copy, skopeo_copy_to_dir, skopeo_copy_to_oci_dir, skopeo_inspect_digest,
    skopeo_inspect_raw, skopeo_inspect_raw_verified, skopeo_inspect_raw_with_registries_conf,
    verify_dir_transport, verify_oci_dir,
};
pub use token_server::{TokenOptions, TokenServer};
pub use tools::{require_root, require_tool, short_tempdir};

/// A file under tests/fixtures of this package.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// Credentials the token server grants push to.
pub const PUSH_CREDS: &str = "pusher:e2e-secret";

/// A token server (pull for anonymous, pull+push for [`PUSH_CREDS`]) and a
/// registry behind it. Fields drop in order: registry first.
pub struct AuthRegistry {
    /// The registry.
    pub registry: Registry,
    /// Its token server.
    pub token: TokenServer,
}

impl AuthRegistry {
    /// Starts both; `private` repositories are closed to anonymous users.
    pub fn start(private: &[&str]) -> AuthRegistry {
        let token = TokenServer::start(TokenOptions {
            user: Some(PUSH_CREDS.to_owned()),
            private: private.iter().map(|s| (*s).to_owned()).collect(),
        });
        let registry = token.registry();
        AuthRegistry { registry, token }
    }

    /// Starts both with any token options (e.g. other push credentials).
    pub fn start_with(options: TokenOptions) -> AuthRegistry {
        let token = TokenServer::start(options);
        let registry = token.registry();
        AuthRegistry { registry, token }
    }

    /// Builds and pushes the standard images.
    pub fn seed(&self) -> Seeded {
        seed_images(&self.registry, Some(PUSH_CREDS), SeedOptions::default())
    }

    /// Builds and pushes the standard images with `opts` (another seed gives
    /// other content under the same names), with the token server's user.
    pub fn seed_with(&self, opts: SeedOptions) -> Seeded {
        seed_images(&self.registry, self.token.creds(), opts)
    }

    /// Copies `from` (`NAME:TAG`, every platform, digests kept) to `to` on
    /// this registry with the token server's user; returns the digest `to`
    /// is served under.
    pub fn copy_within(&self, from: &str, to: &str) -> String {
        let creds = self.token.creds();
        skopeo_copy(
            &self.registry.docker_ref(from),
            &self.registry.docker_ref(to),
            true,
            &["--preserve-digests"],
            creds,
            creds,
        )
        .unwrap_or_else(|e| panic!("copying {from} to {to} failed: {e}\n{}", self.logs()));
        skopeo_inspect_digest(&self.registry.docker_ref(to), creds)
    }

    /// The logs of both, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "{}\n{}\n{}",
            self.registry.request_summary(),
            self.registry.log_tail(),
            self.token.log_tail()
        )
    }
}
