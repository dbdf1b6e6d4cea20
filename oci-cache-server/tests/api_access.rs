//! What a client can learn from the cache's answers about repositories it may not pull
//! (the rule is written on `handler::select`): a client not allowed on an upstream gets the
//! same answer for every repository there, denied or not; only a client allowed on the
//! upstream learns that a repository is denied (403 DENIED). In process, the upstream a
//! closed port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod in_process;

use in_process::InProcess;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use oci_cache_core::{Digest, UpstreamConfig, Upstreams};
use oci_cache_server::auth::{Access, AccessPolicy, ClientAuth};
use oci_cache_server::CacheService;

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";

struct Api {
    service: CacheService,
    cache: InProcess,
}

/// `private.example` (the default): alice only, `myorg/secret/**` denied;
/// `public.example`: anyone.
fn api() -> Api {
    let cache = InProcess::new();
    let mut private = UpstreamConfig::new("private.example", "http://127.0.0.1:1");
    private.deny = vec!["myorg/secret/**".into()];
    private.connect_timeout = std::time::Duration::from_millis(300);
    private.hosts = vec!["private.cache.test".into()];
    let public = UpstreamConfig::new("public.example", "http://127.0.0.1:1");
    let upstreams = Arc::new(Upstreams::new(vec![private, public]).unwrap());
    let tokens = HashMap::from([
        (ALICE.to_owned(), "alice".to_owned()),
        (BOB.to_owned(), "bob".to_owned()),
    ]);
    let auth = Arc::new(ClientAuth::new(HashMap::new(), tokens));
    let rules = HashMap::from([
        (
            "private.example".to_owned(),
            Access::Users(vec!["alice".into()]),
        ),
        ("public.example".to_owned(), Access::Anonymous),
    ]);
    let service = CacheService::new(cache.engine.clone(), upstreams)
        .with_access(AccessPolicy::new(Some(auth), rules));
    Api { service, cache }
}

async fn seeded(api: &Api, bytes: &[u8], from: &[(&str, &str)]) -> Digest {
    api.cache.seed(bytes, from).await
}

/// Status, `WWW-Authenticate` and body.
async fn call(api: &Api, uri: &str, token: Option<&str>) -> (StatusCode, Option<String>, Bytes) {
    let auth = token.map(|t| format!("Bearer {t}"));
    call_with(api, "GET", uri, None, auth.as_deref()).await
}

/// Status, `WWW-Authenticate` and body of `method uri` with a `Host` and an
/// `Authorization` header when given.
async fn call_with(
    api: &Api,
    method: &str,
    uri: &str,
    host: Option<&str>,
    authorization: Option<&str>,
) -> (StatusCode, Option<String>, Bytes) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = api.service.call_request(req.body(()).unwrap()).await;
    let (parts, body) = resp.into_parts();
    let challenge = parts
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        parts.status,
        challenge,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn clients_not_allowed_on_an_upstream_get_one_answer_for_every_repository() {
    let api = api();
    let d = seeded(
        &api,
        b"a secret layer",
        &[("private.example", "myorg/secret")],
    )
    .await;
    let denied = [
        "/v2/myorg/secret/manifests/v1".to_owned(),
        "/v2/myorg/secret/x/manifests/v1".to_owned(),
        format!("/v2/myorg/secret/blobs/{d}"),
        "/v2/myorg/secret/tags/list".to_owned(),
    ];
    let not_denied = [
        "/v2/myorg/other/manifests/v1".to_owned(),
        format!("/v2/nobody/nothing/blobs/{d}"),
    ];
    // Anonymous: 401 with the same challenge and body everywhere, unknown `?ns=` included.
    let (status, challenge, body) = call(&api, &not_denied[0], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.is_some());
    let unknown_ns = "/v2/myorg/secret/manifests/v1?ns=nowhere.example".to_owned();
    for uri in denied.iter().chain(&not_denied).chain([&unknown_ns]) {
        let answer = call(&api, uri, None).await;
        assert_eq!(
            answer,
            (status, challenge.clone(), body.clone()),
            "anonymous {uri}"
        );
    }
    // A user not allowed on the upstream: 403 DENIED, the same body everywhere.
    let (status, _, body) = call(&api, &not_denied[0], Some(BOB)).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    for uri in denied.iter().chain(&not_denied) {
        let answer = call(&api, uri, Some(BOB)).await;
        assert_eq!(answer, (status, None, body.clone()), "bob {uri}");
    }
}

#[tokio::test]
async fn a_user_allowed_on_the_upstream_is_told_a_repository_is_denied() {
    let api = api();
    let d = seeded(
        &api,
        b"a secret layer",
        &[
            ("private.example", "myorg/secret"),
            ("private.example", "myorg/other"),
            ("public.example", "x"),
        ],
    )
    .await;
    // `myorg/secret/**` denies `myorg/secret` itself and everything under it, cached or not.
    for uri in [
        "/v2/myorg/secret/manifests/v1".to_owned(),
        "/v2/myorg/secret/x/manifests/v1".to_owned(),
        format!("/v2/myorg/secret/blobs/{d}"),
    ] {
        let (s, _, body) = call(&api, &uri, Some(ALICE)).await;
        assert_eq!(
            (s, code(&body).as_str()),
            (StatusCode::FORBIDDEN, "DENIED"),
            "{uri}"
        );
    }
    let (s, _, body) = call(&api, &format!("/v2/myorg/other/blobs/{d}"), Some(ALICE)).await;
    assert_eq!((s, body.as_ref()), (StatusCode::OK, &b"a secret layer"[..]));
    // Authenticated users may learn the upstream names: an unknown one is 404.
    let (s, _, body) = call(&api, "/v2/a/manifests/v1?ns=nowhere.example", Some(ALICE)).await;
    assert_eq!(
        (s, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
    // The public upstream still answers anonymous clients (its patterns deny nothing).
    let (s, _, _) = call(&api, &format!("/v2/x/blobs/{d}?ns=public.example"), None).await;
    assert_eq!(s, StatusCode::OK);
}

/// The same for every route to the private upstream (default, `?ns=`, path prefix, `Host`),
/// GET and HEAD, and for every way of not being alice (no credentials, an unknown token, a
/// wrong Basic password): one 401 with one challenge and one body, whether the
/// repository is denied, cached, unknown or absent.
#[tokio::test]
async fn unauthenticated_answers_are_the_same_on_every_route_and_method() {
    use base64::Engine as _;
    let api = api();
    let d = seeded(
        &api,
        b"a secret layer",
        &[
            ("private.example", "myorg/secret"),
            ("private.example", "myorg/other"),
        ],
    )
    .await;
    let tails = [
        ("myorg/secret", "manifests/v1".to_owned()),
        ("myorg/secret/x", "manifests/v1".to_owned()),
        ("myorg/secret", format!("blobs/{d}")),
        ("myorg/secret", "tags/list".to_owned()),
        ("myorg/other", format!("blobs/{d}")),
        ("myorg/other", "manifests/v1".to_owned()),
        ("nobody/nothing", format!("blobs/{d}")),
    ];
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:wrong-password")
    );
    let (status, challenge, body) = call(&api, "/v2/myorg/other/manifests/v1", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.is_some());
    for (repo, tail) in &tails {
        let routes = [
            (format!("/v2/{repo}/{tail}"), None),
            (format!("/v2/{repo}/{tail}?ns=private.example"), None),
            (format!("/v2/private.example/{repo}/{tail}"), None),
            (
                format!("/v2/{repo}/{tail}"),
                Some("private.cache.test:5000"),
            ),
        ];
        for (uri, host) in &routes {
            for authorization in [
                None,
                Some("Bearer not-a-token-0123456789"),
                Some(basic.as_str()),
            ] {
                for method in ["GET", "HEAD"] {
                    let (s, c, b) = call_with(&api, method, uri, *host, authorization).await;
                    let what = format!("{method} {uri} host {host:?} auth {authorization:?}");
                    assert_eq!((s, &c), (status, &challenge), "{what}");
                    // (In process a HEAD's error carries its body too; hyper drops it on the wire.)
                    assert_eq!(b, body, "{what}");
                }
            }
        }
    }
}

/// A peer request (another replica forwarding a miss) is answered for the identity its
/// token vouches for, under the same rules: the private upstream's content to alice only,
/// a denied repository to nobody, and a token made with another secret, for another path,
/// or by hand gets the anonymous client's 401.
#[tokio::test]
async fn peer_requests_answer_only_what_the_vouched_identity_may_pull() {
    use oci_cache_server::auth::Identity;
    use oci_cache_server::peers::{PeerConfig, PeerSecret, PeerSource, Peers, PEER_HEADER};
    let secret = PeerSecret::new("the replicas' shared secret, 32 bytes or more").unwrap();
    let peers = Peers::new(PeerConfig::new(
        PeerSource::Static(vec!["http://127.0.0.1:1".into()]),
        "http://127.0.0.1:1",
        secret.clone(),
    ))
    .unwrap();
    let mut api = api();
    api.service = api.service.clone().with_peers(peers);
    let d = seeded(
        &api,
        b"a private layer",
        &[
            ("private.example", "myorg/other"),
            ("private.example", "myorg/secret"),
        ],
    )
    .await;
    let peer_call = |path: String, token: String| {
        let service = api.service.clone();
        async move {
            let req = Request::builder()
                .uri(format!("{path}?ns=private.example"))
                .header(PEER_HEADER, token)
                .body(())
                .unwrap();
            let resp = service.call_request(req).await;
            let status = resp.status();
            (status, resp.into_body().collect().await.unwrap().to_bytes())
        }
    };
    let path = format!("/v2/myorg/other/blobs/{d}");
    let alice = Identity::User("alice".into());
    let (s, body) = peer_call(
        path.clone(),
        secret.sign("GET", &path, "private.example", &alice),
    )
    .await;
    assert_eq!(
        (s, body.as_ref()),
        (StatusCode::OK, &b"a private layer"[..])
    );
    let bob = Identity::User("bob".into());
    let (s, _) = peer_call(
        path.clone(),
        secret.sign("GET", &path, "private.example", &bob),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "bob may not pull from private.example"
    );
    let (s, _) = peer_call(
        path.clone(),
        secret.sign("GET", &path, "private.example", &Identity::Anonymous),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let denied = format!("/v2/myorg/secret/blobs/{d}");
    let (s, _) = peer_call(
        denied.clone(),
        secret.sign("GET", &denied, "private.example", &alice),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a denied repository stays denied");
    let other = PeerSecret::new("not the replicas' secret, though long enough").unwrap();
    for token in [
        other.sign("GET", &path, "private.example", &alice),
        secret.sign(
            "GET",
            "/v2/myorg/x/blobs/sha256:00",
            "private.example",
            &alice,
        ),
        secret.sign("HEAD", &path, "private.example", &alice),
        "v1 0 private.example u.YWxpY2U 00".to_owned(),
    ] {
        let (s, body) = peer_call(path.clone(), token.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token}");
        assert!(!body.windows(7).any(|w| w == b"private"), "{token}");
    }
}
