//! End to end: eviction passes while the cache serves. Least recently used images go
//! first, whole, down to the low watermark; `oci-cache gc --dry-run` agrees; a blob being
//! read stays until its read is done. A real registry (CNCF distribution behind a real
//! token server) is the upstream; skopeo and reqwest are the clients.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use support::big_blob::{push_blob_file, random_file};
use support::cache::run_cli;
use support::cache_home::stored_blob_path;
use support::lifecycle::{
    metric, push_multilayer, scrape_metrics, set_mtime, stored_blob_bytes, PausedDownload,
    PushedImage,
};
use support::lifecycle_e2e::*;
use support::{
    fetch, sha256_bytes, short_tempdir, wait_until, Auth, AuthRegistry, Cache, Registry, PUSH_CREDS,
};

// ---------------------------------------------------------------------------
// Eviction: least recently used images go first, whole.
// ---------------------------------------------------------------------------

const IMAGES: usize = 4;
const HIGH: f64 = 0.9;
const LOW: f64 = 0.6;

/// Four images (two random 1 MiB layers each) behind a cache whose `max_bytes` is
/// all of them: the first three, pulled one after another and aged 30, 20 and 10
/// minutes, stay below the high watermark (90 %); the fourth crosses it, and a
/// pass has shrunk the store to the low watermark (60 %).
struct Evicted {
    auth: AuthRegistry,
    images: Vec<PushedImage>,
    sizes: Vec<u64>,
    /// Bytes of all four images.
    all: u64,
    low: u64,
    /// What the pass after the fourth pull freed: the two oldest images.
    expected_freed: u64,
    cache: Cache,
    store: PathBuf,
    out: tempfile::TempDir,
}

impl Evicted {
    fn start() -> Evicted {
        let auth = AuthRegistry::start(&[]);
        let reg = &auth.registry;
        // Four distinct images (two random 1 MiB layers each, other seeds, other names).
        let images: Vec<PushedImage> = (0..IMAGES)
            .map(|i| {
                push_multilayer(
                    reg,
                    Some(PUSH_CREDS),
                    &format!("test/lru{i}"),
                    900 + i as u64,
                    2,
                    1024,
                )
            })
            .collect();
        let distinct: BTreeSet<&String> = images
            .iter()
            .flat_map(|i| i.blobs.iter().map(|(d, _)| d))
            .collect();
        assert_eq!(distinct.len(), IMAGES * 4, "the images must share no blob");
        let sizes: Vec<u64> = images.iter().map(PushedImage::size).collect();
        let all: u64 = sizes.iter().sum();

        // max_bytes = everything: the last pull crosses the high watermark (90 %), the
        // first three pulls do not; shrinking to 60 % takes the two oldest images.
        let max_bytes = all;
        let (high, low) = (watermark(max_bytes, HIGH), watermark(max_bytes, LOW));
        let first_three: u64 = sizes[..3].iter().sum();
        assert!(
            first_three <= high && all > high,
            "precondition: sizes {sizes:?}, high {high}"
        );
        assert!(
            all - sizes[0] > low && all - sizes[0] - sizes[1] <= low,
            "precondition: sizes {sizes:?}, low {low}"
        );
        eprintln!(
            "image sizes {sizes:?}: {all} bytes in all; max_bytes {max_bytes}, high {high}, low {low}"
        );

        let cache = Cache::start_with_config(
            &config(
                "upstream",
                &reg.url(),
                "",
                &format!("max_bytes = {max_bytes}\nhigh_watermark = {HIGH}\nlow_watermark = {LOW}\nmax_age_secs = 0\ninterval_secs = 1"),
            ),
            &[],
        );
        let store = cache.data_dir().join("store");
        let out = short_tempdir("e2e-lru-");
        let w = Evicted {
            expected_freed: sizes[0] + sizes[1],
            auth,
            images,
            sizes,
            all,
            low,
            cache,
            store,
            out,
        };
        let logs = || w.logs();

        // The first three, one after another; each stored whole before the next.
        for img in &w.images[..3] {
            pull_through(&w.cache, img, w.out.path(), "first", &logs);
            let paths = img.paths(&w.store);
            wait_until(
                &format!("every blob of {} stored", img.name),
                Duration::from_secs(30),
                || paths.iter().all(|p| p.is_file()).then_some(()),
                logs,
            );
        }
        // Make the order explicit: image i was last used (3 - i) x 10 minutes ago.
        let now = SystemTime::now();
        for (i, img) in w.images[..3].iter().enumerate() {
            let age = Duration::from_secs(600 * (3 - i as u64));
            for p in img.paths(&w.store) {
                set_mtime(&p, now - age);
            }
        }
        assert_eq!(
            stored_blob_bytes(&w.store),
            first_three,
            "stored after three pulls"
        );
        assert_eq!(
            metric(&w.metrics(), EVICTED_BLOBS),
            0,
            "nothing may go below the high watermark"
        );

        // The fourth pull crosses the high watermark: the next pass shrinks the store.
        let t_last = Instant::now();
        pull_through(&w.cache, &w.images[3], w.out.path(), "first", &logs);
        wait_until(
            "an eviction pass after the fourth pull",
            Duration::from_secs(30),
            || {
                // The gauge is "as of the last pass": a pass may run before the last commit
                // of the pull lands (the config is committed after its bytes are served), so
                // wait for a pass that saw everything.
                let m = w.metrics();
                (metric(&m, EVICTED_BYTES) >= w.expected_freed
                    && metric(&m, FILLS_IN_FLIGHT) == 0
                    && metric(&m, STORED_BYTES) == stored_blob_bytes(&w.store))
                .then_some(())
            },
            || format!("{}\n{}", w.metrics(), logs()),
        );
        eprintln!(
            "eviction done {:?} after the fourth pull began",
            t_last.elapsed()
        );
        w
    }

    fn reg(&self) -> &Registry {
        &self.auth.registry
    }

    fn metrics(&self) -> String {
        scrape_metrics(&self.cache.url())
    }

    fn logs(&self) -> String {
        format!("{}\n{}", self.cache.log_tail(), self.auth.logs())
    }

    /// Panics unless exactly the images `stored(i)` says are stored, whole.
    fn assert_stored(&self, stored: impl Fn(usize) -> bool, when: &str) {
        for (i, img) in self.images.iter().enumerate() {
            let want = stored(i);
            assert_eq!(
                present(&img.paths(&self.store)),
                vec![want; 4],
                "{when}: image {i} ({}, blobs {:?}): expected {}",
                img.name,
                img.blobs,
                if want {
                    "every blob stored"
                } else {
                    "every blob evicted"
                }
            );
        }
    }
}

#[test]
fn eviction_shrinks_to_the_low_watermark_least_recently_used_image_first() {
    let w = Evicted::start();
    let (low, sizes) = (w.low, &w.sizes);
    let m = w.metrics();
    let on_disk = stored_blob_bytes(&w.store);
    eprintln!(
        "after the pass: {on_disk} bytes on disk (low {low}); metrics: evicted {} blobs / {} bytes, stored {}",
        metric(&m, EVICTED_BLOBS),
        metric(&m, EVICTED_BYTES),
        metric(&m, STORED_BYTES)
    );
    assert!(
        on_disk <= low,
        "stored {on_disk} bytes, above the low watermark {low}\n{}",
        w.logs()
    );
    assert_eq!(
        on_disk,
        sizes[2] + sizes[3],
        "exactly the two newest images stay"
    );
    assert_eq!(
        metric(&m, STORED_BYTES),
        on_disk,
        "oci_cache_stored_bytes\n{m}"
    );
    assert_eq!(metric(&m, EVICTED_BYTES), w.expected_freed, "{m}");
    assert_eq!(
        metric(&m, EVICTED_BLOBS),
        8,
        "two images of four blobs each\n{m}"
    );
    w.assert_stored(|i| i >= 2, "after the pass");
}

#[test]
fn gc_dry_run_agrees_with_the_running_cache_and_deletes_nothing() {
    let w = Evicted::start();
    w.assert_stored(|i| i >= 2, "precondition");
    let on_disk = stored_blob_bytes(&w.store);
    let sizes = &w.sizes;
    // `oci-cache gc --dry-run` on the same data dir agrees: nothing left to evict ...
    let (config_path, data_dir) = (w.cache.config_path(), w.cache.data_dir());
    let dry = |extra: &[&str]| {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("gc"),
            OsStr::new("--config"),
            config_path.as_os_str(),
            OsStr::new("--data-dir"),
            data_dir.as_os_str(),
            OsStr::new("--dry-run"),
        ];
        let owned: Vec<std::ffi::OsString> = extra.iter().map(Into::into).collect();
        args.extend(owned.iter().map(std::ffi::OsString::as_os_str));
        run_cli(&args).unwrap_or_else(|e| panic!("oci-cache gc --dry-run: {e}"))
    };
    let text = dry(&[]);
    eprintln!("gc --dry-run:\n{text}");
    assert!(
        text.contains(&format!(
            "8 blobs, {on_disk} bytes stored; would evict 0 blobs, 0 bytes"
        )),
        "gc --dry-run disagrees with the cache:\n{text}"
    );
    assert!(!text.contains("would evict sha256:"), "{text}");
    // ... and with a smaller limit it names the least recently used image left (2), deleting nothing.
    let smaller = w.all / 2;
    assert!(sizes[2] + sizes[3] > watermark(smaller, HIGH) && sizes[3] <= watermark(smaller, LOW));
    let text = dry(&["--max-bytes", &smaller.to_string()]);
    eprintln!("gc --dry-run --max-bytes {smaller}:\n{text}");
    let named: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("would evict sha256:"))
        .map(|hex| format!("sha256:{hex}"))
        .collect();
    let third: BTreeSet<String> = w.images[2].blobs.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(named, third, "gc --dry-run --max-bytes {smaller}:\n{text}");
    assert!(
        text.contains(&format!("would evict 4 blobs, {} bytes", sizes[2])),
        "{text}"
    );
    assert_eq!(
        stored_blob_bytes(&w.store),
        on_disk,
        "a dry run deleted something"
    );
}

#[test]
fn an_image_that_survived_eviction_pulls_again_without_an_upstream_blob_get() {
    let w = Evicted::start();
    w.assert_stored(|i| i >= 2, "precondition");
    let reg = w.reg();
    let logs = || w.logs();
    // The survivor pulls again without one upstream blob GET.
    let before = reg.blob_gets(None);
    pull_through(&w.cache, &w.images[3], w.out.path(), "again", &logs);
    assert_eq!(
        reg.blob_gets(None),
        before,
        "pulling the newest image again reached upstream\n{}",
        reg.request_summary()
    );
}

#[test]
fn evicted_images_are_fetched_again_and_the_next_pass_takes_the_least_recently_used() {
    let w = Evicted::start();
    w.assert_stored(|i| i >= 2, "precondition");
    let (reg, sizes) = (w.reg(), &w.sizes);
    let logs = || w.logs();
    // The evicted images pull again correctly: fetched from upstream once more.
    for img in &w.images[..2] {
        pull_through(&w.cache, img, w.out.path(), "refetch", &logs);
        for layer in img.layers() {
            assert_eq!(
                reg.blob_gets(Some(&layer)),
                2,
                "{} layer {layer}: one GET per fill\n{}",
                img.name,
                reg.request_summary()
            );
        }
    }
    // Back over the high watermark: now images 2 and 3 are the least recently used.
    wait_until(
        "the pass after the refetch",
        Duration::from_secs(30),
        || {
            let m = w.metrics();
            (metric(&m, EVICTED_BYTES) >= w.expected_freed + sizes[2] + sizes[3]
                && metric(&m, FILLS_IN_FLIGHT) == 0)
                .then_some(())
        },
        || format!("{}\n{}", w.metrics(), logs()),
    );
    w.assert_stored(|i| i < 2, "after the refetch");
    assert!(stored_blob_bytes(&w.store) <= w.low);
}

// ---------------------------------------------------------------------------
// Reads during eviction.
// ---------------------------------------------------------------------------

/// A registry holding random blobs of the given sizes (in test/big), pushed from
/// files; their digests in that order.
fn registry_with_big_blobs(sizes: &[u64]) -> (AuthRegistry, Vec<String>) {
    let auth = AuthRegistry::start(&[]);
    let files = short_tempdir("e2e-big-");
    let blobs: Vec<(PathBuf, String)> = sizes
        .iter()
        .enumerate()
        .map(|(i, len)| {
            let path = files.path().join(format!("blob{i}"));
            let digest = random_file(&path, *len);
            (path, digest)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        oci_cache_core::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .expect("reqwest client");
        for (path, digest) in &blobs {
            push_blob_file(
                &client,
                &auth.registry,
                Some(&auth.token),
                "test/big",
                path,
                digest,
            )
            .await;
        }
    });
    let digests = blobs.into_iter().map(|(_, d)| d).collect();
    (auth, digests)
}

/// The `[gc]` keys of the read-during-eviction tests: `max_bytes`, passes every second.
fn gc_every_second(max: u64) -> String {
    format!("max_bytes = {max}\nhigh_watermark = 0.9\nlow_watermark = 0.8\nmax_age_secs = 0\ninterval_secs = 1")
}

/// A cold pull of a blob larger than `max_bytes`, paused halfway while passes run each
/// second: the blob is served without being stored (it can never fit), and the paused
/// client still gets every byte, verified, from the one upstream GET.
#[test]
fn a_cold_pull_paused_while_passes_run_completes_with_the_right_digest() {
    let big_len = 128 * MIB;
    let (auth, digests) = registry_with_big_blobs(&[big_len]);
    let (reg, big) = (&auth.registry, &digests[0]);
    // max_bytes (64 MiB) below the blob: a cold pull, paused halfway, while passes run.
    let cache = Cache::start_with_config(
        &config("upstream", &reg.url(), "", &gc_every_second(64 * MIB)),
        &[],
    );
    let store = cache.data_dir().join("store");
    let url = format!("{}/v2/test/big/blobs/{big}", cache.url());
    let reader = PausedDownload::start(&url, big_len / 2);
    let at = reader.wait_paused(Duration::from_secs(120));
    // The fill goes on without the client; once committed, the blob is over the
    // limit: a pass either evicts it or (were the reader protecting it) reports it.
    let outcome = wait_until(
        "a pass seeing the committed blob",
        Duration::from_secs(120),
        || {
            let m = scrape_metrics(&cache.url());
            if metric(&m, FILLS_IN_FLIGHT) != 0 {
                return None;
            }
            if metric(&m, "oci_cache_fills_over_limit_total") >= 1 {
                // Larger than the limit: served without being stored.
                Some("not stored")
            } else if metric(&m, EVICTED_BYTES) >= big_len {
                Some("evicted")
            } else if metric(&m, STORED_BYTES) >= big_len {
                Some("kept")
            } else {
                None
            }
        },
        || format!("{}\n{}", scrape_metrics(&cache.url()), cache.log_tail()),
    );
    if outcome == "evicted" {
        // The pass that evicted the blob has ended once it logs; with nothing left
        // stored, any later pass has nothing to do while the client waits.
        wait_until(
            "the evicting pass to end",
            Duration::from_secs(60),
            || (evicting_passes_ended(&cache.log()) >= 1).then_some(()),
            || cache.log_tail(),
        );
    } else if outcome == "kept" {
        // Two more passes while the client still waits. A pass that finds only a blob
        // being read leaves no trace (no counter moves, nothing is logged), so only
        // wall-clock time (two 1 s intervals) lets them run: the one bounded sleep here.
        std::thread::sleep(Duration::from_millis(2500));
    }
    let file_there = stored_blob_path(&store, big).is_file();
    eprintln!("cold read paused at {at} bytes; a pass {outcome} the blob; stored file present: {file_there}");
    let (n, digest) = reader
        .finish(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("the paused cold pull failed: {e}\n{}", cache.log_tail()));
    assert_eq!(n, big_len, "the cold pull was cut short");
    assert_eq!(digest, *big, "the cold pull got other bytes");
    let m = scrape_metrics(&cache.url());
    eprintln!(
        "cold pull complete; evicted {} bytes",
        metric(&m, EVICTED_BYTES)
    );
    assert_eq!(reg.blob_gets(Some(big)), 1, "{}", reg.request_summary());
}

#[test]
fn a_pass_spares_the_blob_being_read_and_takes_it_once_the_read_is_done() {
    let (big_len, small_len) = (128 * MIB, 32 * MIB);
    let (auth, digests) = registry_with_big_blobs(&[big_len, small_len]);
    let (reg, big, small) = (&auth.registry, &digests[0], &digests[1]);
    // A stored blob read slowly while a pass must shrink the store: the reader's
    // blob is the least recently used, yet the pass takes the newer one instead.
    let cache = Cache::start_with_config(
        &config("upstream", &reg.url(), "", &gc_every_second(160 * MIB)),
        &[],
    );
    let store = cache.data_dir().join("store");
    let big_file = stored_blob_path(&store, big);
    let small_file = stored_blob_path(&store, small);
    let big_url = format!("{}/v2/test/big/blobs/{big}", cache.url());
    let small_url = format!("{}/v2/test/big/blobs/{small}", cache.url());
    let logs = || format!("{}\n{}", scrape_metrics(&cache.url()), cache.log_tail());
    let a = fetch("GET", &big_url, Auth::None);
    assert_eq!(a.status, 200, "{}", a.describe());
    assert_eq!(sha256_bytes(&a.body), *big);
    drop(a);
    wait_until(
        "the big blob stored",
        Duration::from_secs(60),
        || big_file.is_file().then_some(()),
        logs,
    );
    set_mtime(&big_file, SystemTime::now() - Duration::from_secs(3600));
    let hits = metric(&scrape_metrics(&cache.url()), BLOB_HITS);
    let reader = PausedDownload::start(&big_url, 16 * MIB);
    reader.wait_paused(Duration::from_secs(60));
    assert_eq!(
        metric(&scrape_metrics(&cache.url()), BLOB_HITS),
        hits + 1,
        "the slow read must be a storage hit"
    );
    // 160 MiB stored (over 90 % of 160 MiB): a pass must shrink to 128 MiB.
    let a = fetch("GET", &small_url, Auth::None);
    assert_eq!(a.status, 200, "{}", a.describe());
    assert_eq!(sha256_bytes(&a.body), *small);
    wait_until(
        "a pass evicting while the big blob is read",
        Duration::from_secs(60),
        || (metric(&scrape_metrics(&cache.url()), EVICTED_BLOBS) >= 1).then_some(()),
        logs,
    );
    // That pass counts each blob as it deletes it; look once it has ended. After it
    // the store (the big blob, 128 MiB) is below the high watermark (144 MiB), so no
    // later pass may evict anything while the read goes on.
    wait_until(
        "the evicting pass to end",
        Duration::from_secs(60),
        || (evicting_passes_ended(&cache.log()) >= 1).then_some(()),
        logs,
    );
    let m = scrape_metrics(&cache.url());
    eprintln!(
        "while the big blob was read: big stored {}, small stored {}, evicted {} bytes",
        big_file.is_file(),
        small_file.is_file(),
        metric(&m, EVICTED_BYTES)
    );
    assert!(
        big_file.is_file(),
        "the blob being read was evicted\n{}",
        logs()
    );
    assert!(
        !small_file.is_file(),
        "the pass should have taken the newer blob\n{}",
        logs()
    );
    assert_eq!(metric(&m, EVICTED_BYTES), small_len, "{m}");
    let (n, digest) = reader
        .finish(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("the paused warm pull failed: {e}\n{}", cache.log_tail()));
    assert_eq!(
        (n, digest.as_str()),
        (big_len, big.as_str()),
        "the warm pull"
    );

    // Read done: the next time the store is over, the big blob (least recently used) goes.
    let a = fetch("GET", &small_url, Auth::None);
    assert_eq!(sha256_bytes(&a.body), *small);
    wait_until(
        "the big blob evicted once nobody reads it",
        Duration::from_secs(60),
        // A pass deletes the file, then counts it: wait for both.
        || {
            (!big_file.is_file()
                && metric(&scrape_metrics(&cache.url()), EVICTED_BYTES) >= small_len + big_len)
                .then_some(())
        },
        logs,
    );
    assert!(small_file.is_file(), "the newer blob went too\n{}", logs());
    assert_eq!(
        metric(&scrape_metrics(&cache.url()), EVICTED_BYTES),
        small_len + big_len
    );
}
