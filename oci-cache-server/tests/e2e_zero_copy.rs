//! End to end: with `limits.zero_copy` (the default), cached blobs go from the page cache to the socket
//! with `sendfile` on plain HTTP/1.1, whole and as ranges, on keep-alive connections that also carry ordinary
//! responses, and every byte is the blob's. The `oci_cache_zero_copy_bytes_total` counter
//! shows which path a response took. The upstream is the real registry.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::lifecycle::{metric, scrape_metrics};
use support::upload::push_random_blob;
use support::{sha256_bytes, wait_until, AuthRegistry, Cache};

const ZERO_COPY: &str = "oci_cache_zero_copy_bytes_total";
const FILLS_IN_FLIGHT: &str = "oci_cache_fills_in_flight";

fn client() -> reqwest::Client {
    oci_cache_core::install_crypto_provider();
    // One connection, kept alive: every request below shares it.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1)
        .build()
        .unwrap()
}

/// GET `url` (with a `Range`, if given): status, headers and body.
async fn get(
    client: &reqwest::Client,
    url: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = client.get(url);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

/// One upstream, and `[limits] zero_copy`.
fn config(url: &str, zero_copy: bool) -> String {
    format!("[[upstreams]]\nname = \"upstream\"\nurl = \"{url}\"\n\n[limits]\nzero_copy = {zero_copy}\n")
}

#[test]
fn hits_go_out_by_sendfile_by_default_and_through_hyper_when_it_is_off() {
    let auth = AuthRegistry::start(&[]);
    let rt = support::rt::runtime(2);
    let (big, digest) = push_random_blob(&rt, &auth, "test/zc", 9, 1024 * 1024);
    let default = format!(
        "[[upstreams]]\nname = \"upstream\"\nurl = \"{}\"\n",
        auth.registry.url()
    );
    for (config, zero_copy) in [
        (default, true),
        (config(&auth.registry.url(), false), false),
    ] {
        let cache = Cache::start_with_config(&config, &[]);
        let url = format!("{}/v2/test/zc/blobs/{digest}", cache.url());
        let client = client();
        for round in 0..3 {
            let (status, _, body) = rt.block_on(get(&client, &url, None));
            assert!(status == 200 && body == big);
            if round == 0 {
                wait_until(
                    "the fill to finish",
                    Duration::from_secs(10),
                    || (metric(&scrape_metrics(&cache.url()), FILLS_IN_FLIGHT) == 0).then_some(()),
                    || cache.log_tail(),
                );
            }
        }
        let sent = metric(&scrape_metrics(&cache.url()), ZERO_COPY);
        // The first GET filled the cache; the two hits after it went out by sendfile.
        let want = if zero_copy { 2 * big.len() as u64 } else { 0 };
        assert_eq!(sent, want, "zero_copy {zero_copy}:\n{config}");
    }
}

#[test]
fn cached_blobs_and_ranges_go_out_by_sendfile_with_every_byte_right() {
    let auth = AuthRegistry::start(&[]);
    let rt = support::rt::runtime(2);
    let (big, big_digest) = push_random_blob(&rt, &auth, "test/zc", 7, 3 * 1024 * 1024 + 17);
    let (small, small_digest) = push_random_blob(&rt, &auth, "test/zc", 8, 4096);
    let cache = Cache::start_with_config(&config(&auth.registry.url(), true), &[]);
    let blob = |d: &str| format!("{}/v2/test/zc/blobs/{d}", cache.url());
    let zero_copy = || metric(&scrape_metrics(&cache.url()), ZERO_COPY);

    rt.block_on(async {
        let client = client();
        // Cold: through the fill, not zero-copy.
        let (status, _, body) = get(&client, &blob(&big_digest), None).await;
        assert_eq!((status, sha256_bytes(&body)), (200, big_digest.clone()));
        let (status, _, body) = get(&client, &blob(&small_digest), None).await;
        assert_eq!((status, body.as_slice()), (200, small.as_slice()));
    });
    wait_until(
        "the fills to finish",
        Duration::from_secs(10),
        || (metric(&scrape_metrics(&cache.url()), FILLS_IN_FLIGHT) == 0).then_some(()),
        || cache.log_tail(),
    );
    assert_eq!(zero_copy(), 0, "a fill is not a zero-copy hit");

    let ranges = [
        ("bytes=0-0", 0..1),
        ("bytes=100-1999999", 100..2_000_000),
        ("bytes=1048576-", 1_048_576..big.len()),
        ("bytes=-70000", big.len() - 70_000..big.len()),
    ];
    rt.block_on(async {
        let client = client();
        for round in 0..2 {
            // Whole, on the same connection as ordinary responses before and after.
            let (status, headers, body) = get(&client, &blob(&big_digest), None).await;
            assert_eq!(status, 200, "round {round}");
            assert_eq!(headers["content-length"], big.len().to_string().as_str());
            assert_eq!(headers["docker-content-digest"], big_digest.as_str());
            assert!(body == big, "round {round}: the body is not the blob");
            let (status, _, body) = get(&client, &blob(&small_digest), None).await;
            assert_eq!((status, body.as_slice()), (200, small.as_slice()));
            for (range, want) in &ranges {
                let (status, headers, body) = get(&client, &blob(&big_digest), Some(range)).await;
                assert_eq!(status, 206, "{range}");
                let expected = format!("bytes {}-{}/{}", want.start, want.end - 1, big.len());
                assert_eq!(headers["content-range"], expected.as_str(), "{range}");
                assert!(body == big[want.clone()], "{range}: wrong bytes");
            }
            let (status, _, _) = get(&client, &format!("{}/v2/", cache.url()), None).await;
            assert_eq!(status, 200);
        }
        let (status, headers, body) =
            get(&client, &blob(&big_digest), Some("bytes=99999999-")).await;
        assert_eq!(status, 416, "{headers:?}");
        assert!(String::from_utf8_lossy(&body).contains("RANGE_INVALID"));
    });
    // Whole blobs and the ranges of 64 KiB or more went out zero-copy; the 4 KiB blob and
    // the one-byte range through hyper.
    let zero_copy_ranges: usize = ranges
        .iter()
        .map(|(_, r)| r.len())
        .filter(|n| *n >= 64 * 1024)
        .sum();
    assert_eq!(zero_copy(), 2 * (big.len() + zero_copy_ranges) as u64);
    assert_eq!(
        auth.registry.blob_gets(Some(&big_digest)),
        1,
        "every warm GET was a hit"
    );

    // The zero-copy path keeps the rule of every other path: a repository the blob does
    // not belong to (the upstream says so) gets 404, never the stored bytes.
    let sent = zero_copy();
    rt.block_on(async {
        let client = client();
        let other = format!("{}/v2/test/other/blobs/{big_digest}", cache.url());
        for range in [None, Some("bytes=0-99999")] {
            let (status, _, body) = get(&client, &other, range).await;
            assert_eq!(status, 404, "{range:?}");
            assert!(body.len() < 1024, "{range:?}: {} bytes", body.len());
        }
    });
    assert_eq!(zero_copy(), sent, "nothing went out by sendfile");
}

/// The stored file of the blob `hex` under `dir` (searched: the layout is the store's).
fn stored_file(dir: &std::path::Path, hex: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = stored_file(&path, hex) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == hex) {
            return Some(path);
        }
    }
    None
}

#[test]
fn a_cached_blob_out_of_the_page_cache_is_read_off_the_runtime_then_sent_whole() {
    const DISK_READS: &str = "oci_cache_zero_copy_disk_reads_total";
    let auth = AuthRegistry::start(&[]);
    let rt = support::rt::runtime(2);
    let (big, digest) = push_random_blob(&rt, &auth, "test/zc", 11, 3 * 1024 * 1024 + 5);
    let cache = Cache::start_with_config(&config(&auth.registry.url(), true), &[]);
    let url = format!("{}/v2/test/zc/blobs/{digest}", cache.url());
    let client = client();
    let (status, _, body) = rt.block_on(get(&client, &url, None));
    assert_eq!((status, sha256_bytes(&body)), (200, digest.clone()));
    wait_until(
        "the fill to finish",
        Duration::from_secs(10),
        || (metric(&scrape_metrics(&cache.url()), FILLS_IN_FLIGHT) == 0).then_some(()),
        || cache.log_tail(),
    );
    let hex = digest.trim_start_matches("sha256:");
    let path = stored_file(&cache.data_dir(), hex).expect("the stored blob file");
    let file = std::fs::File::open(&path).unwrap();
    for (range, want) in [
        (None, 0..big.len()),
        (Some("bytes=1048576-"), 1_048_576..big.len()),
    ] {
        // Out of the page cache (the file is clean: the commit synced it).
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let mut byte = [0u8; 1];
        let at = want.start as u64;
        assert_eq!(
            oci_cache_storage::page_cache::read_cached(&file, &mut byte, at).unwrap(),
            0,
            "the data dir keeps its files in memory (tmpfs?): this test needs one on a disk"
        );
        let reads = metric(&scrape_metrics(&cache.url()), DISK_READS);
        let sent = metric(&scrape_metrics(&cache.url()), ZERO_COPY);
        let (status, _, body) = rt.block_on(get(&client, &url, range));
        assert_eq!(status, if range.is_some() { 206 } else { 200 });
        assert!(body == big[want.clone()], "{range:?}: wrong bytes");
        assert!(
            metric(&scrape_metrics(&cache.url()), DISK_READS) > reads,
            "{range:?}: nothing was read into the page cache before sendfile"
        );
        assert_eq!(
            metric(&scrape_metrics(&cache.url()), ZERO_COPY) - sent,
            want.len() as u64,
            "{range:?}: not sent by sendfile"
        );
    }
}
