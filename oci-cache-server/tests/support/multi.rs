//! Helpers of the multi-upstream tests (e2e_multi, e2e_private_upstream,
//! e2e_client_configs).

use super::{Registry, SeedOptions};

/// Small images: one 64 KiB layer for the "multilayer" image. `seed` picks the content.
pub fn small_images(seed: u64) -> SeedOptions {
    SeedOptions {
        seed,
        layers: 1,
        layer_kib: 64,
    }
}

/// How many finished requests a registry has logged.
pub fn request_count(reg: &Registry) -> usize {
    reg.records().len()
}

/// Every request path (with query) a registry has logged.
pub fn request_uris(reg: &Registry) -> Vec<String> {
    reg.records().into_iter().map(|r| r.uri).collect()
}

/// No request of `reg` came from `agent` (e.g. containerd reaching it directly).
pub fn assert_no_requests_from(reg: &Registry, agent: &str, what: &str) {
    let direct: Vec<_> = reg
        .records()
        .into_iter()
        .filter(|r| r.user_agent.to_lowercase().contains(agent))
        .collect();
    assert!(
        direct.is_empty(),
        "{agent} reached {what} directly instead of through the cache: {direct:#?}"
    );
}

/// The TOML of one `[[upstreams]]` entry without credentials.
pub fn upstream_toml(name: &str, url: &str) -> String {
    format!("[[upstreams]]\nname = \"{name}\"\nurl = \"{url}\"\n\n")
}

/// A TOML string literal for a path.
pub fn toml_path(p: &std::path::Path) -> String {
    format!("{:?}", p.display().to_string())
}
