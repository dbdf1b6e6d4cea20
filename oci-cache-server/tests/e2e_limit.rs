//! End to end: `gc.max_bytes` is a limit, not a target for the next pass. 16 clients pull
//! 40 blobs of 5 MiB (200 MiB) from the real registry through a cache whose limit is
//! 60 MiB and whose timer pass is 5 minutes away; the committed blobs in storage, sampled
//! every 20 ms while they pull, never exceed the limit. Fills that find no room start an
//! eviction pass at once, and those that still do not fit are served without being stored
//! (counted). On the filesystem store and on a real S3 server (s3s-fs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use support::lifecycle::{metric_sample, scrape_metrics};
use support::s3::S3Server;
use support::upload::push_random_blob;
use support::{AuthRegistry, Cache};

const BLOBS: u64 = 40;
const BLOB_SIZE: usize = 5 << 20;
const CLIENTS: usize = 16;
const PER_CLIENT: usize = 10;
const LIMIT: u64 = 60 << 20;
const BUCKET: &str = "limit";

/// The bytes of the files under `dir` (files vanishing meanwhile count as 0).
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Pulls the working set through `cache` while sampling `blobs_dir` (where committed blobs
/// live); returns the largest sample.
fn pull_while_sampling(cache: &Cache, blobs_dir: PathBuf, digests: &[String]) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        std::thread::spawn(move || {
            // Bounded: the pulls below end within their timeouts and then set `stop`.
            for _ in 0..30_000 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                peak.fetch_max(bytes_under(&blobs_dir), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let rt = support::rt::runtime(2);
    let client = support::rt::http_client(Duration::from_secs(120));
    let pulls = (0..CLIENTS).map(|i| {
        let (client, base) = (client.clone(), cache.url());
        let wanted: Vec<String> = (0..PER_CLIENT)
            .map(|k| digests[(i * 5 + k) % digests.len()].clone())
            .collect();
        async move {
            for digest in wanted {
                let url = format!("{base}/v2/team/app/blobs/{digest}");
                let mut resp = client.get(&url).send().await.unwrap();
                assert_eq!(resp.status().as_u16(), 200, "{url}");
                let mut hasher = Sha256::new();
                while let Some(chunk) = resp.chunk().await.unwrap() {
                    hasher.update(&chunk);
                }
                let got = format!("sha256:{}", hex::encode(hasher.finalize()));
                assert_eq!(got, digest, "{url}");
            }
        }
    });
    rt.block_on(futures_util::future::join_all(pulls));
    stop.store(true, Ordering::Release);
    sampler.join().unwrap();
    peak.load(Ordering::Acquire)
}

fn working_set(rt: &tokio::runtime::Runtime, auth: &AuthRegistry) -> Vec<String> {
    (1..=BLOBS)
        .map(|seed| push_random_blob(rt, auth, "team/app", seed, BLOB_SIZE).1)
        .collect()
}

fn config(storage: &str, upstream: &str) -> String {
    format!(
        "{storage}\n[gc]\nmax_bytes = {LIMIT}\n\n[[upstreams]]\nname = \"docker.io\"\nurl = \"{upstream}\"\n"
    )
}

/// Checks the figures after the load: the limit was held by evicting and by serving
/// without storing, and the status figures agree with storage.
fn assert_limit_held(cache: &Cache, peak: u64) {
    let metrics = scrape_metrics(&cache.url());
    let evicted = metric_sample(&metrics, "oci_cache_evicted_blobs_total").unwrap_or(0);
    let over = metric_sample(&metrics, "oci_cache_fills_over_limit_total").unwrap_or(0);
    assert!(
        peak <= LIMIT,
        "the store held {peak} bytes, over the limit of {LIMIT}\n{}",
        cache.log_tail()
    );
    assert!(
        evicted > 0,
        "nothing was evicted: the load did not test the limit\n{metrics}"
    );
    eprintln!("peak {peak} of {LIMIT}; evicted {evicted}; served without storing {over}");
}

#[test]
fn the_filesystem_store_stays_under_max_bytes_while_clients_pull_three_times_as_much() {
    let auth = AuthRegistry::start(&[]);
    let rt = support::rt::runtime(2);
    let digests = working_set(&rt, &auth);
    let (big, big_digest) = push_random_blob(&rt, &auth, "team/app", 99, (LIMIT + 1) as usize);
    let cache = Cache::start_with_config(&config("", &auth.registry.url()), &[]);
    let blobs_dir = cache.data_dir().join("store/blobs");
    let peak = pull_while_sampling(&cache, blobs_dir.clone(), &digests);
    assert_limit_held(&cache, peak);

    // A blob larger than the limit is served whole, not stored, and counted.
    let over = |m: &str| metric_sample(m, "oci_cache_fills_over_limit_total").unwrap_or(0);
    let before = over(&scrape_metrics(&cache.url()));
    let client = support::rt::http_client(Duration::from_secs(120));
    let url = format!("{}/v2/team/app/blobs/{big_digest}", cache.url());
    let body = rt.block_on(async {
        client
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    assert!(
        body[..] == big[..],
        "the blob over the limit was not served whole"
    );
    assert_eq!(over(&scrape_metrics(&cache.url())), before + 1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(bytes_under(&blobs_dir) <= LIMIT);
}

#[test]
fn an_s3_store_stays_under_max_bytes_while_clients_pull_three_times_as_much() {
    let auth = AuthRegistry::start(&[]);
    let rt = support::rt::runtime(2);
    let digests = working_set(&rt, &auth);
    let s3 = S3Server::start(&[BUCKET]);
    let env = s3.aws_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let storage = format!("storage = \"s3://{BUCKET}/cache\"");
    let cache = Cache::start_with_config(&config(&storage, &auth.registry.url()), &env);
    let peak = pull_while_sampling(&cache, s3.object_path(BUCKET, "cache/blobs"), &digests);
    assert_limit_held(&cache, peak);
}
