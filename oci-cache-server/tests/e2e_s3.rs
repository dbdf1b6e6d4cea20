//! End to end with S3 storage: `oci-cache` replicas keep blobs and tags in a
//! bucket of a real S3 server (s3s-fs), in front of a real registry (CNCF
//! distribution) behind a real token server; skopeo and reqwest pull through
//! them. The objects are checked on the S3 server's disk, the upstream GETs in
//! the registry's request log, the memory in /proc.
//!
//! Needs, besides the tools of the other e2e tests, `s3s-fs`:
//! `cargo install s3s-fs --version 0.14.1 --features binary --locked`.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::big_blob::push_generated_blob;
use support::s3::{peak_rss_bytes, s3_cache_config, S3Server};
use support::{
    pseudo_random_bytes, sha256_bytes, sha256_file, short_tempdir, skopeo_copy_to_oci_dir,
    skopeo_inspect_raw, wait_until, AuthRegistry, Cache, Image, Sha256Pipe,
};

const MIB: u64 = 1024 * 1024;
const BUCKET: &str = "oci";

fn runtime() -> tokio::runtime::Runtime {
    support::rt::runtime(4)
}

fn client(timeout: Duration) -> reqwest::Client {
    support::rt::http_client(timeout)
}

/// An `oci-cache` keeping blobs and tags in `s3://oci/PREFIX` of `s3`, with
/// `upstream` as its only upstream (named `upstream` in every replica, so
/// replicas share tag records).
fn start_replica(s3: &S3Server, prefix: &str, upstream: &str, tag_ttl_secs: u64) -> Cache {
    let config = s3_cache_config(BUCKET, prefix, upstream, tag_ttl_secs);
    let env = s3.aws_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Cache::start_with_config(&config, &env)
}

/// The S3 key of a blob (`sha256:HEX`) under `prefix`.
fn blob_key(prefix: &str, digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    format!("{prefix}/blobs/sha256/{hex}")
}

/// The digests (`sha256:HEX`) of every blob of an OCI layout.
fn oci_blob_digests(dir: &Path) -> BTreeSet<String> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::read_dir(&blobs)
        .unwrap_or_else(|e| panic!("read {}: {e}", blobs.display()))
        .map(|e| {
            let name = e.expect("dir entry").file_name();
            format!("sha256:{}", name.to_string_lossy())
        })
        .collect()
}

/// Waits (at most `timeout`) until every blob of `digests` is a complete
/// object under `prefix`, then checks that each hashes to its digest.
/// (A fill releases its last byte to clients when it is verified and
/// commits to S3 just after, so the objects appear shortly after a pull.)
fn assert_blob_objects(
    s3: &S3Server,
    prefix: &str,
    digests: &BTreeSet<String>,
    timeout: Duration,
    context: impl Fn() -> String,
) {
    wait_until(
        "every pulled blob to be an object in the bucket",
        timeout,
        || {
            digests
                .iter()
                .all(|d| s3.object_path(BUCKET, &blob_key(prefix, d)).is_file())
                .then_some(())
        },
        || {
            let missing: Vec<&String> = digests
                .iter()
                .filter(|d| !s3.object_path(BUCKET, &blob_key(prefix, d)).is_file())
                .collect();
            format!(
                "missing: {missing:?}\nobjects: {:#?}\n{}\n{}",
                s3.object_keys(BUCKET, prefix),
                context(),
                s3.log_tail()
            )
        },
    );
    for d in digests {
        let path = s3.object_path(BUCKET, &blob_key(prefix, d));
        assert_eq!(
            &sha256_file(&path),
            d,
            "the object {} does not hash to its name",
            path.display()
        );
    }
}

/// GETs a blob, hashing the body as it streams.
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

/// GETs a blob and reads the whole body, tolerating a broken one.
/// Returns (status, bytes received, digest of the body or the body's error).
async fn get_tolerant(client: &reqwest::Client, url: &str) -> (u16, u64, Result<String, String>) {
    let mut resp = client.get(url).send().await.expect("GET through the cache");
    let status = resp.status().as_u16();
    let mut hasher = Sha256Pipe::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => tokio::task::block_in_place(|| hasher.update(&chunk)),
            Ok(None) => break,
            Err(e) => return (status, hasher.len(), Err(format!("{e:?}"))),
        }
    }
    let n = hasher.len();
    (
        status,
        n,
        Ok(tokio::task::block_in_place(|| hasher.finish())),
    )
}

/// GETs every URL at once (all start together), each streamed and hashed.
fn get_all_at_once(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    urls: &[String],
) -> Vec<(u16, u64, String)> {
    get_all_at_once_tolerant(rt, client, urls)
        .into_iter()
        .map(|(status, n, got, took)| {
            let got = got.unwrap_or_else(|e| panic!("body broken after {n} bytes, {took:?}: {e}"));
            (status, n, got)
        })
        .collect()
}

/// GETs every URL at once (all start together), each streamed and hashed; a broken body
/// is an answer too. Returns (status, bytes, digest or the body's error, time taken).
fn get_all_at_once_tolerant(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    urls: &[String],
) -> Vec<(u16, u64, Result<String, String>, Duration)> {
    rt.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(urls.len()));
        let tasks: Vec<_> = urls
            .iter()
            .map(|url| {
                let (client, url, barrier) = (client.clone(), url.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let t = Instant::now();
                    let (status, n, got) = get_tolerant(&client, &url).await;
                    (status, n, got, t.elapsed())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("GET task"));
        }
        out
    })
}

/// Copies `img` (every platform) from `cache` into an OCI layout at `dest`,
/// by tag or by digest, and checks the top-level digest.
fn copy_through(
    cache: &Cache,
    img: &Image,
    by_digest: bool,
    dest: &Path,
    context: &dyn Fn() -> String,
) {
    let reference = if by_digest {
        format!("{}@{}", img.name, img.digest)
    } else {
        img.name_tag()
    };
    let digest = skopeo_copy_to_oci_dir(&cache.docker_ref(&reference), dest, true, None)
        .unwrap_or_else(|e| {
            panic!(
                "copy of {reference} through {} failed: {e}\n{}\n{}",
                cache.url(),
                cache.log_tail(),
                context()
            )
        });
    assert_eq!(digest, img.digest, "{reference} changed on the way");
}

#[test]
fn a_blob_cached_through_one_replica_is_served_by_the_other_with_the_upstream_stopped() {
    let prefix = "r1";
    let s3 = S3Server::start(&[BUCKET]);
    let mut auth = AuthRegistry::start(&[]);
    let seeded = auth.seed();
    let upstream = auth.registry.url();
    let replica_a = start_replica(&s3, prefix, &upstream, 3600);
    let replica_b = start_replica(&s3, prefix, &upstream, 3600);
    let images = [&seeded.multilayer, &seeded.index];
    let out = short_tempdir("e2e-s3-replicas-");
    let dir = |replica: &str, img: &Image, how: &str| {
        out.path()
            .join(replica)
            .join(format!("{}-{how}", img.name.replace('/', "_")))
    };

    // Replica A pulls everything from the upstream (every platform of the index).
    for img in images {
        copy_through(&replica_a, img, false, &dir("a", img, "tag"), &|| {
            auth.logs()
        });
    }
    for layer in seeded.multilayer.layers.iter().chain(&seeded.index.layers) {
        assert!(
            auth.registry.blob_gets(Some(layer)) >= 1,
            "replica A never fetched {layer}\n{}",
            auth.registry.request_summary()
        );
    }

    // Every blob of the copies (manifests, configs, layers) is now an object of
    // the shared bucket, and the tags are there too.
    let mut digests = BTreeSet::new();
    for img in images {
        digests.extend(oci_blob_digests(&dir("a", img, "tag")));
    }
    assert_blob_objects(&s3, prefix, &digests, Duration::from_secs(60), || {
        replica_a.log_tail()
    });
    let tag_objects = s3.object_keys(BUCKET, &format!("{prefix}/tags"));
    assert!(
        tag_objects.len() >= images.len(),
        "expected a tag object per image, found {tag_objects:?}\n{:#?}",
        s3.object_keys(BUCKET, prefix)
    );
    eprintln!(
        "bucket after replica A: {} blob objects, tag objects {tag_objects:?}",
        s3.object_keys(BUCKET, &format!("{prefix}/blobs")).len()
    );

    // The upstream goes away: replica B has only the bucket.
    auth.registry.stop();

    for img in images {
        copy_through(&replica_b, img, false, &dir("b", img, "tag"), &|| {
            s3.log_tail()
        });
        copy_through(&replica_b, img, true, &dir("b", img, "digest"), &|| {
            s3.log_tail()
        });
        for how in ["tag", "digest"] {
            assert_eq!(
                oci_blob_digests(&dir("b", img, how)),
                oci_blob_digests(&dir("a", img, "tag")),
                "replica B served other blobs for {} (by {how})",
                img.name
            );
        }
    }

    // A third replica that considers every tag stale (tag_ttl 0) asks the
    // dead upstream, then serves the tag records of the bucket.
    let replica_c = start_replica(&s3, prefix, &upstream, 0);
    for img in images {
        let raw =
            skopeo_inspect_raw(&replica_c.docker_ref(&img.name_tag()), None).unwrap_or_else(|e| {
                panic!(
                    "a replica with tag_ttl 0 does not serve the stale tag {} with the upstream \
                     down: {e}\n{}",
                    img.name_tag(),
                    replica_c.log_tail()
                )
            });
        assert_eq!(sha256_bytes(&raw), img.digest, "{}", img.name_tag());
    }
    assert!(
        replica_c.log().contains("serving the cached tag"),
        "replica C should say it served a stale tag\n{}",
        replica_c.log_tail()
    );
}

#[test]
fn concurrent_cold_pulls_through_two_replicas_never_corrupt_a_blob() {
    let prefix = "r2";
    let s3 = S3Server::start(&[BUCKET]);
    let auth = AuthRegistry::start(&[]);
    let reg = &auth.registry;
    let rt = runtime();
    let http = client(Duration::from_secs(300));
    let size = 64 * MIB;
    let data = pseudo_random_bytes(0x5353, size as usize);
    let digest = sha256_bytes(&data);
    rt.block_on(support::upload::push_blob(
        &http,
        reg,
        Some(&auth.token),
        "test/shared",
        data,
        &digest,
    ));
    assert_eq!(reg.blob_gets(Some(&digest)), 0);
    let replicas = [
        start_replica(&s3, prefix, &reg.url(), 3600),
        start_replica(&s3, prefix, &reg.url(), 3600),
    ];
    let url = |c: &Cache| format!("{}/v2/test/shared/blobs/{digest}", c.url());
    let context = || {
        format!(
            "{}\n{}\n{}\n{}",
            replicas[0].log_tail(),
            replicas[1].log_tail(),
            s3.log_tail(),
            reg.request_summary()
        )
    };

    // 2 replicas x 10 clients, all cold, all at once.
    let urls: Vec<String> = (0..20).map(|i| url(&replicas[i % 2])).collect();
    let started = Instant::now();
    let results = get_all_at_once(&rt, &http, &urls);
    eprintln!(
        "2 replicas x 10 concurrent cold GETs of 64 MiB took {:?}",
        started.elapsed()
    );
    for (i, (status, n, got)) in results.iter().enumerate() {
        assert_eq!(
            *status,
            200,
            "request {i} (replica {})\n{}",
            i % 2,
            context()
        );
        assert_eq!(*n, size, "request {i} got a short body\n{}", context());
        assert_eq!(
            got,
            &digest,
            "request {i} got a corrupt body\n{}",
            context()
        );
    }
    let upstream_gets = reg.blob_get_records(Some(&digest));
    eprintln!(
        "upstream GETs of the blob for 2 replicas x 10 cold clients: {} (bytes sent: {:?})",
        upstream_gets.len(),
        upstream_gets.iter().map(|r| r.written).collect::<Vec<_>>()
    );
    assert!(
        (1..=2).contains(&upstream_gets.len()),
        "each replica should fill the blob at most once: {} upstream GETs\n{}",
        upstream_gets.len(),
        context()
    );

    // The object in the bucket is the blob, and no multipart upload is left over.
    let one = BTreeSet::from([digest.clone()]);
    assert_blob_objects(&s3, prefix, &one, Duration::from_secs(60), context);
    wait_until(
        "every multipart upload to be completed or aborted",
        Duration::from_secs(30),
        || s3.unfinished_uploads().is_empty().then_some(()),
        || format!("left over: {:?}\n{}", s3.unfinished_uploads(), context()),
    );

    // Warm: each replica serves it from the bucket, without the upstream.
    let before = reg.blob_gets(Some(&digest));
    for (i, replica) in replicas.iter().enumerate() {
        let (status, n, got) = rt.block_on(get_and_hash(&http, &url(replica)));
        assert_eq!(
            (status, n, got.as_str()),
            (200, size, digest.as_str()),
            "warm GET through replica {i}\n{}",
            context()
        );
    }
    let after = reg.blob_gets(Some(&digest));
    assert_eq!(
        after,
        before,
        "warm GETs reached the upstream\n{}",
        context()
    );
}

/// While `pulling` holds (at most 10 minutes), samples the S3 server every
/// 20 ms: returns the most multipart part files seen on it while `object` was
/// not yet visible (0 when the blob never went to S3 as a multipart upload).
fn watch_multipart(s3: &S3Server, object: &Path, pulling: &AtomicBool) -> usize {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut most = 0;
    while pulling.load(Ordering::SeqCst) && Instant::now() < deadline {
        let parts = s3
            .unfinished_uploads()
            .iter()
            .filter(|n| n.starts_with(".upload_id-"))
            .count();
        if !object.exists() {
            most = most.max(parts);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    most
}

#[test]
fn a_blob_that_fails_verification_never_becomes_an_object_and_its_upload_is_aborted() {
    let prefix = "r4";
    let s3 = S3Server::start(&[BUCKET]);
    let auth = AuthRegistry::start(&[]);
    let reg = &auth.registry;
    let rt = runtime();
    let http = client(Duration::from_secs(300));
    // Many 8 MiB parts: the upload (behind the fill, from the local tier's file) is a
    // multipart one well before the fill reaches the end.
    let size = 160 * MIB;
    let data = pseudo_random_bytes(0xbad, size as usize);
    let digest = sha256_bytes(&data);
    rt.block_on(support::upload::push_blob(
        &http,
        reg,
        Some(&auth.token),
        "test/corrupt",
        data,
        &digest,
    ));
    // One byte near the end of the registry's copy flips (same size): the
    // registry serves it as is, and only the digest can tell.
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    let stored = reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&stored)
            .unwrap_or_else(|e| panic!("open the registry's copy {}: {e}", stored.display()));
        let at = size - 1024;
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, at).expect("read a byte");
        byte[0] ^= 0xff;
        f.write_all_at(&byte, at).expect("flip a byte");
    }
    let replica = start_replica(&s3, prefix, &reg.url(), 3600);
    let url = format!("{}/v2/test/corrupt/blobs/{digest}", replica.url());
    let context = || {
        format!(
            "{}\n{}\n{}",
            replica.log_tail(),
            s3.log_tail(),
            reg.request_summary()
        )
    };

    let object = s3.object_path(BUCKET, &blob_key(prefix, &digest));
    let pulling = AtomicBool::new(true);
    let ((status, n, body), parts) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| watch_multipart(&s3, &object, &pulling));
        let got = rt.block_on(get_tolerant(&http, &url));
        pulling.store(false, Ordering::SeqCst);
        (got, sampler.join().expect("sampler thread"))
    });
    eprintln!(
        "GET of the corrupt blob: status {status}, {n} bytes, body {body:?}; up to {parts} \
         multipart parts were stored meanwhile"
    );
    assert!(
        parts > 0,
        "the failed fill never stored a multipart part: nothing to abort\n{}",
        context()
    );
    assert!(
        status != 200 || n < size || body.is_err(),
        "the client got a complete-looking body of a blob that fails verification \
         (status {status}, {n} bytes, {body:?})\n{}",
        context()
    );
    assert!(
        reg.blob_gets(Some(&digest)) >= 1,
        "the cache never fetched the blob\n{}",
        context()
    );
    // The part uploads of the failed fill are aborted, and nothing is visible.
    wait_until(
        "the failed fill's multipart upload to be aborted",
        Duration::from_secs(30),
        || s3.unfinished_uploads().is_empty().then_some(()),
        || format!("left over: {:?}\n{}", s3.unfinished_uploads(), context()),
    );
    let objects = s3.object_keys(BUCKET, &format!("{prefix}/blobs"));
    assert!(
        objects.is_empty(),
        "a blob that failed verification became visible: {objects:?}\n{}",
        context()
    );
}

/// Bytes in MiB, for reports.
#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// What one cold pull of a blob by 4 concurrent clients cost a fresh replica.
struct RssRun {
    size: u64,
    /// Most multipart parts seen on the S3 server before the object was visible.
    parts_before_visible: usize,
    idle_rss: u64,
    peak_rss: u64,
    push: Duration,
    pull: Duration,
    commit: Duration,
}

/// Pushes `size` generated bytes (streamed as they are generated) as a blob, starts a fresh
/// replica on the bucket, and has 4 clients pull it cold at once, each
/// streaming and hashing the body. Checks every body, the single upstream
/// GET and the object in the bucket; returns the replica's peak RSS.
fn cold_pull_by_four(
    rt: &tokio::runtime::Runtime,
    s3: &S3Server,
    auth: &AuthRegistry,
    prefix: &str,
    size: u64,
) -> RssRun {
    let http = client(Duration::from_secs(600));
    let name = format!("test/rss-{prefix}");
    // Generated as it is pushed: no file of the blob's size on the test machine's disk.
    let t = Instant::now();
    let digest = rt.block_on(push_generated_blob(
        &http,
        &auth.registry,
        Some(&auth.token),
        &name,
        size,
        size,
    ));
    let push = t.elapsed();

    let replica = start_replica(s3, prefix, &auth.registry.url(), 3600);
    let pid = replica.pid().expect("the replica runs");
    let idle_rss = peak_rss_bytes(pid);
    let url = format!("{}/v2/{name}/blobs/{digest}", replica.url());
    let context = || {
        format!(
            "{}\n{}\n{}",
            replica.log_tail(),
            s3.log_tail(),
            auth.registry.request_summary()
        )
    };
    let object = s3.object_path(BUCKET, &blob_key(prefix, &digest));
    let t = Instant::now();
    let pulling = AtomicBool::new(true);
    let (results, parts_before_visible) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| watch_multipart(s3, &object, &pulling));
        let results = get_all_at_once_tolerant(rt, &http, &vec![url; 4]);
        pulling.store(false, Ordering::SeqCst);
        (results, sampler.join().expect("sampler thread"))
    });
    let pull = t.elapsed();
    for (i, (status, n, got, took)) in results.iter().enumerate() {
        let context = || {
            format!(
                "client {i}: {n} of {size} bytes in {took:?}: {got:?}\nthe test machine: {}\n{}",
                support::s3::machine_pressure(),
                context()
            )
        };
        assert_eq!(*status, 200, "{}", context());
        assert_eq!(*n, size, "a short body\n{}", context());
        assert_eq!(got.as_ref(), Ok(&digest), "a corrupt body\n{}", context());
    }
    assert_eq!(
        auth.registry.blob_gets(Some(&digest)),
        1,
        "4 concurrent cold GETs should make one upstream GET\n{}",
        context()
    );
    // The peak counts the whole fill, the completion of the upload included.
    let t = Instant::now();
    let one = BTreeSet::from([digest.clone()]);
    assert_blob_objects(s3, prefix, &one, Duration::from_secs(120), context);
    let commit = t.elapsed();
    let peak_rss = peak_rss_bytes(pid);
    assert!(
        parts_before_visible > 0,
        "no multipart part was ever seen on the S3 server while the object was not yet visible: \
         the blob was not streamed to S3 as a multipart upload\n{}",
        context()
    );
    RssRun {
        size,
        parts_before_visible,
        idle_rss,
        peak_rss,
        push,
        pull,
        commit,
    }
}

/// A fresh replica on a fresh bucket (under `test/PREFIX`'s own prefix) in front of a fresh
/// token-auth registry holding one blob, `test/PREFIX`, of `size` generated bytes. Fields
/// drop in order: the replica first.
struct OneBlob {
    replica: Cache,
    rt: tokio::runtime::Runtime,
    /// Kept running for the replica (its upstream).
    _auth: AuthRegistry,
    s3: S3Server,
    digest: String,
    /// The blob's repository.
    name: String,
}

impl OneBlob {
    /// The blob's URL through the replica.
    fn url(&self) -> String {
        format!(
            "{}/v2/{}/blobs/{}",
            self.replica.url(),
            self.name,
            self.digest
        )
    }
}

fn one_blob(prefix: &str, seed: u64, size: u64) -> OneBlob {
    let name = format!("test/{prefix}");
    let s3 = S3Server::start(&[BUCKET]);
    let auth = AuthRegistry::start(&[]);
    let rt = runtime();
    let digest = rt.block_on(push_generated_blob(
        &client(Duration::from_secs(300)),
        &auth.registry,
        Some(&auth.token),
        &name,
        seed,
        size,
    ));
    let replica = start_replica(&s3, prefix, &auth.registry.url(), 3600);
    OneBlob {
        replica,
        rt,
        _auth: auth,
        s3,
        digest,
        name,
    }
}

/// Waits (at most `timeout`) until `replica` runs no fill (its last commit done).
fn wait_for_fills(replica: &Cache, timeout: Duration, context: &dyn Fn() -> String) {
    wait_until(
        "the fills to end",
        timeout,
        || {
            let m = support::lifecycle::scrape_metrics(&replica.url());
            (support::lifecycle::metric(&m, "oci_cache_fills_in_flight") == 0).then_some(())
        },
        context,
    );
}

/// A cold fill on S3 writes each byte to the replica's disk once: the local tier's copy
/// is also what the fill serves its readers from (no spool file besides it). Counted in
/// the kernel's `write_bytes` of the replica (bytes it dirtied in the page cache). Red
/// when the fill spools to a file of its own (2 copies).
#[test]
fn a_cold_fill_on_s3_writes_each_byte_to_the_local_disk_once() {
    const SIZE: u64 = 48 * MIB;
    let b = one_blob("once", 7, SIZE);
    let http = client(Duration::from_secs(300));
    let pid = b.replica.pid().expect("the b.replica runs");
    let before = written_bytes(pid);
    let url = b.url();
    let (status, n, got) = b.rt.block_on(get_and_hash(&http, &url));
    assert_eq!((status, n, got.as_str()), (200, SIZE, b.digest.as_str()));
    let one = BTreeSet::from([b.digest.clone()]);
    assert_blob_objects(&b.s3, "once", &one, Duration::from_secs(120), || {
        b.replica.log_tail()
    });
    wait_for_fills(&b.replica, Duration::from_secs(30), &|| {
        b.replica.log_tail()
    });
    let written = written_bytes(pid) - before;
    eprintln!(
        "a cold fill of {} MiB on S3 wrote {:.1} MiB to the b.replica's disk",
        SIZE / MIB,
        mib(written)
    );
    assert!(
        written >= SIZE,
        "the local tier did not keep the blob: {written} bytes written for {SIZE}"
    );
    assert!(
        written < SIZE + SIZE / 2,
        "{written} bytes written to the b.replica's disk for a cold fill of {SIZE}: more than \
         one copy\n{}",
        b.replica.log_tail()
    );
}

/// A frozen S3 server never holds back a cold pull: the fill serves its client from the
/// local tier's file while the upload to S3 waits behind it. The S3 server is stopped
/// (SIGSTOP) once the response has begun; the client still gets all 128 MiB, verified,
/// within a minute, before the server is let go again. Red when the upload runs in the
/// fill's path (the fill then waits for S3's timeouts and retries, minutes).
#[test]
fn a_frozen_s3_server_never_holds_back_a_cold_pull() {
    const SIZE: u64 = 128 * MIB;
    let b = one_blob("frozen", 11, SIZE);
    // The pull takes about a second; waiting for S3 would take its client's timeouts and
    // retries (minutes). A minute tells the two apart on any machine.
    let http = client(Duration::from_secs(60));
    let s3_pid = b.s3.pid().expect("the S3 server runs").to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &s3_pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {s3_pid}");
    };
    let url = b.url();
    let started = Instant::now();
    let (status, n, got, frozen_at) = b.rt.block_on(async {
        let mut resp = http.get(&url).send().await.expect("GET through the cache");
        let status = resp.status().as_u16();
        signal("-STOP");
        let frozen_at = started.elapsed();
        let mut hasher = Sha256Pipe::new();
        // Bounded: the body ends, fails, or the client's timeout ends it.
        let got = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => tokio::task::block_in_place(|| hasher.update(&chunk)),
                Ok(None) => break Ok(()),
                Err(e) => break Err(format!("{e:?}")),
            }
        };
        let n = hasher.len();
        let got = got.map(|()| tokio::task::block_in_place(|| hasher.finish()));
        (status, n, got, frozen_at)
    });
    let took = started.elapsed();
    signal("-CONT");
    eprintln!(
        "cold pull of {} MiB with the S3 server frozen {frozen_at:?} in: {took:?}",
        SIZE / MIB
    );
    let context = || format!("{}\n{}", b.replica.log_tail(), b.s3.log_tail());
    assert_eq!(status, 200, "{}", context());
    assert_eq!(
        (n, got.as_deref()),
        (SIZE, Ok(b.digest.as_str())),
        "the pull did not complete while S3 was frozen ({took:?})\n{}",
        context()
    );
    // Let go, the upload either completes (then the object is right) or fails (then there
    // is none): never a wrong object.
    wait_for_fills(&b.replica, Duration::from_secs(300), &context);
    let object = b.s3.object_path(BUCKET, &blob_key("frozen", &b.digest));
    if object.is_file() {
        assert_eq!(
            sha256_file(&object),
            b.digest,
            "a wrong object in the bucket"
        );
    }
}

/// Bytes a process caused to be written to storage (`write_bytes` of /proc/PID/io).
fn written_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/io: {e}"));
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no write_bytes in /proc/{pid}/io:\n{io}"))
}

#[test]
fn peak_rss_while_four_clients_pull_a_1gib_blob_cold_stays_bounded() {
    let started = Instant::now();
    let s3 = S3Server::start(&[BUCKET]);
    let auth = AuthRegistry::start(&[]);
    let rt = runtime();
    let runs = [
        cold_pull_by_four(&rt, &s3, &auth, "r3a", 64 * MIB),
        cold_pull_by_four(&rt, &s3, &auth, "r3b", 1024 * MIB),
    ];
    for r in &runs {
        eprintln!(
            "{} MiB blob, 4 cold clients: replica peak RSS (VmHWM) {:.1} MiB (idle {:.1} MiB); \
             generate and push {:?}, pull {:?}, object visible {:?} after the pull; up to {} \
             multipart parts stored before the object became visible",
            r.size / MIB,
            mib(r.peak_rss),
            mib(r.idle_rss),
            r.push,
            r.pull,
            r.commit,
            r.parts_before_visible
        );
    }
    eprintln!("the whole test took {:?}", started.elapsed());
    let big = &runs[1];
    assert!(
        big.peak_rss < 256 * MIB,
        "the replica's peak RSS reached {} MiB while 4 clients pulled a 1 GiB blob cold: memory \
         grows with the blob size",
        big.peak_rss / MIB
    );
}

/// A warm hit without the local tier costs one S3 request: the GET's answer says the size
/// and the part it holds (it was a HEAD and a GET). Counted in the S3 server's own log over
/// 10 whole and 5 ranged warm GETs.
#[test]
fn a_warm_hit_costs_one_s3_request() {
    assert_eq!(s3_requests_for_15_warm_hits("local_tier_bytes = 0\n"), 15);
}

/// With the local tier (on by default with S3), a warm hit costs the bucket nothing: the
/// replica reads its own disk. Red when the tier is bypassed (15 again).
#[test]
fn a_warm_hit_from_the_local_tier_costs_no_s3_request() {
    assert_eq!(s3_requests_for_15_warm_hits(""), 0);
}

/// Pulls a 3 MiB blob cold and once warm through a cache on S3 (`top` heads its
/// configuration), then counts the S3 requests of 10 whole and 5 ranged warm GETs.
fn s3_requests_for_15_warm_hits(top: &str) -> usize {
    let auth = AuthRegistry::start(&[]);
    let rt = runtime();
    let (blob, digest) = support::upload::push_random_blob(&rt, &auth, "team/app", 5, 3 << 20);
    let s3 = S3Server::start(&[BUCKET]);
    let config = format!(
        "{top}{}",
        s3_cache_config(BUCKET, "warm", &auth.registry.url(), 300)
    );
    let env = s3.aws_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cache = Cache::start_with_config(&config, &env);
    let url = format!("{}/v2/team/app/blobs/{digest}", cache.url());
    let client = client(Duration::from_secs(60));
    let get = |range: Option<&'static str>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut req = client.get(&url);
            if let Some(r) = range {
                req = req.header("range", r);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.bytes().await.unwrap().to_vec())
        }
    };
    // Cold, then once warm (the links of the blob are read once and kept; its last
    // access is refreshed at most once a minute).
    rt.block_on(async {
        assert_eq!(get(None).await, (200, blob.clone()));
    });
    wait_for_fills(&cache, Duration::from_secs(20), &|| cache.log_tail());
    rt.block_on(async {
        assert_eq!(get(None).await, (200, blob.clone()));
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = s3.requests();
    rt.block_on(async {
        for _ in 0..10 {
            assert_eq!(get(None).await, (200, blob.clone()));
        }
        for (range, want) in [
            ("bytes=0-0", &blob[..1]),
            ("bytes=100-2000", &blob[100..2001]),
            ("bytes=1048576-", &blob[1_048_576..]),
            ("bytes=-70000", &blob[blob.len() - 70_000..]),
            ("bytes=5-", &blob[5..]),
        ] {
            assert_eq!(get(Some(range)).await, (206, want.to_vec()), "{range}");
        }
    });
    s3.requests() - before
}
