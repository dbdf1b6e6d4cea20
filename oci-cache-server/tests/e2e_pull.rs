//! End to end: real clients (skopeo, containerd, reqwest) pull through the
//! `oci-cache` binary from a real registry (CNCF distribution) behind a real
//! token server, and the registry's own request log says what the cache asked.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{
    free_port, sha256_bytes, skopeo_copy_to_dir, skopeo_copy_to_oci_dir, skopeo_inspect_raw,
    write_hosts_toml, AuthRegistry, Cache, Containerd, Image, Sha256Pipe,
};

const MIB: usize = 1024 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    support::rt::runtime(4)
}

fn client() -> reqwest::Client {
    support::rt::http_client(Duration::from_secs(180))
}

/// Copies every seeded image through the cache into `dir` (OCI layouts, and
/// `dir:` for the Docker list), checking digests and blob contents.
fn copy_all_through_cache(
    cache: &Cache,
    auth: &AuthRegistry,
    images: &[&Image],
    dir: &std::path::Path,
) {
    for img in images {
        let src = cache.docker_ref(&img.name_tag());
        let dest = dir.join(img.name.replace('/', "_"));
        if img.name.ends_with("-docker") {
            skopeo_copy_to_dir(&src, &dest, true, None).unwrap_or_else(|e| {
                panic!(
                    "copy of {} through the cache failed: {e}\n{}",
                    img.name,
                    auth.logs()
                )
            });
            let manifest =
                std::fs::read(dest.join("manifest.json")).expect("manifest.json of dir: copy");
            assert_eq!(
                sha256_bytes(&manifest),
                img.digest,
                "{} changed on the way",
                img.name
            );
        } else {
            let digest = skopeo_copy_to_oci_dir(&src, &dest, true, None).unwrap_or_else(|e| {
                panic!(
                    "copy of {} through the cache failed: {e}\n{}",
                    img.name,
                    auth.logs()
                )
            });
            assert_eq!(digest, img.digest, "{} changed on the way", img.name);
        }
    }
}

#[test]
fn skopeo_pulls_small_multilayer_index_and_manifest_list_through_cache() {
    let auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    let reg = &auth.registry;
    let cache = Cache::start(&[("upstream", reg.url())]);
    let images = [
        &seeded.small,
        &seeded.multilayer,
        &seeded.index,
        &seeded.index_docker,
    ];

    // Every manifest (and every child of an index or list) comes back byte for byte.
    for img in images {
        let direct =
            skopeo_inspect_raw(&reg.docker_ref(&img.name_tag()), None).expect("inspect upstream");
        let cached =
            skopeo_inspect_raw(&cache.docker_ref(&img.name_tag()), None).unwrap_or_else(|e| {
                panic!(
                    "inspect of {} through the cache failed: {e}\n{}",
                    img.name,
                    auth.logs()
                )
            });
        assert!(
            direct == cached,
            "the cache changed the manifest of {}",
            img.name
        );
        assert_eq!(sha256_bytes(&cached), img.digest);
        for child in support::child_manifests(&direct) {
            let by_digest = format!("{}@{child}", img.name);
            let d = skopeo_inspect_raw(&reg.docker_ref(&by_digest), None)
                .expect("inspect upstream child");
            let c = skopeo_inspect_raw(&cache.docker_ref(&by_digest), None).unwrap_or_else(|e| {
                panic!(
                    "inspect of {by_digest} through the cache failed: {e}\n{}",
                    auth.logs()
                )
            });
            assert!(d == c, "the cache changed {by_digest}");
            assert_eq!(sha256_bytes(&c), child);
        }
    }

    // Cold copies of every platform of every image, blobs verified.
    let out = support::short_tempdir("e2e-pull-");
    copy_all_through_cache(&cache, &auth, &images, &out.path().join("first"));
    for layer in &seeded.multilayer.layers {
        assert_eq!(
            reg.blob_gets(Some(layer)),
            1,
            "the cache should fetch layer {layer} from upstream exactly once\n{}",
            reg.request_summary()
        );
    }

    // A second, warm pull is served from the cache alone.
    let before = reg.blob_gets(None);
    copy_all_through_cache(&cache, &auth, &images, &out.path().join("second"));
    let after = reg.blob_gets(None);
    assert_eq!(
        after,
        before,
        "the warm pull caused {} upstream blob GETs\n{}",
        after - before,
        reg.request_summary()
    );
}

#[test]
fn containerd_pulls_through_cache_with_hosts_toml() {
    let auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    let reg = &auth.registry;
    // The default upstream leads nowhere: only ?ns=docker.io reaches the registry.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let cache = Cache::start(&[("default", nowhere), ("docker.io", reg.url())]);
    let dead_server = format!("http://127.0.0.1:{}", free_port());

    let ctrd = Containerd::start();
    let hosts = ctrd.hosts_dir("hosts");
    write_hosts_toml(&hosts, "docker.io", &cache.url(), &dead_server);
    let pulls = [
        (&seeded.multilayer, false),
        (&seeded.index, true),
        (&seeded.index_docker, true),
    ];
    for (img, all) in pulls {
        let image_ref = format!("docker.io/{}", img.name_tag());
        ctrd.pull_expecting(&image_ref, &hosts, all, &img.digest, &|| auth.logs());
    }
    let content = ctrd.content_digests();
    for layer in seeded.multilayer.layers.iter().chain(&seeded.index.layers) {
        assert!(
            content.contains(layer),
            "{layer} missing from containerd's content store"
        );
    }
    assert!(
        reg.records()
            .iter()
            .all(|r| !r.user_agent.contains("containerd")),
        "containerd reached the registry directly\n{}",
        reg.request_summary()
    );

    // A second containerd pulls everything again from the warm cache alone.
    let before = reg.blob_gets(None);
    let ctrd2 = Containerd::start();
    let hosts2 = ctrd2.hosts_dir("hosts");
    write_hosts_toml(&hosts2, "docker.io", &cache.url(), &dead_server);
    for (img, all) in pulls {
        let image_ref = format!("docker.io/{}", img.name_tag());
        ctrd2
            .pull(&image_ref, &hosts2, all)
            .unwrap_or_else(|e| panic!("warm ctr pull {image_ref} failed: {e}\n{}", auth.logs()));
        assert_eq!(
            ctrd2.image_digest(&image_ref).as_deref(),
            Some(img.digest.as_str())
        );
    }
    let after = reg.blob_gets(None);
    assert_eq!(
        after,
        before,
        "the warm pulls reached upstream\n{}",
        reg.request_summary()
    );
}

/// GETs a blob through the cache, hashing the body as it streams.
/// Returns (status, bytes, digest of the body).
async fn get_and_hash(client: &reqwest::Client, url: &str) -> (u16, u64, String) {
    let mut resp = client.get(url).send().await.expect("GET through the cache");
    let status = resp.status().as_u16();
    let mut hasher = Sha256Pipe::new();
    while let Some(chunk) = resp.chunk().await.expect("body chunk") {
        tokio::task::block_in_place(|| hasher.update(&chunk));
    }
    let n = hasher.len();
    let digest = tokio::task::block_in_place(|| hasher.finish());
    (status, n, digest)
}

#[test]
fn twenty_concurrent_cold_gets_of_64mib_blob_cause_one_upstream_get() {
    let auth = AuthRegistry::start(&[]);
    let rt = runtime();
    let size = 64 * MIB;
    let digest = support::upload::push_random_blob(&rt, &auth, "test/bigblob", 64, size).1;
    let reg = &auth.registry;
    assert_eq!(reg.blob_gets(Some(&digest)), 0);
    let cache = Cache::start(&[("upstream", reg.url())]);
    let url = format!("{}/v2/test/bigblob/blobs/{digest}", cache.url());

    let started = Instant::now();
    let results = rt.block_on(async {
        let client = client();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (client, url, barrier) = (client.clone(), url.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    get_and_hash(&client, &url).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("GET task"));
        }
        out
    });
    eprintln!("20 concurrent GETs of 64 MiB took {:?}", started.elapsed());
    for (i, (status, n, got)) in results.iter().enumerate() {
        assert_eq!(*status, 200, "request {i}\n{}", cache.log_tail());
        assert_eq!(
            *n,
            size as u64,
            "request {i} got a short body\n{}",
            cache.log_tail()
        );
        assert_eq!(got, &digest, "request {i} got a corrupt body");
    }
    let gets = reg.blob_get_records(Some(&digest));
    assert_eq!(
        gets.len(),
        1,
        "20 concurrent cold GETs should coalesce into one upstream GET\n{}",
        reg.request_summary()
    );
    assert_eq!(gets[0].written, size as u64, "{}", reg.request_summary());
}

#[test]
fn client_that_disconnects_after_first_mib_leaves_blob_fully_cached() {
    let auth = AuthRegistry::start(&[]);
    let rt = runtime();
    let size = 64 * MIB;
    let digest = support::upload::push_random_blob(&rt, &auth, "test/abandoned", 65, size).1;
    let reg = &auth.registry;
    let cache = Cache::start(&[("upstream", reg.url())]);
    let url = format!("{}/v2/test/abandoned/blobs/{digest}", cache.url());

    // Read one MiB, then hang up.
    rt.block_on(async {
        let mut resp = client()
            .get(&url)
            .send()
            .await
            .expect("GET through the cache");
        assert_eq!(resp.status().as_u16(), 200, "{}", cache.log_tail());
        let mut read = 0;
        while read < MIB {
            match resp.chunk().await.expect("body chunk") {
                Some(c) => read += c.len(),
                None => panic!("the body ended after {read} bytes"),
            }
        }
        drop(resp);
    });

    // Without any further client, the cache goes on fetching the whole blob.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fetched: u64 = reg
            .blob_get_records(Some(&digest))
            .iter()
            .map(|r| r.written)
            .sum();
        if fetched >= size as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "30 s after the client left, upstream has sent only {fetched} of {size} bytes: the cache \
             stopped fetching\n{}\n{}",
            reg.request_summary(),
            cache.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let upstream_gets = reg.blob_gets(Some(&digest));

    // Then (bounded) a GET is served whole from the cache with no upstream GET.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = reg.blob_gets(Some(&digest));
        let (status, n, got) = rt.block_on(async { get_and_hash(&client(), &url).await });
        let after = reg.blob_gets(Some(&digest));
        if status == 200 && n == size as u64 && got == digest && after == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the blob never became fully cached (last GET: status {status}, {n} bytes, {got}, \
             {} new upstream GETs)\n{}\n{}",
            after - before,
            reg.request_summary(),
            cache.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        reg.blob_gets(Some(&digest)),
        upstream_gets,
        "fetching after the disconnect should need no further upstream GET\n{}",
        reg.request_summary()
    );
}
