//! The fake upstream does what each fault mode says, seen from a raw client:
//! the tests of the e2e suites trust it to misbehave exactly so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use oci_cache_testkit::{pseudo_random_bytes, sha256_bytes, FakeContent, FakeUpstream, FaultMode};

const REPO: &str = "test/fake";

/// What a raw HTTP/1.1 client saw of one request.
#[derive(Debug)]
struct Seen {
    status: Option<u16>,
    announced: Option<usize>,
    body: Vec<u8>,
    /// How the connection ended: "eof", "reset" or "timeout".
    end: &'static str,
    took: Duration,
}

/// Sends `METHOD path` and reads until the connection ends or `patience` passes
/// without a byte.
fn request(fake: &FakeUpstream, method: &str, path: &str, patience: Duration) -> Seen {
    let started = Instant::now();
    let mut s = TcpStream::connect(fake.addr).unwrap();
    s.set_read_timeout(Some(patience)).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break "eof",
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset",
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break "timeout"
            }
            Err(e) => panic!("read: {e}"),
        }
    };
    let split = got.windows(4).position(|w| w == b"\r\n\r\n");
    let (status, announced, body) = match split {
        None => (None, None, Vec::new()),
        Some(i) => {
            let head = String::from_utf8_lossy(&got[..i]).into_owned();
            let status = head.get(9..12).and_then(|s| s.parse().ok());
            let announced = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            });
            (status, announced, got[i + 4..].to_vec())
        }
    };
    Seen {
        status,
        announced,
        body,
        end,
        took: started.elapsed(),
    }
}

fn blob_fake(mode: FaultMode) -> (FakeUpstream, Vec<u8>, String) {
    let blob = pseudo_random_bytes(7, 256 * 1024);
    let digest = sha256_bytes(&blob);
    (FakeUpstream::serving_blob(REPO, &blob, mode), blob, digest)
}

fn blob_path(digest: &str) -> String {
    format!("/v2/{REPO}/blobs/{digest}")
}

const PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn ok_serves_the_blob_and_404s_what_the_repository_lacks() {
    let (fake, blob, digest) = blob_fake(FaultMode::Ok);
    let seen = request(&fake, "GET", &blob_path(&digest), PATIENCE);
    assert_eq!((seen.status, seen.end), (Some(200), "eof"), "{seen:?}");
    assert!(seen.body == blob, "the right bytes");
    let head = request(&fake, "HEAD", &blob_path(&digest), PATIENCE);
    assert_eq!((head.status, head.announced), (Some(200), Some(blob.len())));
    assert!(head.body.is_empty());
    for path in [
        format!("/v2/other/repo/blobs/{digest}"),
        format!("/v2/{REPO}/manifests/latest"),
        format!("/v2/{REPO}/manifests/{digest}"),
    ] {
        let seen = request(&fake, "GET", &path, PATIENCE);
        assert_eq!(seen.status, Some(404), "{path}: {seen:?}");
        assert!(String::from_utf8_lossy(&seen.body).contains("\"errors\""));
    }
    assert_eq!(request(&fake, "GET", "/v2/", PATIENCE).status, Some(200));
    let stats = fake.stats();
    assert_eq!(stats.connections, 6);
    assert_eq!(stats.requests[0], format!("ok GET {}", blob_path(&digest)));
}

#[test]
fn wrong_digest_sends_the_announced_length_with_other_bytes() {
    let (fake, blob, digest) = blob_fake(FaultMode::WrongDigest);
    let seen = request(&fake, "GET", &blob_path(&digest), PATIENCE);
    assert_eq!((seen.status, seen.end), (Some(200), "eof"), "{seen:?}");
    assert_eq!(seen.body.len(), blob.len());
    assert_ne!(sha256_bytes(&seen.body), digest);
}

#[test]
fn short_and_reset_send_half_then_end_the_connection() {
    for (mode, end) in [(FaultMode::Short, "eof"), (FaultMode::Reset, "reset")] {
        let (fake, blob, digest) = blob_fake(mode);
        let seen = request(&fake, "GET", &blob_path(&digest), PATIENCE);
        assert_eq!(seen.status, Some(200), "{mode:?}");
        assert_eq!(seen.announced, Some(blob.len()), "{mode:?}");
        assert_eq!(seen.body.len(), blob.len() / 2, "{mode:?}");
        assert_eq!(seen.end, end, "{mode:?}: {seen:?}");
        assert!(seen.took < PATIENCE, "{mode:?}: {seen:?}");
    }
}

#[test]
fn stall_sends_half_then_nothing_and_hang_sends_nothing() {
    let patience = Duration::from_secs(2);
    for (mode, status, received) in [
        (FaultMode::Stall, Some(200), 128 * 1024),
        (FaultMode::Hang, None, 0),
    ] {
        let (fake, _, digest) = blob_fake(mode);
        let seen = request(&fake, "GET", &blob_path(&digest), patience);
        assert_eq!(
            (seen.status, seen.body.len(), seen.end),
            (status, received, "timeout"),
            "{mode:?}: {seen:?}"
        );
    }
}

#[test]
fn slow_sends_every_byte_over_three_seconds() {
    let (fake, blob, digest) = blob_fake(FaultMode::Slow);
    let seen = request(&fake, "GET", &blob_path(&digest), PATIENCE);
    assert_eq!((seen.status, seen.end), (Some(200), "eof"), "{seen:?}");
    assert!(seen.body == blob);
    assert!(seen.took >= Duration::from_millis(2800), "{seen:?}");
}

#[test]
fn unavailable_answers_503_to_everything_and_modes_switch() {
    let mut content = FakeContent::default();
    let good = content.blob(REPO, b"good blob");
    let stalled = content.blob(REPO, b"stalled blob");
    let fake = FakeUpstream::start(content);
    fake.set_mode(FaultMode::Unavailable);
    for path in ["/v2/".to_owned(), blob_path(&good)] {
        assert_eq!(
            request(&fake, "GET", &path, PATIENCE).status,
            Some(503),
            "{path}"
        );
    }
    fake.set_mode(FaultMode::Ok);
    fake.set_blob_mode(&stalled, FaultMode::Stall);
    assert_eq!(
        request(&fake, "GET", &blob_path(&good), PATIENCE).body,
        b"good blob"
    );
    let seen = request(&fake, "GET", &blob_path(&stalled), Duration::from_secs(1));
    assert_eq!(
        (seen.body.as_slice(), seen.end),
        (&b"stalle"[..], "timeout")
    );
    assert_eq!(fake.requests(), 4);
    assert_eq!(
        fake.stats().requests.last().map(String::as_str),
        Some(format!("stall GET {}", blob_path(&stalled)).as_str())
    );
}

#[test]
fn the_probe_counts_every_connection_made_before_it() {
    let (fake, _, _) = blob_fake(FaultMode::Hang);
    assert_eq!(fake.connections_before_probe(), 0);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(fake.addr).unwrap())
        .collect();
    assert_eq!(
        fake.connections_before_probe(),
        4,
        "three held and the first probe"
    );
    drop(held);
}
