//! Warming the cache: resolve image references (every platform of an index) and fill every
//! manifest and blob they name, as a pull would, without a client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use oci_spec::distribution::Reference as ImageReference;

use crate::manifest::{is_index, references};
use crate::name::{Reference, RepositoryName};
use crate::{Digest, Engine, EngineError, UpstreamClient, Upstreams};

/// Blobs of one image filled at once.
const PARALLEL_BLOBS: usize = 4;

/// What happened to one blob or manifest while prefetching, for progress display.
#[derive(Debug, Clone)]
pub enum PrefetchEvent {
    /// A blob is known (it will be filled unless already stored).
    BlobQueued {
        /// Its size, from the manifest.
        size: u64,
    },
    /// A blob is in the cache (filled now, or already there).
    BlobDone {
        /// Bytes downloaded for it (0 when it was already stored).
        downloaded: u64,
        /// Its size.
        size: u64,
    },
}

/// The outcome of prefetching a list of references.
#[derive(Debug, Clone, Default)]
pub struct PrefetchReport {
    /// References fully cached.
    pub images: usize,
    /// Manifests and indexes cached.
    pub manifests: usize,
    /// Blobs cached (filled or found).
    pub blobs: usize,
    /// Bytes downloaded from upstreams.
    pub bytes: u64,
    /// References that failed, with why.
    pub failures: Vec<(String, String)>,
    /// Time taken.
    pub elapsed: Duration,
}

/// Why a reference cannot be prefetched.
#[derive(Debug, thiserror::Error)]
pub enum PrefetchError {
    /// Not an image reference.
    #[error("invalid image reference {0:?}")]
    Reference(String),
    /// Its registry is not a configured upstream.
    #[error("no upstream named {0:?} is configured")]
    Upstream(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// Prefetches every reference (e.g. `docker.io/library/alpine:3.20`, `alpine`,
    /// `quay.io/org/app@sha256:...`): every platform's manifest and blobs are filled. A
    /// failed reference is reported and the others go on.
    pub async fn prefetch(
        &self,
        upstreams: &Upstreams,
        refs: &[String],
        progress: &(dyn Fn(PrefetchEvent) + Sync),
    ) -> PrefetchReport {
        let started = Instant::now();
        let mut report = PrefetchReport::default();
        for r in refs {
            match self.prefetch_one(upstreams, r, &mut report, progress).await {
                Ok(()) => report.images += 1,
                Err(e) => {
                    tracing::warn!(reference = %r, error = %e, "prefetch failed");
                    report.failures.push((r.clone(), e.to_string()));
                }
            }
        }
        // Link records and an index's children are stored in the background: done before
        // the report (a one-shot job would otherwise exit with them half written).
        let left = self
            .wait_for_fills(std::time::Duration::from_secs(120))
            .await;
        if left > 0 {
            tracing::warn!(left, "background writes still running after 120 s");
        }
        report.elapsed = started.elapsed();
        report
    }

    async fn prefetch_one(
        &self,
        upstreams: &Upstreams,
        reference: &str,
        report: &mut PrefetchReport,
        progress: &(dyn Fn(PrefetchEvent) + Sync),
    ) -> Result<(), PrefetchError> {
        let parsed = ImageReference::try_from(reference)
            .map_err(|_| PrefetchError::Reference(reference.to_owned()))?;
        let (client, repo) = upstreams
            .select(Some(parsed.registry()), None, parsed.repository())
            .map_err(|_| PrefetchError::Upstream(parsed.registry().to_owned()))?;
        let top = match (parsed.digest(), parsed.tag()) {
            (Some(d), _) => Reference::Digest(
                Digest::parse(d).map_err(|_| PrefetchError::Reference(reference.to_owned()))?,
            ),
            (None, Some(t)) => Reference::Tag(t.to_owned()),
            (None, None) => Reference::Tag("latest".to_owned()),
        };
        let mut pending = vec![top];
        let mut blobs: Vec<(Digest, u64)> = Vec::new();
        while let Some(r) = pending.pop() {
            let m = self.manifest(&client, &repo, &r).await?;
            report.manifests += 1;
            let refs = references(&m.bytes);
            if is_index(&m.media_type) {
                pending.extend(refs.into_iter().map(Reference::Digest));
            } else {
                blobs.extend(sizes(&m.bytes, refs));
            }
        }
        for (_, size) in &blobs {
            progress(PrefetchEvent::BlobQueued { size: *size });
        }
        let results: Vec<Result<u64, EngineError>> = stream::iter(blobs)
            .map(|(d, size)| {
                let (client, repo) = (Arc::clone(&client), repo.clone());
                async move {
                    let downloaded = self.fill_blob(&client, &repo, &d).await?;
                    progress(PrefetchEvent::BlobDone { downloaded, size });
                    Ok(downloaded)
                }
            })
            .buffer_unordered(PARALLEL_BLOBS)
            .collect()
            .await;
        for r in results {
            report.bytes += r?;
            report.blobs += 1;
        }
        Ok(())
    }

    /// Makes sure a blob is stored; returns the bytes downloaded (0 when it was there).
    async fn fill_blob(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64, EngineError> {
        if self.blobs().head(digest).await?.is_some() {
            return Ok(0);
        }
        let resp = self.blob(client, repo, digest, None).await?;
        let mut body = resp.body;
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            n += chunk?.len() as u64;
        }
        Ok(if resp.cached { 0 } else { n })
    }
}

/// The referenced digests with the sizes their descriptors give (0 when absent).
fn sizes(manifest: &[u8], refs: Vec<Digest>) -> Vec<(Digest, u64)> {
    #[derive(serde::Deserialize)]
    struct Desc {
        digest: String,
        #[serde(default)]
        size: u64,
    }
    #[derive(serde::Deserialize)]
    struct M {
        config: Option<Desc>,
        #[serde(default)]
        layers: Vec<Desc>,
    }
    let known: Vec<(String, u64)> = serde_json::from_slice::<M>(manifest)
        .map(|m| {
            m.config
                .into_iter()
                .chain(m.layers)
                .map(|d| (d.digest, d.size))
                .collect()
        })
        .unwrap_or_default();
    refs.into_iter()
        .map(|d| {
            let size = known
                .iter()
                .find(|(k, _)| *k == d.to_string())
                .map_or(0, |(_, s)| *s);
            (d, size)
        })
        .collect()
}
