//! Runs the `embed` example's application in-process: its own route, the registry API
//! version check, and a blob pulled through it from a fake upstream.

// Test helpers outside #[test] functions too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use oci_cache_examples::{memory_cache, serve, App};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Starts the app mirroring `upstream`; returns its address and the sender that stops it.
async fn start_app(upstream: &str) -> (SocketAddr, oneshot::Sender<()>) {
    let app = App::new(memory_cache(upstream).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn client() -> reqwest::Client {
    oci_cache_core::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn own_route_and_api_version_check() {
    // Nothing listens on port 9 of localhost: neither request may reach the upstream.
    let (addr, _stop) = start_app("http://127.0.0.1:9").await;
    let client = client();

    let resp = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "ok\n");

    let resp = client
        .get(format!("http://{addr}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    let resp = client
        .get(format!("http://{addr}/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// A fake upstream serving one blob at `/v2/team/app/blobs/DIGEST`; counts the blob GETs.
async fn fake_upstream(blob: Bytes, digest: String) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gets = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&gets);
    let path = format!("/v2/team/app/blobs/{digest}");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (blob, counter, path) = (blob.clone(), Arc::clone(&counter), path.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let found = req.uri().path() == path;
                    if found && req.method() == Method::GET {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut resp = Response::new(Full::new(match (found, req.method()) {
                        (true, &Method::GET) => blob.clone(),
                        _ => Bytes::new(),
                    }));
                    if found {
                        resp.headers_mut()
                            .insert("content-length", blob.len().to_string().parse().unwrap());
                    } else if req.uri().path() != "/v2/" {
                        *resp.status_mut() = StatusCode::NOT_FOUND;
                    }
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, gets)
}

#[tokio::test]
async fn pulls_a_blob_through_the_embedded_cache_once() {
    let blob: Bytes = (0..300_000u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&blob)));
    let (upstream, gets) = fake_upstream(blob.clone(), digest.clone()).await;
    let (addr, _stop) = start_app(&format!("http://{upstream}")).await;
    let client = client();

    for _ in 0..2 {
        let resp = client
            .get(format!("http://{addr}/v2/team/app/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap(), blob);
    }
    assert_eq!(
        gets.load(Ordering::SeqCst),
        1,
        "the second pull is a cache hit"
    );
}
