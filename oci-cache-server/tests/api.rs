//! The HTTP surface of `CacheService`, in process: status codes, OCI error JSON, headers.
//! The upstream is a closed port, so any request that reached it would fail loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod in_process;

use in_process::InProcess;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use oci_cache_core::{Digest, UpstreamConfig, Upstreams};
use oci_cache_server::CacheService;

struct Api {
    service: CacheService,
    cache: InProcess,
}

fn api() -> Api {
    let cache = InProcess::new();
    let mut dead = UpstreamConfig::new("docker.io", "http://127.0.0.1:1");
    dead.connect_timeout = std::time::Duration::from_millis(500);
    let upstreams = Arc::new(Upstreams::new(vec![dead]).unwrap());
    Api {
        service: CacheService::new(cache.engine.clone(), upstreams),
        cache,
    }
}

async fn call(
    api: &Api,
    method: Method,
    uri: &str,
    range: Option<&str>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = api.service.call_request(req.body(()).unwrap()).await;
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_owned()
}

/// Stores `bytes` as the cache would after pulling them from docker.io's `repo`.
async fn seeded(api: &Api, repo: &str, bytes: &[u8]) -> Digest {
    api.cache.seed(bytes, &[("docker.io", repo)]).await
}

#[tokio::test]
async fn api_version_check_answers_200_with_the_version_header() {
    let api = api();
    let (status, headers, _) = call(&api, Method::GET, "/v2/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["docker-distribution-api-version"], "registry/2.0");
}

#[tokio::test]
async fn push_and_delete_are_405_unsupported() {
    let api = api();
    for (m, uri) in [
        (Method::POST, "/v2/a/blobs/uploads/"),
        (Method::PUT, "/v2/a/manifests/v1"),
        (Method::DELETE, "/v2/a/manifests/v1"),
        (Method::PATCH, "/v2/a/blobs/uploads/x"),
        (Method::GET, "/v2/a/blobs/uploads/x"),
    ] {
        let (status, headers, body) = call(&api, m.clone(), uri, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {uri}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(error_code(&body), "UNSUPPORTED");
    }
}

#[tokio::test]
async fn bad_names_digests_and_unknown_namespaces_are_oci_errors() {
    let api = api();
    let cases = [
        (
            "/v2/Bad/manifests/v1",
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "/v2/a/blobs/sha256:zz",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "/v2/a/blobs/md5:00",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "/v2/a/manifests/v1?ns=evil.example",
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        ),
        ("/v2/a/unknown", StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        // The conformance suite's invalid manifest name: no such manifest.
        (
            "/v2/a/manifests/.INVALID_MANIFEST_NAME",
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/a/manifests/sha256:zz",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
    ];
    for (uri, status, code) in cases {
        let (s, _, body) = call(&api, Method::GET, uri, None).await;
        assert_eq!((s, error_code(&body).as_str()), (status, code), "{uri}");
    }
}

#[tokio::test]
async fn cached_blob_serves_full_ranged_and_head_with_the_right_headers() {
    let api = api();
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let d = seeded(&api, "library/x", &bytes).await;
    let uri = format!("/v2/library/x/blobs/{d}");
    let (s, h, body) = call(&api, Method::GET, &uri, None).await;
    assert_eq!((s, body.as_ref()), (StatusCode::OK, &bytes[..]));
    assert_eq!(h["content-length"], "1000");
    assert_eq!(h["docker-content-digest"], d.to_string().as_str());
    let (s, h, body) = call(&api, Method::GET, &uri, Some("bytes=10-19")).await;
    assert_eq!(
        (s, body.as_ref()),
        (StatusCode::PARTIAL_CONTENT, &bytes[10..20])
    );
    assert_eq!(h["content-range"], "bytes 10-19/1000");
    let (s, _, body) = call(&api, Method::GET, &uri, Some("bytes=-5")).await;
    assert_eq!(
        (s, body.as_ref()),
        (StatusCode::PARTIAL_CONTENT, &bytes[995..])
    );
    let (s, h, body) = call(&api, Method::GET, &uri, Some("bytes=1000-")).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h["content-range"], "bytes */1000");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["errors"][0]["code"], "RANGE_INVALID", "{error}");
    let (s, h, body) = call(&api, Method::HEAD, &uri, None).await;
    assert_eq!((s, body.len()), (StatusCode::OK, 0));
    assert_eq!(h["content-length"], "1000");
}

#[tokio::test]
async fn cached_manifest_by_digest_needs_no_upstream() {
    let api = api();
    let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
    let d = seeded(&api, "library/alpine", m).await;
    let (s, h, body) = call(
        &api,
        Method::GET,
        &format!("/v2/alpine/manifests/{d}?ns=docker.io"),
        None,
    )
    .await;
    assert_eq!((s, body.as_ref()), (StatusCode::OK, &m[..]));
    assert_eq!(
        h["content-type"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(h["docker-content-digest"], d.to_string().as_str());
}

#[tokio::test]
async fn unreachable_upstream_on_a_miss_is_503_json() {
    let api = api();
    let (s, _, body) = call(&api, Method::GET, "/v2/a/manifests/v1", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "UNAVAILABLE");
    let d = Digest::sha256_of(b"nope");
    let (s, _, _) = call(&api, Method::GET, &format!("/v2/a/blobs/{d}"), None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
}

fn api_with_access(rule: oci_cache_server::auth::Access) -> Api {
    use oci_cache_server::auth::{AccessPolicy, ClientAuth};
    use std::collections::HashMap;
    let mut api = api();
    let tokens = HashMap::from([
        ("alice-token-0123456789".to_owned(), "alice".to_owned()),
        ("bob-token-0123456789".to_owned(), "bob".to_owned()),
    ]);
    let auth = Arc::new(ClientAuth::new(HashMap::new(), tokens));
    let policy = AccessPolicy::new(Some(auth), HashMap::from([("docker.io".to_owned(), rule)]));
    api.service = api.service.clone().with_access(policy);
    api
}

async fn call_as(
    api: &Api,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut req = Request::builder().uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = api.service.call_request(req.body(()).unwrap()).await;
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn anonymous_clients_get_401_and_nothing_from_storage_when_access_is_on() {
    let api = api_with_access(oci_cache_server::auth::Access::Authenticated);
    let d = seeded(&api, "library/private", b"private layer").await;
    let uri = format!("/v2/library/private/blobs/{d}");
    let (s, h, body) = call_as(&api, &uri, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(h["www-authenticate"], "Basic realm=\"oci-cache\"");
    assert_eq!(error_code(&body), "UNAUTHORIZED");
    assert!(!body.windows(7).any(|w| w == b"private"));
    let (s, _, _) = call_as(&api, "/v2/", None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "clients must be told to log in"
    );
    let (s, _, _) = call_as(&api, &uri, Some("wrong-token-0123456789")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, body) = call_as(&api, &uri, Some("alice-token-0123456789")).await;
    assert_eq!((s, body.as_ref()), (StatusCode::OK, &b"private layer"[..]));
    let (s, _, _) = call_as(&api, "/v2/", Some("alice-token-0123456789")).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn users_outside_the_upstreams_list_get_403_denied() {
    let api = api_with_access(oci_cache_server::auth::Access::Users(vec!["alice".into()]));
    let d = seeded(&api, "library/private", b"x").await;
    let uri = format!("/v2/library/private/blobs/{d}");
    let (s, _, body) = call_as(&api, &uri, Some("bob-token-0123456789")).await;
    assert_eq!(
        (s, error_code(&body).as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    let (s, _, _) = call_as(&api, &uri, Some("alice-token-0123456789")).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_beside_the_api() {
    let api = api();
    let (s, _, body) = call(&api, Method::GET, "/healthz", None).await;
    assert_eq!((s, body.as_ref()), (StatusCode::OK, &b"ok\n"[..]));
    let (s, h, body) = call(&api, Method::GET, "/readyz", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "application/json");
    let ready: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["upstreams"][0]["name"], "docker.io");
    assert_eq!(ready["upstreams"][0]["endpoints"][0]["circuit"], "closed");

    let d = seeded(&api, "library/x", b"warm blob").await;
    let uri = format!("/v2/library/x/blobs/{d}");
    let (s, _, _) = call(&api, Method::GET, &uri, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, h, body) = call(&api, Method::GET, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains(r#"oci_cache_lookups_total{kind="blob",result="hit"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"oci_cache_lookups_total{kind="blob",result="miss"} 0"#),
        "{text}"
    );
    assert!(
        text.contains("oci_cache_bytes_from_cache_total 9"),
        "{text}"
    );
    assert!(
        text.contains(r#"oci_cache_http_requests_total{route="blob",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"oci_cache_http_requests_total{route="health",status="200"} 2"#),
        "{text}"
    );
    // Durations by route: every answered request is one observation.
    assert!(
        text.contains(r#"oci_cache_http_request_duration_seconds_count{route="blob"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"oci_cache_http_request_duration_seconds_count{route="health"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"oci_cache_http_request_duration_seconds_bucket{le="10.0",route="blob"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"oci_cache_upstream_circuit_open{upstream="docker.io",endpoint="http://127.0.0.1:1"} 0"#), "{text}");
    assert!(
        text.contains("# TYPE oci_cache_lookups_total counter"),
        "{text}"
    );
    let req = Request::builder()
        .uri("/metrics")
        .header("accept", "application/openmetrics-text; version=1.0.0");
    let resp = api.service.call_request(req.body(()).unwrap()).await;
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let om = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&om).trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn a_denied_repository_is_403_denied_without_asking_the_upstream() {
    let cache = InProcess::new();
    let mut dead = UpstreamConfig::new("docker.io", "http://127.0.0.1:1");
    dead.allow = vec!["library/*".into()];
    dead.deny = vec!["library/forbidden".into()];
    let upstreams = Arc::new(Upstreams::new(vec![dead]).unwrap());
    let api = Api {
        service: CacheService::new(cache.engine.clone(), upstreams),
        cache,
    };
    let d = seeded(&api, "library/allowed", b"cached but denied").await;
    for uri in [
        "/v2/library/forbidden/manifests/latest".to_owned(),
        "/v2/other/app/manifests/latest".to_owned(),
        format!("/v2/library/forbidden/blobs/{d}"),
    ] {
        let (s, _, body) = call(&api, Method::GET, &uri, None).await;
        assert_eq!(
            (s, error_code(&body).as_str()),
            (StatusCode::FORBIDDEN, "DENIED"),
            "{uri}"
        );
    }
    let (s, _, _) = call(
        &api,
        Method::GET,
        &format!("/v2/library/allowed/blobs/{d}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "an allowed name is served");
}

#[tokio::test]
async fn status_page_shows_hit_ratio_limit_and_most_pulled_and_roles_split_listeners() {
    let api = api();
    let api = Api {
        service: api.service.clone().with_storage_limit(Some(1_000_000)),
        ..api
    };
    let d = seeded(&api, "library/x", b"some layer").await;
    for _ in 0..3 {
        call(&api, Method::GET, &format!("/v2/library/x/blobs/{d}"), None).await;
    }
    // Only tags that exist count as pulls: the upstream is down and never saw this one.
    let (s, _, _) = call(&api, Method::GET, "/v2/library/junk/manifests/v1", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    // A cached tag counts.
    let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let md = seeded(&api, "library/app", m).await;
    let key = oci_cache_storage::TagKey {
        namespace: "docker.io".into(),
        repository: "library/app".into(),
        tag: "v1".into(),
    };
    let record = oci_cache_storage::TagRecord {
        digest: md,
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        fetched_at: std::time::SystemTime::now(),
    };
    oci_cache_storage::TagStore::put(api.cache.store.as_ref(), &key, &record)
        .await
        .unwrap();
    let (s, _, _) = call(&api, Method::GET, "/v2/library/app/manifests/v1", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, h, body) = call(&api, Method::GET, "/status.json", None).await;
    assert_eq!(
        (s, h["content-type"].to_str().unwrap()),
        (StatusCode::OK, "application/json")
    );
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["max_bytes"], 1_000_000);
    assert_eq!(status["blob_hits"], 3);
    assert_eq!(
        status["most_pulled"].as_array().unwrap().len(),
        1,
        "{status}"
    );
    assert_eq!(status["hit_ratio"], 1.0);
    assert_eq!(
        status["most_pulled"][0]["image"],
        "docker.io/library/app:v1"
    );
    assert_eq!(status["upstreams"][0]["name"], "docker.io");
    let (s, h, body) = call(&api, Method::GET, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        html.contains("docker.io/library/app:v1") && html.contains(">100.0 %<"),
        "{html}"
    );

    let api_only = api.service.clone().with_role(oci_cache_server::Role::Api);
    let admin = api.service.clone().with_role(oci_cache_server::Role::Admin);
    let get = |svc: &CacheService, uri: &str| {
        let svc = svc.clone();
        let req = Request::builder().uri(uri).body(()).unwrap();
        async move { svc.call_request(req).await.status() }
    };
    assert_eq!(get(&api_only, "/metrics").await, StatusCode::NOT_FOUND);
    assert_eq!(get(&api_only, "/healthz").await, StatusCode::OK);
    assert_eq!(get(&api_only, "/v2/").await, StatusCode::OK);
    assert_eq!(get(&admin, "/metrics").await, StatusCode::OK);
    assert_eq!(get(&admin, "/v2/").await, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&admin, &format!("/v2/library/x/blobs/{d}")).await,
        StatusCode::NOT_FOUND
    );
}
