//! One API request: route, choose the upstream, call the engine, build the response.

use std::sync::Arc;

use futures_util::TryStreamExt;
use http::request::Parts;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use oci_cache_core::name::RepositoryName;
use oci_cache_core::range::parse_range;
use oci_cache_core::route::{parse_path, Route};
use oci_cache_core::{
    BlobResponse, Engine, RouteError, UpstreamClient, Upstreams, REFERRERS_MEDIA_TYPE,
};

use crate::auth::{AccessPolicy, Identity};
use crate::error::ApiError;
use crate::service::{full_body, Body, BodyError};

/// Handles one request.
/// A failed request, with the upstream it was routed to (for the request log), if any.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What went wrong.
    pub(crate) error: ApiError,
    /// The upstream the request was routed to, once it was.
    pub(crate) upstream: Option<String>,
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

pub(crate) async fn handle(
    engine: &Engine,
    upstreams: &Upstreams,
    access: &AccessPolicy,
    parts: &Parts,
) -> Result<Response<Body>, Failure> {
    let route = parse_path(parts.uri.path())?;
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
    let identity = access.identify(&parts.headers).await?;
    let select = |name: &str| select(upstreams, access, &identity, ns.as_deref(), host, name);

    match route {
        Route::ApiVersion if identity == Identity::Anonymous && !access.anonymous_welcome() => {
            Err(ApiError::Unauthenticated.into())
        }
        Route::ApiVersion => Ok(json_response(StatusCode::OK, "{}", head)),
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
            resp.extensions_mut().insert(LogInfo {
                upstream: client.name().to_owned(),
                cache: "-",
            });
            Ok(resp)
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
                return Ok(resp);
            }
            let range = parts
                .headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_range(v).ok().flatten());
            let blob = engine
                .blob(&client, &repo, &digest, range)
                .await
                .map_err(at(&client))?;
            let outcome = if blob.cached { "hit" } else { "miss" };
            let mut resp = blob_response(&digest.to_string(), blob);
            resp.extensions_mut().insert(LogInfo {
                upstream: client.name().to_owned(),
                cache: outcome,
            });
            Ok(resp)
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
            resp.extensions_mut().insert(LogInfo {
                upstream: client.name().to_owned(),
                cache: if r.stale { "stale" } else { "-" },
            });
            Ok(resp)
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
            resp.extensions_mut().insert(LogInfo {
                upstream: client.name().to_owned(),
                cache: if list.stale { "stale" } else { "-" },
            });
            Ok(resp)
        }
    }
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

/// The `Link` of the next page as the client must follow it: the client's own path (its
/// route: prefix, `?ns=`) with the page query the upstream (or the cache) wrote; `None`
/// when `link` is not `<...?query>; rel="next"`.
fn client_link(link: &str, path: &str, ns: Option<&str>) -> Option<String> {
    let target = link.trim().strip_prefix('<')?.split_once('>')?.0;
    let (_, page) = target.split_once('?')?;
    // Rebuilt from checked values only: `n` digits, `last` a tag; the upstream's text is
    // never copied into the header (a `,` or `<` in it could add a link to another host).
    let n =
        query_param(page, "n").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let last = query_param(page, "last")
        .map(|l| percent_decode(&l))
        .filter(|l| {
            matches!(
                oci_cache_core::name::Reference::parse(l),
                Ok(oci_cache_core::name::Reference::Tag(_))
            )
        });
    let page = match (n, last) {
        (Some(n), Some(last)) => format!("n={n}&last={last}"),
        (Some(n), None) => format!("n={n}"),
        (None, Some(last)) => format!("last={last}"),
        (None, None) => return None,
    };
    let ns = ns.map(|n| format!("&ns={n}")).unwrap_or_default();
    Some(format!("<{path}?{page}{ns}>; rel=\"next\""))
}

/// What the request log line says beyond method, route and status.
#[derive(Debug, Clone)]
pub(crate) struct LogInfo {
    /// The upstream the request went to.
    pub(crate) upstream: String,
    /// `hit` (from storage) or `miss` (from a fill) for blobs; `-` for manifests and tag
    /// lists.
    pub(crate) cache: &'static str,
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

/// The value of `key` in a query string (no percent-decoding: the values used here, `ns`,
/// `n` and `last`, are host names, numbers and tags).
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

/// `%XX` sequences decoded (and `+` kept: query values here are media types, not forms);
/// invalid sequences are kept as they are.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The part of a tags/list query that goes upstream: `n` and `last`.
fn forwarded_query(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| kv.starts_with("n=") || kv.starts_with("last="))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("ns=docker.io&x=1", "ns").as_deref(),
            Some("docker.io")
        );
        assert_eq!(query_param("x=1", "ns"), None);
        assert_eq!(forwarded_query("ns=a&n=10&last=v1&evil=1"), "n=10&last=v1");
    }

    #[test]
    fn artifact_types_are_percent_decoded() {
        assert_eq!(
            percent_decode("application%2Fvnd.dev.cosign.artifact.sig.v1%2Bjson"),
            "application/vnd.dev.cosign.artifact.sig.v1+json"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz/x"), "%zz/x");
    }

    #[test]
    fn next_page_links_follow_the_clients_route() {
        let up = r#"</v2/library/alpine/tags/list?n=2&last=b>; rel="next""#;
        assert_eq!(
            client_link(up, "/v2/docker.io/alpine/tags/list", None).as_deref(),
            Some(r#"</v2/docker.io/alpine/tags/list?n=2&last=b>; rel="next""#)
        );
        assert_eq!(
            client_link(up, "/v2/alpine/tags/list", Some("docker.io")).as_deref(),
            Some(r#"</v2/alpine/tags/list?n=2&last=b&ns=docker.io>; rel="next""#)
        );
        assert_eq!(client_link("garbage", "/v2/a/tags/list", None), None);
        // Nothing of the upstream's text but a number and a tag reaches the header.
        let evil =
            r#"</v2/x/tags/list?n=1&last=a, <https://evil.example/v2/x/tags/list?n=1>; rel="next""#;
        assert_eq!(
            client_link(evil, "/v2/x/tags/list", None).as_deref(),
            Some(r#"</v2/x/tags/list?n=1>; rel="next""#)
        );
        assert_eq!(
            client_link(
                "</v2/x/tags/list?n=1x&last=v%2E1>; rel=\"next\"",
                "/v2/x/tags/list",
                None
            )
            .as_deref(),
            Some(r#"</v2/x/tags/list?last=v.1>; rel="next""#)
        );
    }
}
