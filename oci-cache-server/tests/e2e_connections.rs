//! End to end: connections cannot be hoarded. The `oci-cache` binary, with 4 request
//! slots and short timeouts, in front of a fake upstream serving one 32 MiB blob
//! (the harness's FakeUpstream). Sockets that send nothing or half a
//! request line, and kept-alive connections gone silent, take no slot and are closed by
//! the server after the header (idle) timeout; `/healthz` and `/readyz` are answered while
//! they are open and while every slot serves a download; a client that stops reading a
//! download is cut after the stalled-write timeout, one that reads slowly is not.
//!
//! Only outcomes are asserted, with generous bounds (4 times a timeout), never speed.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{pseudo_random_bytes, sha256_bytes, Cache};
use support::{FakeUpstream, FaultMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const MIB: usize = 1024 * 1024;
/// The blob: far more than the socket buffers of one connection hold.
const BLOB: usize = 32 * MIB;
const SLOTS: usize = 4;
/// A deadline never passes early; this allows for timer and scheduling granularity.
const MARGIN: Duration = Duration::from_millis(250);
/// Far beyond any expected wait: what has not happened by then never will.
const BOUND: Duration = Duration::from_secs(20);

/// A cache with `SLOTS` slots and the given `[limits]` timeouts, logging why it closes
/// connections, in front of a fake upstream serving the blob; the blob is cached.
struct Setup {
    cache: Cache,
    fake: FakeUpstream,
    digest: String,
    blob_path: String,
}

fn setup(header: u64, idle: u64, stalled: u64) -> Setup {
    let blob = pseudo_random_bytes(1203, BLOB);
    let digest = sha256_bytes(&blob);
    let fake = FakeUpstream::serving_blob("test/conn", &blob, FaultMode::Ok);
    let config = format!(
        "max_connections = {SLOTS}\n\
         [limits]\n\
         max_open_connections = 64\n\
         header_timeout_secs = {header}\n\
         idle_timeout_secs = {idle}\n\
         stalled_write_timeout_secs = {stalled}\n\
         [[upstreams]]\nname = \"upstream\"\nurl = \"{}\"\n",
        fake.url()
    );
    let cache = Cache::start_with_config(&config, &[("RUST_LOG", "info,oci_cache_server=debug")]);
    let blob_path = format!("/v2/test/conn/blobs/{digest}");
    Setup {
        cache,
        fake,
        digest,
        blob_path,
    }
}

impl Setup {
    fn logs(&self) -> String {
        format!("{}\n{}", self.cache.log_tail(), self.fake.log_tail())
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.cache.port))
            .await
            .unwrap()
    }

    /// A connection with a small receive buffer, so an unread response backs up at once.
    async fn connect_small_window(&self) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.cache.port));
        socket.connect(addr).await.unwrap()
    }

    /// Sends `GET path` (keep-alive) and reads the response head; returns the status line
    /// and the body bytes that came with the head.
    async fn request_head(&self, stream: &mut TcpStream, path: &str) -> (String, Vec<u8>) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Bounded: a head is at most a few KiB, and each read waits at most BOUND.
        while got.len() < 64 * 1024 {
            let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no answer to GET {path}\n{}", self.logs()))
                .unwrap();
            assert!(n > 0, "closed before answering GET {path}\n{}", self.logs());
            got.extend_from_slice(&buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&got[..end]).into_owned();
                let status = text.lines().next().unwrap_or_default().to_owned();
                return (status, got.split_off(end + 4));
            }
        }
        panic!("no end of the response head to GET {path}");
    }

    /// `GET path` on a new connection; its status line.
    async fn status(&self, path: &str) -> String {
        let mut stream = self.connect().await;
        self.request_head(&mut stream, path).await.0
    }
}

/// Waits (at most `bound`) until the server closes `stream` (EOF or reset); how long
/// after `since` that was. Never sends anything.
fn watch_close(mut stream: TcpStream, since: Instant, bound: Duration) -> JoinHandle<Duration> {
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout(bound, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "not closed within {bound:?}");
        since.elapsed()
    })
}

#[test]
fn hoarding_sockets_hold_no_slot_block_no_probe_and_are_closed_after_the_timeouts() {
    let (header, idle) = (3, 4);
    let s = setup(header, idle, 60);
    let (header, idle) = (Duration::from_secs(header), Duration::from_secs(idle));
    let rt = support::rt::runtime(2);
    rt.block_on(async {
        // The blob is cached: later downloads are storage hits.
        let mut warm = s.connect().await;
        let (status, early) = s.request_head(&mut warm, &s.blob_path).await;
        assert!(status.contains(" 200 "), "{status}\n{}", s.logs());
        let (_, clean) = drain(&mut warm, BLOB - early.len(), Duration::ZERO).await;
        assert!(clean, "the first download is whole\n{}", s.logs());
        drop(warm);

        // More silent sockets than slots, half-sent request lines, and a kept-alive
        // connection gone silent after one answered probe.
        let mut hoarders = Vec::new();
        for _ in 0..10 {
            let stream = s.connect().await;
            hoarders.push(watch_close(stream, Instant::now(), header * 4));
        }
        for _ in 0..3 {
            let mut stream = s.connect().await;
            let since = Instant::now();
            stream.write_all(b"GET /v2/ HT").await.unwrap();
            hoarders.push(watch_close(stream, since, header * 4));
        }
        let mut kept = s.connect().await;
        let (status, _) = s.request_head(&mut kept, "/healthz").await;
        assert!(status.contains(" 200 "), "{status}");
        let kept = watch_close(kept, Instant::now(), idle * 4);

        // Probes and the API answer while they are all open.
        assert!(s.status("/healthz").await.contains(" 200 "));
        assert!(s.status("/readyz").await.contains(" 200 "));
        assert!(s.status("/v2/").await.contains(" 200 "));
        assert!(
            hoarders.iter().all(|h| !h.is_finished()) && !kept.is_finished(),
            "the hoarding sockets were still open when the probes were answered"
        );

        // Every slot serves a download that its client does not read...
        let mut downloads = Vec::new();
        for _ in 0..SLOTS {
            let mut stream = s.connect_small_window().await;
            let (status, _) = s.request_head(&mut stream, &s.blob_path).await;
            assert!(status.contains(" 200 "), "{status}\n{}", s.logs());
            downloads.push(stream);
        }
        // ... an API request waits for a slot, the probes do not.
        let mut waiting = s.connect().await;
        waiting
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut buf)).await;
        assert!(early.is_err(), "no slot is free: {early:?}");
        assert!(s.status("/healthz").await.contains(" 200 "));
        assert!(s.status("/readyz").await.contains(" 200 "));
        drop(downloads.pop());
        let n = tokio::time::timeout(BOUND, waiting.read(&mut buf))
            .await
            .expect("served once a slot is free")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains(" 200 "));
        drop(downloads);

        // The server closes every hoarder after its timeout, not before.
        for (i, h) in hoarders.into_iter().enumerate() {
            let after = h
                .await
                .unwrap_or_else(|e| panic!("hoarder {i}: {e}\n{}", s.logs()));
            assert!(
                after + MARGIN >= header,
                "hoarder {i} closed after {after:?}"
            );
        }
        let after = kept
            .await
            .unwrap_or_else(|e| panic!("kept-alive: {e}\n{}", s.logs()));
        assert!(after + MARGIN >= idle, "kept-alive closed after {after:?}");
    });
    let log = s.cache.log();
    assert!(
        log.contains("no complete request head within"),
        "{}",
        s.logs()
    );
    assert!(
        log.contains("keep-alive connection idle for"),
        "{}",
        s.logs()
    );
}

/// Reads up to `want` bytes of `stream`, pausing `pause` before each read; returns them,
/// and whether all `want` came (false: EOF, reset or silence for `BOUND`).
async fn drain(stream: &mut TcpStream, want: usize, pause: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::with_capacity(want);
    let mut buf = vec![0u8; 64 * 1024];
    // Bounded: each read takes at least one byte or ends the loop.
    for _ in 0..=want {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let room = buf.len().min(want - got.len());
        match tokio::time::timeout(BOUND, stream.read(&mut buf[..room])).await {
            Ok(Ok(n)) if n > 0 => {
                got.extend_from_slice(&buf[..n]);
                if got.len() >= want {
                    return (got, true);
                }
            }
            _ => return (got, false),
        }
    }
    (got, false)
}

#[test]
fn a_client_that_stops_reading_is_cut_after_the_stall_timeout_a_slow_one_is_not() {
    let stalled = 2;
    let s = setup(10, 10, stalled);
    let stalled = Duration::from_secs(stalled);
    let rt = support::rt::runtime(2);
    rt.block_on(async {
        // The first download fills the cache at the client's pace, the slow reader's.
        // Slow: 64 KiB every 10 ms at most, several stall timeouts in all, never silent
        // for one.
        let mut slow = s.connect_small_window().await;
        let started = Instant::now();
        let (status, early) = s.request_head(&mut slow, &s.blob_path).await;
        assert!(status.contains(" 200 "), "{status}\n{}", s.logs());
        let (rest, clean) = drain(&mut slow, BLOB - early.len(), Duration::from_millis(10)).await;
        let took = started.elapsed();
        assert!(
            clean,
            "the slow reader got {} of {BLOB} bytes\n{}",
            early.len() + rest.len(),
            s.logs()
        );
        let whole = [early, rest].concat();
        let digest = tokio::task::block_in_place(|| sha256_bytes(&whole));
        assert_eq!(digest, s.digest, "the slow reader's bytes");
        eprintln!("the slow reader took {took:?} (stall timeout {stalled:?})");

        // A reader that takes the head and stops.
        let mut stuck = s.connect_small_window().await;
        let (status, early) = s.request_head(&mut stuck, &s.blob_path).await;
        assert!(status.contains(" 200 "), "{status}\n{}", s.logs());
        tokio::time::sleep(stalled * 4).await;
        let (got, clean) = drain(&mut stuck, BLOB - early.len(), Duration::ZERO).await;
        assert!(
            !clean && got.len() + early.len() < BLOB,
            "the stalled reader was not cut: it got all {BLOB} bytes\n{}",
            s.logs()
        );
    });
    let log = s.cache.log();
    assert!(
        log.contains("the client read nothing of the response for"),
        "{}",
        s.logs()
    );
}
