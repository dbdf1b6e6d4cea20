//! The referrers API of an upstream (OCI distribution spec 1.1, "Listing Referrers").

use bytes::Bytes;
use reqwest::Method;

use super::super::body::{read_limited, BodyKind};
use super::{header_str, UpstreamClient};
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::{Digest, UpstreamError};

impl UpstreamClient {
    /// `GET /v2/<name>/referrers/<digest>` with the client's query (`artifactType`): the
    /// index and whether the upstream applied the filter (`OCI-Filters-Applied`). An
    /// upstream without the API answers 404 ([`UpstreamError::NotFound`]).
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        query: &str,
    ) -> Result<(Bytes, bool), UpstreamError> {
        let mut path = format!("/v2/{repo}/referrers/{digest}");
        if !query.is_empty() {
            path = format!("{path}?{query}");
        }
        let resp = self.send(Method::GET, repo, &path, None).await?;
        let filtered = header_str(resp.headers(), "oci-filters-applied")
            .is_some_and(|v| v.split(',').any(|f| f.trim() == "artifactType"));
        let body = read_limited(resp, BodyKind::Manifest, MAX_MANIFEST_BYTES).await?;
        Ok((body, filtered))
    }
}
