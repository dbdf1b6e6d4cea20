//! Runs the `embed-axum` example's router in-process: the application's own route beside
//! the cache, the registry API version check, and an image's manifest and layer pulled
//! through it from a real registry.

// Test helpers outside #[test] functions too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{client, REPO};
use http::StatusCode;
use oci_cache_benches::upstream::{oci_manifest, OCI_MANIFEST};
use oci_cache_examples::{axum_app, memory_cache};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Serves the router mirroring `upstream`; returns its address and the sender that stops
/// it.
async fn start_app(upstream: &str) -> (SocketAddr, oneshot::Sender<()>) {
    let app = axum_app::router(memory_cache(upstream).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    (addr, stop)
}

#[tokio::test]
async fn own_route_beside_the_cache() {
    // Nothing listens on port 9 of localhost: no request may reach the upstream.
    let (addr, _stop) = start_app("http://127.0.0.1:9").await;
    let client = client();
    let get = |path: &str| client.get(format!("http://{addr}{path}")).send();

    let resp = get("/hello").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "hello from the application\n");

    let resp = get("/v2/").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    // Anything else is the cache's: a 404 with an OCI error body.
    let resp = get("/elsewhere").await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("NAME_UNKNOWN"));
    // The cache's operator endpoints stay off the application's listener.
    assert_eq!(
        get("/metrics").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn pulls_an_image_through_the_mounted_cache_once() {
    let mut upstream = common::Upstream::start().await;
    let (layer, layer_bytes) = upstream.push(21, 300_000).await;
    let config_bytes = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let config_len = config_bytes.len() as u64;
    let config = upstream
        .registry
        .push_bytes(&upstream.client, REPO, config_bytes)
        .await
        .unwrap();
    let manifest = oci_manifest((&config, config_len), &[(&layer, 300_000)]);
    let manifest_digest = upstream
        .registry
        .push_manifest(&upstream.client, REPO, "v1", manifest.clone())
        .await
        .unwrap();
    let (addr, _stop) = start_app(&upstream.url()).await;
    let client = client();

    for _ in 0..2 {
        let resp = client
            .get(format!("http://{addr}/v2/{REPO}/manifests/v1"))
            .header(http::header::ACCEPT, OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["docker-content-digest"], &manifest_digest);
        assert_eq!(resp.text().await.unwrap(), manifest);

        let resp = client
            .get(format!("http://{addr}/v2/{REPO}/blobs/{layer}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap(), layer_bytes);
    }
    assert_eq!(
        upstream.blob_gets(&layer),
        1,
        "the second pull of the layer is a cache hit"
    );
    let manifest_gets = upstream
        .registry
        .completed_gets(&format!("/v2/{REPO}/manifests/v1"));
    assert_eq!(manifest_gets, 1, "the tag is fresh: asked upstream once");
}
