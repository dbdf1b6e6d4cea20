//! End to end: three `oci-cache` replicas on one bucket of a real S3 server (s3s-fs) act as
//! one cache. Each blob has one owner replica; the others forward their misses to it and
//! stream its answer, so any number of cold clients spread over the replicas cause one
//! upstream GET per blob (the real registry counts them). When the owner dies mid-fill,
//! the other replicas finish their clients' downloads from fills of their own. A client
//! cannot pose as a peer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use oci_cache_testkit::fleet::{write_fleet_config, FleetConfig};
use oci_cache_testkit::{CacheOptions, OciCache};
use sha2::{Digest as _, Sha256};
use support::cache::oci_cache_bin;
use support::s3::S3Server;
use support::upload::push_random_blob;
use support::{pseudo_random_bytes, sha256_bytes, AuthRegistry, FakeUpstream, FaultMode};

const BUCKET: &str = "oci";

/// `n` replicas on `s3://oci/fleet`, each told every replica's URL, with `upstream` as
/// `docker.io`. Returns the replicas (in the order of their URLs) and their directory.
fn fleet(s3: &S3Server, upstream: &str, n: usize) -> (Vec<OciCache>, tempfile::TempDir) {
    fleet_with(s3, upstream, n, "")
}

/// [`fleet`] with `extra` added to the top of the configuration file.
fn fleet_with(
    s3: &S3Server,
    upstream: &str,
    n: usize,
    extra: &str,
) -> (Vec<OciCache>, tempfile::TempDir) {
    let dir = support::short_tempdir("e2e-fleet-");
    let FleetConfig { ports, config } =
        write_fleet_config(dir.path(), n, BUCKET, upstream, extra).unwrap();
    let env = s3.aws_env();
    let replicas = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let options = CacheOptions {
                config: Some(config.clone()),
                env: env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                port: Some(*port),
                ..CacheOptions::for_tests()
            };
            let data = dir.path().join(format!("replica{i}"));
            OciCache::start(
                oci_cache_bin(),
                &data,
                dir.path(),
                &format!("replica{i}"),
                &options,
            )
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    (replicas, dir)
}

/// The owner of `digest` among `urls`: the highest rendezvous score
/// `sha256(URL "\n" digest)` (as doc/SEMANTICS.md, "Replicas", defines it).
fn owner(urls: &[String], digest: &str) -> usize {
    let score = |url: &String| {
        let mut h = Sha256::new();
        h.update(url.as_bytes());
        h.update(b"\n");
        h.update(digest.as_bytes());
        h.finalize()
    };
    (0..urls.len()).max_by_key(|i| score(&urls[*i])).unwrap()
}

/// GETs `url` and checks the body hashes to `digest`.
async fn verified_get(client: &reqwest::Client, url: &str, digest: &str) -> Result<u64, String> {
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("{url}: {}", resp.status()));
    }
    let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    let got = sha256_bytes(&body);
    if got != digest {
        return Err(format!("{url}: {} bytes hashing to {got}", body.len()));
    }
    Ok(body.len() as u64)
}

fn logs(replicas: &[OciCache]) -> String {
    replicas
        .iter()
        .enumerate()
        .map(|(i, r)| format!("----- replica {i} -----\n{}", r.log_tail()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sixty_cold_clients_over_three_replicas_cause_one_upstream_get_per_blob() {
    let auth = AuthRegistry::start(&[]);
    let rt = support::rt::runtime(4);
    let blobs: Vec<(Vec<u8>, String)> = [(1u64, 8usize << 20), (2, 24 << 20), (3, 4096)]
        .iter()
        .map(|(seed, len)| push_random_blob(&rt, &auth, "team/app", *seed, *len))
        .collect();
    let s3 = S3Server::start(&[BUCKET]);
    let (replicas, _dir) = fleet(&s3, &auth.registry.url(), 3);
    let urls: Vec<String> = replicas.iter().map(|r| r.url()).collect();

    let client = support::rt::http_client(Duration::from_secs(120));
    let results = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..60 {
            let (_, digest) = &blobs[i % blobs.len()];
            let url = format!("{}/v2/team/app/blobs/{digest}", urls[(i / 3) % 3]);
            let (client, digest) = (client.clone(), digest.clone());
            tasks.spawn(async move { verified_get(&client, &url, &digest).await });
        }
        let mut results = Vec::new();
        while let Some(r) = tasks.join_next().await {
            results.push(r.unwrap());
        }
        results
    });
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", logs(&replicas));

    auth.registry.settle();
    for (_, digest) in &blobs {
        assert_eq!(
            auth.registry.blob_gets(Some(digest)),
            1,
            "upstream GETs of {digest} (owner replica {})\n{}\n{}",
            owner(&urls, digest),
            auth.registry.request_summary(),
            logs(&replicas)
        );
    }
    // The other replicas streamed the owners' answers (about 40 of the 60 requests reach a
    // replica that does not own their blob; those that come after the owner stored it are
    // hits from the bucket instead).
    let peer_answers: usize = replicas
        .iter()
        .map(|r| r.log().matches("cache=\"peer\"").count())
        .sum();
    assert!(
        peer_answers >= 10,
        "{peer_answers} forwarded answers\n{}",
        logs(&replicas)
    );

    // A client cannot pose as a peer: a made-up token and one signed with another secret
    // are refused, whatever they claim.
    let (_, digest) = &blobs[0];
    let path = format!("/v2/team/app/blobs/{digest}");
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for token in [
        format!("v1 {when} docker.io - {}", "00".repeat(32)),
        "v1 0 docker.io - zz".to_owned(),
        "anything".to_owned(),
    ] {
        let answer = support::fetch::fetch_with(
            "GET",
            &format!("{}{path}", urls[0]),
            support::Auth::None,
            &[("x-oci-cache-peer", token.as_str())],
        );
        assert_eq!(answer.status, 401, "{token}: {}", answer.describe());
        assert!(answer.body.len() < 1024, "{token}: blob bytes in a refusal");
    }
}

/// The owner is killed (SIGKILL) while its one fill is half way (the upstream is slow):
/// every client of the two other replicas still gets the whole blob, verified, from the
/// byte where the owner's stream broke off, filled by its own replica.
#[test]
fn the_owner_killed_mid_fill_every_other_client_gets_the_whole_blob() {
    let blob = pseudo_random_bytes(91, 16 * 1024 * 1024);
    let digest = sha256_bytes(&blob);
    let fake = FakeUpstream::serving_blob("team/app", &blob, FaultMode::Slow);
    let s3 = S3Server::start(&[BUCKET]);
    let (mut replicas, _dir) = fleet(&s3, &fake.url(), 3);
    let urls: Vec<String> = replicas.iter().map(|r| r.url()).collect();
    let owner = owner(&urls, &digest);
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();

    let rt = support::rt::runtime(4);
    let client = support::rt::http_client(Duration::from_secs(120));
    let clients = rt.block_on(async {
        let mut tasks = Vec::new();
        for k in 0..8 {
            let url = format!("{}/v2/team/app/blobs/{digest}", urls[others[k % 2]]);
            let (client, digest) = (client.clone(), digest.clone());
            tasks.push(tokio::spawn(async move {
                verified_get(&client, &url, &digest).await
            }));
        }
        tasks
    });
    // The owner's fill runs (the slow upstream sends over 3 s); kill the owner half way.
    support::wait_until(
        "the owner's fill to start",
        Duration::from_secs(20),
        || (fake.requests() > 0).then_some(()),
        || logs(&replicas),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(fake.requests(), 1, "one fill for the fleet before the kill");
    replicas[owner].kill_9();

    let results: Vec<Result<u64, String>> = rt
        .block_on(async { futures_util::future::join_all(clients).await })
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", logs(&replicas));
    let resumed: usize = others
        .iter()
        .map(|i| {
            replicas[*i]
                .log()
                .matches("owner replica broke off")
                .count()
        })
        .sum();
    assert!(resumed >= 1, "no client was resumed\n{}", logs(&replicas));
}

/// Eviction never cuts a read anywhere in the fleet: the owner replica evicts everything
/// idle (`max_age_secs = 1`, a pass every second, `min_idle_secs = 8`) while the other replica
/// streams the 24 MiB blob from the bucket (no local tier) to a client that takes about
/// 25 s. The reading replica refreshes the blob's last access in the bucket while it reads,
/// so the owner leaves the blob in the bucket for the whole read, and removes it once the
/// read has been over for `min_idle_secs`.
#[test]
fn eviction_elsewhere_never_cuts_a_stream() {
    use std::io::{Read, Write};
    let auth = AuthRegistry::start(&[]);
    let rt = support::rt::runtime(2);
    let (blob, digest) = push_random_blob(&rt, &auth, "team/app", 11, 24 << 20);
    let s3 = S3Server::start(&[BUCKET]);
    let (replicas, _dir) = fleet_with(
        &s3,
        &auth.registry.url(),
        2,
        "local_tier_bytes = 0\n[gc]\nmax_age_secs = 1\ninterval_secs = 1\nmin_idle_secs = 8\n",
    );
    let urls: Vec<String> = replicas.iter().map(|r| r.url()).collect();
    let reader = 1 - owner(&urls, &digest);
    let in_bucket = || {
        s3.object_path(BUCKET, &format!("fleet/blobs/sha256/{}", &digest[7..]))
            .exists()
    };
    let client = support::rt::http_client(Duration::from_secs(60));
    let url = format!("{}/v2/team/app/blobs/{digest}", urls[reader]);
    rt.block_on(verified_get(&client, &url, &digest)).unwrap();
    support::wait_until(
        "the blob to be stored",
        Duration::from_secs(20),
        || in_bucket().then_some(()),
        || logs(&replicas),
    );

    // A client that reads the blob slowly from the replica that does not own it.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", replicas[reader].port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /v2/team/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let started = std::time::Instant::now();
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        assert!(
            in_bucket(),
            "the blob left the bucket {:?} into the read, at byte {}\n{}",
            started.elapsed(),
            got.len(),
            logs(&replicas)
        );
        std::thread::sleep(Duration::from_millis(60));
    }
    let read_for = started.elapsed();
    assert!(
        read_for > Duration::from_secs(12),
        "the read took {read_for:?}: not longer than min_idle_secs, so it proves nothing"
    );
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = &got[head_end..];
    assert_eq!(body.len(), blob.len(), "{head}\n{}", logs(&replicas));
    assert_eq!(sha256_bytes(body), digest);
    // The owner was evicting all along: once the read is over and the blob idle, it goes.
    support::wait_until(
        "the owner to evict the idle blob",
        Duration::from_secs(40),
        || (!in_bucket()).then_some(()),
        || logs(&replicas),
    );
    assert!(
        replicas[reader].log().contains("cache=\"hit\""),
        "the slow read was a hit from the bucket\n{}",
        logs(&replicas)
    );
}
