//! An in-process registry that answers the pull API for a fixed content map, honestly, per
//! repository: a manifest or blob exists in a repository only when the map says so. It can
//! be switched "down" (every request answers 503). For property tests that need hundreds
//! of requests per second over many upstreams; the end-to-end tests use the real registry.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::digest::sha256_bytes;

/// The content of one repository: manifests by tag and the digests it holds.
#[derive(Clone, Debug, Default)]
pub struct FakeRepo {
    /// Tag → manifest digest.
    pub tags: BTreeMap<String, String>,
    /// Every digest (manifests, configs, layers) the repository holds.
    pub digests: BTreeSet<String>,
}

/// What a fake registry holds: objects by digest, and which repository holds which.
#[derive(Clone, Debug, Default)]
pub struct FakeContent {
    /// Bytes by digest.
    pub objects: BTreeMap<String, Bytes>,
    /// Media types of the manifests, by digest.
    pub manifests: BTreeMap<String, String>,
    /// Repositories by name.
    pub repos: BTreeMap<String, FakeRepo>,
}

impl FakeContent {
    /// Adds a blob to `repo`; returns its digest.
    pub fn blob(&mut self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_bytes(bytes);
        self.objects
            .insert(digest.clone(), Bytes::copy_from_slice(bytes));
        self.repos
            .entry(repo.to_owned())
            .or_default()
            .digests
            .insert(digest.clone());
        digest
    }

    /// Adds an OCI image manifest naming `config` and `layers` (already added with
    /// [`blob`](Self::blob)) to `repo` under `tag`; returns its digest.
    pub fn image(&mut self, repo: &str, tag: &str, config: &str, layers: &[&str]) -> String {
        let desc = |media: &str, d: &str| serde_json::json!({"mediaType": media, "digest": d, "size": self.objects[d].len()});
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc("application/vnd.oci.image.config.v1+json", config),
            "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
        });
        self.raw_manifest(repo, tag, &manifest)
    }

    /// Adds `manifest` (any JSON) to `repo` under `tag` as an OCI image manifest, without
    /// the blobs it names (as registries accept for foreign layers); returns its digest.
    pub fn raw_manifest(&mut self, repo: &str, tag: &str, manifest: &serde_json::Value) -> String {
        let bytes = serde_json::to_vec(manifest).expect("manifest JSON");
        let digest = self.blob(repo, &bytes);
        self.manifests.insert(
            digest.clone(),
            "application/vnd.oci.image.manifest.v1+json".to_owned(),
        );
        self.repos
            .entry(repo.to_owned())
            .or_default()
            .tags
            .insert(tag.to_owned(), digest.clone());
        digest
    }

    /// Whether `repo` holds `digest`.
    pub fn holds(&self, repo: &str, digest: &str) -> bool {
        self.repos
            .get(repo)
            .is_some_and(|r| r.digests.contains(digest))
    }
}

/// A running fake registry on 127.0.0.1; stops with the runtime that started it.
pub struct FakeRegistry {
    /// Its address.
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    stalled: Arc<std::sync::Mutex<BTreeSet<String>>>,
}

impl FakeRegistry {
    /// Starts serving `content` on an ephemeral port of 127.0.0.1.
    pub async fn start(content: FakeContent) -> FakeRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let down = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let content = Arc::new(content);
        let stalled = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let (d, r, st) = (
            Arc::clone(&down),
            Arc::clone(&requests),
            Arc::clone(&stalled),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (content, down, requests, stalled) = (
                    Arc::clone(&content),
                    Arc::clone(&d),
                    Arc::clone(&r),
                    Arc::clone(&st),
                );
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        requests.fetch_add(1, Ordering::Relaxed);
                        let stall = req.method() == Method::GET
                            && stalled
                                .lock()
                                .expect("stalled set")
                                .iter()
                                .any(|d| req.uri().path().ends_with(&format!("/blobs/{d}")));
                        let resp = if down.load(Ordering::Relaxed) {
                            status(StatusCode::SERVICE_UNAVAILABLE)
                        } else {
                            answer(&content, &req)
                        };
                        let resp = if stall && resp.status() == StatusCode::OK {
                            stalling(resp)
                        } else {
                            resp.map(BodyExt::boxed)
                        };
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeRegistry {
            addr,
            down,
            requests,
            stalled,
        }
    }

    /// From now on, a GET of blob `digest` sends its headers and half its bytes, then
    /// nothing more.
    pub fn stall_blob(&self, digest: &str) {
        self.stalled
            .lock()
            .expect("stalled set")
            .insert(digest.to_owned());
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches every answer to 503 (`true`) or back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The same answer, whose body stops after half its bytes and never ends.
fn stalling(resp: Response<Full<Bytes>>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let bytes = futures_util::FutureExt::now_or_never(body.collect())
        .and_then(Result::ok)
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    let frames = futures_util::stream::iter([Ok::<_, Infallible>(http_body::Frame::data(half))])
        .chain(futures_util::stream::pending());
    Response::from_parts(
        parts,
        BodyExt::boxed(http_body_util::StreamBody::new(frames)),
    )
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = code;
    resp
}

fn answer<B>(content: &FakeContent, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/v2/" {
        return status(StatusCode::OK);
    }
    let Some(tail) = path.strip_prefix("/v2/") else {
        return status(StatusCode::NOT_FOUND);
    };
    let (repo, kind, reference) = match (tail.rfind("/manifests/"), tail.rfind("/blobs/")) {
        (Some(i), _) => (&tail[..i], "manifests", &tail[i + 11..]),
        (None, Some(i)) => (&tail[..i], "blobs", &tail[i + 7..]),
        _ => return status(StatusCode::NOT_FOUND),
    };
    let Some(r) = content.repos.get(repo) else {
        return status(StatusCode::NOT_FOUND);
    };
    let digest = if kind == "manifests" && !reference.contains(':') {
        match r.tags.get(reference) {
            Some(d) => d.clone(),
            None => return status(StatusCode::NOT_FOUND),
        }
    } else {
        reference.to_owned()
    };
    let is_manifest = content.manifests.contains_key(&digest);
    if !r.digests.contains(&digest) || (kind == "manifests" && !is_manifest) {
        return status(StatusCode::NOT_FOUND);
    }
    let bytes = content.objects[&digest].clone();
    let len = bytes.len();
    let mut resp = Response::new(Full::new(if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        bytes
    }));
    let h = resp.headers_mut();
    h.insert("content-length", len.into());
    h.insert(
        "docker-content-digest",
        digest.parse().expect("header value"),
    );
    let media = content
        .manifests
        .get(&digest)
        .map_or("application/octet-stream", String::as_str);
    h.insert("content-type", media.parse().expect("header value"));
    resp
}
