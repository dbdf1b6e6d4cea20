//! Forwarding a blob GET that missed here to the digest's owner replica, and streaming the
//! owner's answer to the client as it arrives. The owner's one fill then serves the fleet.
//! When the owner cannot be reached, answers nothing within the answer timeout, or answers
//! anything but the blob (or a plain "unknown"), the request is filled here instead; when
//! the owner's body breaks off (the owner was killed mid-fill), the rest comes from a fill
//! here, from the byte where the owner stopped, so the client still gets the whole blob.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use oci_cache_core::{BlobBody, BlobResponse, ByteRange, Digest, EngineError};

use super::token::PEER_HEADER;
use super::Peers;
use crate::auth::Identity;
use crate::body::{full_body, Body, BodyError};

/// How long the owner's body may stay silent before the rest is filled here.
const BODY_IDLE: Duration = Duration::from_secs(10);
/// Largest error body of the owner passed on.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A fill here of (part of) the blob: how the rest is fetched when the owner fails.
pub(crate) type LocalFill = Box<
    dyn FnOnce(Option<ByteRange>) -> BoxFuture<'static, Result<BlobResponse, EngineError>> + Send,
>;

/// One blob GET to forward.
pub(crate) struct Forward {
    /// The owner's base URL.
    pub(crate) owner: String,
    /// The upstream the client was routed to.
    pub(crate) upstream: String,
    /// The repository.
    pub(crate) repo: String,
    /// The blob.
    pub(crate) digest: Digest,
    /// The client's `Range` header, as sent.
    pub(crate) range: Option<String>,
    /// Who the client is (already checked here).
    pub(crate) identity: Identity,
}

/// What came of forwarding.
pub(crate) enum Forwarded {
    /// The owner's answer, streamed (with the rest filled here if the owner breaks off).
    Answer(Response<Body>),
    /// Fill here instead.
    Fallback,
}

impl Peers {
    /// Forwards `f` to its owner; see the module's documentation.
    pub(crate) async fn forward_blob(self: &Arc<Self>, f: Forward, local: LocalFill) -> Forwarded {
        let path = format!("/v2/{}/blobs/{}", f.repo, f.digest);
        let token = self.secret.sign("GET", &path, &f.upstream, &f.identity);
        let mut req = self
            .client
            .get(format!("{}{path}?ns={}", f.owner, f.upstream))
            .header(PEER_HEADER, token);
        if let Some(range) = &f.range {
            req = req.header(header::RANGE, range);
        }
        let resp = match tokio::time::timeout(self.answer_timeout, req.send()).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return self.fall_back(&f, &format!("unreachable: {e}")),
            Err(_) => return self.fall_back(&f, "no answer within the answer timeout"),
        };
        let status = resp.status();
        match status {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {}
            StatusCode::NOT_FOUND | StatusCode::RANGE_NOT_SATISFIABLE => {
                return match passed_on(resp).await {
                    Some(answer) => {
                        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        Forwarded::Answer(answer)
                    }
                    None => self.fall_back(&f, "its error answer broke off"),
                };
            }
            other => return self.fall_back(&f, &format!("it answered {other}")),
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let headers = resp.headers().clone();
        let length = header_u64(&headers, header::CONTENT_LENGTH);
        // The part of the blob the answer holds: `start..=last`.
        let (start, last) = match (status, content_range(&headers)) {
            (StatusCode::PARTIAL_CONTENT, Some((start, last))) => (start, Some(last)),
            _ => (0, length.and_then(|n| n.checked_sub(1))),
        };
        let mut response = Response::new(resumable(resp, start, last, local, Arc::clone(self)));
        *response.status_mut() = status;
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
        ] {
            if let Some(v) = headers.get(&name) {
                response.headers_mut().insert(name, v.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&f.digest.to_string()) {
            response.headers_mut().insert("docker-content-digest", v);
        }
        Forwarded::Answer(response)
    }

    fn fall_back(&self, f: &Forward, why: &str) -> Forwarded {
        self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(owner = %f.owner, digest = %f.digest, why, "owner replica not used; filling here");
        Forwarded::Fallback
    }
}

/// The owner's small error answer (404, 416), as it is.
async fn passed_on(resp: reqwest::Response) -> Option<Response<Body>> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.ok()?);
        if body.len() > MAX_ERROR_BODY {
            return None;
        }
    }
    let mut answer = Response::new(full_body(body));
    *answer.status_mut() = status;
    for name in [header::CONTENT_TYPE, header::CONTENT_RANGE] {
        if let Some(v) = headers.get(&name) {
            answer.headers_mut().insert(name, v.clone());
        }
    }
    Some(answer)
}

fn header_u64(headers: &http::HeaderMap, name: header::HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `bytes START-LAST/TOTAL` → (START, LAST).
fn content_range(headers: &http::HeaderMap) -> Option<(u64, u64)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (span, _) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, last) = span.split_once('-')?;
    Some((start.trim().parse().ok()?, last.trim().parse().ok()?))
}

/// Where the body is read from.
enum Source {
    /// The owner, at blob offset `pos`; `local` fetches the rest if it breaks off.
    Owner {
        resp: reqwest::Response,
        pos: u64,
        local: LocalFill,
    },
    /// A fill here, for the rest.
    Local(BlobBody),
    /// Ended.
    Done,
}

/// The owner's body, blob bytes `start..=last`, continued from a fill here where it breaks
/// off.
fn resumable(
    resp: reqwest::Response,
    start: u64,
    last: Option<u64>,
    local: LocalFill,
    peers: Arc<Peers>,
) -> Body {
    let source = Source::Owner {
        resp,
        pos: start,
        local,
    };
    let stream = futures_util::stream::unfold(source, move |source| {
        let peers = Arc::clone(&peers);
        async move {
            match source {
                Source::Owner {
                    mut resp,
                    pos,
                    local,
                } => match tokio::time::timeout(BODY_IDLE, resp.chunk()).await {
                    Ok(Ok(Some(chunk))) => {
                        let pos = pos + chunk.len() as u64;
                        Some((Ok(chunk), Source::Owner { resp, pos, local }))
                    }
                    Ok(Ok(None)) if last.is_none_or(|l| pos > l) => None,
                    ended => {
                        let why = match ended {
                            Ok(Err(e)) => e.to_string(),
                            Err(_) => "silent".to_owned(),
                            Ok(Ok(_)) => "ended early".to_owned(),
                        };
                        resume(pos, last, local, &peers, &why).await
                    }
                },
                Source::Local(mut body) => match body.next().await {
                    Some(Ok(chunk)) => Some((Ok(chunk), Source::Local(body))),
                    Some(Err(e)) => Some((Err(boxed(e)), Source::Done)),
                    None => None,
                },
                Source::Done => None,
            }
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(stream.map_ok(http_body::Frame::data)))
}

/// The rest of the body, from `pos`, from a fill here.
async fn resume(
    pos: u64,
    last: Option<u64>,
    local: LocalFill,
    peers: &Peers,
    why: &str,
) -> Option<(Result<Bytes, BodyError>, Source)> {
    if last.is_some_and(|l| pos > l) {
        return None;
    }
    peers.stats.resumed.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(pos, why, "owner replica broke off; the rest is filled here");
    let range = match last {
        Some(end) => ByteRange::Bounded { start: pos, end },
        None => ByteRange::From { start: pos },
    };
    match local(Some(range)).await {
        Ok(rest) => {
            let mut body = rest.body;
            match body.next().await {
                Some(Ok(chunk)) => Some((Ok(chunk), Source::Local(body))),
                Some(Err(e)) => Some((Err(boxed(e)), Source::Done)),
                None => None,
            }
        }
        Err(e) => Some((Err(boxed(e)), Source::Done)),
    }
}

fn boxed(e: EngineError) -> BodyError {
    Box::new(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_read() {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 5-99/1000"),
        );
        assert_eq!(content_range(&h), Some((5, 99)));
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes */1000"),
        );
        assert_eq!(content_range(&h), None);
    }
}
