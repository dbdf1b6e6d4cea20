//! Connection and header limits of the accept loop, in process on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use oci_cache_core::{Engine, EngineConfig, UpstreamConfig, Upstreams};
use oci_cache_server::{serve_with_limit, CacheService};
use oci_cache_storage::memory::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(max_connections: usize) -> (std::net::SocketAddr, tempfile::TempDir) {
    let store = Arc::new(MemoryStore::new());
    let spool = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        spool_dir: spool.path().to_owned(),
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(store.clone(), store, config));
    let upstreams = Arc::new(
        Upstreams::new(vec![UpstreamConfig::new("docker.io", "http://127.0.0.1:1")]).unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = CacheService::new(engine, upstreams);
    tokio::spawn(serve_with_limit(
        listener,
        service,
        max_connections,
        std::future::pending(),
    ));
    (addr, spool)
}

async fn get_healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_connection_beyond_the_limit_waits_until_one_closes() {
    let (addr, _spool) = start(1).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert!(get_healthz(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let waited = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "the second connection is not served while the first is open"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let (addr, _spool) = start(8).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let _ = stream.write_all(big.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        n == 0 || answer.starts_with("HTTP/1.1 431"),
        "refused, not served: {answer}"
    );
}
