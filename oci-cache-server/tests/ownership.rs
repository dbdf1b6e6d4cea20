//! Property: content belongs to (upstream, repository), not to the cache. Over random
//! sequences of requests (identities, routes by default / `?ns=` / path prefix / `Host`,
//! GET / HEAD / ranges, manifests by tag and digest, blobs) against two honest upstreams
//! that share a layer, with upstreams going down and coming back, every answer matches a
//! model: while an upstream is up, 200 exactly when its repository holds the object; while
//! it is down, 200 for what was served before through that same (upstream, repository)
//! and whose bytes that upstream produced, and never for what that repository does not
//! hold; 401/403 whenever the identity may not pull.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod in_process;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use in_process::{get_as, InProcess};
use oci_cache_core::{Digest, UpstreamConfig, Upstreams};
use oci_cache_server::auth::{Access, AccessPolicy, ClientAuth};
use oci_cache_server::CacheService;
use oci_cache_storage::BlobStore;
use proptest::prelude::*;
use support::{FakeContent, FakeUpstream, FaultMode};

const UPSTREAMS: [&str; 2] = ["docker.io", "private"];
const REPOS: [&str; 3] = ["pub/app", "pub/other", "team/secret"];
const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";

/// Two upstreams: docker.io (anonymous) holds pub/app and pub/other; private (alice only)
/// holds team/secret. All three share a layer.
fn contents() -> [FakeContent; 2] {
    let mut public = FakeContent::default();
    let shared = public.blob("pub/app", b"shared base layer");
    let l1 = public.blob("pub/app", b"public app layer");
    let c1 = public.blob("pub/app", b"{\"config\":\"app\"}");
    public.image("pub/app", "v1", &c1, &[&shared, &l1]);
    let l3 = public.blob("pub/other", b"other layer");
    let c3 = public.blob("pub/other", b"{\"config\":\"other\"}");
    public.blob("pub/other", b"shared base layer");
    public.image("pub/other", "v1", &c3, &[&shared, &l3]);
    let mut private = FakeContent::default();
    let shared2 = private.blob("team/secret", b"shared base layer");
    assert_eq!(shared, shared2);
    let secret = private.blob("team/secret", b"secret layer: do not leak");
    let c2 = private.blob("team/secret", b"{\"config\":\"secret\"}");
    private.image("team/secret", "v1", &c2, &[&shared2, &secret]);
    [public, private]
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Anonymous,
    Alice,
    Bob,
}

#[derive(Clone, Copy, Debug)]
enum Route {
    Default,
    Ns,
    Prefix,
    Host,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tag,
    ManifestDigest,
    Blob,
    BlobHead,
    BlobRange,
    ManifestHead,
}

#[derive(Clone, Debug)]
enum Op {
    Request {
        who: Who,
        route: Route,
        upstream: usize,
        repo: usize,
        kind: Kind,
        object: usize,
    },
    Down(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let who = prop_oneof![Just(Who::Anonymous), Just(Who::Alice), Just(Who::Bob)];
    let route = prop_oneof![
        Just(Route::Default),
        Just(Route::Ns),
        Just(Route::Prefix),
        Just(Route::Host)
    ];
    let kind = prop_oneof![
        Just(Kind::Tag),
        Just(Kind::ManifestDigest),
        Just(Kind::ManifestHead),
        Just(Kind::Blob),
        Just(Kind::BlobHead),
        Just(Kind::BlobRange)
    ];
    prop_oneof![
        8 => (who, route, 0..2usize, 0..REPOS.len(), kind, 0..16usize).prop_map(
            |(who, route, upstream, repo, kind, object)| Op::Request { who, route, upstream, repo, kind, object }
        ),
        1 => (0..2usize, any::<bool>()).prop_map(|(u, d)| Op::Down(u, d)),
    ]
}

struct World {
    service: CacheService,
    cache: InProcess,
    registries: Vec<FakeUpstream>,
    contents: [FakeContent; 2],
    /// Every digest of both upstreams, sorted: `object` indexes it.
    objects: Vec<String>,
    down: [bool; 2],
    /// (upstream, repo, digest) served before (with refs of served manifests).
    served: HashSet<(usize, String, String)>,
    /// (upstream, repo) whose tag v1 was served before.
    tags_served: HashSet<(usize, String)>,
    /// (upstream, digest) whose whole bytes came through that upstream before.
    possessed: HashSet<(usize, String)>,
}

fn world() -> World {
    world_with(contents())
}

fn world_with(contents: [FakeContent; 2]) -> World {
    let mut registries = Vec::new();
    let mut configs = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let reg = FakeUpstream::start(c.clone());
        let mut config = UpstreamConfig::new(UPSTREAMS[i], reg.url());
        config.hosts = vec![format!("{}.cache.test", UPSTREAMS[i])];
        config.connect_timeout = Duration::from_secs(10);
        config.breaker_threshold = u32::MAX;
        registries.push(reg);
        configs.push(config);
    }
    let cache = InProcess::new();
    let upstreams = Arc::new(Upstreams::new(configs).unwrap());
    let tokens = HashMap::from([
        (ALICE.to_owned(), "alice".to_owned()),
        (BOB.to_owned(), "bob".to_owned()),
    ]);
    let auth = Arc::new(ClientAuth::new(HashMap::new(), tokens));
    let rules = HashMap::from([
        ("docker.io".to_owned(), Access::Anonymous),
        (
            "private".to_owned(),
            Access::Users(vec!["alice".to_owned()]),
        ),
    ]);
    let service = CacheService::new(cache.engine.clone(), upstreams)
        .with_access(AccessPolicy::new(Some(auth), rules));
    let mut objects: Vec<String> = contents
        .iter()
        .flat_map(|c| c.objects.keys().cloned())
        .collect();
    objects.sort();
    objects.dedup();
    World {
        service,
        cache,
        registries,
        contents,
        objects,
        down: [false; 2],
        served: HashSet::new(),
        tags_served: HashSet::new(),
        possessed: HashSet::new(),
    }
}

fn uri_and_host(route: Route, upstream: usize, repo: &str, tail: &str) -> (String, Option<String>) {
    let name = UPSTREAMS[upstream];
    match route {
        Route::Default => (format!("/v2/{repo}/{tail}"), None),
        Route::Ns => (format!("/v2/{repo}/{tail}?ns={name}"), None),
        Route::Prefix => (format!("/v2/{name}/{repo}/{tail}"), None),
        Route::Host => (
            format!("/v2/{repo}/{tail}"),
            Some(format!("{name}.cache.test:5000")),
        ),
    }
}

/// One request of a test: `method` of `tail` in `repo` of upstream `upstream` by `route`,
/// with a `Range` and a bearer token when given.
struct Ask<'a> {
    method: &'a str,
    route: Route,
    upstream: usize,
    repo: &'a str,
    tail: &'a str,
    range: Option<&'a str>,
    token: Option<&'a str>,
}

impl World {
    /// Status, headers and body of `ask`.
    async fn ask(&self, ask: &Ask<'_>) -> (StatusCode, http::HeaderMap, Bytes) {
        let (uri, host) = uri_and_host(ask.route, ask.upstream, ask.repo, ask.tail);
        let mut req = Request::builder().method(ask.method).uri(&uri);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        if let Some(r) = ask.range {
            req = req.header("range", r);
        }
        if let Some(t) = ask.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = self.service.call_request(req.body(()).unwrap()).await;
        let (parts, body) = resp.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let Op::Request {
            who,
            route,
            upstream,
            repo,
            kind,
            object,
        } = op.clone()
        else {
            if let Op::Down(u, d) = op {
                self.down[*u] = *d;
                self.registries[*u].set_mode(if *d {
                    FaultMode::Unavailable
                } else {
                    FaultMode::Ok
                });
            }
            return Ok(());
        };
        // The default route is docker.io.
        let upstream = if matches!(route, Route::Default) {
            0
        } else {
            upstream
        };
        let repo = REPOS[repo];
        let content = &self.contents[upstream];
        let (tail, digest) = match kind {
            Kind::Tag => match content.repos.get(repo).and_then(|r| r.tags.get("v1")) {
                Some(d) => ("manifests/v1".to_owned(), d.clone()),
                None => ("manifests/v1".to_owned(), String::new()),
            },
            Kind::ManifestDigest | Kind::ManifestHead => {
                let d = self.objects[object % self.objects.len()].clone();
                (format!("manifests/{d}"), d)
            }
            Kind::Blob | Kind::BlobHead | Kind::BlobRange => {
                let d = self.objects[object % self.objects.len()].clone();
                (format!("blobs/{d}"), d)
            }
        };
        let (uri, host) = uri_and_host(route, upstream, repo, &tail);
        let method = if matches!(kind, Kind::BlobHead | Kind::ManifestHead) {
            Method::HEAD
        } else {
            Method::GET
        };
        let mut req = Request::builder().method(method.clone()).uri(&uri);
        if let Some(h) = &host {
            req = req.header("host", h);
        }
        match who {
            Who::Anonymous => {}
            Who::Alice => req = req.header("authorization", format!("Bearer {ALICE}")),
            Who::Bob => req = req.header("authorization", format!("Bearer {BOB}")),
        }
        if matches!(kind, Kind::BlobRange) {
            req = req.header("range", "bytes=0-3");
        }
        let resp = self.service.call_request(req.body(()).unwrap()).await;
        let status = resp.status();
        let body = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
            .await
            .expect("body within 20 s")
            .map(http_body_util::Collected::to_bytes);
        let what = format!("{op:?} {method} {uri} host={host:?} -> {status}");

        // Identity first: private is alice's only.
        if upstream == 1 && !matches!(who, Who::Alice) {
            let expected = if matches!(who, Who::Anonymous) {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            prop_assert_eq!(status, expected, "{}", what);
            return Ok(());
        }
        let is_manifest_kind =
            matches!(kind, Kind::Tag | Kind::ManifestDigest | Kind::ManifestHead);
        // The blobs endpoint serves any object of the repository (manifests too, as real
        // registries do); the manifests endpoint only manifests.
        let holds = !digest.is_empty()
            && content.holds(repo, &digest)
            && (!is_manifest_kind || content.manifests.contains_key(&digest));
        let ok = status.is_success();
        if !holds {
            prop_assert!(!ok, "served what the repository does not hold: {}", what);
            return Ok(());
        }
        let key = (upstream, repo.to_owned(), digest.clone());
        if self.down[upstream] {
            let known = match kind {
                Kind::Tag => self.tags_served.contains(&(upstream, repo.to_owned())),
                _ => {
                    self.served.contains(&key)
                        && self.possessed.contains(&(upstream, digest.clone()))
                        && self.stored(&digest).await
                }
            };
            if known {
                prop_assert!(
                    ok,
                    "offline, what was served before through this route fails: {}",
                    what
                );
            }
        } else {
            prop_assert!(ok, "the upstream holds it, yet: {}", what);
        }
        if ok {
            let body = body.map_err(|e| TestCaseError::fail(format!("{what}: body {e}")))?;
            let full = &self.contents[upstream].objects[&digest];
            let expected: Bytes = match (method == Method::HEAD, kind) {
                (true, _) => Bytes::new(),
                (false, Kind::BlobRange) => full.slice(..4.min(full.len())),
                _ => full.clone(),
            };
            prop_assert_eq!(body, expected, "{}", what);
            self.learn(upstream, repo, &digest, kind).await;
        }
        Ok(())
    }

    /// Records what a success makes known: the object, a manifest's references, a tag.
    async fn learn(&mut self, upstream: usize, repo: &str, digest: &str, kind: Kind) {
        self.served
            .insert((upstream, repo.to_owned(), digest.to_owned()));
        if matches!(kind, Kind::Tag) {
            self.tags_served.insert((upstream, repo.to_owned()));
        }
        // Whole bytes through this upstream: it produced them (a range or HEAD proves less).
        if matches!(
            kind,
            Kind::Blob | Kind::Tag | Kind::ManifestDigest | Kind::ManifestHead
        ) {
            self.possessed.insert((upstream, digest.to_owned()));
        }
        // Only a manifest fetched as one links its references: through the blobs endpoint
        // its bytes are opaque.
        let as_manifest = matches!(kind, Kind::Tag | Kind::ManifestDigest | Kind::ManifestHead);
        if let Some(_media) = self.contents[upstream]
            .manifests
            .get(digest)
            .filter(|_| as_manifest)
        {
            let bytes = &self.contents[upstream].objects[digest];
            let refs = oci_cache_core::manifest::references(bytes);
            for r in refs {
                self.served
                    .insert((upstream, repo.to_owned(), r.to_string()));
            }
        }
        // A full blob GET commits in the background: wait for it so the model knows.
        if matches!(kind, Kind::Blob) {
            for _ in 0..200 {
                if self.stored(digest).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    async fn stored(&self, digest: &str) -> bool {
        let d = Digest::parse(digest).unwrap();
        self.cache.store.head(&d).await.unwrap().is_some()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn content_is_served_only_through_the_repositories_it_belongs_to(ops in proptest::collection::vec(op(), 1..24)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let mut w = world();
            for op in &ops {
                w.apply(op).await?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}

/// The attack the issue names, step by step: alice pulls the private image; then an
/// anonymous client asks for its digests through every docker.io route, and bob through
/// private's.
#[tokio::test]
async fn private_layers_stay_private_after_alice_pulls_them() {
    let mut w = world();
    for kind in [Kind::Tag, Kind::Blob] {
        for object in 0..w.objects.len() {
            w.apply(&Op::Request {
                who: Who::Alice,
                route: Route::Ns,
                upstream: 1,
                repo: 2,
                kind,
                object,
            })
            .await
            .unwrap();
        }
    }
    let secret = support::sha256_bytes(b"secret layer: do not leak");
    assert!(
        w.stored(&secret).await,
        "alice's pull stored the secret layer"
    );
    let before = w.registries[1].requests();
    for route in [Route::Default, Route::Ns, Route::Prefix, Route::Host] {
        for repo in ["pub/app", "team/secret"] {
            for (method, range) in [("GET", None), ("HEAD", None), ("GET", Some("bytes=0-3"))] {
                let tail = format!("blobs/{secret}");
                let (uri, _) = uri_and_host(route, 0, repo, &tail);
                let ask = Ask {
                    method,
                    route,
                    upstream: 0,
                    repo,
                    tail: &tail,
                    range,
                    token: None,
                };
                let (status, _, body) = w.ask(&ask).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri} {range:?}");
                assert!(
                    !body.windows(6).any(|w| w == b"secret"),
                    "{method} {uri}: {body:?}"
                );
            }
        }
    }
    assert_eq!(
        w.registries[1].requests(),
        before,
        "docker.io requests reached the private upstream"
    );
}

/// The ordinary pull (manifest by tag, then its blobs, same repository) asks the upstream
/// once per object it lacks and nothing more: a layer another repository of the same
/// upstream brought in is served from storage, because the manifest names it and the
/// upstream produced its bytes. A layer only another upstream produced is fetched again
/// from this one (one GET, no HEAD): bytes go out through an upstream only if it can
/// produce them.
#[tokio::test]
async fn an_ordinary_pull_costs_no_extra_upstream_request() {
    let w = world();
    let pull = |repo: &'static str, ns: &'static str, token: Option<&'static str>| {
        let svc = w.service.clone();
        async move {
            let (status, manifest) =
                get_as(&svc, &format!("/v2/{repo}/manifests/v1?ns={ns}"), token).await;
            assert_eq!(status, StatusCode::OK, "{repo}");
            let refs = oci_cache_core::manifest::references(&manifest);
            for r in &refs {
                let uri = format!("/v2/{repo}/blobs/{r}?ns={ns}");
                let (status, _) = get_as(&svc, &uri, token).await;
                assert_eq!(status, StatusCode::OK, "{repo} {r}");
            }
            refs.len()
        }
    };
    let shared = support::sha256_bytes(b"shared base layer");
    let stored = |d: String| {
        let w = &w;
        async move {
            for _ in 0..200 {
                if w.stored(&d).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{d} was never stored");
        }
    };
    assert_eq!(pull("pub/app", "docker.io", None).await, 3);
    assert_eq!(
        w.registries[0].requests(),
        4,
        "a manifest GET and a GET per blob"
    );
    stored(shared.clone()).await;
    // pub/other names the shared layer: served from storage, no request for it.
    assert_eq!(pull("pub/other", "docker.io", None).await, 3);
    assert_eq!(
        w.registries[0].requests(),
        7,
        "pub/other: its manifest and its own two blobs, nothing for the shared layer"
    );
    // private never produced the shared layer: it is fetched from private once.
    assert_eq!(pull("team/secret", "private", Some(ALICE)).await, 3);
    assert_eq!(
        w.registries[1].requests(),
        4,
        "a manifest GET and a GET per blob"
    );
    // Pulled again: nothing goes upstream.
    pull("pub/app", "docker.io", None).await;
    pull("pub/other", "docker.io", None).await;
    pull("team/secret", "private", Some(ALICE)).await;
    assert_eq!(w.registries[0].requests(), 7, "a warm pull asked docker.io");
    assert_eq!(w.registries[1].requests(), 4, "a warm pull asked private");
}

/// A public manifest may name any digest (registries accept foreign layers they do not
/// hold): one naming the private layer opens nothing, on any method or range.
#[tokio::test]
async fn a_public_manifest_naming_a_private_digest_opens_nothing() {
    let secret = support::sha256_bytes(b"secret layer: do not leak");
    let secret_config = support::sha256_bytes(b"{\"config\":\"secret\"}");
    let mut contents = contents();
    let desc = |d: &str| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": 25, "urls": ["https://example.invalid/x"]});
    contents[0].raw_manifest(
        "evil/x",
        "latest",
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": secret_config, "size": 19},
            "layers": [desc(&secret)],
        }),
    );
    let w = world_with(contents);
    // alice pulls the private image: the secret layer and config are stored.
    let (s, _) = get_as(
        &w.service,
        "/v2/team/secret/manifests/v1?ns=private",
        Some(ALICE),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for d in [&secret, &secret_config] {
        let (s, _) = get_as(
            &w.service,
            &format!("/v2/team/secret/blobs/{d}?ns=private"),
            Some(ALICE),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
    for _ in 0..200 {
        if w.stored(&secret).await && w.stored(&secret_config).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The attacker's manifest links both digests to docker.io's evil/x.
    let (s, _) = get_as(&w.service, "/v2/evil/x/manifests/latest", None).await;
    assert_eq!(s, StatusCode::OK);
    for d in [&secret, &secret_config] {
        for (method, range) in [("GET", None), ("HEAD", None), ("GET", Some("bytes=0-3"))] {
            for uri in [
                format!("/v2/evil/x/blobs/{d}"),
                format!("/v2/evil/x/blobs/{d}?ns=docker.io"),
                format!("/v2/docker.io/evil/x/blobs/{d}"),
                format!("/v2/evil/x/manifests/{d}"),
            ] {
                let mut req = Request::builder().method(method).uri(&uri);
                if let Some(r) = range {
                    req = req.header("range", r);
                }
                let resp = w.service.call_request(req.body(()).unwrap()).await;
                let status = resp.status();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert!(!status.is_success(), "{method} {uri} {range:?}: {status}");
                assert!(
                    !body.windows(6).any(|w| w == b"secret"),
                    "{method} {uri}: {body:?}"
                );
            }
        }
    }
}

/// The status page, its JSON and the metrics name a private repository only to a client
/// that may pull from its upstream; tags that do not exist are not counted.
#[tokio::test]
async fn operator_pages_name_private_repositories_only_to_those_allowed() {
    let w = world();
    let call = |uri: &'static str, token: Option<&'static str>| {
        let svc = w.service.clone();
        async move {
            let (status, body) = get_as(&svc, uri, token).await;
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (s, _) = call("/v2/team/secret/manifests/v1?ns=private", Some(ALICE)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call("/v2/pub/app/manifests/v1", None).await;
    assert_eq!(s, StatusCode::OK);
    for junk in ["/v2/pub/app/manifests/nope", "/v2/pub/junk/manifests/v1"] {
        let (s, _) = call(junk, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{junk}");
    }
    for (who, token) in [
        ("anonymous", None),
        ("bob", Some(BOB)),
        ("wrong token", Some("nope-nope-nope-nope")),
    ] {
        for page in ["/", "/status", "/status.json", "/metrics"] {
            let (s, body) = call(page, token).await;
            assert_eq!(s, StatusCode::OK, "{who} {page}");
            assert!(
                !body.contains("team/secret"),
                "{who} {page} names the private repository:\n{body}"
            );
            assert!(
                !body.contains("junk") && !body.contains(":nope"),
                "{who} {page} counts a missing tag:\n{body}"
            );
        }
        let (_, json) = call("/status.json", token).await;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["most_pulled"][0]["image"], "docker.io/pub/app:v1",
            "{who}: {json}"
        );
    }
    let (_, json) = call("/status.json", Some(ALICE)).await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let images: Vec<&str> = v["most_pulled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["image"].as_str().unwrap())
        .collect();
    assert_eq!(
        images,
        ["docker.io/pub/app:v1", "private/team/secret:v1"],
        "{json}"
    );
}

/// A fill that runs with the private upstream's credentials and stalls does not hold back a
/// client of docker.io that asks for the same (shared) layer: it gets its own fill from its
/// own upstream, whole and verified, while the private one still hangs.
#[tokio::test]
async fn a_client_of_one_upstream_never_waits_on_another_upstreams_fill() {
    let w = world();
    let shared = support::sha256_bytes(b"shared base layer");
    w.registries[1].set_blob_mode(&shared, FaultMode::Stall);
    let private = {
        let svc = w.service.clone();
        let uri = format!("/v2/team/secret/blobs/{shared}?ns=private");
        tokio::spawn(async move {
            let req = Request::builder()
                .uri(uri)
                .header("authorization", format!("Bearer {ALICE}"))
                .body(())
                .unwrap();
            let resp = svc.call_request(req).await;
            resp.into_body()
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
        })
    };
    // Wait until the private fill has started (its upstream GET arrived).
    for _ in 0..500 {
        if w.registries[1].requests() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        w.registries[1].requests() > 0,
        "the private fill never started"
    );
    let req = Request::builder()
        .uri(format!("/v2/pub/app/blobs/{shared}"))
        .body(())
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), async {
        let resp = w.service.call_request(req).await;
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    })
    .await
    .expect("the docker.io client waited on the private upstream's stalled fill");
    assert_eq!(
        answer,
        (StatusCode::OK, Bytes::from_static(b"shared base layer"))
    );
    assert!(!private.is_finished(), "the private fill should still hang");
    private.abort();
}

/// Starts alice's GET of `digest` in team/secret through the private upstream, and waits
/// until that upstream has the request (the fill runs).
async fn alice_starts_a_fill(
    w: &World,
    digest: &str,
) -> tokio::task::JoinHandle<(StatusCode, Bytes)> {
    let before = w.registries[1].requests();
    let svc = w.service.clone();
    let uri = format!("/v2/team/secret/blobs/{digest}?ns=private");
    let task = tokio::spawn(async move {
        let req = Request::builder()
            .uri(uri)
            .header("authorization", format!("Bearer {ALICE}"))
            .body(())
            .unwrap();
        let resp = svc.call_request(req).await;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes);
        (status, body.unwrap_or_default())
    });
    for _ in 0..500 {
        if w.registries[1].requests() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        w.registries[1].requests() > before,
        "the private fill never started"
    );
    task
}

/// While alice's fill of the private layer runs (stalled half way), nobody else gets its
/// bytes: an anonymous client through every docker.io route (GET, HEAD, range; in pub/app
/// and in team/secret), and bob through the private route. None of them waits on the fill.
#[tokio::test]
async fn a_running_fill_of_a_private_layer_serves_no_other_route() {
    let w = world();
    let secret = support::sha256_bytes(b"secret layer: do not leak");
    w.registries[1].set_blob_mode(&secret, FaultMode::Stall);
    let alice = alice_starts_a_fill(&w, &secret).await;
    let private_before = w.registries[1].requests();
    let mut asks = Vec::new();
    for route in [Route::Default, Route::Ns, Route::Prefix, Route::Host] {
        for repo in ["pub/app", "team/secret"] {
            asks.push((route, 0, repo, None));
        }
    }
    asks.push((Route::Ns, 1, "team/secret", Some(BOB)));
    asks.push((Route::Prefix, 1, "team/secret", Some(BOB)));
    asks.push((Route::Ns, 1, "team/secret", None));
    for (route, upstream, repo, token) in asks {
        for (method, range) in [("GET", None), ("HEAD", None), ("GET", Some("bytes=0-3"))] {
            let tail = format!("blobs/{secret}");
            let (uri, _) = uri_and_host(route, upstream, repo, &tail);
            let ask = Ask {
                method,
                route,
                upstream,
                repo,
                tail: &tail,
                range,
                token,
            };
            let (status, _, body) = tokio::time::timeout(Duration::from_secs(20), w.ask(&ask))
                .await
                .unwrap_or_else(|_| panic!("{method} {uri} {range:?} waited on alice's fill"));
            let want: &[StatusCode] = if upstream == 0 {
                &[StatusCode::NOT_FOUND]
            } else {
                &[StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN]
            };
            assert!(
                want.contains(&status),
                "{method} {uri} {range:?} as {token:?}: {status}"
            );
            assert!(
                !body.windows(6).any(|w| w == b"secret"),
                "{method} {uri}: {body:?}"
            );
        }
    }
    assert_eq!(
        w.registries[1].requests(),
        private_before,
        "others' requests reached the private upstream"
    );
    // Alice herself, on the fill's own route: a HEAD answers from the running fill (its
    // size), with no upstream request.
    for route in [Route::Ns, Route::Prefix, Route::Host] {
        let tail = format!("blobs/{secret}");
        let (uri, _) = uri_and_host(route, 1, "team/secret", &tail);
        let ask = Ask {
            method: "HEAD",
            route,
            upstream: 1,
            repo: "team/secret",
            tail: &tail,
            range: None,
            token: Some(ALICE),
        };
        let (status, headers, _) = w.ask(&ask).await;
        assert_eq!(status, StatusCode::OK, "alice HEAD {uri}");
        assert_eq!(
            headers["content-length"],
            b"secret layer: do not leak".len().to_string().as_str(),
            "alice HEAD {uri}"
        );
    }
    assert_eq!(
        w.registries[1].requests(),
        private_before,
        "a HEAD during the fill asked the upstream"
    );
    // The operator pages show alice's running download to her, and nothing of it to an
    // anonymous client.
    for (token, sees) in [(Some(ALICE), true), (None, false)] {
        for page in ["/status.json", "/"] {
            let (status, body) = get_as(&w.service, page, token).await;
            assert_eq!(status, StatusCode::OK);
            let body = String::from_utf8_lossy(&body);
            let hex = secret.trim_start_matches("sha256:");
            assert_eq!(body.contains(hex), sees, "{page} as {token:?}: {body}");
            assert_eq!(body.contains("team/secret"), sees, "{page} as {token:?}");
        }
    }
    assert!(!alice.is_finished(), "alice's fill should still hang");
    alice.abort();
}

/// A fill that runs with the private upstream's credentials and fails (the upstream sends
/// bytes that are not the layer) leaves nothing that fails anyone else: a docker.io client
/// of the same shared layer gets it, whole and as a range, from its own upstream; alice
/// never gets bytes only docker.io produced. (Waiting on a running fill of another
/// upstream is the test above: a client that never joins it cannot fail with it.)
#[tokio::test]
async fn a_client_of_one_upstream_never_fails_with_another_upstreams_fill() {
    let w = world();
    let shared = support::sha256_bytes(b"shared base layer");
    w.registries[1].set_blob_mode(&shared, FaultMode::WrongDigest);
    let alice = alice_starts_a_fill(&w, &shared).await;
    for (method, range, want) in [
        ("GET", None, &b"shared base layer"[..]),
        ("GET", Some("bytes=0-5"), &b"shared"[..]),
        ("HEAD", None, &b""[..]),
    ] {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/v2/pub/app/blobs/{shared}"));
        if let Some(r) = range {
            req = req.header("range", r);
        }
        let resp = w.service.call_request(req.body(()).unwrap()).await;
        let status = resp.status();
        assert!(status.is_success(), "{method} {range:?}: {status}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), want, "{method} {range:?}");
    }
    let (_, body) = alice.await.unwrap();
    assert_ne!(
        body.as_ref(),
        b"shared base layer".as_ref(),
        "alice got bytes only docker.io produced"
    );
}
