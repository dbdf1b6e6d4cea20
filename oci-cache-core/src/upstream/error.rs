//! What can go wrong talking to an upstream. Never carries credentials or tokens.

use std::time::Duration;

use super::body::BodyKind;
use super::guard::{RedirectRefused, TargetRefusal};
use crate::manifest::ManifestError;

/// An upstream failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The upstream says the object does not exist (404).
    #[error("not found upstream")]
    NotFound,
    /// The upstream refused our credentials (401 after the token flow).
    #[error("upstream refused authorization")]
    Unauthorized,
    /// The upstream refused access (403).
    #[error("upstream denied access")]
    Denied,
    /// The upstream rate-limited us (429).
    #[error("upstream rate limit reached")]
    TooManyRequests {
        /// How long the upstream asks us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Any other unexpected status.
    #[error("upstream answered {status}")]
    Status {
        /// The status code.
        status: u16,
    },
    /// Could not connect, or the connection broke.
    #[error("upstream unreachable: {}", chain(source))]
    Transport {
        /// The client error (its text never includes credentials).
        #[source]
        source: reqwest::Error,
    },
    /// Every endpoint's circuit breaker is open.
    #[error("upstream unavailable: circuit open after repeated failures")]
    CircuitOpen,
    /// A timeout elapsed.
    #[error("upstream timed out")]
    Timeout,
    /// The token endpoint failed or sent something unusable.
    #[error("token endpoint failed: {reason}")]
    Token {
        /// What went wrong.
        reason: &'static str,
    },
    /// A response the cache cannot use.
    #[error("invalid upstream response: {reason}")]
    InvalidResponse {
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A manifest, token or tag list body was longer than its limit (it is cut there).
    #[error("upstream {body} larger than {limit} bytes")]
    BodyTooLarge {
        /// Which body.
        body: BodyKind,
        /// Its limit in bytes.
        limit: usize,
    },
    /// A manifest GET answered with something that is not an OCI or Docker schema 2
    /// manifest or index.
    #[error("upstream answer is not a manifest: {source}")]
    NotAManifest {
        /// What is wrong with it.
        #[source]
        source: ManifestError,
    },
    /// The upstream redirected somewhere the cache does not go (see `guard`).
    #[error("upstream redirect to {host:?} refused: {reason}")]
    RedirectRefused {
        /// The redirect target's host.
        host: String,
        /// Why.
        reason: TargetRefusal,
    },
    /// The upstream's `WWW-Authenticate` named a token realm the cache does not ask.
    #[error("token realm {host:?} refused: {reason}")]
    RealmRefused {
        /// The realm's host (empty when the realm is not a URL).
        host: String,
        /// Why.
        reason: TargetRefusal,
    },
    /// An allow or deny pattern is invalid.
    #[error("invalid repository pattern: {reason}")]
    InvalidPattern {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTP client could not be set up (most often: no CA certificates to verify
    /// HTTPS upstreams with).
    #[error("cannot set up the HTTP client for upstream {url}: {detail}. If no CA certificates were found: install them (Debian: the ca-certificates package) or point SSL_CERT_FILE at a PEM bundle")]
    HttpClient {
        /// The upstream's URLs.
        url: String,
        /// What failed, with its causes.
        detail: String,
    },
    /// The configured URL is invalid.
    #[error("invalid upstream URL {url:?}")]
    InvalidUrl {
        /// The URL.
        url: String,
    },
}

/// An error and its causes, `: `-separated (reqwest's own text names only the outer layer).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl From<reqwest::Error> for UpstreamError {
    fn from(source: reqwest::Error) -> Self {
        if source.is_timeout() {
            UpstreamError::Timeout
        } else if let Some(r) = refused_redirect(&source) {
            UpstreamError::RedirectRefused {
                host: r.host.clone(),
                reason: r.reason,
            }
        } else {
            UpstreamError::Transport {
                source: source.without_url(),
            }
        }
    }
}

/// The refusal of our redirect policy, if that is what ended the request.
fn refused_redirect(e: &reqwest::Error) -> Option<&RedirectRefused> {
    if !e.is_redirect() {
        return None;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<RedirectRefused>() {
            return Some(r);
        }
        cause = c.source();
    }
    None
}
