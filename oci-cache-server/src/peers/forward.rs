//! Forwarding a blob GET that missed here to the digest's owner replica, and streaming the
//! owner's answer to the client as it arrives. The owner's one fill then serves the fleet.
//! When the owner cannot be reached, answers nothing within the answer timeout, or answers
//! with a refusal of this replica's token, the request is filled here instead; other
//! answers of the owner (404, 416, 5xx) are passed on as they are. When the owner's body
//! of a whole blob breaks off (the owner was killed mid-fill), the rest comes from a fill
//! here, from the byte where the owner stopped, so the client still gets the whole blob.
//! Such a response is pieced together from two downloads, so this replica hashes all of
//! it and holds its last chunk back until the digest matched (else the response is cut,
//! never completed with wrong bytes). A range the owner breaks off is cut: its client asks
//! again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use oci_cache_core::{BlobBody, BlobResponse, ByteRange, Digest, EngineError, Verifier};

use super::token::PEER_HEADER;
use super::Peers;
use crate::auth::Identity;
use crate::body::{full_body, Body, BodyError};

/// How long the owner's body may stay silent before the rest is filled here: longer than
/// the silence a fill allows its upstream (30 s by default), so a slow upstream does not
/// make every forwarding replica start a download of its own.
const BODY_IDLE: Duration = Duration::from_secs(45);
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
        let headers = resp.headers().clone();
        let length = header_u64(&headers, header::CONTENT_LENGTH);
        // The part of the blob the answer holds: `start..=last`.
        let (start, last) = match status {
            StatusCode::OK => (0, length.and_then(|n| n.checked_sub(1))),
            StatusCode::PARTIAL_CONTENT => match content_range(&headers) {
                Some((start, last))
                    if last >= start && length.is_none_or(|n| n == last - start + 1) =>
                {
                    (start, Some(last))
                }
                _ => return self.fall_back(&f, "its partial answer does not say which part"),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                // The owner refused this replica's token (another secret, a clock more than
                // a minute off): a configuration fault, not the client's.
                return self.fall_back(&f, &format!("it refused the peer token ({status})"));
            }
            _ => {
                return match tokio::time::timeout(self.answer_timeout, passed_on(resp)).await {
                    Ok(Some(answer)) => {
                        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        Forwarded::Answer(answer)
                    }
                    _ => self.fall_back(&f, "its error answer broke off"),
                };
            }
        };
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let whole = (status == StatusCode::OK).then(|| (f.digest.clone(), local));
        let mut response = Response::new(resumable(resp, start, last, whole, Arc::clone(self)));
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
    /// The owner, at blob offset `pos`.
    Owner { resp: reqwest::Response, pos: u64 },
    /// A fill here, for the rest.
    Local(BlobBody),
}

/// A whole blob's response: the digest it must hash to, the hash so far, the chunk held
/// back until the hash is known, and the fill here that finishes it if the owner breaks
/// off (taken when used).
struct Whole {
    digest: Digest,
    verifier: Verifier,
    held: Option<Bytes>,
    local: Option<LocalFill>,
}

/// The state of a forwarded body.
struct Stream {
    source: Option<Source>,
    last: Option<u64>,
    whole: Option<Whole>,
    peers: Arc<Peers>,
}

/// The owner's body, blob bytes `start..=last`. For a whole blob (`whole`: its digest and a
/// fill here), continued from that fill where the owner breaks off, hashed, and its last
/// chunk held back until the digest matched.
fn resumable(
    resp: reqwest::Response,
    start: u64,
    last: Option<u64>,
    whole: Option<(Digest, LocalFill)>,
    peers: Arc<Peers>,
) -> Body {
    let state = Stream {
        source: Some(Source::Owner { resp, pos: start }),
        last,
        whole: whole.map(|(digest, local)| Whole {
            verifier: digest.verifier(),
            digest,
            held: None,
            local: Some(local),
        }),
        peers,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            match state.next_chunk().await {
                Ok(Some(chunk)) => match &mut state.whole {
                    Some(whole) => {
                        whole.verifier.update(&chunk);
                        if let Some(out) = whole.held.replace(chunk) {
                            return Some((Ok(out), state));
                        }
                    }
                    None => return Some((Ok(chunk), state)),
                },
                Ok(None) => {
                    let whole = state.whole.take()?;
                    let Whole {
                        digest,
                        verifier,
                        held,
                        ..
                    } = whole;
                    let got = verifier.finish();
                    if got != digest {
                        tracing::warn!(%digest, %got, "a forwarded blob pieced together from two downloads does not match its digest; cut");
                        return Some((
                            Err(boxed(EngineError::DigestMismatch {
                                expected: digest,
                                actual: got,
                            })),
                            state,
                        ));
                    }
                    return held.map(|h| (Ok(h), state));
                }
                Err(e) => {
                    state.source = None;
                    state.whole = None;
                    return Some((Err(e), state));
                }
            }
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(stream.map_ok(http_body::Frame::data)))
}

impl Stream {
    /// The next chunk from the owner, or from a fill here once the owner broke off a whole
    /// blob; `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            match self.source.as_mut() {
                None => return Ok(None),
                Some(Source::Local(body)) => {
                    return match body.next().await {
                        Some(Ok(chunk)) => Ok(Some(chunk)),
                        Some(Err(e)) => Err(boxed(e)),
                        None => Ok(None),
                    }
                }
                Some(Source::Owner { resp, pos }) => {
                    let why = match tokio::time::timeout(BODY_IDLE, resp.chunk()).await {
                        Ok(Ok(Some(chunk))) => {
                            *pos += chunk.len() as u64;
                            return Ok(Some(chunk));
                        }
                        Ok(Ok(None)) if self.last.is_none_or(|l| *pos > l) => {
                            self.source = None;
                            return Ok(None);
                        }
                        Ok(Ok(None)) => "ended early".to_owned(),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "silent".to_owned(),
                    };
                    let pos = *pos;
                    if self.last.is_some_and(|l| pos > l) {
                        // Every byte arrived; only the end of the stream went wrong.
                        self.source = None;
                        return Ok(None);
                    }
                    self.source = Some(Source::Local(self.resume(pos, &why).await?));
                }
            }
        }
    }

    /// A fill here of the rest of a whole blob, from `pos`; an error (the response is cut)
    /// for a range or when the fill here fails too.
    async fn resume(&mut self, pos: u64, why: &str) -> Result<BlobBody, BodyError> {
        let local = self.whole.as_mut().and_then(|w| w.local.take());
        let Some(local) = local else {
            return Err(format!("the owner replica broke off ({why})").into());
        };
        self.peers.stats.resumed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(pos, why, "owner replica broke off; the rest is filled here");
        let range = match self.last {
            Some(end) => ByteRange::Bounded { start: pos, end },
            None => ByteRange::From { start: pos },
        };
        Ok(local(Some(range)).await.map_err(boxed)?.body)
    }
}

fn boxed(e: EngineError) -> BodyError {
    Box::new(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::{PeerConfig, PeerSecret, PeerSource};

    fn peers() -> Arc<Peers> {
        let secret = PeerSecret::new("a secret of at least thirty-two bytes").unwrap();
        Peers::new(PeerConfig::new(
            PeerSource::Static(vec![]),
            "http://me",
            secret,
        ))
        .unwrap()
    }

    /// The owner's answer: `chunks`, then (with `broken`) an error instead of the end.
    fn owner(chunks: Vec<Vec<u8>>, broken: bool) -> reqwest::Response {
        let mut items: Vec<Result<Bytes, std::io::Error>> =
            chunks.into_iter().map(|c| Ok(Bytes::from(c))).collect();
        if broken {
            items.push(Err(std::io::Error::other("owner killed")));
        }
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(items));
        reqwest::Response::from(http::Response::new(body))
    }

    /// A fill here that serves `blob`'s bytes of the range it is asked for.
    fn local(blob: Vec<u8>) -> LocalFill {
        Box::new(move |range| {
            Box::pin(async move {
                let size = blob.len() as u64;
                let r = range
                    .and_then(|r| r.resolve(size))
                    .unwrap_or(oci_cache_core::ResolvedRange::full(size));
                let part = Bytes::copy_from_slice(&blob[r.start as usize..r.end as usize]);
                Ok(BlobResponse {
                    size: Some(size),
                    range: Some(r),
                    body: Box::pin(futures_util::stream::iter([Ok(part)])),
                    cached: false,
                })
            })
        })
    }

    async fn collect(body: Body) -> (Vec<u8>, bool) {
        let mut body = std::pin::pin!(body);
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => got.extend_from_slice(f.data_ref().unwrap()),
                Err(_) => return (got, false),
            }
        }
        (got, true)
    }

    #[tokio::test]
    async fn a_whole_blob_the_owner_breaks_off_is_finished_here_and_verified() {
        let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let digest = Digest::sha256_of(&blob);
        let resp = owner(
            vec![blob[..30_000].to_vec(), blob[30_000..40_000].to_vec()],
            true,
        );
        let last = Some(blob.len() as u64 - 1);
        let body = resumable(resp, 0, last, Some((digest, local(blob.clone()))), peers());
        let (got, complete) = collect(body).await;
        assert!(complete && got == blob);
    }

    /// The owner's bytes were wrong (its upstream lied, then the owner died before its own
    /// check): the bytes pieced together do not hash to the digest, so the response is cut
    /// before its last chunk, never completed.
    #[tokio::test]
    async fn a_pieced_together_blob_that_does_not_match_is_cut() {
        let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let digest = Digest::sha256_of(&blob);
        let mut wrong = blob[..40_000].to_vec();
        wrong[7] ^= 1;
        let resp = owner(vec![wrong], true);
        let last = Some(blob.len() as u64 - 1);
        let body = resumable(resp, 0, last, Some((digest, local(blob.clone()))), peers());
        let (got, complete) = collect(body).await;
        assert!(!complete, "a mismatching body must end in an error");
        assert!(got.len() < blob.len(), "the last chunk was held back");
    }

    /// A range the owner breaks off is cut, not finished from a fill here.
    #[tokio::test]
    async fn a_range_the_owner_breaks_off_is_cut() {
        let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let resp = owner(vec![blob[10..20_000].to_vec()], true);
        let body = resumable(resp, 10, Some(59_999), None, peers());
        let (got, complete) = collect(body).await;
        assert!(!complete);
        assert_eq!(got, blob[10..20_000]);
    }

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
