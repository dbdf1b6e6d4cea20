//! End to end: several upstreams behind one cache. Real registries (CNCF distribution
//! behind token servers) stand for docker.io, quay.io and ghcr.io and hold the SAME
//! repository names with DIFFERENT content, so a digest tells which upstream an image came
//! from; real clients (containerd, skopeo, reqwest) pull through one `oci-cache` started
//! from a TOML config file.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::fetch::fetch_with;
use support::multi::*;
use support::{
    dead_url, fetch, sha256_bytes, short_tempdir, skopeo_copy_to_oci_dir, skopeo_inspect_digest,
    write_hosts_toml, Auth, AuthRegistry, Cache, Containerd, Seeded,
};

// ---------------------------------------------------------------------------
// Three upstreams holding the same names with different content.
// ---------------------------------------------------------------------------

/// docker.io, quay.io and ghcr.io (reachable also as the Host `ghcr-cache.test`)
/// behind one cache; each registry seeded with its own content under the same
/// names, and docker.io also holding the official image `library/e2elib`.
struct ThreeUpstreams {
    cache: Cache,
    hub: AuthRegistry,
    quay: AuthRegistry,
    ghcr: AuthRegistry,
    hub_img: Seeded,
    quay_img: Seeded,
    ghcr_img: Seeded,
    /// The digest of docker.io's `library/e2elib:latest`.
    lib_digest: String,
}

impl ThreeUpstreams {
    fn start() -> ThreeUpstreams {
        let hub = AuthRegistry::start(&[]);
        let quay = AuthRegistry::start(&[]);
        let ghcr = AuthRegistry::start(&[]);
        let hub_img = hub.seed_with(small_images(11));
        let quay_img = quay.seed_with(small_images(12));
        let ghcr_img = ghcr.seed_with(small_images(13));
        // The same names hold different content on each upstream.
        for (a, b) in [
            (&hub_img, &quay_img),
            (&hub_img, &ghcr_img),
            (&quay_img, &ghcr_img),
        ] {
            assert_ne!(a.small.digest, b.small.digest);
            assert_ne!(a.index.digest, b.index.digest);
            assert_ne!(a.multilayer.digest, b.multilayer.digest);
        }
        // An official image: library/e2elib on the docker.io registry.
        let lib_digest = hub.copy_within(&hub_img.multilayer.name_tag(), "library/e2elib:latest");
        assert_eq!(lib_digest, hub_img.multilayer.digest);
        let config = format!(
            "{}{}{}hosts = [\"ghcr-cache.test\"]\n",
            upstream_toml("docker.io", &hub.registry.url()),
            upstream_toml("quay.io", &quay.registry.url()),
            upstream_toml("ghcr.io", &ghcr.registry.url()),
        );
        let cache = Cache::start_with_config(&config, &[]);
        ThreeUpstreams {
            cache,
            hub,
            quay,
            ghcr,
            hub_img,
            quay_img,
            ghcr_img,
            lib_digest,
        }
    }

    /// Each upstream's name, registry and content.
    fn regs(&self) -> [(&'static str, &AuthRegistry, &Seeded); 3] {
        [
            ("docker.io", &self.hub, &self.hub_img),
            ("quay.io", &self.quay, &self.quay_img),
            ("ghcr.io", &self.ghcr, &self.ghcr_img),
        ]
    }

    /// Every registry's logs, for failure messages.
    fn all_logs(&self) -> String {
        self.regs()
            .iter()
            .map(|(n, r, _)| format!("===== {n} =====\n{}", r.logs()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn containerd_with_only_a_default_hosts_toml_pulls_each_upstreams_own_content() {
    let w = ThreeUpstreams::start();
    let regs = w.regs();
    // containerd with ONLY a _default hosts.toml: the cache for every registry,
    // the fallback server dead, so a pull that bypassed the cache would fail.
    let ctrd = Containerd::start();
    let hosts = ctrd.hosts_dir("hosts");
    write_hosts_toml(&hosts, "_default", &w.cache.url(), &dead_url());
    let entries: Vec<_> = std::fs::read_dir(&hosts)
        .expect("read hosts dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["_default"]);
    for (upstream, reg, seeded) in regs {
        for (img, all) in [(&seeded.small, false), (&seeded.index, true)] {
            let image_ref = format!("{upstream}/{}", img.name_tag());
            ctrd.pull(&image_ref, &hosts, all).unwrap_or_else(|e| {
                panic!(
                    "ctr pull {image_ref} through the cache failed: {e}\n{}\n{}\n{}",
                    ctrd.log_tail(),
                    w.cache.log_tail(),
                    w.all_logs()
                )
            });
            assert_eq!(
                ctrd.image_digest(&image_ref).as_deref(),
                Some(img.digest.as_str()),
                "{image_ref} did not come from {upstream}\n{}",
                reg.registry.request_summary()
            );
        }
    }
    let content = ctrd.content_digests();
    for (upstream, _, seeded) in regs {
        for layer in seeded.small.layers.iter().chain(&seeded.index.layers) {
            assert!(
                content.contains(layer),
                "{upstream}'s layer {layer} missing from containerd's content store"
            );
        }
    }
    // Each registry was asked (by the cache, never by containerd) for its own
    // blobs only: every layer of another upstream is unknown to it, and was
    // never requested from it.
    for (upstream, reg, seeded) in regs {
        assert_no_requests_from(&reg.registry, "containerd", upstream);
        let uris = request_uris(&reg.registry);
        for layer in &seeded.small.layers {
            assert_eq!(
                reg.registry.blob_gets(Some(layer)),
                1,
                "{upstream} should serve its own layer {layer} once\n{}",
                reg.registry.request_summary()
            );
        }
        for (other, _, other_seeded) in regs {
            if other == upstream {
                continue;
            }
            for layer in other_seeded
                .small
                .layers
                .iter()
                .chain(&other_seeded.index.layers)
            {
                assert!(
                    !uris.iter().any(|u| u.contains(layer.as_str())),
                    "{upstream} was asked for {other}'s layer {layer}\n{}",
                    reg.registry.request_summary()
                );
            }
        }
        assert!(
            uris.iter()
                .any(|u| u.starts_with("/v2/test/small/manifests/latest")),
            "{upstream} never saw the manifest request\n{}",
            reg.registry.request_summary()
        );
    }
}

#[test]
fn a_path_prefix_picks_the_upstream_and_no_prefix_means_the_first() {
    let w = ThreeUpstreams::start();
    let cache = &w.cache;
    // skopeo through the path prefix /v2/<upstream>/<repo>/...: the same tag,
    // each upstream's digest (tags are kept per upstream).
    for (upstream, _, seeded) in w.regs() {
        let reference = cache.docker_ref(&format!("{upstream}/test/small:latest"));
        assert_eq!(
            skopeo_inspect_digest(&reference, None),
            seeded.small.digest,
            "{reference}"
        );
    }
    let out = short_tempdir("e2e-multi-");
    let digest = skopeo_copy_to_oci_dir(
        &cache.docker_ref("quay.io/test/multilayer:latest"),
        &out.path().join("quay-multilayer"),
        false,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", cache.log_tail(), w.all_logs()));
    assert_eq!(digest, w.quay_img.multilayer.digest);
    assert_eq!(
        w.quay
            .registry
            .blob_gets(Some(&w.quay_img.multilayer.layers[0])),
        1,
        "{}",
        w.quay.registry.request_summary()
    );
    assert_eq!(
        w.hub
            .registry
            .blob_gets(Some(&w.hub_img.multilayer.layers[0])),
        0,
        "{}",
        w.hub.registry.request_summary()
    );
    // No prefix: the default upstream (the first, docker.io).
    assert_eq!(
        skopeo_inspect_digest(&cache.docker_ref("test/small:latest"), None),
        w.hub_img.small.digest
    );
}

#[test]
fn a_single_segment_docker_io_name_is_an_official_library_image() {
    let w = ThreeUpstreams::start();
    let out = short_tempdir("e2e-multi-");
    let digest = skopeo_copy_to_oci_dir(
        &w.cache.docker_ref("e2elib:latest"),
        &out.path().join("e2elib"),
        false,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", w.cache.log_tail(), w.hub.logs()));
    assert_eq!(digest, w.lib_digest);
    assert!(
        request_uris(&w.hub.registry)
            .iter()
            .any(|u| u == "/v2/library/e2elib/manifests/latest"),
        "{}",
        w.hub.registry.request_summary()
    );
}

#[test]
fn docker_hub_aliases_and_a_listed_host_name_pick_their_upstream() {
    let w = ThreeUpstreams::start();
    let cache = &w.cache;
    // Docker Hub's aliases name the docker.io upstream.
    for alias in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
        let url = format!("{}/v2/test/small/manifests/latest?ns={alias}", cache.url());
        let answer = fetch("GET", &url, Auth::None);
        assert_eq!(answer.status, 200, "{alias}: {}", answer.describe());
        assert_eq!(
            sha256_bytes(&answer.body),
            w.hub_img.small.digest,
            "{alias}"
        );
    }
    // A Host name listed in `hosts` selects its upstream.
    let answer = fetch_with(
        "GET",
        &format!("{}/v2/test/small/manifests/latest", cache.url()),
        Auth::None,
        &[("Host", &format!("ghcr-cache.test:{}", cache.port))],
    );
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(sha256_bytes(&answer.body), w.ghcr_img.small.digest);
}

#[test]
fn an_unknown_ns_is_name_unknown_and_reaches_no_registry_or_token_server() {
    let w = ThreeUpstreams::start();
    let cache = &w.cache;
    let regs = w.regs();
    // The cache holds docker.io's layer: an unknown ns must not reach it either.
    let layer = &w.hub_img.small.layers[0];
    let stored = fetch(
        "GET",
        &format!("{}/v2/test/small/blobs/{layer}", cache.url()),
        Auth::None,
    );
    assert_eq!(stored.status, 200, "{}", stored.describe());
    assert_eq!(sha256_bytes(&stored.body), *layer);

    let before: Vec<usize> = regs
        .iter()
        .map(|(_, r, _)| request_count(&r.registry))
        .collect();
    let tokens_before: Vec<usize> = regs
        .iter()
        .map(|(_, r, _)| r.token.requests().len())
        .collect();
    for path in [
        "/v2/test/small/manifests/latest?ns=evil.example".to_owned(),
        format!("/v2/test/small/blobs/{layer}?ns=evil.example"),
    ] {
        let answer = fetch("GET", &format!("{}{path}", cache.url()), Auth::None);
        assert_eq!(answer.status, 404, "{path}: {}", answer.describe());
        assert_eq!(
            answer.error_code().as_deref(),
            Some("NAME_UNKNOWN"),
            "{path}: {}",
            answer.describe()
        );
    }
    let after: Vec<usize> = regs
        .iter()
        .map(|(_, r, _)| request_count(&r.registry))
        .collect();
    let tokens_after: Vec<usize> = regs
        .iter()
        .map(|(_, r, _)| r.token.requests().len())
        .collect();
    assert_eq!(
        before,
        after,
        "an unknown ns reached a registry\n{}",
        w.all_logs()
    );
    assert_eq!(
        tokens_before, tokens_after,
        "an unknown ns reached a token server"
    );
}
