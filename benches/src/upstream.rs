//! The upstream side of the side-by-side benchmark: what the upstream registry served
//! (from its log), pushes of small blobs and manifests, and CNCF distribution started in
//! proxy (pull-through cache) mode.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use oci_cache_testkit::access_log::parse_log;
use oci_cache_testkit::RegistryOptions;
use sha2::{Digest as _, Sha256};

use crate::{start_distribution, upload_url, BoxError, Registry};

/// Requests a registry completed and the body bytes it wrote for them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Completed requests.
    pub requests: u64,
    /// Sum of `http.response.written`.
    pub bytes: u64,
}

impl Traffic {
    /// The traffic between `before` and `self`.
    #[must_use]
    pub fn since(self, before: Self) -> Self {
        Self {
            requests: self.requests.saturating_sub(before.requests),
            bytes: self.bytes.saturating_sub(before.bytes),
        }
    }
}

/// The traffic in a distribution log: its `response completed` lines (see
/// [`oci_cache_testkit::access_log`]) of `method` (any if `None`) whose URI holds `path`.
pub fn traffic_in_log(log: &str, method: Option<&str>, path: &str) -> Traffic {
    parse_log(log)
        .iter()
        .filter(|r| r.uri.contains(path) && method.is_none_or(|m| r.method == m))
        .fold(Traffic::default(), |t, r| Traffic {
            requests: t.requests + 1,
            bytes: t.bytes + r.written,
        })
}

impl Registry {
    /// The requests of `path` the registry has completed so far (see [`traffic_in_log`]).
    pub fn traffic(&self, method: Option<&str>, path: &str) -> Traffic {
        traffic_in_log(&self.process.log(), method, path)
    }

    /// Pushes `bytes` as one blob of `repo` (POST, then a monolithic PUT). Returns its
    /// digest.
    pub async fn push_bytes(
        &mut self,
        client: &reqwest::Client,
        repo: &str,
        bytes: Vec<u8>,
    ) -> Result<String, BoxError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let url = upload_url(client, self.addr, repo, &digest).await?;
        let resp = client
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        if resp.status() != reqwest::StatusCode::CREATED {
            return Err(format!("upload PUT: {}", resp.status()).into());
        }
        Ok(digest)
    }

    /// Pushes an OCI image manifest as `repo:tag`. Returns its digest.
    pub async fn push_manifest(
        &mut self,
        client: &reqwest::Client,
        repo: &str,
        tag: &str,
        manifest: String,
    ) -> Result<String, BoxError> {
        let digest = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(manifest.as_bytes()))
        );
        let resp = client
            .put(format!("http://{}/v2/{repo}/manifests/{tag}", self.addr))
            .header(reqwest::header::CONTENT_TYPE, OCI_MANIFEST)
            .body(manifest)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        if resp.status() != reqwest::StatusCode::CREATED {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("manifest PUT: {status}: {text}").into());
        }
        self.process.check_running()?;
        Ok(digest)
    }
}

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI image manifest (JSON) with a config and layers, each `(digest, size)`.
pub fn oci_manifest(config: (&str, u64), layers: &[(&str, u64)]) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(digest, size)| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":{size}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        config.0,
        config.1,
        layers.join(",")
    )
}

/// CNCF distribution (`docker-registry serve`) in proxy mode: a pull-through cache of
/// one upstream, with filesystem storage in a fresh temporary directory. It logs only
/// warnings and errors (no per-request lines), like oci-cache at its default level.
/// Killed when dropped.
#[derive(Debug)]
pub struct DistProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    process: oci_cache_testkit::Registry,
}

impl DistProxy {
    /// Starts `binary` as a proxy of `upstream` and waits until it answers.
    pub async fn start(binary: &Path, upstream: SocketAddr) -> Result<Self, BoxError> {
        let registry = start_distribution(RegistryOptions {
            binary: Some(binary.to_path_buf()),
            log_level: "warn",
            access_log: false,
            proxy_of: Some(format!("http://{upstream}")),
            dir_prefix: "side-by-side-proxy-",
            ..RegistryOptions::default()
        })
        .await?;
        Ok(Self {
            addr: registry.addr(),
            process: registry,
        })
    }

    /// The process id.
    pub fn pid(&mut self) -> Result<u32, BoxError> {
        self.process.check_running()?;
        self.process
            .pid()
            .ok_or_else(|| "the proxy was stopped".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_log_lines() {
        let log = "time=\"x\" level=info msg=\"response completed\" http.request.method=GET \
                   http.request.uri=\"/v2/a/blobs/sha256:1\" http.response.written=10\n\
                   time=\"x\" level=info msg=\"response completed\" http.request.method=HEAD \
                   http.request.uri=\"/v2/a/blobs/sha256:1\" http.response.written=0\n\
                   time=\"x\" level=info msg=\"other\" http.request.method=GET \
                   http.request.uri=\"/v2/a/blobs/sha256:1\" http.response.written=10\n";
        let get = traffic_in_log(log, Some("GET"), "/v2/a/blobs/sha256:1");
        assert_eq!(
            get,
            Traffic {
                requests: 1,
                bytes: 10
            }
        );
        assert_eq!(traffic_in_log(log, None, "/v2/a/").requests, 2);
    }
}
