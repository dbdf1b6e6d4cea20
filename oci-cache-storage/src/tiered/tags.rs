//! Tag records through the local tier. A tag's local copy is used for [`TAG_LOCAL_FOR`]
//! after it was read from or written to the shared store (another replica may have
//! refreshed the tag since), then the shared store is asked again. When the shared store
//! cannot be read, the local copy answers, and for [`TAG_LOCAL_FOR`] the shared store is
//! not asked (so an outage does not cost every tag read a timeout).
//!
//! The engine's own records (named `@...`: links, possession, tag lists, referrers) go to
//! the shared store only: the engine keeps what it needs of them in memory, some of them
//! change, and clients can make many of them, which the local disk would then hold too.
//! Local tag copies exist only for records the shared store holds.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::TieredStore;
use crate::{StorageError, TagKey, TagRecord, TagStore};

/// How long a tag's local copy is used before it is read from the shared store again.
pub const TAG_LOCAL_FOR: Duration = Duration::from_secs(10);

/// Tags whose last read from the shared store is remembered, at most.
const TAG_SYNCS: usize = 50_000;

/// Whether the record is one of the engine's own (never copied locally).
fn engine_record(key: &TagKey) -> bool {
    key.tag.starts_with('@') || key.repository.starts_with('@')
}

impl TieredStore {
    /// Whether the local copy of `key` may answer without asking the shared store.
    fn fresh_locally(&self, key: &TagKey) -> bool {
        let down = self
            .down_until
            .lock()
            .is_some_and(|until| Instant::now() < until);
        down || self
            .synced
            .lock()
            .get(key)
            .is_some_and(|at| at.elapsed() < TAG_LOCAL_FOR)
    }

    /// The local copy of `key`; a local failure is a miss.
    async fn local_record(&self, key: &TagKey) -> Option<TagRecord> {
        TagStore::get(&self.local.store, key).await.ok().flatten()
    }

    /// Notes that the shared record of `key` was just read or written.
    fn synced_now(&self, key: &TagKey) {
        let mut synced = self.synced.lock();
        if synced.len() >= TAG_SYNCS {
            synced.retain(|_, at| at.elapsed() < TAG_LOCAL_FOR);
            if synced.len() >= TAG_SYNCS {
                synced.clear();
            }
        }
        synced.insert(key.clone(), Instant::now());
    }

    /// Makes the local copy of `key` what the shared store holds (in order with this
    /// process's other writes of it). A copy that fails is not used.
    async fn copy_locally(&self, key: &TagKey, record: Option<&TagRecord>) {
        let copied = match record {
            Some(r) => TagStore::put(&self.local.store, key, r).await,
            None => TagStore::delete(&self.local.store, key).await,
        };
        if let Err(e) = copied {
            self.synced.lock().remove(key);
            tracing::warn!(error = %e, "local tier: tag record not copied");
            let _ = TagStore::delete(&self.local.store, key).await;
        }
    }
}

#[async_trait]
impl TagStore for TieredStore {
    async fn get(&self, key: &TagKey) -> Result<Option<TagRecord>, StorageError> {
        if engine_record(key) {
            return self.tags.get(key).await;
        }
        if self.fresh_locally(key) {
            if let Some(record) = self.local_record(key).await {
                return Ok(Some(record));
            }
        }
        match self.tags.get(key).await {
            Ok(found) => {
                self.synced_now(key);
                self.copy_locally(key, found.as_ref()).await;
                Ok(found)
            }
            Err(e) => {
                *self.down_until.lock() = Some(Instant::now() + TAG_LOCAL_FOR);
                match self.local_record(key).await {
                    Some(record) => {
                        tracing::warn!(error = %e, "shared tag store unreadable; answering from the local tier");
                        Ok(Some(record))
                    }
                    None => Err(e),
                }
            }
        }
    }

    async fn put(&self, key: &TagKey, record: &TagRecord) -> Result<(), StorageError> {
        self.tags.put(key, record).await?;
        if !engine_record(key) {
            self.synced_now(key);
            self.copy_locally(key, Some(record)).await;
        }
        Ok(())
    }

    async fn delete(&self, key: &TagKey) -> Result<(), StorageError> {
        self.tags.delete(key).await?;
        if !engine_record(key) {
            self.synced.lock().remove(key);
            self.copy_locally(key, None).await;
        }
        Ok(())
    }

    async fn tags(&self, namespace: &str, repository: &str) -> Result<Vec<String>, StorageError> {
        self.tags.tags(namespace, repository).await
    }
}
