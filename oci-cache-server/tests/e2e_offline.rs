//! End to end: the tag freshness window and serving from the cache while the
//! upstream is gone. A real registry (CNCF distribution behind a real token
//! server) is the upstream; real clients (skopeo, containerd, reqwest) pull
//! through the `oci-cache` binary, and the registry's request log says what the
//! cache asked.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::cache_home::stored_blob_path;
use support::fetch::fetch_with;
use support::{
    fetch, free_port, http_status, sha256_bytes, skopeo_copy_to_oci_dir, skopeo_inspect_raw,
    wait_until, write_hosts_toml, AccessRecord, Answer, Auth, AuthRegistry, Cache, Containerd,
    Registry, SeedOptions,
};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Small images (one 64 KiB layer for "multilayer"); `seed` picks the content.
fn small_images(seed: u64) -> SeedOptions {
    SeedOptions {
        seed,
        layers: 1,
        layer_kib: 64,
    }
}

/// A cache config with one upstream (the default) and extra upstream keys.
fn config(name: &str, url: &str, extra: &str) -> String {
    format!("[[upstreams]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

/// The manifest requests the cache (user agent `oci-cache/...`) made for `path`.
fn cache_manifest_requests(reg: &Registry, path: &str) -> Vec<AccessRecord> {
    reg.manifest_requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("oci-cache") && r.path() == path)
        .collect()
}

/// (HEADs, GETs) among `records`.
fn heads_and_gets(records: &[AccessRecord]) -> (usize, usize) {
    let heads = records.iter().filter(|r| r.method == "HEAD").count();
    let gets = records.iter().filter(|r| r.method == "GET").count();
    (heads, gets)
}

/// Asserts a manifest answer: 200, the digest header, and a body (unless HEAD)
/// that hashes to `digest`.
fn assert_manifest(a: &Answer, digest: &str, head: bool, what: &str, logs: &dyn Fn() -> String) {
    assert_eq!(a.status, 200, "{what}: {}\n{}", a.describe(), logs());
    assert_eq!(
        a.header("docker-content-digest").as_deref(),
        Some(digest),
        "{what}: {}",
        a.describe()
    );
    if !head {
        assert_eq!(sha256_bytes(&a.body), digest, "{what}: body digest");
    }
}

#[test]
fn hundred_heads_within_the_window_cost_no_upstream_request() {
    const TTL: Duration = Duration::from_secs(3);
    let auth = AuthRegistry::start(&[]);
    let first = auth.seed_with(small_images(31));
    let reg = &auth.registry;
    let cache = Cache::start_with_config(
        &config(
            "upstream",
            &reg.url(),
            &format!("tag_ttl_secs = {}", TTL.as_secs()),
        ),
        &[],
    );
    let img = &first.small;
    let path = format!("/v2/{}/manifests/{}", img.name, img.tag);
    let url = format!("{}{path}", cache.url());
    let logs = || format!("{}\n{}", auth.logs(), cache.log_tail());
    assert!(cache_manifest_requests(reg, &path).is_empty());

    // The first GET by tag goes upstream: exactly one manifest GET.
    let t0 = Instant::now();
    let a = fetch("GET", &url, Auth::None);
    assert_manifest(&a, &img.digest, false, "first GET by tag", &logs);
    let after_first = heads_and_gets(&cache_manifest_requests(reg, &path));
    assert_eq!(after_first, (0, 1), "{}", reg.request_summary());

    // 100 HEADs by tag within the window: none reaches upstream.
    let rt = runtime();
    let statuses = rt.block_on(async {
        let client = client();
        let mut out = Vec::new();
        for _ in 0..100 {
            let resp = client
                .head(&url)
                .send()
                .await
                .expect("HEAD through the cache");
            let digest = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            out.push((resp.status().as_u16(), digest));
        }
        out
    });
    let burst = t0.elapsed();
    assert!(
        burst < TTL,
        "precondition: the GET and 100 HEADs took {burst:?}, longer than the {TTL:?} window"
    );
    for (i, (status, digest)) in statuses.iter().enumerate() {
        assert_eq!(*status, 200, "HEAD {i}\n{}", logs());
        assert_eq!(digest.as_deref(), Some(img.digest.as_str()), "HEAD {i}");
    }
    let after_burst = heads_and_gets(&cache_manifest_requests(reg, &path));
    let extra = after_burst.0 + after_burst.1 - after_first.0 - after_first.1;
    eprintln!(
        "100 HEADs by tag within the window (took {burst:?}): {extra} upstream manifest requests"
    );
    assert_eq!(
        after_burst,
        after_first,
        "HEADs within the window reached upstream\n{}",
        reg.request_summary()
    );

    // Past the window: one HEAD by tag costs exactly one upstream HEAD, no GET.
    std::thread::sleep(
        (t0 + TTL + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    );
    let a = fetch("HEAD", &url, Auth::None);
    let t1 = Instant::now();
    assert_manifest(&a, &img.digest, true, "HEAD after the window", &logs);
    let after_window = heads_and_gets(&cache_manifest_requests(reg, &path));
    assert_eq!(
        after_window,
        (after_first.0 + 1, after_first.1),
        "after the window: expected exactly one upstream HEAD and no GET\n{}",
        reg.request_summary()
    );

    // A new manifest under the same tag upstream: after the window the cache serves it.
    let second = auth.seed_with(small_images(32));
    assert_ne!(
        second.small.digest, img.digest,
        "the second seed must differ"
    );
    std::thread::sleep(
        (t1 + TTL + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    );
    // 20 concurrent GETs by tag share one revalidation: one HEAD, one GET upstream.
    let answers = rt.block_on(async {
        let client = client();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (client, url, barrier) = (client.clone(), url.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let resp = client
                        .get(&url)
                        .send()
                        .await
                        .expect("GET through the cache");
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.expect("manifest body").to_vec();
                    (status, body)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("GET task"));
        }
        out
    });
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "concurrent GET {i}\n{}", logs());
        assert_eq!(
            sha256_bytes(body),
            second.small.digest,
            "concurrent GET {i} after the push got the old manifest"
        );
    }
    let after_push = heads_and_gets(&cache_manifest_requests(reg, &path));
    assert_eq!(
        after_push,
        (after_window.0 + 1, after_window.1 + 1),
        "a new digest should cost one upstream HEAD and one GET for 20 concurrent requests\n{}",
        reg.request_summary()
    );
    // And the new tag is fresh again: a HEAD right after costs nothing.
    let a = fetch("HEAD", &url, Auth::None);
    assert_manifest(
        &a,
        &second.small.digest,
        true,
        "HEAD after the refresh",
        &logs,
    );
    assert_eq!(
        heads_and_gets(&cache_manifest_requests(reg, &path)),
        after_push,
        "{}",
        reg.request_summary()
    );
}

#[test]
fn cached_images_pull_with_the_upstream_stopped() {
    let mut auth = AuthRegistry::start(&[]);
    let seeded = auth.seed_with(SeedOptions {
        seed: 41,
        layers: 3,
        layer_kib: 2048,
    });
    // containerd asks with ?ns=docker.io, so the (only) upstream has that name.
    // tag_ttl_secs = 0: every tag request asks upstream, so serving stale is exercised.
    let cache = Cache::start_with_config(
        &config("docker.io", &auth.registry.url(), "tag_ttl_secs = 0"),
        &[],
    );
    let images = [&seeded.multilayer, &seeded.index];
    let out = support::short_tempdir("e2e-offline-");
    let dead_server = format!("http://127.0.0.1:{}", free_port());

    // Online: skopeo (every platform) and containerd (--all-platforms) pull through the cache.
    for img in images {
        let dest = out.path().join("online").join(img.name.replace('/', "_"));
        let digest = skopeo_copy_to_oci_dir(&cache.docker_ref(&img.name_tag()), &dest, true, None)
            .unwrap_or_else(|e| panic!("online skopeo copy of {}: {e}\n{}", img.name, auth.logs()));
        assert_eq!(digest, img.digest, "{}", img.name);
    }
    {
        let ctrd = Containerd::start();
        let hosts = ctrd.hosts_dir("hosts");
        write_hosts_toml(&hosts, "docker.io", &cache.url(), &dead_server);
        for img in images {
            let image_ref = format!("docker.io/{}", img.name_tag());
            ctrd.pull(&image_ref, &hosts, true).unwrap_or_else(|e| {
                panic!(
                    "online ctr pull {image_ref}: {e}\n{}\n{}",
                    ctrd.log_tail(),
                    auth.logs()
                )
            });
            assert_eq!(
                ctrd.image_digest(&image_ref).as_deref(),
                Some(img.digest.as_str())
            );
        }
    }

    // The upstream goes away.
    auth.registry.stop();
    assert_eq!(
        http_status(auth.registry.port, "/v2/"),
        None,
        "the registry still answers"
    );

    // Offline: a fresh skopeo directory and a fresh containerd pull everything again.
    for img in images {
        let dest = out.path().join("offline").join(img.name.replace('/', "_"));
        let digest = skopeo_copy_to_oci_dir(&cache.docker_ref(&img.name_tag()), &dest, true, None)
            .unwrap_or_else(|e| {
                panic!(
                    "offline skopeo copy of {}: {e}\n{}",
                    img.name,
                    cache.log_tail()
                )
            });
        assert_eq!(digest, img.digest, "offline {}", img.name);
    }
    let ctrd = Containerd::start();
    let hosts = ctrd.hosts_dir("hosts");
    write_hosts_toml(&hosts, "docker.io", &cache.url(), &dead_server);
    for img in images {
        let image_ref = format!("docker.io/{}", img.name_tag());
        ctrd.pull_expecting(&image_ref, &hosts, true, &img.digest, &|| {
            format!("offline pull\n{}", cache.log_tail())
        });
    }
    let content = ctrd.content_digests();
    for layer in seeded.multilayer.layers.iter().chain(&seeded.index.layers) {
        assert!(
            content.contains(layer),
            "{layer} missing from the offline containerd's content store"
        );
    }
    assert!(
        cache
            .log()
            .contains("upstream unavailable; serving the cached tag"),
        "the cache never said it served a stale tag\n{}",
        cache.log_tail()
    );

    // Uncached things fail fast with 503 and an OCI error body.
    let misses = [
        format!("/v2/{}/manifests/{}", seeded.small.name, seeded.small.tag),
        format!("/v2/{}/manifests/not-pulled", seeded.multilayer.name),
        format!("/v2/{}/blobs/{}", seeded.small.name, seeded.small.layers[0]),
    ];
    for path in &misses {
        let started = Instant::now();
        let a = fetch("GET", &format!("{}{path}", cache.url()), Auth::None);
        let took = started.elapsed();
        eprintln!(
            "offline miss GET {path}: {} {:?} in {} ms",
            a.status,
            a.error_code(),
            took.as_millis()
        );
        assert_eq!(a.status, 503, "{path}: {}", a.describe());
        assert_eq!(a.error_code().as_deref(), Some("UNAVAILABLE"), "{path}");
        assert!(
            took < Duration::from_secs(5),
            "{path}: the failure took {took:?} (bound 5 s)"
        );
    }
}

#[test]
fn an_index_tag_stores_every_child_so_platforms_pull_offline() {
    let mut auth = AuthRegistry::start(&[]);
    let seeded = auth.seed_with(small_images(51));
    let cache = Cache::start_with_config(&config("upstream", &auth.registry.url(), ""), &[]);
    let store = cache.data_dir().join("store");

    // Only the index (and the Docker list) by tag; the children follow in the background.
    let mut children = Vec::new();
    for (img, accept) in [
        (&seeded.index, OCI_INDEX),
        (&seeded.index_docker, DOCKER_LIST),
    ] {
        let url = format!("{}/v2/{}/manifests/{}", cache.url(), img.name, img.tag);
        let a = fetch_with("GET", &url, Auth::None, &[("Accept", accept)]);
        assert_manifest(&a, &img.digest, false, &img.name, &|| cache.log_tail());
        let kids = support::child_manifests(&a.body);
        assert_eq!(kids.len(), 2, "{}: {}", img.name, a.describe());
        for kid in kids {
            children.push((img.name.clone(), kid));
        }
    }
    // Poll the data directory (not the cache, which would fetch them itself).
    wait_until(
        "every child manifest stored",
        Duration::from_secs(30),
        || {
            children
                .iter()
                .all(|(_, d)| stored_blob_path(&store, d).is_file())
                .then_some(())
        },
        || format!("{}\n{}", cache.log_tail(), auth.logs()),
    );
    // The registry's own bytes of each child, and one upstream GET of each by the cache.
    let reg = &auth.registry;
    let mut direct = Vec::new();
    for (name, kid) in &children {
        let raw = skopeo_inspect_raw(&reg.docker_ref(&format!("{name}@{kid}")), None)
            .expect("inspect a child upstream");
        direct.push(raw);
        let path = format!("/v2/{name}/manifests/{kid}");
        let fetched = cache_manifest_requests(reg, &path);
        assert_eq!(
            heads_and_gets(&fetched),
            (0, 1),
            "the cache should GET {path} exactly once\n{}",
            reg.request_summary()
        );
    }

    auth.registry.stop();
    for ((name, kid), raw) in children.iter().zip(&direct) {
        let url = format!("{}/v2/{name}/manifests/{kid}", cache.url());
        let a = fetch("GET", &url, Auth::None);
        assert_manifest(&a, kid, false, &format!("{name}@{kid} offline"), &|| {
            cache.log_tail()
        });
        assert!(a.body == *raw, "{name}@{kid}: the cache changed the bytes");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    support::rt::runtime(2)
}

fn client() -> reqwest::Client {
    support::rt::http_client(Duration::from_secs(60))
}
