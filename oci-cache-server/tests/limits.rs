//! Connection and header limits of the accept loop, in process on 127.0.0.1: slots are
//! taken by requests being served (not by idle connections, not by health probes), and at
//! the open-connection cap the longest unserved connection makes room for a new one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod in_process;

use in_process::InProcess;
use std::sync::Arc;
use std::time::Duration;

use oci_cache_core::{Digest, UpstreamConfig, Upstreams};
use oci_cache_server::{serve_with, CacheService, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Far beyond any expected wait: what has not happened by then never will.
const BOUND: Duration = Duration::from_secs(10);

struct Server {
    addr: std::net::SocketAddr,
    cache: InProcess,
}

async fn start(options: ServeOptions) -> Server {
    let cache = InProcess::new();
    let upstreams = Arc::new(
        Upstreams::new(vec![UpstreamConfig::new("docker.io", "http://127.0.0.1:1")]).unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = CacheService::new(cache.engine.clone(), upstreams);
    tokio::spawn(serve_with(
        listener,
        service,
        options,
        std::future::pending(),
    ));
    Server { addr, cache }
}

/// `max_connections` slots, and room for far more open connections than the tests open
/// (none is closed to make room).
fn limit(max_connections: usize) -> ServeOptions {
    ServeOptions {
        max_connections,
        max_open_connections: Some(64),
        ..ServeOptions::default()
    }
}

/// Stores `len` bytes as a blob of docker.io's `library/big`, as a pull through it would;
/// returns its digest.
async fn store_blob(server: &Server, len: usize) -> Digest {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    server
        .cache
        .seed(&bytes, &[("docker.io", "library/big")])
        .await
}

async fn send(stream: &mut TcpStream, path: &str) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
}

/// The first bytes of the answer, or None when none came within `wait`.
async fn answer(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(wait, stream.read(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    send(&mut stream, path).await;
    answer(&mut stream, BOUND).await.expect("an answer")
}

#[tokio::test]
async fn idle_connections_hold_no_slot_and_probes_pass_a_full_house() {
    let server = start(limit(1)).await;
    let digest = store_blob(&server, 32 * 1024 * 1024).await;
    let idle = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /v2/ HT").await.unwrap();
    // A served request on a kept-alive connection, now idle: it holds no slot either.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    send(&mut kept, "/v2/").await;
    assert!(answer(&mut kept, BOUND)
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert!(get(server.addr, "/v2/").await.starts_with("HTTP/1.1 200"));

    // A download the client does not read holds the only slot...
    let mut download = TcpStream::connect(server.addr).await.unwrap();
    send(&mut download, &format!("/v2/library/big/blobs/{digest}")).await;
    let head = answer(&mut download, BOUND).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // ... so another API request waits for it,
    let mut waiting = TcpStream::connect(server.addr).await.unwrap();
    send(&mut waiting, "/v2/").await;
    assert!(
        answer(&mut waiting, Duration::from_millis(500))
            .await
            .is_none(),
        "no slot is free while the download is served"
    );
    // ... while the probes are answered.
    assert!(get(server.addr, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(get(server.addr, "/readyz")
        .await
        .starts_with("HTTP/1.1 200"));
    drop(download);
    let late = answer(&mut waiting, BOUND)
        .await
        .expect("served once the slot is free");
    assert!(late.starts_with("HTTP/1.1 200"), "{late}");
    // Its wait for the slot counts in its duration: of the three `/v2/` requests, only
    // the one that waited took longer than 0.25 s.
    let metrics = get_to_end(server.addr, "/metrics").await;
    let sample = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert_eq!(
        sample(r#"oci_cache_http_request_duration_seconds_count{route="version"}"#),
        3
    );
    assert_eq!(
        sample(r#"oci_cache_http_request_duration_seconds_bucket{le="0.25",route="version"}"#),
        2
    );
    drop((idle, half));
}

/// The whole answer to a GET of `path` on a connection the server closes after it.
async fn get_to_end(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut buf))
        .await
        .expect("the whole answer in time")
        .unwrap();
    String::from_utf8(buf).unwrap()
}

#[tokio::test]
async fn at_the_open_cap_the_longest_unserved_connection_makes_room() {
    let server = start(ServeOptions {
        max_connections: 1,
        max_open_connections: Some(3),
        header_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    })
    .await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Let the accept loop take all three.
    assert!(get(server.addr, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(BOUND, first.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the oldest idle connection is closed long before its header timeout: {closed:?}"
    );
    assert!(get(server.addr, "/v2/").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let server = start(limit(8)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let _ = stream.write_all(big.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        n == 0 || answer.starts_with("HTTP/1.1 431"),
        "refused, not served: {answer}"
    );
}
