//! Tag lists are kept like tags: fresh within `tag_ttl` (no upstream request), revalidated
//! with one upstream request for any number of concurrent clients, served stale when the
//! upstream fails, and built from the tags the cache holds when it never saw a list.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oci_cache_core::name::{Reference, RepositoryName};
use oci_cache_core::{Digest, UpstreamClient, UpstreamConfig};
use support::{engine, respond, Fake};

fn repo() -> RepositoryName {
    RepositoryName::parse("test/app").unwrap()
}

const LIST: &str = r#"{"name":"test/app","tags":["v1","v2"]}"#;

/// A fake registry: the tag list (after `delay`), manifests for tags v1 and v2, and 503 for
/// everything while `down`.
async fn registry(down: Arc<AtomicBool>, delay: Duration) -> Fake {
    Fake::start(move |req, s| {
        let down = down.clone();
        async move {
            if down.load(Ordering::SeqCst) {
                return respond(s, "503 Service Unavailable", &[], b"").await;
            }
            if req.path.contains("/tags/list") {
                tokio::time::sleep(delay).await;
                return respond(s, "200 OK", &[], LIST.as_bytes()).await;
            }
            let tag = req.path.rsplit('/').next().unwrap_or_default().to_owned();
            let body = manifest(&tag);
            let digest = Digest::sha256_of(body.as_bytes()).to_string();
            let headers = [
                (
                    "Content-Type",
                    "application/vnd.oci.image.manifest.v1+json".to_owned(),
                ),
                ("Docker-Content-Digest", digest),
            ];
            respond(s, "200 OK", &headers, body.as_bytes()).await;
        }
    })
    .await
}

fn manifest(tag: &str) -> String {
    let config = Digest::sha256_of(tag.as_bytes());
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": tag.len()},
        "layers": [],
    })
    .to_string()
}

fn client(fake: &Fake, tag_ttl: Duration) -> Arc<UpstreamClient> {
    let mut c = UpstreamConfig::new("fake", fake.url());
    c.tag_ttl = tag_ttl;
    c.breaker_threshold = u32::MAX;
    Arc::new(UpstreamClient::new(c).unwrap())
}

#[tokio::test]
async fn a_fresh_tag_list_costs_no_upstream_request() {
    let fake = registry(Arc::default(), Duration::ZERO).await;
    let client = client(&fake, Duration::from_secs(300));
    let (engine, _store, _dir) = engine();
    for _ in 0..3 {
        let list = engine.tags_list(&client, &repo(), "").await.unwrap();
        assert_eq!(list.body.as_ref(), LIST.as_bytes());
        assert!(!list.stale);
    }
    assert_eq!(fake.count_path("/tags/list"), 1);
    let s = engine.stats();
    assert_eq!((s.tag_list_hits, s.tag_list_misses), (2, 1));
}

#[tokio::test]
async fn concurrent_revalidations_share_one_upstream_request() {
    let fake = registry(Arc::default(), Duration::from_millis(300)).await;
    let client = client(&fake, Duration::from_secs(300));
    let (engine, _store, _dir) = engine();
    let engine = Arc::new(engine);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (engine, client) = (engine.clone(), client.clone());
            tokio::spawn(async move { engine.tags_list(&client, &repo(), "").await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().body.as_ref(), LIST.as_bytes());
    }
    assert_eq!(fake.count_path("/tags/list"), 1);
}

#[tokio::test]
async fn a_stale_tag_list_is_served_while_the_upstream_is_down() {
    let down = Arc::new(AtomicBool::new(false));
    let fake = registry(down.clone(), Duration::ZERO).await;
    // A zero freshness window: every request asks the upstream.
    let client = client(&fake, Duration::ZERO);
    let (engine, _store, _dir) = engine();
    assert!(!engine.tags_list(&client, &repo(), "").await.unwrap().stale);
    down.store(true, Ordering::SeqCst);
    let list = engine.tags_list(&client, &repo(), "").await.unwrap();
    assert_eq!(list.body.as_ref(), LIST.as_bytes());
    assert!(list.stale);
    assert_eq!(engine.stats().tag_list_stale, 1);
    assert_eq!(
        fake.count_path("/tags/list"),
        2,
        "the upstream was asked again"
    );
}

#[tokio::test]
async fn without_a_list_the_tags_the_cache_holds_are_listed_and_paged() {
    let down = Arc::new(AtomicBool::new(false));
    let fake = registry(down.clone(), Duration::ZERO).await;
    let client = client(&fake, Duration::ZERO);
    let (engine, _store, _dir) = engine();
    for tag in ["v2", "v1", "v3"] {
        engine
            .manifest(&client, &repo(), &Reference::Tag(tag.into()))
            .await
            .unwrap();
    }
    down.store(true, Ordering::SeqCst);
    let list = engine.tags_list(&client, &repo(), "").await.unwrap();
    assert!(list.stale);
    assert_eq!(
        list.body.as_ref(),
        br#"{"name":"test/app","tags":["v1","v2","v3"]}"#
    );
    let page = engine.tags_list(&client, &repo(), "n=2").await.unwrap();
    assert_eq!(
        page.body.as_ref(),
        br#"{"name":"test/app","tags":["v1","v2"]}"#
    );
    assert_eq!(
        page.link.as_deref(),
        Some(r#"</v2/test/app/tags/list?n=2&last=v2>; rel="next""#)
    );
    let next = engine
        .tags_list(&client, &repo(), "n=2&last=v2")
        .await
        .unwrap();
    assert_eq!(next.body.as_ref(), br#"{"name":"test/app","tags":["v3"]}"#);
    assert_eq!(next.link, None);
}

#[tokio::test]
async fn pages_are_cut_from_the_stored_list_fresh_or_while_the_upstream_is_down() {
    let down = Arc::new(AtomicBool::new(false));
    let fake = registry(down.clone(), Duration::ZERO).await;
    let client = client(&fake, Duration::from_secs(300));
    let (engine, _store, _dir) = engine();
    engine.tags_list(&client, &repo(), "").await.unwrap();
    // A page is cut from the fresh whole list: no upstream request.
    let page = engine.tags_list(&client, &repo(), "n=1").await.unwrap();
    assert!(!page.stale);
    assert_eq!(page.body.as_ref(), br#"{"name":"test/app","tags":["v1"]}"#);
    assert_eq!(fake.count_path("/tags/list?"), 0);
    // Past the freshness window (a zero one) with the upstream down: cut from the stored
    // list, marked stale.
    down.store(true, Ordering::SeqCst);
    let expired = self::client(&fake, Duration::ZERO);
    let page = engine.tags_list(&expired, &repo(), "n=1").await.unwrap();
    assert!(page.stale);
    assert_eq!(page.body.as_ref(), br#"{"name":"test/app","tags":["v1"]}"#);
    assert_eq!(
        page.link.as_deref(),
        Some(r#"</v2/test/app/tags/list?n=1&last=v1>; rel="next""#)
    );
}
