//! An upstream that tries to steer the cache: redirects to other schemes, token realms that
//! would collect our credentials over plain http, JSON that is not a manifest, bodies that
//! never end. The fake upstream listens on 127.0.0.1, so the private-address half of the
//! rules (refused unless the upstream lives there) is unit-tested in `upstream/guard.rs`;
//! here a redirect to the upstream's own loopback host is followed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, OnceLock};

use oci_cache_core::name::{Reference, RepositoryName};
use oci_cache_core::{
    BlobStore, BodyKind, Credentials, Digest, EngineError, TargetRefusal, UpstreamClient,
    UpstreamConfig, UpstreamError, MAX_TAG_LIST_BYTES, MAX_TOKEN_BYTES,
};
use support::{data, engine, respond, Fake};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn repo() -> RepositoryName {
    RepositoryName::parse("test/app").unwrap()
}

/// A 200 without a length whose body goes on until 32 MiB (far past every limit) or until
/// the client hangs up.
async fn endless(mut s: TcpStream) {
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n";
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(b"{\"token\":\"").await;
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..512 {
        if s.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = s.write_all(b"\"}").await;
}

fn with_credentials(fake: &Fake) -> Arc<UpstreamClient> {
    let mut c = UpstreamConfig::new("fake", fake.url());
    c.credentials = Some(Credentials {
        username: "user".into(),
        password: "hunter2".into(),
    });
    Arc::new(UpstreamClient::new(c).unwrap())
}

#[tokio::test]
async fn redirects_to_other_schemes_are_refused_and_same_host_ones_followed() {
    let blob = data(20_000, 1);
    let digest = Digest::sha256_of(&blob);
    let port = Arc::new(OnceLock::<u16>::new());
    let (p2, b2) = (port.clone(), Arc::new(blob.clone()));
    let fake = Fake::start(move |req, s| {
        let (port, blob) = (p2.clone(), b2.clone());
        async move {
            let port = port.get().unwrap();
            let location = if req.path.starts_with("/v2/file/") {
                "file:///etc/passwd".to_owned()
            } else if req.path.starts_with("/v2/ftp/") {
                format!("ftp://127.0.0.1:{port}/cdn/blob")
            } else if req.path.starts_with("/v2/") {
                format!("http://127.0.0.1:{port}/cdn/blob")
            } else {
                return respond(s, "200 OK", &[], &blob).await;
            };
            respond(s, "307 Temporary Redirect", &[("Location", location)], b"").await;
        }
    })
    .await;
    port.set(fake.port).unwrap();
    let client = fake.client();
    for (repo, scheme) in [("file/app", "file"), ("ftp/app", "ftp")] {
        let err = client.blob(repo, &digest).await.unwrap_err();
        assert!(
            matches!(
                &err,
                UpstreamError::RedirectRefused {
                    reason: TargetRefusal::Scheme,
                    ..
                }
            ),
            "{scheme}: {err:?}"
        );
    }
    assert_eq!(
        fake.count_path("/cdn/"),
        0,
        "nothing followed the ftp redirect"
    );
    // The upstream lives on loopback, so a redirect to its own loopback host is followed.
    let (engine, store, _dir) = engine();
    let resp = engine.blob(&client, &repo(), &digest, None).await.unwrap();
    drop(resp);
    assert_eq!(
        support::committed_size(store.as_ref(), &digest).await,
        Some(blob.len() as u64)
    );
    assert_eq!(fake.count_path("/cdn/blob"), 1);
}

/// An upstream whose challenge names the realm `realm(port)`, whose token endpoint answers
/// every request, and which serves a manifest to a request with the token.
async fn challenging(realm: fn(u16) -> String) -> Fake {
    let port = Arc::new(OnceLock::<u16>::new());
    let p2 = port.clone();
    let fake = Fake::start(move |req, s| {
        let port = p2.clone();
        async move {
            if req.path.starts_with("/token") {
                return respond(s, "200 OK", &[], br#"{"token":"t0k"}"#).await;
            }
            if req.header("authorization").as_deref() == Some("Bearer t0k") {
                let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
                return respond(s, "200 OK", &[], m).await;
            }
            let challenge = format!("Bearer realm=\"{}\"", realm(*port.get().unwrap()));
            respond(s, "401 Unauthorized", &[("WWW-Authenticate", challenge)], b"").await;
        }
    })
    .await;
    port.set(fake.port).unwrap();
    fake
}

fn token_authorization(fake: &Fake) -> Vec<Option<String>> {
    let requests = fake.requests.lock().unwrap();
    requests
        .iter()
        .filter(|r| r.path.starts_with("/token"))
        .map(|r| r.header("authorization"))
        .collect()
}

#[tokio::test]
async fn a_plain_http_realm_on_another_host_gets_no_credentials() {
    // `localhost` is another host name than the upstream's 127.0.0.1, over plain http.
    let fake = challenging(|port| format!("http://localhost:{port}/token")).await;
    let m = with_credentials(&fake)
        .manifest("test/app", "v1", false)
        .await
        .unwrap();
    assert!(!m.bytes.is_empty());
    assert_eq!(
        token_authorization(&fake),
        vec![None],
        "anonymous token request"
    );

    // The upstream's own host over http does get them (a registry and its token server).
    let own = challenging(|port| format!("http://127.0.0.1:{port}/token")).await;
    with_credentials(&own)
        .manifest("test/app", "v1", false)
        .await
        .unwrap();
    let sent = token_authorization(&own);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].as_deref().is_some_and(|a| a.starts_with("Basic ")));
}

#[tokio::test]
async fn a_realm_that_is_not_http_is_not_asked() {
    let fake = challenging(|port| format!("ftp://127.0.0.1:{port}/token")).await;
    let err = with_credentials(&fake)
        .manifest("test/app", "v1", false)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UpstreamError::RealmRefused {
                reason: TargetRefusal::Scheme,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.count_path("/token"), 0);
}

#[tokio::test]
async fn json_that_is_not_a_manifest_is_an_upstream_error_and_nothing_is_stored() {
    let not_a_manifest = br#"{"schemaVersion":2,"hello":"world"}"#;
    let fake = Fake::start(move |_req, s| async move {
        let ct = (
            "Content-Type",
            "application/vnd.oci.image.manifest.v1+json".to_owned(),
        );
        respond(s, "200 OK", &[ct], not_a_manifest).await;
    })
    .await;
    let (engine, store, _dir) = engine();
    let client = fake.client();
    let digest = Digest::sha256_of(not_a_manifest);
    for reference in [
        Reference::Tag("v1".into()),
        Reference::Digest(digest.clone()),
    ] {
        let err = engine
            .manifest(&client, &repo(), &reference)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.root(),
                EngineError::Upstream(UpstreamError::NotAManifest { .. })
            ),
            "{reference:?}: {err:?}"
        );
    }
    assert!(store.head(&digest).await.unwrap().is_none());
    assert!(store.list(None, 10).await.unwrap().blobs.is_empty());
}

#[tokio::test]
async fn an_endless_token_body_is_cut_at_its_limit() {
    let port = Arc::new(OnceLock::<u16>::new());
    let p2 = port.clone();
    let fake = Fake::start(move |req, s| {
        let port = p2.clone();
        async move {
            if req.path.starts_with("/token") {
                return endless(s).await;
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
    let err = fake
        .client()
        .manifest("test/app", "v1", false)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UpstreamError::BodyTooLarge {
                body: BodyKind::Token,
                limit: MAX_TOKEN_BYTES
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_endless_tag_list_is_cut_at_its_limit() {
    let fake = Fake::start(|_req, s| endless(s)).await;
    let (engine, _store, _dir) = engine();
    let err = engine
        .tags_list(&fake.client(), &repo(), "")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.root(),
            EngineError::Upstream(UpstreamError::BodyTooLarge {
                body: BodyKind::TagList,
                limit: MAX_TAG_LIST_BYTES
            })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_endless_manifest_is_cut_at_its_limit() {
    let fake = Fake::start(|_req, s| endless(s)).await;
    let err = fake
        .client()
        .manifest("test/app", "v1", false)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UpstreamError::BodyTooLarge {
                body: BodyKind::Manifest,
                ..
            }
        ),
        "{err:?}"
    );
}
