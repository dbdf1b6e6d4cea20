//! End to end: `oci-cache prefetch` fills a data directory with every manifest and blob
//! of every platform, which then serves skopeo and containerd with the upstream gone.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::time::Duration;

use support::cache_home::{stored_blob_path, CacheHome, CacheRun};
use support::lifecycle::{manifest_blobs, oci_cache_output};
use support::lifecycle_e2e::*;
use support::{
    dead_url, http_status, sha256_bytes, short_tempdir, skopeo_copy_to_dir, skopeo_copy_to_oci_dir,
    skopeo_inspect_raw, write_hosts_toml, AuthRegistry, Containerd, SeedOptions, Seeded,
};

// ---------------------------------------------------------------------------
// Prefetch, then pulls with the upstream gone.
// ---------------------------------------------------------------------------

/// docker.io's test/index and test/index-docker (two platforms each, one 64 KiB
/// layer), prefetched into a data directory with no cache running.
struct Prefetched {
    auth: AuthRegistry,
    seeded: Seeded,
    /// Both indexes and their four platform manifests.
    manifests: BTreeSet<String>,
    /// Every config and layer of the four platforms, with its size.
    blobs: BTreeMap<String, u64>,
    home: CacheHome,
    upstream_flag: String,
    /// What the prefetch printed.
    first: String,
}

impl Prefetched {
    fn new() -> Prefetched {
        let auth = AuthRegistry::start(&[]);
        let seeded = auth.seed_with(SeedOptions {
            seed: 1201,
            layers: 1,
            layer_kib: 64,
        });
        let reg_url = auth.registry.url();
        // Every blob of both images, as the registry serves them.
        let mut manifests: BTreeSet<String> = BTreeSet::new();
        let mut blobs: BTreeMap<String, u64> = BTreeMap::new();
        for img in [&seeded.index, &seeded.index_docker] {
            let raw = skopeo_inspect_raw(&auth.registry.docker_ref(&img.name_tag()), None)
                .expect("inspect upstream");
            manifests.insert(img.digest.clone());
            let v: serde_json::Value = serde_json::from_slice(&raw).expect("index JSON");
            for child in v["manifests"].as_array().expect("an index") {
                let d = child["digest"].as_str().expect("child digest");
                manifests.insert(d.to_owned());
                let raw = skopeo_inspect_raw(
                    &auth.registry.docker_ref(&format!("{}@{d}", img.name)),
                    None,
                )
                .expect("inspect a child upstream");
                for (digest, size) in manifest_blobs(d, &raw).into_iter().skip(1) {
                    blobs.insert(digest, size);
                }
            }
        }
        assert_eq!(manifests.len(), 6, "two indexes of two platforms each");
        // Prefetch both into a data directory, no cache running.
        let home = CacheHome::new(&config(
            "docker.io",
            &reg_url,
            "tag_ttl_secs = 0",
            "max_age_secs = 0",
        ));
        let mut p = Prefetched {
            upstream_flag: format!("docker.io={reg_url}"),
            auth,
            seeded,
            manifests,
            blobs,
            home,
            first: String::new(),
        };
        p.first = p.prefetch("first");
        p
    }

    /// `oci-cache prefetch` of both images into the data directory; its stdout.
    fn prefetch(&self, what: &str) -> String {
        let data_dir = self.home.data_dir();
        let out = oci_cache_output(
            &[
                OsStr::new("prefetch"),
                OsStr::new("--upstream"),
                OsStr::new(&self.upstream_flag),
                OsStr::new("--data-dir"),
                data_dir.as_os_str(),
                OsStr::new("docker.io/test/index:latest"),
                OsStr::new("docker.io/test/index-docker:latest"),
            ],
            Duration::from_secs(120),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!(
            "{what} prefetch: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{what} prefetch failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// A cache on the data directory, then the upstream goes away.
    fn serve_offline(&mut self) -> CacheRun {
        let run = self.home.start();
        self.auth.registry.stop();
        assert_eq!(
            http_status(self.auth.registry.port, "/v2/"),
            None,
            "the registry still answers"
        );
        run
    }

    /// Nothing was fetched on demand: the only blob GETs the registry served the
    /// cache are the first prefetch's, one per blob.
    fn assert_only_the_first_prefetch_downloaded_blobs(&self) {
        let cache_blob_gets: Vec<_> = self
            .auth
            .registry
            .blob_get_records(None)
            .into_iter()
            .filter(|r| r.user_agent.starts_with("oci-cache"))
            .collect();
        assert_eq!(
            cache_blob_gets.len(),
            self.blobs.len(),
            "only the first prefetch downloads blobs\n{}",
            self.auth.registry.request_summary()
        );
    }
}

/// The cache said it answered a tag from storage because the upstream was gone.
fn assert_served_a_stale_tag(run: &CacheRun) {
    assert!(
        run.log()
            .contains("upstream unavailable; serving the cached tag"),
        "the cache never said it served a stale tag\n{}",
        run.log_tail()
    );
}

#[test]
fn prefetch_stores_every_manifest_and_blob_of_every_platform() {
    let p = Prefetched::new();
    let blob_bytes: u64 = p.blobs.values().sum();
    let expected =
        format!("prefetched 2 images (6 manifests, 8 blobs), downloaded {blob_bytes} bytes in ");
    assert!(
        p.first.contains(&expected) && p.first.trim_end().ends_with("; 0 failed"),
        "expected {expected:?}...\n{}",
        p.first
    );
    let store = p.home.store_dir();
    for d in p.manifests.iter().chain(p.blobs.keys()) {
        assert!(stored_blob_path(&store, d).is_file(), "{d} not prefetched");
    }
}

#[test]
fn prefetching_again_beside_a_running_cache_downloads_nothing() {
    let mut p = Prefetched::new();
    // A cache on that data directory; prefetching again beside it downloads nothing.
    let _run = p.home.start();
    let text = p.prefetch("second");
    assert!(
        text.contains("prefetched 2 images (6 manifests, 8 blobs), downloaded 0 bytes in "),
        "{text}"
    );
    p.assert_only_the_first_prefetch_downloaded_blobs();
}

#[test]
fn skopeo_copies_every_prefetched_platform_with_the_upstream_gone() {
    let mut p = Prefetched::new();
    let run = p.serve_offline();
    let logs = || run.log_tail();
    let seeded = &p.seeded;
    let out = short_tempdir("e2e-prefetched-");
    let cache_ref = |name_tag: &str| format!("docker://127.0.0.1:{}/{name_tag}", run.port);
    let digest = skopeo_copy_to_oci_dir(
        &cache_ref(&seeded.index.name_tag()),
        &out.path().join("index"),
        true,
        None,
    )
    .unwrap_or_else(|e| panic!("offline skopeo copy --all of the index: {e}\n{}", logs()));
    assert_eq!(digest, seeded.index.digest);
    let dir = out.path().join("index-docker");
    skopeo_copy_to_dir(
        &cache_ref(&seeded.index_docker.name_tag()),
        &dir,
        true,
        None,
    )
    .unwrap_or_else(|e| {
        panic!(
            "offline skopeo copy --all of the manifest list: {e}\n{}",
            logs()
        )
    });
    let list = std::fs::read(dir.join("manifest.json")).expect("manifest.json of the dir: copy");
    assert_eq!(sha256_bytes(&list), seeded.index_docker.digest);
    assert_served_a_stale_tag(&run);
    p.assert_only_the_first_prefetch_downloaded_blobs();
}

#[test]
fn containerd_pulls_every_prefetched_platform_with_the_upstream_gone() {
    let mut p = Prefetched::new();
    let run = p.serve_offline();
    // containerd pulls every platform (its fallback server is a dead port).
    let ctrd = Containerd::start();
    let hosts = ctrd.hosts_dir("hosts");
    write_hosts_toml(&hosts, "docker.io", &run.url(), &dead_url());
    for img in [&p.seeded.index, &p.seeded.index_docker] {
        let image_ref = format!("docker.io/{}", img.name_tag());
        ctrd.pull(&image_ref, &hosts, true).unwrap_or_else(|e| {
            panic!(
                "offline ctr pull --all-platforms {image_ref}: {e}\n{}\n{}",
                ctrd.log_tail(),
                run.log_tail()
            )
        });
        assert_eq!(
            ctrd.image_digest(&image_ref).as_deref(),
            Some(img.digest.as_str()),
            "{image_ref}"
        );
    }
    let content = ctrd.content_digests();
    for d in p.manifests.iter().chain(p.blobs.keys()) {
        assert!(
            content.contains(d),
            "{d} missing from containerd's content store"
        );
    }
    assert_served_a_stale_tag(&run);
    p.assert_only_the_first_prefetch_downloaded_blobs();
}
