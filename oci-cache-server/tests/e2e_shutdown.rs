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
use support::s3::S3Server;
use support::{pseudo_random_bytes, sha256_bytes, Auth, FakeUpstream, FaultMode};

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
