//! The upstream side of the side-by-side benchmark: what the upstream registry served
//! (from its log), pushes of small blobs and manifests, and CNCF distribution started in
//! proxy (pull-through cache) mode.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use crate::{upload_url, BoxError, ChildGuard, Distribution, Registry};

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

/// The traffic in a distribution log: lines with `msg="response completed"`, the
/// method (any if `None`) and `path`.
pub fn traffic_in_log(log: &str, method: Option<&str>, path: &str) -> Traffic {
    let method = method.map(|m| format!("http.request.method={m} "));
    let mut t = Traffic::default();
    for line in log.lines().filter(|l| {
        l.contains("msg=\"response completed\"")
            && l.contains(path)
            && method.as_deref().is_none_or(|m| l.contains(m))
    }) {
        t.requests += 1;
        t.bytes += line
            .split_once("http.response.written=")
            .and_then(|(_, v)| v.split_whitespace().next())
            .and_then(|v| v.trim_matches('"').parse::<u64>().ok())
            .unwrap_or(0);
    }
    t
}

impl Registry {
    /// The requests of `path` the registry has completed so far (see [`traffic_in_log`]).
    pub fn traffic(&self, method: Option<&str>, path: &str) -> io::Result<Traffic> {
        Ok(traffic_in_log(
            &std::fs::read_to_string(&self.log)?,
            method,
            path,
        ))
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
        self.child.check_running()?;
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
#[derive(Debug)]
pub struct DistProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    child: ChildGuard,
    _dir: TempDir,
}

impl DistProxy {
    /// Starts `binary` as a proxy of `upstream` and waits until it answers.
    pub async fn start(
        binary: &Path,
        upstream: SocketAddr,
        client: &reqwest::Client,
    ) -> Result<Self, BoxError> {
        let d = Distribution::start(
            binary,
            client,
            "side-by-side-proxy-",
            "warn",
            Some(upstream),
        )
        .await?;
        Ok(Self {
            addr: d.addr,
            child: d.child,
            _dir: d.dir,
        })
    }

    /// The process id.
    pub fn pid(&mut self) -> Result<u32, BoxError> {
        self.child.check_running()?;
        Ok(self.child.pid())
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
