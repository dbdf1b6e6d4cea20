//! Running an eviction pass over storage while the cache serves.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::SystemTime;

use bytes::BytesMut;
use futures_util::TryStreamExt;

use super::stats::EngineStats;
use super::Engine;
use crate::gc::{plan, GcPlan, GcPolicy, StoredBlob};
use crate::manifest::{references, MAX_MANIFEST_BYTES};
use crate::{ByteRange, Digest, EngineError, StorageError};

/// What each stored blob refers to, learned once (blobs never change).
#[derive(Debug, Default)]
pub(crate) struct RefIndex {
    refs: Mutex<HashMap<Digest, Vec<Digest>>>,
}

impl Engine {
    /// Scans storage and evicts what `policy` says must go (nothing when `dry_run`);
    /// returns the plan. Blobs being read are kept.
    pub async fn collect_garbage(
        &self,
        policy: &GcPolicy,
        dry_run: bool,
    ) -> Result<GcPlan, EngineError> {
        self.collect_garbage_of(policy, dry_run, &|_| true).await
    }

    /// [`Engine::collect_garbage`] where this process deletes only the blobs `owns` says
    /// are its own: with several replicas on one storage, each evicts only the blobs it
    /// owns (the plan is the fleet's, each replica carries out its share), so no two
    /// replicas delete by different views, and the owner, which fills a blob for the whole
    /// fleet, is the one that knows when it is being filled.
    pub async fn collect_garbage_of(
        &self,
        policy: &GcPolicy,
        dry_run: bool,
        owns: &(dyn Fn(&Digest) -> bool + Send + Sync),
    ) -> Result<GcPlan, EngineError> {
        let _one_at_a_time = self.pass.lock().await;
        let result = self.pass_of(policy, dry_run, owns).await;
        self.limit.pass_done();
        result
    }

    /// Runs eviction passes for as long as the returned future runs: one at once, then one
    /// every `interval` (for age expiry), and one early whenever a fill or a commit finds
    /// the store past the high watermark of `policy.max_bytes` (wake-ups coalesce, and a
    /// woken pass starts no sooner after the last one than that one took, at least a
    /// second: listings take at most half the time). Fills are admitted only within
    /// `max_bytes` (see `limit.rs`); a fill without room is served without being stored.
    /// Only the blobs `owns` accepts are deleted (see [`Engine::collect_garbage_of`]).
    /// Without this loop running, fills store whatever the storage takes.
    pub async fn evict_forever(
        &self,
        policy: GcPolicy,
        interval: std::time::Duration,
        owns: &(dyn Fn(&Digest) -> bool + Send + Sync),
    ) {
        self.limit.set(policy.max_bytes, policy.high_watermark);
        loop {
            let started = tokio::time::Instant::now();
            if let Err(e) = self.collect_garbage_of(&policy, false, owns).await {
                tracing::warn!(error = %e, "eviction pass failed");
                EngineStats::add(&self.stats.eviction_failures, 1);
            }
            let gap = started.elapsed().max(std::time::Duration::from_secs(1));
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.limit.woken() => tokio::time::sleep(gap).await,
            }
        }
    }

    /// One pass of [`Engine::collect_garbage_of`], with room left for the fills admitted
    /// and waiting.
    async fn pass_of(
        &self,
        policy: &GcPolicy,
        dry_run: bool,
        owns: &(dyn Fn(&Digest) -> bool + Send + Sync),
    ) -> Result<GcPlan, EngineError> {
        // Room for the fills admitted and not yet stored, at most the watermarks' band: a
        // burst of large fills must not empty the cache for blobs that will not fit anyway.
        let mut policy = policy.clone();
        let band = |max: u64| {
            #[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)] // bytes below 2^52
            let band = (max as f64 * (1.0 - policy.low_watermark)) as u64;
            band
        };
        policy.max_bytes = policy
            .max_bytes
            .map(|max| max.saturating_sub(self.limit.incoming().min(band(max))));
        let policy = &policy;
        // The listing first, so the stored figure is known before manifests are read.
        self.limit.listing_started();
        let mut listed = Vec::new();
        let mut after: Option<Digest> = None;
        loop {
            let page = self.blobs.list(after.as_ref(), 1000).await?;
            listed.extend(page.blobs);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        self.limit
            .listed(listed.iter().map(|m| m.size).sum(), listed.len() as u64);
        let mut stored = Vec::with_capacity(listed.len());
        for meta in listed {
            let refs = self.references_of(&meta.digest, meta.size).await?;
            stored.push(StoredBlob {
                digest: meta.digest,
                size: meta.size,
                last_access: meta.last_access,
                refs,
            });
        }
        let decided = plan(&stored, &self.usage.in_use(), policy, SystemTime::now());
        if dry_run || decided.evict.is_empty() {
            return Ok(decided);
        }
        let in_use = self.usage.in_use();
        let sizes: HashMap<&Digest, u64> = stored.iter().map(|b| (&b.digest, b.size)).collect();
        let (mut deleted, mut freed) = (0u64, 0u64);
        for digest in decided
            .evict
            .iter()
            .filter(|d| !in_use.contains(*d) && owns(d))
        {
            match self.used_within(digest, policy.min_idle).await {
                Ok(false) => {}
                Ok(true) => continue,
                Err(e) => {
                    // Not knowing whether another process reads it, keep it; the others
                    // may still go.
                    tracing::warn!(%digest, error = %e, "last access unreadable; blob kept");
                    continue;
                }
            }
            self.blobs.delete(digest).await?;
            let size = sizes.get(digest).copied().unwrap_or(0);
            self.limit.evicted(size);
            deleted += 1;
            freed += size;
            self.hot.forget_manifest(digest);
            {
                let mut r = self.refs.refs.lock();
                r.remove(digest);
            }
            EngineStats::add(&self.stats.evicted_blobs, 1);
            EngineStats::add(
                &self.stats.evicted_bytes,
                sizes.get(digest).copied().unwrap_or(0),
            );
        }
        tracing::info!(
            evicted = deleted,
            freed,
            planned = decided.evict.len(),
            total = decided.total,
            "eviction pass"
        );
        Ok(decided)
    }

    /// Whether the blob was used within `min_idle`, asked of the storage again right
    /// before it is deleted: a read that began in another process after the listing has
    /// refreshed the last access by now.
    async fn used_within(
        &self,
        digest: &Digest,
        min_idle: Option<std::time::Duration>,
    ) -> Result<bool, EngineError> {
        let Some(idle) = min_idle else {
            return Ok(false);
        };
        let Some(last_access) = self.blobs.last_access(digest).await? else {
            return Ok(false);
        };
        Ok(SystemTime::now()
            .duration_since(last_access)
            .map_or(true, |since| since < idle))
    }

    /// Whether the blob's first byte is `{` (manifests are JSON objects; layers rarely start
    /// so), read with a one-byte range so layers are not read whole.
    async fn starts_like_json(&self, digest: &Digest) -> Result<bool, EngineError> {
        match self
            .blobs
            .get(digest, Some(ByteRange::Bounded { start: 0, end: 0 }))
            .await
        {
            Ok((_, _, body)) => {
                let first: BytesMut = body.try_collect().await?;
                Ok(first.first() == Some(&b'{'))
            }
            Err(StorageError::NotFound { .. } | StorageError::RangeNotSatisfiable { .. }) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The digests a stored blob refers to, if it is a manifest (read once, then known).
    async fn references_of(&self, digest: &Digest, size: u64) -> Result<Vec<Digest>, EngineError> {
        if let Some(known) = self.refs.refs.lock().get(digest).cloned() {
            return Ok(known);
        }
        let refs = if size <= MAX_MANIFEST_BYTES as u64 && self.starts_like_json(digest).await? {
            match self.blobs.get(digest, None).await {
                Ok((_, _, body)) => {
                    let bytes: BytesMut = body.try_collect().await?;
                    references(&bytes)
                }
                Err(StorageError::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            }
        } else {
            Vec::new()
        };
        {
            let mut r = self.refs.refs.lock();
            r.insert(digest.clone(), refs.clone());
        }
        Ok(refs)
    }
}
