//! The referrers API of an upstream (OCI distribution spec 1.1, "Listing Referrers").

use bytes::Bytes;
use reqwest::Method;

use super::super::body::{read_limited, BodyKind};
use super::UpstreamClient;
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::{Digest, UpstreamError};

impl UpstreamClient {
    /// `GET /v2/<name>/referrers/<digest>`, unfiltered: the whole index (the cache filters
    /// by `artifactType` itself, so one stored answer serves every filter). An upstream
    /// without the API answers 404 ([`UpstreamError::NotFound`]).
    pub async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Bytes, UpstreamError> {
        let path = format!("/v2/{repo}/referrers/{digest}");
        let resp = self.send(Method::GET, repo, &path, None).await?;
        read_limited(resp, BodyKind::Manifest, MAX_MANIFEST_BYTES).await
    }
}
