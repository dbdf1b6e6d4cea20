//! End to end: the registries.conf that `oci-cache config podman` prints, read by a real
//! containers/image client (skopeo reads the same file as podman and CRI-O), takes the
//! pull to the cache. The upstream is named `registry.invalid`, a name that never
//! resolves, so a client going around the mirror fails instead of leaving this machine.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::ffi::OsStr;

use support::cache::run_cli;
use support::{
    short_tempdir, skopeo_inspect_raw, skopeo_inspect_raw_with_registries_conf, AuthRegistry,
    Cache, SeedOptions,
};

#[test]
fn printed_podman_registries_conf_sends_skopeo_through_the_cache() {
    let hub = AuthRegistry::start(&[]);
    let seeded = hub.seed_with(SeedOptions {
        seed: 51,
        layers: 1,
        layer_kib: 64,
    });
    let config = format!(
        "[[upstreams]]\nname = \"registry.invalid\"\nurl = \"{}\"\n",
        hub.registry.url()
    );
    let cache = Cache::start_with_config(&config, &[]);
    let printed = run_cli(&[
        OsStr::new("config"),
        OsStr::new("podman"),
        OsStr::new("--config"),
        cache.config_path().as_os_str(),
        OsStr::new("--cache-url"),
        OsStr::new(&cache.url()),
    ])
    .unwrap_or_else(|e| panic!("oci-cache config podman failed: {e}"));
    let dir = short_tempdir("registries-conf-");
    let conf = dir.path().join("registries.conf");
    std::fs::write(&conf, &printed).unwrap();

    let image = seeded.small.name_tag();
    let upstream = skopeo_inspect_raw(&hub.registry.docker_ref(&image), None)
        .unwrap_or_else(|e| panic!("inspect upstream: {e}"));
    let through = skopeo_inspect_raw_with_registries_conf(
        &format!("docker://registry.invalid/{image}"),
        &conf,
    )
    .unwrap_or_else(|e| panic!("skopeo with the printed registries.conf: {e}\n{printed}"));
    assert_eq!(through, upstream, "the manifest, through the mirror");
    let path = format!("/v2/registry.invalid/{}/manifests/", seeded.small.name);
    assert!(
        cache.log().contains(&path),
        "the cache served the pull by path prefix ({path})\n{}",
        cache.log_tail()
    );
}
