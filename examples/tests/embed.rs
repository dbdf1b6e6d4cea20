//! Runs the `embed` example's application in-process: its own route, the registry API
//! version check, and a blob pulled through it from a real registry.

// Test helpers outside #[test] functions too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::client;
use http::StatusCode;
use oci_cache_examples::{memory_cache, serve, App};
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

#[tokio::test]
async fn pulls_a_blob_through_the_embedded_cache_once() {
    let mut upstream = common::Upstream::start().await;
    let (digest, blob) = upstream.push(7, 300_000).await;
    let (addr, _stop) = start_app(&upstream.url()).await;
    let client = client();

    for _ in 0..2 {
        let resp = client
            .get(format!("http://{addr}/v2/{}/blobs/{digest}", common::REPO))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap(), blob);
    }
    assert_eq!(
        upstream.blob_gets(&digest),
        1,
        "the second pull is a cache hit"
    );
}
