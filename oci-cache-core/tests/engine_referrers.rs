//! The referrers API through the engine, against a faithful fake of it (the Debian registry
//! predates it): filtered here when the upstream ignores `artifactType`, kept fresh, served
//! stale while the upstream is down, the named manifests fetched and stored, and a 404 from
//! an upstream without the API passed on so that clients fall back to the tag schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oci_cache_core::name::{Reference, RepositoryName};
use oci_cache_core::{Digest, EngineError, UpstreamClient, UpstreamConfig};
use support::{engine, respond, Fake};

fn repo() -> RepositoryName {
    RepositoryName::parse("test/app").unwrap()
}

/// A signature manifest (an OCI image manifest with an artifact type and a subject).
fn signature(subject: &Digest, artifact_type: &str) -> String {
    let empty = Digest::sha256_of(b"{}");
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject.to_string(), "size": 10},
    })
    .to_string()
}

struct Upstream {
    fake: Fake,
    down: Arc<AtomicBool>,
    subject: Digest,
    sig: (Digest, String),
    sbom: (Digest, String),
}

/// A registry with the referrers API that ignores `artifactType` (allowed by the spec);
/// with `api = false`, one that predates the API (404).
async fn upstream(api: bool) -> Upstream {
    let subject = Digest::sha256_of(b"the subject manifest");
    let sig = signature(&subject, "application/vnd.dev.cosign.artifact.sig.v1+json");
    let sbom = signature(&subject, "application/spdx+json");
    let sig = (Digest::sha256_of(sig.as_bytes()), sig);
    let sbom = (Digest::sha256_of(sbom.as_bytes()), sbom);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sig.0.to_string(), "size": sig.1.len(), "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json"},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sbom.0.to_string(), "size": sbom.1.len(), "artifactType": "application/spdx+json"},
        ],
    })
    .to_string();
    let down = Arc::new(AtomicBool::new(false));
    let served = Arc::new((index, sig.clone(), sbom.clone(), subject.clone()));
    let d = down.clone();
    let fake = Fake::start(move |req, s| {
        let (served, down) = (served.clone(), d.clone());
        async move {
            let (index, sig, sbom, subject) = &*served;
            if down.load(Ordering::SeqCst) {
                return respond(s, "503 Service Unavailable", &[], b"").await;
            }
            if req.path.contains(&format!("/referrers/{subject}")) {
                if !api {
                    return respond(s, "404 Not Found", &[], b"{}").await;
                }
                let headers = [(
                    "Content-Type",
                    "application/vnd.oci.image.index.v1+json".to_owned(),
                )];
                return respond(s, "200 OK", &headers, index.as_bytes()).await;
            }
            for (d, body) in [sig, sbom] {
                if req.path.ends_with(&format!("/manifests/{d}")) {
                    let headers = [
                        (
                            "Content-Type",
                            "application/vnd.oci.image.manifest.v1+json".to_owned(),
                        ),
                        ("Docker-Content-Digest", d.to_string()),
                    ];
                    return respond(s, "200 OK", &headers, body.as_bytes()).await;
                }
            }
            respond(s, "404 Not Found", &[], b"{}").await;
        }
    })
    .await;
    Upstream {
        fake,
        down,
        subject,
        sig,
        sbom,
    }
}

fn client(fake: &Fake) -> Arc<UpstreamClient> {
    let mut c = UpstreamConfig::new("fake", fake.url());
    c.tag_ttl = Duration::ZERO;
    c.breaker_threshold = u32::MAX;
    Arc::new(UpstreamClient::new(c).unwrap())
}

#[tokio::test]
async fn referrers_are_filtered_here_stored_and_served_stale_offline() {
    let up = upstream(true).await;
    let client = client(&up.fake);
    let (engine, _store, _dir) = engine();
    let sbom_type = "application/spdx+json";
    let r = engine
        .referrers(&client, &repo(), &up.subject, Some(sbom_type))
        .await
        .unwrap();
    assert!(
        r.filtered,
        "the upstream ignored artifactType: filtered here"
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let listed: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [up.sbom.0.to_string()]);
    let all = engine
        .referrers(&client, &repo(), &up.subject, None)
        .await
        .unwrap();
    assert!(!all.filtered);
    // The named manifests are fetched and stored in the background.
    for _ in 0..200 {
        if up.fake.count_path(&up.sig.0.to_string()) > 0
            && up.fake.count_path(&up.sbom.0.to_string()) > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Offline: the stored answer, marked stale, still filtered; the signature by digest.
    up.down.store(true, Ordering::SeqCst);
    let r = engine
        .referrers(&client, &repo(), &up.subject, Some(sbom_type))
        .await
        .unwrap();
    assert!(r.stale && r.filtered);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    let sig = engine
        .manifest(&client, &repo(), &Reference::Digest(up.sig.0.clone()))
        .await
        .unwrap();
    assert_eq!(sig.bytes.as_ref(), up.sig.1.as_bytes());
}

#[tokio::test]
async fn an_upstream_without_the_api_gets_404_so_clients_fall_back_to_tags() {
    let up = upstream(false).await;
    let client = client(&up.fake);
    let (engine, _store, _dir) = engine();
    let err = engine
        .referrers(&client, &repo(), &up.subject, None)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::ManifestUnknown), "{err:?}");
}

/// notation asks only with `artifactType`: the cache asks the upstream for the whole list
/// (one stored answer per subject), so every filter, and none, is served offline.
#[tokio::test]
async fn a_client_that_only_filters_is_served_offline_for_every_filter() {
    let up = upstream(true).await;
    let client = client(&up.fake);
    let (engine, _store, _dir) = engine();
    let sig_type = "application/vnd.dev.cosign.artifact.sig.v1+json";
    let r = engine
        .referrers(&client, &repo(), &up.subject, Some(sig_type))
        .await
        .unwrap();
    assert!(r.filtered && !r.stale);
    assert_eq!(up.fake.count_path("/referrers/"), 1);
    assert_eq!(
        up.fake.count_path("artifactType"),
        0,
        "the upstream is asked for the whole list"
    );

    up.down.store(true, Ordering::SeqCst);
    for (wanted, listed) in [
        (Some(sig_type), vec![up.sig.0.to_string()]),
        (Some("application/spdx+json"), vec![up.sbom.0.to_string()]),
        (Some("application/x-none"), vec![]),
        (None, vec![up.sig.0.to_string(), up.sbom.0.to_string()]),
    ] {
        let r = engine
            .referrers(&client, &repo(), &up.subject, wanted)
            .await
            .unwrap_or_else(|e| panic!("offline referrers with {wanted:?}: {e}"));
        assert!(r.stale, "{wanted:?}");
        assert_eq!(r.filtered, wanted.is_some(), "{wanted:?}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let got: Vec<String> = v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["digest"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, listed, "{wanted:?}");
    }
}
