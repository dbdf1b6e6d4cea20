//! The engine against a fake upstream that misbehaves on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use oci_cache_core::name::{Reference, RepositoryName};
use oci_cache_core::{BlobBody, BlobStore, ByteRange, Digest, EngineError};
use support::{data, engine, respond, respond_head_then, Fake};
use tokio::io::AsyncWriteExt;

async fn collect(mut body: BlobBody) -> (Vec<u8>, Option<EngineError>) {
    let mut out = Vec::new();
    while let Some(item) = body.next().await {
        match item {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn repo() -> RepositoryName {
    RepositoryName::parse("test/app").unwrap()
}

/// Serves `good` for every blob request, after `bad_first` (if any) on the first one.
async fn blob_server(good: Vec<u8>, bad_first: Option<&'static str>) -> Fake {
    let first = Arc::new(AtomicBool::new(true));
    let good = Arc::new(good);
    Fake::start(move |_req, mut s| {
        let (good, first) = (good.clone(), first.clone());
        async move {
            let fault = if first.swap(false, Ordering::SeqCst) {
                bad_first
            } else {
                None
            };
            match fault {
                None => respond(s, "200 OK", &[], &good).await,
                Some("wrong-digest") => {
                    let mut bad = (*good).clone();
                    bad[10] ^= 0xff;
                    respond(s, "200 OK", &[], &bad).await;
                }
                Some("truncated") => {
                    respond_head_then(&mut s, good.len(), &good[..good.len() / 2]).await;
                }
                Some("reset") => {
                    respond_head_then(&mut s, good.len(), &good[..good.len() / 3]).await;
                    #[allow(deprecated)] // a blocking close is what we want: an RST mid-body
                    let _ = s.set_linger(Some(Duration::ZERO));
                    drop(s);
                }
                Some(other) => panic!("unknown fault {other}"),
            }
        }
    })
    .await
}

async fn fault_is_cut_then_next_request_succeeds(fault: &'static str) {
    let blob = data(300_000, 1);
    let digest = Digest::sha256_of(&blob);
    let fake = blob_server(blob.clone(), Some(fault)).await;
    let (engine, store, _dir) = engine();
    let client = fake.client();
    // The fault shows either as an error before the response starts (the fill failed
    // before this reader looked) or as a body cut short; never as a complete body.
    match engine.blob(&client, &repo(), &digest, None).await {
        Ok(resp) => {
            let (got, err) = collect(resp.body).await;
            assert!(err.is_some(), "{fault}: the body must end in an error");
            assert!(
                got.len() < blob.len(),
                "{fault}: never a complete-looking body"
            );
        }
        Err(e) => assert!(
            !matches!(e.root(), EngineError::BlobUnknown { .. }),
            "{fault}: {e:?}"
        ),
    }
    assert!(
        store.head(&digest).await.unwrap().is_none(),
        "{fault}: nothing stored"
    );
    let resp = engine.blob(&client, &repo(), &digest, None).await.unwrap();
    let (got, err) = collect(resp.body).await;
    assert!(err.is_none());
    assert_eq!(got, blob);
    assert_eq!(
        support::committed_size(store.as_ref(), &digest).await,
        Some(blob.len() as u64)
    );
}

#[tokio::test]
async fn wrong_digest_cuts_the_body_and_stores_nothing() {
    fault_is_cut_then_next_request_succeeds("wrong-digest").await;
}

#[tokio::test]
async fn truncated_body_cuts_the_body_and_stores_nothing() {
    fault_is_cut_then_next_request_succeeds("truncated").await;
}

#[tokio::test]
async fn reset_mid_body_cuts_the_body_and_stores_nothing() {
    fault_is_cut_then_next_request_succeeds("reset").await;
}

#[tokio::test]
async fn cold_blob_is_fetched_once_then_served_from_storage() {
    let blob = data(100_000, 2);
    let digest = Digest::sha256_of(&blob);
    let fake = blob_server(blob.clone(), None).await;
    let (engine, store, _dir) = engine();
    let client = fake.client();
    let first = engine.blob(&client, &repo(), &digest, None).await.unwrap();
    assert!(!first.cached);
    assert_eq!(collect(first.body).await.0, blob);
    assert!(support::committed_size(store.as_ref(), &digest)
        .await
        .is_some());
    let second = engine.blob(&client, &repo(), &digest, None).await.unwrap();
    assert!(second.cached);
    assert_eq!(collect(second.body).await.0, blob);
    assert_eq!(fake.count_path("/blobs/"), 1);
}

#[tokio::test]
async fn upstream_404_is_blob_unknown_and_manifest_unknown() {
    let fake = Fake::start(|_r, s| respond(s, "404 Not Found", &[], b"{}")).await;
    let (engine, _store, _dir) = engine();
    let client = fake.client();
    let digest = Digest::sha256_of(b"missing");
    let err = engine
        .blob(&client, &repo(), &digest, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err.root(), EngineError::BlobUnknown { .. }),
        "{err:?}"
    );
    let err = engine
        .blob_size(&client, &repo(), &digest)
        .await
        .unwrap_err();
    assert!(
        matches!(err.root(), EngineError::BlobUnknown { .. }),
        "{err:?}"
    );
    let err = engine
        .manifest(&client, &repo(), &Reference::Tag("v1".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err.root(), EngineError::ManifestUnknown),
        "{err:?}"
    );
}

#[tokio::test]
async fn bearer_challenge_fetches_one_token_and_reuses_it() {
    let blob = data(5_000, 3);
    let digest = Digest::sha256_of(&blob);
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let (p2, good) = (port.clone(), Arc::new(blob.clone()));
    let fake = Fake::start(move |req, s| {
        let (port, good) = (p2.clone(), good.clone());
        async move {
            if req.path.starts_with("/token") {
                assert!(
                    req.path.contains("scope=repository%3Atest%2Fapp%3Apull"),
                    "{}",
                    req.path
                );
                return respond(s, "200 OK", &[], br#"{"token":"tok-1","expires_in":300}"#).await;
            }
            if req.header("authorization").as_deref() == Some("Bearer tok-1") {
                return respond(s, "200 OK", &[], &good).await;
            }
            let challenge = format!(
                "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"fake\"",
                port.get().unwrap()
            );
            respond(
                s,
                "401 Unauthorized",
                &[("WWW-Authenticate", challenge)],
                b"{}",
            )
            .await;
        }
    })
    .await;
    port.set(fake.port).unwrap();
    let (engine, _store, _dir) = engine();
    let client = fake.client();
    let size = engine.blob_size(&client, &repo(), &digest).await.unwrap();
    assert_eq!(size, blob.len() as u64);
    let resp = engine.blob(&client, &repo(), &digest, None).await.unwrap();
    assert_eq!(collect(resp.body).await.0, blob);
    assert_eq!(fake.count_path("/token"), 1, "one token for both requests");
    assert_eq!(
        fake.count_path("/blobs/"),
        3,
        "401, then HEAD with token, then GET with token"
    );
}

#[tokio::test]
async fn unauthorized_after_fresh_token_is_an_error_not_a_loop() {
    let fake = Fake::start(|req, s| async move {
        if req.path.starts_with("/token") {
            return respond(s, "200 OK", &[], br#"{"token":"useless"}"#).await;
        }
        let challenge = "Bearer realm=\"http://127.0.0.1:1/token\"".to_owned();
        respond(
            s,
            "401 Unauthorized",
            &[("WWW-Authenticate", challenge)],
            b"{}",
        )
        .await;
    })
    .await;
    let (engine, _store, _dir) = engine();
    let err = engine
        .blob_size(&fake.client(), &repo(), &Digest::sha256_of(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Upstream(_)), "{err:?}");
    assert!(fake.count_path("/blobs/") <= 2);
}

/// An upstream that sends `blob` in 64 KiB pieces, pausing between them.
async fn slow_server(blob: Vec<u8>, pause: Duration) -> Fake {
    let blob = Arc::new(blob);
    Fake::start(move |_r, mut s| {
        let blob = blob.clone();
        async move {
            respond_head_then(&mut s, blob.len(), &[]).await;
            for piece in blob.chunks(64 * 1024) {
                if s.write_all(piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(pause).await;
            }
            let _ = s.shutdown().await;
        }
    })
    .await
}

#[tokio::test]
async fn concurrent_cold_reads_share_one_upstream_get() {
    let blob = data(2 * 1024 * 1024, 4);
    let digest = Digest::sha256_of(&blob);
    let fake = slow_server(blob.clone(), Duration::from_millis(5)).await;
    let (engine, store, _dir) = engine();
    let engine = Arc::new(engine);
    let client = fake.client();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (engine, client, digest) = (engine.clone(), client.clone(), digest.clone());
        tasks.push(tokio::spawn(async move {
            let resp = engine.blob(&client, &repo(), &digest, None).await.unwrap();
            collect(resp.body).await
        }));
    }
    for t in tasks {
        let (got, err) = t.await.unwrap();
        assert!(err.is_none());
        assert!(got == blob);
    }
    assert_eq!(fake.count_path("/blobs/"), 1);
    assert!(support::committed_size(store.as_ref(), &digest)
        .await
        .is_some());
}

#[tokio::test]
async fn range_on_a_cold_blob_is_answered_before_the_fill_ends() {
    let blob = data(1024 * 1024, 5);
    let digest = Digest::sha256_of(&blob);
    let release = Arc::new(tokio::sync::Notify::new());
    let (b2, r2) = (Arc::new(blob.clone()), release.clone());
    let fake = Fake::start(move |_r, mut s| {
        let (blob, release) = (b2.clone(), r2.clone());
        async move {
            respond_head_then(&mut s, blob.len(), &blob[..blob.len() / 2]).await;
            release.notified().await;
            let _ = s.write_all(&blob[blob.len() / 2..]).await;
            let _ = s.shutdown().await;
        }
    })
    .await;
    let (engine, _store, _dir) = engine();
    let client = fake.client();
    let range = ByteRange::Bounded {
        start: 1000,
        end: 1999,
    };
    let resp = tokio::time::timeout(Duration::from_secs(10), async {
        let resp = engine
            .blob(&client, &repo(), &digest, Some(range))
            .await
            .unwrap();
        let total = resp.size;
        (total, resp.range, collect(resp.body).await)
    })
    .await
    .expect("the range must be served while the upstream still holds back the rest");
    assert_eq!(resp.0, Some(blob.len() as u64));
    assert_eq!(resp.1.unwrap().len(), 1000);
    assert_eq!(resp.2 .0, &blob[1000..2000]);
    release.notify_one();
    let full = engine.blob(&client, &repo(), &digest, None).await.unwrap();
    assert_eq!(collect(full.body).await.0, blob);
    assert_eq!(fake.count_path("/blobs/"), 1);
}

#[tokio::test]
async fn a_client_that_leaves_does_not_stop_the_fill() {
    let blob = data(1024 * 1024, 6);
    let digest = Digest::sha256_of(&blob);
    let fake = slow_server(blob.clone(), Duration::from_millis(10)).await;
    let (engine, store, _dir) = engine();
    let client = fake.client();
    let mut resp = engine.blob(&client, &repo(), &digest, None).await.unwrap();
    let first = resp.body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(resp);
    for _ in 0..200 {
        if store.head(&digest).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        store.head(&digest).await.unwrap().is_some(),
        "fill finished after the client left"
    );
    assert_eq!(fake.count_path("/blobs/"), 1);
}

#[tokio::test]
async fn manifest_by_tag_is_stored_and_then_served_by_digest_locally() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
    let digest = Digest::sha256_of(manifest);
    let d2 = digest.to_string();
    let fake = Fake::start(move |_r, s| {
        let d = d2.clone();
        async move {
            let headers = [
                (
                    "Content-Type",
                    "application/vnd.oci.image.manifest.v1+json".to_owned(),
                ),
                ("Docker-Content-Digest", d),
            ];
            respond(s, "200 OK", &headers, manifest).await;
        }
    })
    .await;
    let (engine, _store, _dir) = engine();
    let client = fake.client();
    let m = engine
        .manifest(&client, &repo(), &Reference::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(
        (m.digest.clone(), m.bytes.as_ref()),
        (digest.clone(), &manifest[..])
    );
    let by_digest = engine
        .manifest(&client, &repo(), &Reference::Digest(digest))
        .await
        .unwrap();
    assert_eq!(
        by_digest.media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(fake.count_path("/manifests/"), 1);
}

#[tokio::test]
async fn manifest_with_wrong_digest_or_schema1_is_refused_and_not_stored() {
    let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
    let fake = Fake::start(move |req, s| async move {
        if req.path.contains("schema1") {
            respond(s, "200 OK", &[], schema1).await;
        } else {
            respond(s, "200 OK", &[], br#"{"schemaVersion":2,"manifests":[]}"#).await;
        }
    })
    .await;
    let (engine, store, _dir) = engine();
    let client = fake.client();
    let wanted = Digest::sha256_of(b"something else");
    let err = engine
        .manifest(&client, &repo(), &Reference::Digest(wanted.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::DigestMismatch { .. }), "{err:?}");
    assert!(store.head(&wanted).await.unwrap().is_none());
    let err = engine
        .manifest(&client, &repo(), &Reference::Tag("schema1".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err.root(), EngineError::ManifestInvalid(_)),
        "{err:?}"
    );
    assert!(store.list(None, 10).await.unwrap().blobs.is_empty());
}

#[tokio::test]
async fn stalled_upstream_fails_the_fill_after_the_idle_timeout() {
    let blob = data(200_000, 7);
    let digest = Digest::sha256_of(&blob);
    let b2 = Arc::new(blob.clone());
    let fake = Fake::start(move |_r, mut s| {
        let blob = b2.clone();
        async move {
            respond_head_then(&mut s, blob.len(), &blob[..1000]).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    })
    .await;
    let (engine, store, _dir) = engine();
    let resp = engine
        .blob(&fake.client(), &repo(), &digest, None)
        .await
        .unwrap();
    let (got, err) = tokio::time::timeout(Duration::from_secs(20), collect(resp.body))
        .await
        .unwrap();
    assert!(err.is_some());
    assert!(got.len() <= 1000);
    assert!(store.head(&digest).await.unwrap().is_none());
}

#[tokio::test]
async fn redirected_blob_get_never_sends_the_upstream_authorization_to_the_other_host() {
    let blob = data(50_000, 8);
    let digest = Digest::sha256_of(&blob);
    let cdn_blob = Arc::new(blob.clone());
    let cdn = Fake::start(move |_r, s| {
        let b = cdn_blob.clone();
        async move { respond(s, "200 OK", &[], &b).await }
    })
    .await;
    let cdn_url = format!("{}/cdn/blob", cdn.url());
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let p2 = port.clone();
    let registry = Fake::start(move |req, s| {
        let (port, cdn_url) = (p2.clone(), cdn_url.clone());
        async move {
            if req.path.starts_with("/token") {
                return respond(s, "200 OK", &[], br#"{"token":"secret-token"}"#).await;
            }
            if req.header("authorization").as_deref() == Some("Bearer secret-token") {
                return respond(s, "307 Temporary Redirect", &[("Location", cdn_url)], b"").await;
            }
            let realm = format!(
                "Bearer realm=\"http://127.0.0.1:{}/token\"",
                port.get().unwrap()
            );
            respond(s, "401 Unauthorized", &[("WWW-Authenticate", realm)], b"").await;
        }
    })
    .await;
    port.set(registry.port).unwrap();
    let (engine, store, _dir) = engine();
    let resp = engine
        .blob(&registry.client(), &repo(), &digest, None)
        .await
        .unwrap();
    assert_eq!(collect(resp.body).await.0, blob);
    assert!(support::committed_size(store.as_ref(), &digest)
        .await
        .is_some());
    let cdn_requests = cdn.requests.lock().unwrap().clone();
    assert_eq!(cdn_requests.len(), 1);
    assert_eq!(
        cdn_requests[0].header("authorization"),
        None,
        "token leaked to the redirect target"
    );
}

#[tokio::test]
async fn a_refused_cached_token_triggers_exactly_one_fresh_token() {
    use std::sync::atomic::AtomicUsize;
    let blob = data(2_000, 9);
    let digest = Digest::sha256_of(&blob);
    let issued = Arc::new(AtomicUsize::new(0));
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let (i2, p2, good) = (issued.clone(), port.clone(), Arc::new(blob.clone()));
    let fake = Fake::start(move |req, s| {
        let (issued, port, good) = (i2.clone(), p2.clone(), good.clone());
        async move {
            if req.path.starts_with("/token") {
                let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                let body = format!(r#"{{"token":"tok-{n}","expires_in":300}}"#);
                return respond(s, "200 OK", &[], body.as_bytes()).await;
            }
            // The upstream revokes tok-1 after its first use: only the newest token works.
            let newest = format!("Bearer tok-{}", issued.load(Ordering::SeqCst));
            let auth = req.header("authorization");
            let first_use = auth.as_deref() == Some("Bearer tok-1") && req.method == "HEAD";
            if auth.as_deref() == Some(newest.as_str()) && (newest != "Bearer tok-1" || first_use) {
                return respond(s, "200 OK", &[], &good).await;
            }
            let realm = format!(
                "Bearer realm=\"http://127.0.0.1:{}/token\"",
                port.get().unwrap()
            );
            respond(s, "401 Unauthorized", &[("WWW-Authenticate", realm)], b"").await;
        }
    })
    .await;
    port.set(fake.port).unwrap();
    let (engine, _store, _dir) = engine();
    let client = fake.client();
    engine.blob_size(&client, &repo(), &digest).await.unwrap();
    let resp = engine.blob(&client, &repo(), &digest, None).await.unwrap();
    assert_eq!(collect(resp.body).await.0, blob);
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "one token, then exactly one fresh one"
    );
}

#[tokio::test]
async fn a_dead_first_endpoint_fails_over_to_the_next() {
    let blob = data(10_000, 10);
    let digest = Digest::sha256_of(&blob);
    let fake = blob_server(blob.clone(), None).await;
    let mut config = oci_cache_core::UpstreamConfig::new("multi", oci_cache_testkit::dead_url());
    config.endpoints.push(fake.url());
    let client = Arc::new(oci_cache_core::UpstreamClient::new(config).unwrap());
    let (engine, _store, _dir) = engine();
    let resp = engine.blob(&client, &repo(), &digest, None).await.unwrap();
    assert_eq!(collect(resp.body).await.0, blob);
    assert_eq!(fake.count_path("/blobs/"), 1);
}

#[tokio::test]
async fn fs_storage_fills_serve_every_reader_from_one_file_and_drop_bad_bytes() {
    let blob = data(3 * 1024 * 1024 + 17, 11);
    let digest = Digest::sha256_of(&blob);
    let fake = blob_server(blob.clone(), Some("wrong-digest")).await;
    let (engine, store, dir) = support::fs_engine().await;
    let client = fake.client();
    if let Ok(resp) = engine.blob(&client, &repo(), &digest, None).await {
        let (got, err) = collect(resp.body).await;
        assert!(err.is_some() && got.len() < blob.len());
    }
    assert!(store.head(&digest).await.unwrap().is_none());
    let tmp = dir.path().join("store/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "no temp file left"
    );
    let engine = Arc::new(engine);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (engine, client, digest) = (engine.clone(), client.clone(), digest.clone());
        tasks.push(tokio::spawn(async move {
            collect(
                engine
                    .blob(&client, &repo(), &digest, None)
                    .await
                    .unwrap()
                    .body,
            )
            .await
        }));
    }
    for t in tasks {
        let (got, err) = t.await.unwrap();
        assert!(err.is_none());
        assert!(got == blob);
    }
    assert_eq!(
        support::committed_size(store.as_ref(), &digest).await,
        Some(blob.len() as u64)
    );
    assert_eq!(fake.count_path("/blobs/"), 2);
}

#[tokio::test]
async fn tags_list_forwards_pagination_and_the_link_header() {
    let fake = Fake::start(|req, s| async move {
        let link = "</v2/test/app/tags/list?last=b&n=1>; rel=\"next\"".to_owned();
        let body = if req.path.ends_with("?n=1&last=a") {
            r#"{"name":"test/app","tags":["b"]}"#
        } else {
            "{}"
        };
        respond(s, "200 OK", &[("Link", link)], body.as_bytes()).await;
    })
    .await;
    let (engine, _store, _dir) = engine();
    let list = engine
        .tags_list(&fake.client(), &repo(), "n=1&last=a")
        .await
        .unwrap();
    assert_eq!(list.body.as_ref(), br#"{"name":"test/app","tags":["b"]}"#);
    assert_eq!(
        list.link.as_deref(),
        Some("</v2/test/app/tags/list?last=b&n=1>; rel=\"next\"")
    );
    assert_eq!(fake.count_path("/v2/test/app/tags/list?n=1&last=a"), 1);
}

#[tokio::test]
async fn fills_beyond_the_upstreams_limit_wait_for_a_slot() {
    use std::sync::atomic::AtomicUsize;
    let blobs: Vec<Vec<u8>> = (20..24).map(|s| data(300_000, s)).collect();
    let (active, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (b2, a2, p2) = (Arc::new(blobs.clone()), active.clone(), peak.clone());
    let fake = Fake::start(move |req, mut s| {
        let (blobs, active, peak) = (b2.clone(), a2.clone(), p2.clone());
        async move {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let blob = blobs
                .iter()
                .find(|b| req.path.ends_with(&Digest::sha256_of(b).to_string()))
                .unwrap()
                .clone();
            respond_head_then(&mut s, blob.len(), &blob[..1000]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = s.write_all(&blob[1000..]).await;
            let _ = s.shutdown().await;
            active.fetch_sub(1, Ordering::SeqCst);
        }
    })
    .await;
    let mut config = oci_cache_core::UpstreamConfig::new("limited", fake.url());
    config.max_fills = 2;
    let client = Arc::new(oci_cache_core::UpstreamClient::new(config).unwrap());
    let (engine, _store, _dir) = engine();
    let engine = Arc::new(engine);
    let mut tasks = Vec::new();
    for blob in &blobs {
        let (engine, client, digest) = (engine.clone(), client.clone(), Digest::sha256_of(blob));
        tasks.push(tokio::spawn(async move {
            collect(
                engine
                    .blob(&client, &repo(), &digest, None)
                    .await
                    .unwrap()
                    .body,
            )
            .await
            .0
        }));
    }
    for (t, blob) in tasks.into_iter().zip(&blobs) {
        assert!(t.await.unwrap() == *blob);
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "at most max_fills downloads at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fill_has_dropped_its_storage_writer_before_a_reader_hears_of_it() {
    use support::faulty::{Fault, FaultyStore};
    let blob = data(3 * 1024 * 1024 + 17, 12);
    let digest = Digest::sha256_of(&blob);
    let fake = blob_server(blob.clone(), Some("wrong-digest")).await;
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(
        oci_cache_storage::fs::FsStore::open(dir.path().join("store"))
            .await
            .unwrap(),
    );
    let gone = Arc::new(AtomicBool::new(false));
    let store = Arc::new(FaultyStore {
        inner: fs.clone(),
        fault: Fault::SlowDrop(Arc::clone(&gone)),
    });
    let mut config = oci_cache_core::EngineConfig::default();
    config.spool_dir = dir.path().to_path_buf();
    let engine = oci_cache_core::Engine::new(store, fs, config);
    let client = fake.client();
    let resp = engine.blob(&client, &repo(), &digest, None).await.unwrap();
    let (got, err) = collect(resp.body).await;
    assert!(err.is_some() && got.len() < blob.len());
    assert!(
        gone.load(Ordering::SeqCst),
        "the reader heard of the failure before the fill's writer (and its temp file) was gone"
    );
    let tmp = dir.path().join("store/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "no temp file left"
    );
}
