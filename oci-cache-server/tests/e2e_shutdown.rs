//! End to end: SIGTERM keeps what was fetched. A client reads half of a download from a
//! slow upstream and leaves; the cache is stopped with SIGTERM while the download still
//! runs; it finishes storing the blob before it exits (on S3, the multipart upload, which
//! has sent its first 8 MiB part by then, completes), so after a restart, with the upstream
//! hanging, the blob is a hit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::cache_home::CacheHome;
use support::fetch::fetch;
use support::lifecycle::{metric, scrape_metrics};
use support::s3::S3Server;
use support::{
    pseudo_random_bytes, sha256_bytes, wait_until, Auth, FakeContent, FakeUpstream, FaultMode,
};

const BUCKET: &str = "oci";

fn sigterm_during_a_fill_keeps_the_blob(s3: Option<&S3Server>) {
    // 20 MiB: more than two of the S3 writer's 8 MiB parts.
    let blob = pseudo_random_bytes(77, 20 * 1024 * 1024);
    let digest = sha256_bytes(&blob);
    let fake = FakeUpstream::serving_blob("library/slow", &blob, FaultMode::Slow);
    let storage = if s3.is_some() {
        format!("storage = \"s3://{BUCKET}/shutdown\"\n")
    } else {
        String::new()
    };
    let config = format!(
        "{storage}[[upstreams]]\nname = \"docker.io\"\nurl = \"{}\"\n",
        fake.url()
    );
    let mut home = CacheHome::new(&config);
    if let Some(s3) = s3 {
        home = home.with_env(&s3.aws_env());
    }
    let mut cache = home.start();

    // A client starts the download, reads the head and 10 MiB of the body, and leaves.
    let mut stream = TcpStream::connect(("127.0.0.1", cache.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /v2/library/slow/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", cache.log_tail());
    let mut body = vec![0u8; 10 * 1024 * 1024];
    stream.read_exact(&mut body).unwrap();
    drop(stream);

    // SIGTERM while the upstream still sends (3 s in all).
    cache.stop();
    let log = cache.log();
    assert!(
        log.contains("waiting for running downloads"),
        "the stop did not wait for the running download\n{log}"
    );

    // Restarted, with the upstream hanging: the blob is served from storage.
    fake.set_mode(FaultMode::Hang);
    let connections = fake.stats().connections;
    let cache = home.start();
    let answer = fetch(
        "GET",
        &format!("{}/v2/library/slow/blobs/{digest}", cache.url()),
        Auth::None,
    );
    assert_eq!(
        answer.status,
        200,
        "{}\n{}",
        answer.describe(),
        cache.log_tail()
    );
    assert_eq!(sha256_bytes(&answer.body), digest);
    assert_eq!(
        fake.stats().connections,
        connections,
        "the restarted cache asked the upstream\n{}",
        cache.log_tail()
    );
}

#[test]
fn sigterm_during_a_fill_keeps_the_blob_on_the_filesystem_store() {
    sigterm_during_a_fill_keeps_the_blob(None);
}

#[test]
fn sigterm_during_a_fill_completes_the_upload_on_s3() {
    let s3 = S3Server::start(&[BUCKET]);
    sigterm_during_a_fill_keeps_the_blob(Some(&s3));
}

/// The same with a real client: `skopeo copy` of an image whose 20 MiB layer comes slowly
/// is killed once the layer's download is well under way, and the cache gets SIGTERM;
/// restarted, with
/// the upstream hanging on that layer (skopeo may not have asked for the small config before
/// the stop, so the upstream still serves the rest), a second `skopeo copy` succeeds: the
/// layer is a hit.
#[test]
fn a_skopeo_pull_cut_by_sigterm_is_whole_from_the_cache_after_a_restart() {
    support::require_tool("skopeo");
    let mut content = FakeContent::default();
    let layer = pseudo_random_bytes(78, 20 * 1024 * 1024);
    let layer_digest = content.blob("library/slow", &layer);
    let config = content.blob(
        "library/slow",
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    content.image("library/slow", "v1", &config, &[&layer_digest]);
    let fake = FakeUpstream::start(content);
    fake.set_blob_mode(&layer_digest, FaultMode::Slow);
    let mut home = CacheHome::new(&format!(
        "[[upstreams]]\nname = \"docker.io\"\nurl = \"{}\"\n",
        fake.url()
    ));
    let mut cache = home.start();
    let host = cache.url().trim_start_matches("http://").to_owned();
    let image = format!("docker://{host}/library/slow:v1");
    let out = support::short_tempdir("e2e-shutdown-skopeo-");
    let mut first = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--preserve-digests"])
        .arg(&image)
        .arg(format!("oci:{}:v1", out.path().join("first").display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The layer's fill is running and has brought in more than 4 MiB.
    wait_until(
        "the layer's download to be under way",
        Duration::from_secs(30),
        || {
            let m = scrape_metrics(&cache.url());
            (metric(&m, "oci_cache_fills_in_flight") >= 1
                && metric(&m, "oci_cache_bytes_from_upstream_total") > 4 * 1024 * 1024)
                .then_some(())
        },
        || cache.log_tail(),
    );
    // The client goes first (its node is drained), then the cache gets SIGTERM.
    first.kill().unwrap();
    first.wait().unwrap();
    cache.stop();
    let log = cache.log();
    assert!(
        log.contains("waiting for running downloads"),
        "the stop did not wait for the running download\n{log}"
    );

    fake.set_blob_mode(&layer_digest, FaultMode::Hang);
    let cache = home.start();
    let host = cache.url().trim_start_matches("http://").to_owned();
    let copied = support::skopeo_copy_to_oci_dir(
        &format!("docker://{host}/library/slow:v1"),
        &out.path().join("second"),
        false,
        None,
    )
    .unwrap_or_else(|e| panic!("skopeo copy after the restart: {e}\n{}", cache.log_tail()));
    assert!(copied.starts_with("sha256:"));
    let stored = support::cache_home::stored_blob_path(&home.store_dir(), &layer_digest);
    assert_eq!(
        sha256_bytes(&std::fs::read(&stored).unwrap()),
        layer_digest,
        "the layer is stored whole"
    );
    let log = cache.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&layer_digest) && l.contains("cache=\"hit\"")),
        "the layer was not a hit after the restart\n{log}"
    );
}
