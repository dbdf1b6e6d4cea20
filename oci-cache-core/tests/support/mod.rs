//! A fake upstream that misbehaves on purpose: a raw TCP server whose every response is
//! written by the test, so it can cut bodies short, reset connections, lie about digests
//! or stall. Real registries cannot be made to do these on demand.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod faulty;

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oci_cache_core::{Engine, EngineConfig, UpstreamClient, UpstreamConfig};
use oci_cache_storage::memory::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the handler sees of a request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub head: String,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

type Handler =
    Arc<dyn Fn(Req, TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The fake upstream; counts and records requests.
pub struct Fake {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Req>>>,
    pub count: Arc<AtomicUsize>,
}

impl Fake {
    pub async fn start<F, Fut>(handler: F) -> Fake
    where
        F: Fn(Req, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |r, s| Box::pin(handler(r, s)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (reqs, cnt) = (requests.clone(), count.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (handler, reqs, cnt) = (handler.clone(), reqs.clone(), cnt.clone());
                tokio::spawn(async move {
                    let Some(req) = read_head(&mut stream).await else {
                        return;
                    };
                    reqs.lock().unwrap().push(req.clone());
                    cnt.fetch_add(1, Ordering::SeqCst);
                    handler(req, stream).await;
                });
            }
        });
        Fake {
            port,
            requests,
            count,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn count_path(&self, needle: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.contains(needle))
            .count()
    }

    pub fn client(&self) -> Arc<UpstreamClient> {
        let mut c = UpstreamConfig::new("fake", self.url());
        c.read_timeout = std::time::Duration::from_secs(5);
        Arc::new(UpstreamClient::new(c).unwrap())
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut first = head.lines().next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    Some(Req { method, path, head })
}

/// Writes a full response with `Connection: close`.
pub async fn respond(mut s: TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let _ = s.shutdown().await;
}

/// Writes the head announcing `len` bytes, then only `body`.
pub async fn respond_head_then(s: &mut TcpStream, len: usize, body: &[u8]) {
    let head = format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let _ = s.flush().await;
}

/// An engine over a fresh memory store with a spool in a temp dir.
pub fn engine() -> (Engine, Arc<MemoryStore>, tempfile::TempDir) {
    let store = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::default();
    config.spool_dir = dir.path().to_path_buf();
    config.fill_idle_timeout = std::time::Duration::from_secs(3);
    config.chunk_size = 64 * 1024;
    (
        Engine::new(store.clone(), store.clone(), config),
        store,
        dir,
    )
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An engine over a filesystem store (fills then serve readers from the store's own temp
/// file), with the store's root.
pub async fn fs_engine() -> (
    Engine,
    Arc<oci_cache_storage::fs::FsStore>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        oci_cache_storage::fs::FsStore::open(dir.path().join("store"))
            .await
            .unwrap(),
    );
    let mut config = EngineConfig::default();
    config.spool_dir = dir.path().to_path_buf();
    config.fill_idle_timeout = std::time::Duration::from_secs(3);
    config.chunk_size = 64 * 1024;
    (
        Engine::new(store.clone(), store.clone(), config),
        store,
        dir,
    )
}

/// The blob's stored size once its commit has landed (a fill releases its readers when the
/// bytes are verified and commits while they finish), polling for at most 10 s.
pub async fn committed_size(
    store: &dyn oci_cache_storage::BlobStore,
    digest: &oci_cache_core::Digest,
) -> Option<u64> {
    for _ in 0..200 {
        if let Some(meta) = store.head(digest).await.unwrap() {
            return Some(meta.size);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    None
}
