//! One API request: route, choose the upstream, call the engine, build the response.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::TryStreamExt;
use http::request::Parts;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use oci_cache_core::name::RepositoryName;
use oci_cache_core::range::parse_range;
use oci_cache_core::route::{Route, RouteParseError};
use oci_cache_core::{
    BlobFile, BlobResponse, Engine, EngineError, RouteError, StorageError, UpstreamClient,
    Upstreams, REFERRERS_MEDIA_TYPE,
};

use crate::auth::{AccessPolicy, Identity};
use crate::body::{full_body, Body, BodyError};
use crate::error::{error_response, ApiError};
use crate::outcome::{LogInfo, Outcome};
use crate::peers::{Forward, Forwarded, LocalFill, Peers, PEER_HEADER};
use crate::query::{client_link, forwarded_query, percent_decode, query_param};
use crate::zero_copy::Sends;

/// A failed request, with the upstream it was routed to (for the request log), if any.
#[derive(Debug)]
struct Failure {
    /// What went wrong.
    error: ApiError,
    /// The upstream the request was routed to, once it was.
    upstream: Option<String>,
}

impl<E: Into<ApiError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            error: e.into(),
            upstream: None,
        }
    }
}

/// Attaches the upstream `client` to an error, for the request log.
fn at<E: Into<ApiError>>(client: &UpstreamClient) -> impl FnOnce(E) -> Failure + '_ {
    move |e| Failure {
        error: e.into(),
        upstream: Some(client.name().to_owned()),
    }
}

/// The log details of a response from the upstream `client`.
fn through(client: &UpstreamClient, cache: &'static str) -> LogInfo {
    LogInfo {
        upstream: Some(client.name().to_owned()),
        cache,
    }
}

/// Answers one API request (`route`, parsed from its path); a failure becomes its OCI
/// error response.
pub(crate) async fn handle(
    engine: &Arc<Engine>,
    upstreams: &Upstreams,
    access: &AccessPolicy,
    peers: Option<&Arc<Peers>>,
    parts: &Parts,
    route: Result<Route, RouteParseError>,
) -> Outcome {
    match answer(engine, upstreams, access, peers, parts, route).await {
        Ok(outcome) => outcome,
        Err(failure) => {
            tracing::debug!(error = %failure.error, "request failed");
            Outcome {
                response: error_response(&failure.error),
                log: LogInfo {
                    upstream: failure.upstream,
                    ..LogInfo::default()
                },
            }
        }
    }
}

/// The outcome of a request that succeeds, or why it failed.
async fn answer(
    engine: &Arc<Engine>,
    upstreams: &Upstreams,
    access: &AccessPolicy,
    peers: Option<&Arc<Peers>>,
    parts: &Parts,
    route: Result<Route, RouteParseError>,
) -> Result<Outcome, Failure> {
    let route = route?;
    let head = parts.method == Method::HEAD;
    if !(head || parts.method == Method::GET) || route == Route::Upload {
        return Err(ApiError::Unsupported.into());
    }
    let query = parts.uri.query().unwrap_or("");
    let ns = query_param(query, "ns");
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.host());
    // A peer replica's request carries the upstream and the identity it checked, vouched
    // for by the shared secret; anything else with the peer header is refused.
    let from_peer = parts.headers.contains_key(PEER_HEADER);
    let (identity, ns) = if from_peer {
        let (upstream, identity) = peer_request(peers, parts)?;
        (identity, Some(upstream))
    } else {
        (access.identify(&parts.headers).await?, ns)
    };
    let select = |name: &str| select(upstreams, access, &identity, ns.as_deref(), host, name);

    match route {
        Route::ApiVersion if identity == Identity::Anonymous && !access.anonymous_welcome() => {
            Err(ApiError::Unauthenticated.into())
        }
        Route::ApiVersion => Ok(Outcome::plain(json_response(StatusCode::OK, "{}", head))),
        Route::Upload => Err(ApiError::Unsupported.into()),
        Route::Manifest { name, reference } => {
            let (client, repo) = select(&name)?;
            let m = engine
                .manifest(&client, &repo, &reference)
                .await
                .map_err(at(&client))?;
            let mut resp = Response::new(if head {
                full_body("")
            } else {
                full_body(m.bytes.clone())
            });
            let h = resp.headers_mut();
            insert(h, header::CONTENT_TYPE, &m.media_type);
            insert(h, header::CONTENT_LENGTH, &m.bytes.len().to_string());
            insert(h, "docker-content-digest", &m.digest.to_string());
            Ok(Outcome {
                response: resp,
                log: through(&client, "-"),
            })
        }
        Route::Blob { name, digest } => {
            let (client, repo) = select(&name)?;
            if head {
                let size = engine
                    .blob_size(&client, &repo, &digest)
                    .await
                    .map_err(at(&client))?;
                let mut resp = Response::new(full_body(""));
                blob_headers(resp.headers_mut(), &digest.to_string(), Some(size));
                return Ok(Outcome {
                    response: resp,
                    log: through(&client, "-"),
                });
            }
            let range = parts
                .headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_range(v).ok().flatten());
            if let Some(sends) = parts.extensions.get::<Sends>() {
                let file = engine
                    .blob_file(&client, &repo, &digest, range, ZERO_COPY_MIN)
                    .await
                    .map_err(at(&client))?;
                if let Some(file) = file {
                    if let (Some(peers), true) = (peers, from_peer) {
                        peers.stats().served.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(Outcome {
                        response: file_response(&digest.to_string(), file, sends)?,
                        log: through(&client, "hit"),
                    });
                }
            }
            if let Some(peers) = peers {
                if from_peer {
                    peers.stats().served.fetch_add(1, Ordering::Relaxed);
                } else if let Some(outcome) =
                    via_owner(engine, peers, parts, &client, &repo, &digest, &identity).await?
                {
                    return Ok(outcome);
                }
            }
            let blob = engine
                .blob(&client, &repo, &digest, range)
                .await
                .map_err(at(&client))?;
            let outcome = if blob.cached { "hit" } else { "miss" };
            Ok(Outcome {
                response: blob_response(&digest.to_string(), blob),
                log: through(&client, outcome),
            })
        }
        Route::Referrers { name, digest } => {
            let (client, repo) = select(&name)?;
            let artifact_type = query_param(query, "artifactType").map(|t| percent_decode(&t));
            let r = engine
                .referrers(&client, &repo, &digest, artifact_type.as_deref())
                .await
                .map_err(at(&client))?;
            let mut resp = Response::new(if head {
                full_body("")
            } else {
                full_body(r.body.clone())
            });
            let h = resp.headers_mut();
            insert(h, header::CONTENT_TYPE, REFERRERS_MEDIA_TYPE);
            insert(h, header::CONTENT_LENGTH, &r.body.len().to_string());
            if r.filtered {
                insert(h, "oci-filters-applied", "artifactType");
            }
            Ok(Outcome {
                response: resp,
                log: through(&client, if r.stale { "stale" } else { "-" }),
            })
        }
        Route::TagsList { name } => {
            let (client, repo) = select(&name)?;
            let upstream_query = forwarded_query(query);
            let list = engine
                .tags_list(&client, &repo, &upstream_query)
                .await
                .map_err(at(&client))?;
            let mut resp = Response::new(if head {
                full_body("")
            } else {
                full_body(list.body.clone())
            });
            insert(resp.headers_mut(), header::CONTENT_TYPE, "application/json");
            insert(
                resp.headers_mut(),
                header::CONTENT_LENGTH,
                &list.body.len().to_string(),
            );
            if let Some(link) = list
                .link
                .as_deref()
                .and_then(|l| client_link(l, parts.uri.path(), ns.as_deref()))
            {
                insert(resp.headers_mut(), header::LINK, &link);
            }
            Ok(Outcome {
                response: resp,
                log: through(&client, if list.stale { "stale" } else { "-" }),
            })
        }
    }
}

/// The upstream and identity a peer request's token vouches for (a 401 when there is no
/// peer set-up or the token does not verify: a client cannot pose as a peer).
fn peer_request(peers: Option<&Arc<Peers>>, parts: &Parts) -> Result<(String, Identity), ApiError> {
    let token = parts
        .headers
        .get(PEER_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthenticated)?;
    let peers = peers.ok_or(ApiError::Unauthenticated)?;
    peers
        .verify(token, parts.method.as_str(), parts.uri.path())
        .map_err(|e| {
            tracing::warn!(error = %e, path = parts.uri.path(), "peer token refused");
            ApiError::Unauthenticated
        })
}

/// A blob GET that missed here and whose owner is another replica: served from storage if
/// it is there after all, else forwarded to the owner (`None`: fill here, because a fill
/// of it already runs here or the owner could not be used).
async fn via_owner(
    engine: &Arc<Engine>,
    peers: &Arc<Peers>,
    parts: &Parts,
    client: &Arc<UpstreamClient>,
    repo: &RepositoryName,
    digest: &oci_cache_core::Digest,
    identity: &Identity,
) -> Result<Option<Outcome>, Failure> {
    let Some(owner) = peers.owner_elsewhere(digest) else {
        return Ok(None);
    };
    let range_header = parts
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let range = range_header.and_then(|v| parse_range(v).ok().flatten());
    let stored = engine
        .stored_blob(client, repo, digest, range)
        .await
        .map_err(at(client))?;
    if let Some(hit) = stored {
        return Ok(Some(Outcome {
            response: blob_response(&digest.to_string(), hit),
            log: through(client, "hit"),
        }));
    }
    if engine.fill_running(client.name(), digest) {
        return Ok(None);
    }
    let f = Forward {
        owner,
        upstream: client.name().to_owned(),
        repo: repo.as_str().to_owned(),
        digest: digest.clone(),
        range: range_header.map(str::to_owned),
        identity: identity.clone(),
    };
    let local = local_fill(engine, client, repo, digest);
    Ok(match peers.forward_blob(f, local).await {
        Forwarded::Answer(response) => Some(Outcome {
            response,
            log: through(client, "peer"),
        }),
        Forwarded::Fallback => None,
    })
}

/// A fill here of `digest` (or a part), for a forwarded answer the owner breaks off.
fn local_fill(
    engine: &Arc<Engine>,
    client: &Arc<UpstreamClient>,
    repo: &RepositoryName,
    digest: &oci_cache_core::Digest,
) -> LocalFill {
    let (engine, client, repo, digest) = (
        Arc::clone(engine),
        Arc::clone(client),
        repo.clone(),
        digest.clone(),
    );
    Box::new(move |range| {
        Box::pin(async move { engine.blob(&client, &repo, &digest, range).await })
    })
}

/// Chooses the upstream and repository for `name`, in an order that tells a client nothing
/// about what it may not use:
///
/// 1. (before this) wrong credentials: 401, whatever was asked;
/// 2. the upstream: an invalid name is 400 (grammar only); an unknown `?ns=` is 404 unless
///    client auth is on and the client is anonymous, then 401 like a private upstream;
/// 3. whether the client may use that upstream: if not, 401 to an anonymous client, 403
///    `DENIED` to a user, for every repository alike (denied, private or nonexistent);
/// 4. only then the upstream's allow and deny patterns: a denied repository is 403 `DENIED`
///    (consistently, not disguised as unknown), to clients allowed on the upstream only.
fn select(
    upstreams: &Upstreams,
    access: &AccessPolicy,
    identity: &Identity,
    ns: Option<&str>,
    host: Option<&str>,
    name: &str,
) -> Result<(Arc<UpstreamClient>, RepositoryName), ApiError> {
    let (client, repo) = match upstreams.route(ns, host, name) {
        Err(RouteError::UnknownUpstream { .. })
            if *identity == Identity::Anonymous && access.authenticates() =>
        {
            return Err(ApiError::Unauthenticated)
        }
        other => other?,
    };
    if !access.allows(client.name(), identity) {
        return Err(if *identity == Identity::Anonymous {
            ApiError::Unauthenticated
        } else {
            ApiError::Denied
        });
    }
    if !client.permits(repo.as_str()) {
        return Err(RouteError::Denied {
            repo: repo.as_str().to_owned(),
        }
        .into());
    }
    Ok((client, repo))
}

/// Blob parts smaller than this go through hyper: for them a `sendfile` saves less than
/// it costs.
const ZERO_COPY_MIN: u64 = 64 * 1024;

/// A stored blob's part, sent with `sendfile` (see zero_copy.rs).
fn file_response(digest: &str, blob: BlobFile, sends: &Sends) -> Result<Response<Body>, Failure> {
    let file = blob
        .file
        .try_clone()
        .map_err(|e| EngineError::Storage(StorageError::io("open blob")(e)))?;
    let (part, size, ranged) = (blob.part, blob.size, blob.ranged);
    let body = sends.body(file, part.start, part.len(), Box::new(blob));
    let mut resp = Response::new(BodyExt::boxed_unsync(body));
    blob_headers(resp.headers_mut(), digest, Some(part.len()));
    if ranged {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        let value = format!("bytes {}-{}/{size}", part.start, part.end.saturating_sub(1));
        insert(resp.headers_mut(), header::CONTENT_RANGE, &value);
    }
    Ok(resp)
}

fn blob_response(digest: &str, blob: BlobResponse) -> Response<Body> {
    let body: Body = BodyExt::boxed_unsync(StreamBody::new(
        blob.body
            .map_ok(http_body::Frame::data)
            .map_err(|e| -> BodyError { Box::new(e) }),
    ));
    let mut resp = Response::new(body);
    match (blob.range, blob.size) {
        (Some(r), Some(size)) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            blob_headers(resp.headers_mut(), digest, Some(r.len()));
            let value = format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1));
            insert(resp.headers_mut(), header::CONTENT_RANGE, &value);
        }
        _ => blob_headers(resp.headers_mut(), digest, blob.size),
    }
    resp
}

fn blob_headers(h: &mut http::HeaderMap, digest: &str, len: Option<u64>) {
    insert(h, header::CONTENT_TYPE, "application/octet-stream");
    insert(h, "docker-content-digest", digest);
    insert(h, header::ACCEPT_RANGES, "bytes");
    if let Some(len) = len {
        insert(h, header::CONTENT_LENGTH, &len.to_string());
    }
}

fn json_response(status: StatusCode, body: &'static str, head: bool) -> Response<Body> {
    let mut resp = Response::new(if head { full_body("") } else { full_body(body) });
    *resp.status_mut() = status;
    insert(resp.headers_mut(), header::CONTENT_TYPE, "application/json");
    resp
}

fn insert<K: header::IntoHeaderName>(h: &mut http::HeaderMap, name: K, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}
