//! Docker Hub's rate-limit headers (`ratelimit-limit: 100;w=21600`,
//! `ratelimit-remaining: 76;w=21600`), kept per upstream for the metrics.

use std::time::SystemTime;

use reqwest::header::HeaderMap;

/// The last rate-limit figures an upstream sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub limit: u64,
    /// Requests left in the window.
    pub remaining: u64,
    /// When the figures were received.
    pub observed_at: SystemTime,
}

/// Reads the figures from a response, if it carries both headers.
pub(crate) fn from_headers(headers: &HeaderMap) -> Option<RateLimit> {
    let number = |name: &str| -> Option<u64> {
        let v = headers.get(name)?.to_str().ok()?;
        v.split(';').next()?.trim().parse().ok()
    };
    Some(RateLimit {
        limit: number("ratelimit-limit")?,
        remaining: number("ratelimit-remaining")?,
        observed_at: SystemTime::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_hub_headers() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-limit", "100;w=21600".parse().unwrap());
        assert!(from_headers(&h).is_none());
        h.insert("ratelimit-remaining", "76;w=21600".parse().unwrap());
        let r = from_headers(&h).unwrap();
        assert_eq!((r.limit, r.remaining), (100, 76));
    }
}
