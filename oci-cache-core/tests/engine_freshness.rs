//! Tag freshness, revalidation, negative caching, stale service, the circuit breaker and
//! index children, against a fake upstream whose answers the test controls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_cache_core::name::{Reference, RepositoryName};
use oci_cache_core::{
    BlobStore, Digest, EngineError, UpstreamClient, UpstreamConfig, UpstreamError,
};
use support::{engine, respond, Fake};

fn repo() -> RepositoryName {
    RepositoryName::parse("test/app").unwrap()
}

fn tag(t: &str) -> Reference {
    Reference::Tag(t.to_owned())
}

fn manifest(n: u32) -> Vec<u8> {
    format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{}},"layers":[],"annotations":{{"n":"{n}"}}}}"#).into_bytes()
}

/// An upstream serving one tag whose manifest the test can change, or make fail with a status.
struct TagUpstream {
    fake: Fake,
    current: Arc<Mutex<Vec<u8>>>,
    status: Arc<AtomicU16>,
}

async fn tag_upstream() -> TagUpstream {
    let current = Arc::new(Mutex::new(manifest(1)));
    let status = Arc::new(AtomicU16::new(200));
    let (c2, s2) = (current.clone(), status.clone());
    let fake = Fake::start(move |req, s| {
        let (current, status) = (c2.clone(), s2.clone());
        async move {
            match status.load(Ordering::SeqCst) {
                200 => {}
                429 => {
                    return respond(
                        s,
                        "429 Too Many Requests",
                        &[("Retry-After", "7".into())],
                        b"{}",
                    )
                    .await
                }
                404 => return respond(s, "404 Not Found", &[], b"{}").await,
                _ => return respond(s, "503 Service Unavailable", &[], b"{}").await,
            }
            let body = current.lock().unwrap().clone();
            let digest = Digest::sha256_of(&body).to_string();
            let headers = [
                (
                    "Content-Type",
                    "application/vnd.oci.image.manifest.v1+json".to_owned(),
                ),
                ("Docker-Content-Digest", digest),
            ];
            let body = if req.method == "HEAD" {
                Vec::new()
            } else {
                body
            };
            respond(s, "200 OK", &headers, &body).await;
        }
    })
    .await;
    TagUpstream {
        fake,
        current,
        status,
    }
}

fn client(fake: &Fake, ttl: Duration) -> Arc<UpstreamClient> {
    let mut c = UpstreamConfig::new("fake", fake.url());
    c.tag_ttl = ttl;
    c.negative_ttl = Duration::from_secs(30);
    Arc::new(UpstreamClient::new(c).unwrap())
}

fn methods(fake: &Fake) -> (usize, usize) {
    let reqs = fake.requests.lock().unwrap();
    let gets = reqs.iter().filter(|r| r.method == "GET").count();
    let heads = reqs.iter().filter(|r| r.method == "HEAD").count();
    (gets, heads)
}

#[tokio::test]
async fn a_fresh_tag_is_served_without_asking_the_upstream() {
    let up = tag_upstream().await;
    let (engine, _s, _d) = engine();
    let c = client(&up.fake, Duration::from_secs(300));
    for _ in 0..100 {
        engine.manifest(&c, &repo(), &tag("v1")).await.unwrap();
    }
    assert_eq!(
        methods(&up.fake),
        (1, 0),
        "one GET, then 99 answers from the cache"
    );
}

#[tokio::test]
async fn a_stale_tag_costs_one_head_and_a_moved_tag_is_fetched_again() {
    let up = tag_upstream().await;
    let (engine, _s, _d) = engine();
    let c = client(&up.fake, Duration::from_millis(200));
    let first = engine.manifest(&c, &repo(), &tag("v1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let same = engine.manifest(&c, &repo(), &tag("v1")).await.unwrap();
    assert_eq!(same.digest, first.digest);
    assert_eq!(
        methods(&up.fake),
        (1, 1),
        "after the window: one HEAD, no GET"
    );
    *up.current.lock().unwrap() = manifest(2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved = engine.manifest(&c, &repo(), &tag("v1")).await.unwrap();
    assert_eq!(moved.digest, Digest::sha256_of(&manifest(2)));
    assert_eq!(
        methods(&up.fake),
        (2, 2),
        "a new digest: HEAD, then GET of the new manifest"
    );
}

#[tokio::test]
async fn concurrent_requests_for_a_stale_tag_share_one_revalidation() {
    let up = tag_upstream().await;
    let (engine, _s, _d) = engine();
    let engine = Arc::new(engine);
    let c = client(&up.fake, Duration::from_millis(100));
    engine.manifest(&c, &repo(), &tag("v1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (engine, c) = (engine.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            engine
                .manifest(&c, &repo(), &tag("v1"))
                .await
                .unwrap()
                .digest
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Digest::sha256_of(&manifest(1)));
    }
    let (gets, heads) = methods(&up.fake);
    assert_eq!(gets, 1);
    assert_eq!(heads, 1, "one revalidation for the whole burst");
}

#[tokio::test]
async fn a_burst_for_a_missing_tag_costs_one_upstream_request() {
    let up = tag_upstream().await;
    up.status.store(404, Ordering::SeqCst);
    let (engine, _s, _d) = engine();
    let c = client(&up.fake, Duration::from_secs(300));
    for _ in 0..10 {
        let err = engine
            .manifest(&c, &repo(), &tag("nope"))
            .await
            .unwrap_err();
        assert!(
            matches!(err.root(), EngineError::ManifestUnknown),
            "{err:?}"
        );
    }
    assert_eq!(up.fake.count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stale_tag_is_served_when_the_upstream_fails_or_rate_limits() {
    let up = tag_upstream().await;
    let (engine, _s, _d) = engine();
    let c = client(&up.fake, Duration::ZERO);
    let first = engine.manifest(&c, &repo(), &tag("v1")).await.unwrap();
    for status in [503, 429] {
        up.status.store(status, Ordering::SeqCst);
        let m = engine.manifest(&c, &repo(), &tag("v1")).await.unwrap();
        assert_eq!(
            m.digest, first.digest,
            "stale copy while the upstream answers {status}"
        );
    }
    let err = engine
        .manifest(&c, &repo(), &tag("other"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.root(), EngineError::Upstream(UpstreamError::TooManyRequests { retry_after: Some(d) }) if d.as_secs() == 7),
        "an uncached tag gets the 429 and its Retry-After: {err:?}"
    );
}

#[tokio::test]
async fn an_open_breaker_fails_misses_without_touching_the_hanging_upstream() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let a2 = accepted.clone();
    let fake = Fake::start(move |_r, s| {
        a2.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        }
    })
    .await;
    let mut config = UpstreamConfig::new("hang", fake.url());
    config.first_byte_timeout = Duration::from_millis(300);
    config.breaker_threshold = 2;
    config.breaker_cooldown = Duration::from_secs(60);
    let c = Arc::new(UpstreamClient::new(config).unwrap());
    let (engine, _s, _d) = engine();
    for _ in 0..2 {
        let err = engine.manifest(&c, &repo(), &tag("v1")).await.unwrap_err();
        assert!(
            matches!(err.root(), EngineError::Upstream(UpstreamError::Timeout)),
            "{err:?}"
        );
    }
    let seen = accepted.load(Ordering::SeqCst);
    let err = engine
        .blob_size(&c, &repo(), &Digest::sha256_of(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.root(),
            EngineError::Upstream(UpstreamError::CircuitOpen)
        ),
        "{err:?}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        seen,
        "no request reached the upstream"
    );
    assert!(
        c.endpoint_states()[0].1,
        "the endpoint reports an open circuit"
    );
}

#[tokio::test]
async fn an_index_pulled_by_tag_stores_its_child_manifests() {
    let children: Vec<Vec<u8>> = (10..13).map(manifest).collect();
    let entries: Vec<String> = children
        .iter()
        .map(|c| format!(r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}"#, Digest::sha256_of(c), c.len()))
        .collect();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    );
    let (kids, idx) = (
        Arc::new(children.clone()),
        Arc::new(index.clone().into_bytes()),
    );
    let fake = Fake::start(move |req, s| {
        let (kids, idx) = (kids.clone(), idx.clone());
        async move {
            let body = kids
                .iter()
                .find(|k| req.path.ends_with(&Digest::sha256_of(k).to_string()))
                .cloned()
                .unwrap_or_else(|| (*idx).clone());
            respond(s, "200 OK", &[], &body).await;
        }
    })
    .await;
    let (engine, store, _d) = engine();
    let c = client(&fake, Duration::from_secs(300));
    let m = engine.manifest(&c, &repo(), &tag("multi")).await.unwrap();
    assert_eq!(m.media_type, "application/vnd.oci.image.index.v1+json");
    for child in &children {
        let d = Digest::sha256_of(child);
        let mut stored = false;
        for _ in 0..100 {
            if store.head(&d).await.unwrap().is_some() {
                stored = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stored, "child {d} stored");
    }
    let before = fake.count.load(Ordering::SeqCst);
    for child in &children {
        let d = Digest::sha256_of(child);
        engine
            .manifest(&c, &repo(), &Reference::Digest(d))
            .await
            .unwrap();
    }
    assert_eq!(
        fake.count.load(Ordering::SeqCst),
        before,
        "children served from the cache"
    );
}
