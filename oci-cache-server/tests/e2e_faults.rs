//! End to end: upstream faults. The `oci-cache` binary sits in front of a fake
//! upstream that misbehaves on purpose (the harness's `FakeUpstream`: wrong
//! bytes, short bodies, resets, stalls, hangs), and in front of a real
//! registry while the cache itself is killed mid-fill. A client must never get
//! a complete-looking body that is wrong, and nothing partial may be stored.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::cache_home::{files_under, stored_blob_path, CacheHome};
use support::lifecycle::{metric, scrape_metrics};
use support::{
    fetch, pseudo_random_bytes, sha256_bytes, sha256_file, wait_until, Auth, AuthRegistry, Cache,
    FakeUpstream, FaultMode, Sha256Pipe,
};

const MIB: usize = 1024 * 1024;
const FILLS_FAILED: &str = "oci_cache_fills_failed_total";
const FILLS_IN_FLIGHT: &str = "oci_cache_fills_in_flight";

fn runtime() -> tokio::runtime::Runtime {
    support::rt::runtime(2)
}

fn client() -> reqwest::Client {
    support::rt::http_client(Duration::from_secs(120))
}

/// A cache config with one upstream and extra upstream keys.
fn config(url: &str, extra: &str) -> String {
    format!("[[upstreams]]\nname = \"upstream\"\nurl = \"{url}\"\n{extra}\n")
}

/// What a client saw of one blob GET.
#[derive(Debug)]
struct Seen {
    /// The status, or None when no response head came.
    status: Option<u16>,
    /// The announced Content-Length.
    announced: Option<u64>,
    /// Body bytes received.
    received: u64,
    /// The digest of the bytes received.
    digest: String,
    /// The error that ended the exchange, if any (a cut connection).
    error: Option<String>,
    /// How long until the body ended or broke.
    took: Duration,
}

impl Seen {
    /// A 200 whose whole announced body arrived without an error.
    fn complete_200(&self) -> bool {
        self.status == Some(200)
            && self.error.is_none()
            && self.announced.is_none_or(|n| n == self.received)
    }
}

/// GETs `url`, hashing the body as it streams; never panics on a cut.
async fn get_blob(client: &reqwest::Client, url: &str) -> Seen {
    let started = Instant::now();
    let mut hasher = Sha256Pipe::new();
    let mut outcome = Seen {
        status: None,
        announced: None,
        received: 0,
        digest: String::new(),
        error: None,
        took: Duration::ZERO,
    };
    match client.get(url).send().await {
        Err(e) => outcome.error = Some(format!("{e:?}")),
        Ok(mut resp) => {
            outcome.status = Some(resp.status().as_u16());
            outcome.announced = resp.content_length();
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        outcome.received += chunk.len() as u64;
                        tokio::task::block_in_place(|| hasher.update(&chunk));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        outcome.error = Some(format!("{e:?}"));
                        break;
                    }
                }
            }
        }
    }
    outcome.took = started.elapsed();
    outcome.digest = tokio::task::block_in_place(|| hasher.finish());
    outcome
}

/// The fake in `mode` serves a 4 MiB blob through the cache: the client's GET
/// breaks (or errs), nothing is stored; then in `ok` mode the next GET gets
/// the right bytes and the blob is stored.
fn cut_then_recover(mode: FaultMode, seed: u64, extra: &str) {
    let size = 4 * MIB;
    let blob = pseudo_random_bytes(seed, size);
    let digest = sha256_bytes(&blob);
    let fake = FakeUpstream::serving_blob("test/faulty", &blob, mode);
    let cache = Cache::start_with_config(&config(&fake.url(), extra), &[]);
    let store = cache.data_dir().join("store");
    let path = format!("/v2/test/faulty/blobs/{digest}");
    let url = format!("{}{path}", cache.url());
    let logs = || format!("{}\n{}", cache.log_tail(), fake.log_tail());
    let rt = runtime();

    let outcome = rt.block_on(async { get_blob(&client(), &url).await });
    eprintln!("{mode:?}: the client saw {outcome:?}");
    assert!(
        !outcome.complete_200(),
        "{mode:?}: the client got a complete-looking 200 ({outcome:?})\n{}",
        logs()
    );
    assert!(
        outcome.status != Some(200) || outcome.error.is_some(),
        "{mode:?}: a 200 must end in a cut connection ({outcome:?})"
    );
    assert!(
        outcome.status != Some(200) || outcome.received < size as u64 || outcome.digest != digest,
        "{mode:?}: a cut 200 delivered the whole right blob ({outcome:?})"
    );
    let stats = fake.stats();
    assert!(
        stats
            .requests
            .contains(&format!("{} GET {path}", mode.as_str())),
        "{mode:?}: the fake never saw the GET: {stats:?}"
    );
    // Nothing was stored: looked at once the fill has ended as failed (a fill
    // counts its failure after its storage writer is gone), not after a guess.
    wait_until(
        "the fill to end as failed",
        Duration::from_secs(20),
        || {
            let m = scrape_metrics(&cache.url());
            (metric(&m, FILLS_FAILED) >= 1 && metric(&m, FILLS_IN_FLIGHT) == 0).then_some(())
        },
        || format!("{}\n{}", scrape_metrics(&cache.url()), logs()),
    );
    let blob_file = stored_blob_path(&store, &digest);
    assert!(
        !blob_file.exists(),
        "{mode:?}: {} was stored after a failed fill\n{}",
        blob_file.display(),
        logs()
    );
    eprintln!(
        "{mode:?}: store/tmp after the failed fill: {:?}",
        files_under(&store.join("tmp"))
    );

    // The upstream behaves again: the next GET refetches and gets it right.
    fake.set_mode(FaultMode::Ok);
    let outcome = rt.block_on(async { get_blob(&client(), &url).await });
    assert_eq!(
        outcome.status,
        Some(200),
        "{mode:?} then ok: {outcome:?}\n{}",
        logs()
    );
    assert!(
        outcome.error.is_none(),
        "{mode:?} then ok: {outcome:?}\n{}",
        logs()
    );
    assert_eq!(
        outcome.received, size as u64,
        "{mode:?} then ok: {outcome:?}"
    );
    assert_eq!(outcome.digest, digest, "{mode:?} then ok: wrong bytes");
    let stats = fake.stats();
    assert!(
        stats.requests.contains(&format!("ok GET {path}")),
        "{mode:?}: the recovery did not refetch: {stats:?}"
    );
    wait_until(
        "the blob stored after the good fill",
        Duration::from_secs(20),
        || blob_file.is_file().then_some(()),
        logs,
    );
    assert_eq!(
        sha256_file(&blob_file),
        digest,
        "the stored blob is corrupt"
    );
}

#[test]
fn a_blob_with_the_wrong_digest_is_cut_and_not_stored() {
    cut_then_recover(FaultMode::WrongDigest, 101, "");
}

#[test]
fn a_short_blob_body_is_cut_and_not_stored() {
    cut_then_recover(FaultMode::Short, 102, "");
}

#[test]
fn a_reset_blob_body_is_cut_and_not_stored() {
    cut_then_recover(FaultMode::Reset, 103, "");
}

#[test]
fn a_stalled_blob_body_is_cut_and_not_stored() {
    cut_then_recover(FaultMode::Stall, 104, "read_timeout_secs = 2");
}

#[test]
fn an_open_breaker_fails_misses_fast_against_a_hanging_upstream() {
    let blob = pseudo_random_bytes(105, 64 * 1024);
    let digest = sha256_bytes(&blob);
    let fake = FakeUpstream::serving_blob("test/hung", &blob, FaultMode::Hang);
    let cache = Cache::start_with_config(
        &config(
            &fake.url(),
            "first_byte_timeout_secs = 1\nbreaker_threshold = 2\nbreaker_cooldown_secs = 120",
        ),
        &[],
    );
    let blob_url = format!("{}/v2/test/hung/blobs/{digest}", cache.url());
    let logs = || format!("{}\n{}", cache.log_tail(), fake.log_tail());

    // Two misses wait for the first-byte timeout and fail (503 or 504).
    for i in 0..2 {
        let started = Instant::now();
        let a = fetch("GET", &blob_url, Auth::None);
        let took = started.elapsed();
        eprintln!(
            "hanging upstream, miss {i}: {} {:?} in {} ms",
            a.status,
            a.error_code(),
            took.as_millis()
        );
        assert!(
            matches!(a.status, 503 | 504),
            "miss {i}: {}\n{}",
            a.describe(),
            logs()
        );
        assert_eq!(a.error_code().as_deref(), Some("UNAVAILABLE"), "miss {i}");
    }
    let dialled = wait_until(
        "the fake to count both connections",
        Duration::from_secs(5),
        || {
            let n = fake.stats().connections;
            (n >= 2).then_some(n)
        },
        logs,
    );
    assert_eq!(dialled, 2, "each miss should dial once: {:?}", fake.stats());

    // The breaker is open: misses (blob and manifest) answer 503 at once, with no dial.
    let misses = [
        blob_url.clone(),
        format!("{}/v2/test/hung/manifests/latest", cache.url()),
    ];
    for url in &misses {
        let started = Instant::now();
        let a = fetch("GET", url, Auth::None);
        let took = started.elapsed();
        eprintln!(
            "open breaker: GET {url}: {} {:?} in {} ms",
            a.status,
            a.error_code(),
            took.as_millis()
        );
        assert_eq!(a.status, 503, "{url}: {}\n{}", a.describe(), logs());
        assert_eq!(a.error_code().as_deref(), Some("UNAVAILABLE"), "{url}");
        assert!(
            took < Duration::from_secs(1),
            "{url}: with the breaker open the miss took {took:?} (bound 1 s)"
        );
    }
    // Every dial the cache made is counted once the fake has accepted a
    // connection opened after the misses were answered.
    let dialled = fake.connections_before_probe();
    assert_eq!(
        dialled,
        2,
        "the open breaker let a request through: {:?}\n{}",
        fake.stats(),
        logs()
    );
}

#[test]
fn kill_9_during_a_large_fill_leaves_nothing_partial() {
    let auth = AuthRegistry::start(&[]);
    let rt = runtime();
    let size = 256 * MIB;
    let name = "test/crash";
    let (_, digest) = support::upload::push_random_blob(&rt, &auth, name, 256, size);
    let reg = &auth.registry;
    let mut home = CacheHome::new(&config(&reg.url(), ""));
    let store = home.store_dir();
    let blob_file = stored_blob_path(&store, &digest);
    let mut run = home.start();
    let url = format!("{}/v2/{name}/blobs/{digest}", run.url());

    // Read about 50 MiB, then SIGKILL the cache while the fill runs.
    let (resp, read_before_kill) = rt.block_on(async {
        let mut resp = client()
            .get(&url)
            .send()
            .await
            .expect("GET through the cache");
        assert_eq!(resp.status().as_u16(), 200, "{}", run.log_tail());
        let mut read = 0usize;
        while read < 50 * MIB {
            match resp.chunk().await.expect("body chunk before the kill") {
                Some(c) => read += c.len(),
                None => panic!("the body ended after {read} bytes"),
            }
        }
        (resp, read)
    });
    let started_kill = Instant::now();
    run.kill_9();
    let blob_in_store_at_kill = blob_file.exists();
    eprintln!(
        "killed the cache after the client read {} MiB ({:?} to kill)",
        read_before_kill / MIB,
        started_kill.elapsed()
    );
    // The client's body breaks: it never sees a complete one.
    let after_kill = rt.block_on(async {
        let mut resp = resp;
        let mut more = 0usize;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => more += c.len(),
                Ok(None) => break Ok(more),
                Err(e) => break Err((more, format!("{e:?}"))),
            }
        }
    });
    eprintln!("after the kill the client's body went on with: {after_kill:?}");
    assert!(
        after_kill.is_err(),
        "the body ended cleanly after the cache was killed: {after_kill:?}"
    );
    let upstream = reg.blob_get_records(Some(&digest));
    eprintln!(
        "upstream blob GETs so far: {:?}",
        upstream
            .iter()
            .map(|r| (r.status, r.written))
            .collect::<Vec<_>>()
    );

    // Nothing for that digest under blobs/; a leftover may sit in tmp/.
    assert!(
        !blob_in_store_at_kill && !blob_file.exists(),
        "{} exists after SIGKILL mid-fill (upstream had sent {:?} bytes of {size})",
        blob_file.display(),
        upstream.iter().map(|r| r.written).collect::<Vec<_>>()
    );
    let hex = digest.trim_start_matches("sha256:");
    let under_blobs = files_under(&store.join("blobs"));
    assert!(
        under_blobs
            .iter()
            .all(|(p, _)| !p.to_string_lossy().contains(hex)),
        "a file for {digest} under blobs/: {under_blobs:?}"
    );
    let leftovers = files_under(&store.join("tmp"));
    eprintln!("store/tmp after SIGKILL: {leftovers:?}");
    eprintln!(
        "spool after SIGKILL: {:?}",
        files_under(&home.data_dir().join("spool"))
    );

    // Restart on the same data: tmp/ is swept, verify is clean, a full GET works.
    let mut run = home.start();
    let tmp_after = files_under(&store.join("tmp"));
    assert!(
        tmp_after.is_empty(),
        "store/tmp not swept at start: {tmp_after:?}\n{}",
        run.log_tail()
    );
    let v = home.verify(&[]);
    eprintln!("verify after restart: {v:?}");
    assert_eq!(v.code, Some(0), "verify after restart: {v:?}");
    assert!(v.stdout.contains(": 0 corrupt"), "{v:?}");

    let url = format!("{}/v2/{name}/blobs/{digest}", run.url());
    let (status, n, got) = rt.block_on(async {
        let outcome = get_blob(&client(), &url).await;
        assert!(outcome.error.is_none(), "{outcome:?}\n{}", run.log_tail());
        (outcome.status, outcome.received, outcome.digest)
    });
    assert_eq!(status, Some(200), "{}", run.log_tail());
    assert_eq!(n, size as u64, "{}", run.log_tail());
    assert_eq!(got, digest, "the full GET after the restart was corrupt");
    wait_until(
        "the blob stored after the restart",
        Duration::from_secs(60),
        || blob_file.is_file().then_some(()),
        || run.log_tail(),
    );
    run.stop();
    let v = home.verify(&[]);
    eprintln!("verify after the full GET: {v:?}");
    assert_eq!(v.code, Some(0), "verify after the full GET: {v:?}");
    assert!(v.stdout.contains(": 0 corrupt, 0 removed"), "{v:?}");
    assert!(
        !v.stdout.contains("checked 0 blobs"),
        "verify checked nothing: {v:?}"
    );
    assert_eq!(sha256_file(&blob_file), digest);
}
