//! The S3 backend (feature `s3`), on the `object_store` crate: AWS S3 and S3-compatible
//! servers. Blobs live at `PREFIX/blobs/<alg>/<hex>`, tags at `PREFIX/tags/...json`, and the
//! last access of a blob in a small sidecar `PREFIX/access/<alg>/<hex>`, rewritten about
//! once per [`TOUCH_INTERVAL`] at most (or [`S3Store::with_touch_interval`]) so hot blobs
//! are never rewritten.
//!
//! A blob becomes visible only when its upload completes, and that happens only after the
//! digest and size are verified: small blobs are one PUT, larger ones a multipart upload
//! whose parts stream as they arrive (never the whole blob in memory) and which is aborted
//! on any failure. Correctness never depends on conditional PUT, which S3-compatible
//! servers do not implement reliably: content addressing makes concurrent writers of one
//! digest write the same bytes.

mod tags;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest as _, Sha256};

use crate::key::tag_segments;
use crate::{
    BlobMeta, BlobStore, BlobStream, BlobWriter, ByteRange, Digest, ListPage, ResolvedRange,
    StorageError, TagKey,
};
use writer::S3Writer;

/// Longest tag key (after `tags/`) kept readable; longer ones are hashed.
const MAX_TAG_KEY: usize = 100;

/// A blob's last-access sidecar is rewritten at most this often, by default.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(600);

/// Blobs and tags in an S3 bucket under a prefix.
#[derive(Clone)]
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    touched: Arc<Mutex<HashMap<Digest, Instant>>>,
    touch_interval: Duration,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Maps an `object_store` error, keeping "not found" apart.
pub(crate) fn backend(op: &'static str) -> impl FnOnce(object_store::Error) -> StorageError {
    move |e| StorageError::Backend {
        op,
        source: Box::new(e),
    }
}

impl S3Store {
    /// [`BlobStore::get`] with a HEAD before the GET: for a range whose answer needs the
    /// size first.
    async fn get_after_head(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobMeta, ResolvedRange, BlobStream), StorageError> {
        let location = self.blob_path(digest);
        let meta = match self.store.head(&location).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::NotFound {
                    digest: digest.clone(),
                })
            }
            Err(e) => return Err(backend("head blob")(e)),
        };
        let size = meta.size;
        let resolved = match range {
            None => ResolvedRange::full(size),
            Some(r) => r
                .resolve(size)
                .ok_or(StorageError::RangeNotSatisfiable { size })?,
        };
        let blob_meta = BlobMeta {
            digest: digest.clone(),
            size,
            last_access: SystemTime::from(meta.last_modified),
        };
        if resolved.is_empty() {
            return Ok((blob_meta, resolved, Box::pin(futures_util::stream::empty())));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(resolved.start..resolved.end)),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&location, options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::NotFound {
                    digest: digest.clone(),
                })
            }
            Err(e) => return Err(backend("get blob")(e)),
        };
        let stream = result
            .into_stream()
            .map_err(|e| backend("read blob")(e))
            .boxed();
        Ok((blob_meta, resolved, stream))
    }

    /// A store over any `ObjectStore` (an embedder's own client, or an in-memory one).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            touched: Arc::default(),
            touch_interval: TOUCH_INTERVAL,
        }
    }

    /// The store, rewriting a blob's last-access sidecar about once per `interval` at most
    /// (a touch three quarters of `interval` after the last one goes through).
    #[must_use]
    pub fn with_touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = interval;
        self
    }

    /// A store for `s3://BUCKET/PREFIX`, configured from the usual AWS environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// `AWS_ALLOW_HTTP`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, web identity for IRSA...).
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| StorageError::Config {
                reason: format!("storage URL must start with s3://, got {url:?}"),
            })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::Config {
                reason: "storage URL names no bucket".into(),
            });
        }
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: a provider is then installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| StorageError::Config {
                reason: format!("S3 configuration: {e}"),
            })?;
        Ok(Self::new(Arc::new(store), prefix))
    }

    fn path(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob_path(&self, digest: &Digest) -> Path {
        self.path(&format!(
            "blobs/{}/{}",
            digest.algorithm().as_str(),
            digest.hex()
        ))
    }

    fn access_path(&self, digest: &Digest) -> Path {
        self.path(&format!(
            "access/{}/{}",
            digest.algorithm().as_str(),
            digest.hex()
        ))
    }

    /// The tag's key: the encoded segments, with `%` written as `!` (some S3 servers
    /// mishandle `%` in keys; `!` never appears in the encoding otherwise). A name longer
    /// than [`MAX_TAG_KEY`] becomes `tags/!h<sha256>.json`: S3 allows 1024-byte keys, but
    /// S3-compatible servers on a filesystem (s3s-fs) fail on long ones.
    fn tag_path(&self, key: &TagKey) -> Path {
        let segments: Vec<String> = tag_segments(key)
            .iter()
            .map(|s| s.replace('%', "!"))
            .collect();
        let name = segments.join("/");
        if name.len() <= MAX_TAG_KEY {
            return self.path(&format!("tags/{name}"));
        }
        let hash = hex::encode(Sha256::digest(name.as_bytes()));
        self.path(&format!("tags/!h{hash}.json"))
    }

    /// Raises each listed blob's last access to its sidecar's time (one listing of the
    /// `access/` keys over the page's digest range).
    async fn merge_access_times(
        &self,
        blobs: &mut [BlobMeta],
        after: Option<&Digest>,
    ) -> Result<(), StorageError> {
        let Some(last) = blobs.last().map(|b| b.digest.clone()) else {
            return Ok(());
        };
        let prefix = self.path("access");
        let offset = after.map(|d| self.access_path(d));
        let mut listing = match &offset {
            Some(o) => self.store.list_with_offset(Some(&prefix), o),
            None => self.store.list(Some(&prefix)),
        };
        let mut touched = std::collections::HashMap::new();
        while let Some(item) = listing.next().await {
            let meta = item.map_err(backend("list access times"))?;
            let Some(digest) = Self::digest_of(&meta.location) else {
                continue;
            };
            if digest > last {
                break;
            }
            touched.insert(digest, SystemTime::from(meta.last_modified));
        }
        for b in blobs.iter_mut() {
            if let Some(t) = touched.get(&b.digest) {
                b.last_access = b.last_access.max(*t);
            }
        }
        Ok(())
    }

    /// The blob's metadata, its last access raised to its sidecar's time. A sidecar that
    /// does not exist leaves the blob's own time; one that cannot be read is an error when
    /// `strict`, else ignored (a hit need not fail for it).
    async fn head_with_access(
        &self,
        digest: &Digest,
        strict: bool,
    ) -> Result<Option<BlobMeta>, StorageError> {
        let meta = match self.store.head(&self.blob_path(digest)).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(backend("head blob")(e)),
        };
        let mut last_access = SystemTime::from(meta.last_modified);
        match self.store.head(&self.access_path(digest)).await {
            Ok(access) => last_access = last_access.max(SystemTime::from(access.last_modified)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) if strict => return Err(backend("head last access")(e)),
            Err(e) => tracing::debug!(%digest, error = %e, "last access unreadable"),
        }
        Ok(Some(BlobMeta {
            digest: digest.clone(),
            size: meta.size,
            last_access,
        }))
    }

    /// The digest named by a blob key, if it is one.
    fn digest_of(location: &Path) -> Option<Digest> {
        let mut parts = location.as_ref().rsplit('/');
        let hex = parts.next()?;
        let alg = parts.next()?;
        Digest::parse(&format!("{alg}:{hex}")).ok()
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>, StorageError> {
        self.head_with_access(digest, false).await
    }

    /// Strict where `head` is lenient: an eviction asks this right before it deletes, and
    /// a sidecar it cannot read must not pass for an idle blob.
    async fn last_access(&self, digest: &Digest) -> Result<Option<SystemTime>, StorageError> {
        Ok(self
            .head_with_access(digest, true)
            .await?
            .map(|m| m.last_access))
    }

    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobMeta, ResolvedRange, BlobStream), StorageError> {
        // One request per hit: the GET's answer says the size and the part it holds. A
        // range that cannot be asked as it is, or one S3 refuses (416), takes a HEAD first
        // to learn the size the answer must name.
        let get_range = match range {
            None => None,
            Some(ByteRange::Bounded { start, end }) if start <= end => {
                Some(GetRange::Bounded(start..end.saturating_add(1)))
            }
            Some(ByteRange::From { start }) => Some(GetRange::Offset(start)),
            Some(ByteRange::Suffix { len }) if len > 0 => Some(GetRange::Suffix(len)),
            Some(_) => return self.get_after_head(digest, range).await,
        };
        let location = self.blob_path(digest);
        let options = GetOptions {
            range: get_range,
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&location, options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::NotFound {
                    digest: digest.clone(),
                })
            }
            Err(_) if range.is_some() => return self.get_after_head(digest, range).await,
            Err(e) => return Err(backend("get blob")(e)),
        };
        let size = result.meta.size;
        let resolved = crate::range::resolve_request(range, size)?;
        if (resolved.start, resolved.end) != (result.range.start, result.range.end) {
            return Err(StorageError::Backend {
                op: "get blob",
                source: format!(
                    "asked for bytes {}..{} of {size}, got {}..{}",
                    resolved.start, resolved.end, result.range.start, result.range.end
                )
                .into(),
            });
        }
        let blob_meta = BlobMeta {
            digest: digest.clone(),
            size,
            last_access: SystemTime::from(result.meta.last_modified),
        };
        let stream = result
            .into_stream()
            .map_err(|e| backend("read blob")(e))
            .boxed();
        Ok((blob_meta, resolved, stream))
    }

    async fn writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StorageError> {
        Ok(Box::new(S3Writer::new(
            Arc::clone(&self.store),
            self.blob_path(digest),
            digest.clone(),
            expected_size,
        )))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        for location in [self.blob_path(digest), self.access_path(digest)] {
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend("delete blob")(e)),
            }
        }
        Ok(())
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<ListPage, StorageError> {
        let limit = limit.max(1);
        let prefix = self.path("blobs");
        let offset = after.map(|d| self.blob_path(d));
        let mut listing = match &offset {
            Some(o) => self.store.list_with_offset(Some(&prefix), o),
            None => self.store.list(Some(&prefix)),
        };
        let mut blobs = Vec::new();
        let mut more = false;
        while let Some(item) = listing.next().await {
            let meta = item.map_err(backend("list blobs"))?;
            let Some(digest) = Self::digest_of(&meta.location) else {
                continue;
            };
            if after.is_some_and(|a| digest <= *a) {
                continue;
            }
            if blobs.len() == limit {
                more = true;
                break;
            }
            blobs.push(BlobMeta {
                digest,
                size: meta.size,
                last_access: SystemTime::from(meta.last_modified),
            });
        }
        // S3 lists keys in byte order, which is digest order; other stores may not.
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        self.merge_access_times(&mut blobs, after).await?;
        let next = more
            .then(|| blobs.last().map(|b| b.digest.clone()))
            .flatten();
        Ok(ListPage { blobs, next })
    }

    async fn touch(&self, digest: &Digest) -> Result<(), StorageError> {
        // Skipped only when the last touch began less than three quarters of the interval
        // ago: a caller that refreshes a long read once per interval (the engine does,
        // timed from the end of its previous touch) is never skipped by a few
        // milliseconds, which left the sidecar up to two intervals old.
        let started = Instant::now();
        let recent = self
            .touched
            .lock()
            .get(digest)
            .copied()
            .is_some_and(|at| at.elapsed() < self.touch_interval * 3 / 4);
        if recent {
            return Ok(());
        }
        if self.head(digest).await?.is_none() {
            return Err(StorageError::NotFound {
                digest: digest.clone(),
            });
        }
        self.store
            .put(&self.access_path(digest), PutPayload::from_static(b""))
            .await
            .map_err(backend("touch blob"))?;
        {
            let mut t = self.touched.lock();
            if t.len() >= 100_000 {
                let interval = self.touch_interval;
                t.retain(|_, at| at.elapsed() < interval);
            }
            t.insert(digest.clone(), started);
        }
        Ok(())
    }
}
