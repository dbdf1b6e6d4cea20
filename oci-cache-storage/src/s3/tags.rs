//! Tag records of the S3 backend: one small JSON object per tag.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{backend, S3Store};
use crate::key::{tag_of_file_name, tags_dir_segments};
use crate::{StorageError, TagKey, TagRecord, TagStore};

#[async_trait]
impl TagStore for S3Store {
    async fn get(&self, key: &TagKey) -> Result<Option<TagRecord>, StorageError> {
        let bytes: Bytes = match self.store.get(&self.tag_path(key)).await {
            Ok(r) => r.bytes().await.map_err(backend("read tag"))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(backend("get tag")(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Corrupt {
                key: format!("{}/{}:{}", key.namespace, key.repository, key.tag),
                reason: e.to_string(),
            })
    }

    async fn put(&self, key: &TagKey, record: &TagRecord) -> Result<(), StorageError> {
        let json = serde_json::to_vec(record).map_err(|e| StorageError::Corrupt {
            key: format!("{}/{}:{}", key.namespace, key.repository, key.tag),
            reason: e.to_string(),
        })?;
        self.store
            .put(&self.tag_path(key), PutPayload::from(json))
            .await
            .map(|_| ())
            .map_err(backend("put tag"))
    }

    async fn delete(&self, key: &TagKey) -> Result<(), StorageError> {
        match self.store.delete(&self.tag_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend("delete tag")(e)),
        }
    }

    async fn tags(&self, namespace: &str, repository: &str) -> Result<Vec<String>, StorageError> {
        let dir: Vec<String> = tags_dir_segments(namespace, repository)
            .iter()
            .map(|s| s.replace('%', "!"))
            .collect();
        let prefix = self.path(&format!("tags/{}", dir.join("/")));
        let mut listing = self.store.list(Some(&prefix));
        let mut tags = Vec::new();
        while let Some(item) = listing.next().await {
            let meta = item.map_err(backend("list tags"))?;
            // Only records directly in this repository's directory (not a deeper one).
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let parent_ok = meta
                .location
                .prefix_match(&prefix)
                .is_some_and(|mut rest| rest.next().is_some() && rest.next().is_none());
            if let Some(tag) = parent_ok
                .then(|| tag_of_file_name(&name.replace('!', "%")))
                .flatten()
            {
                tags.push(tag);
            }
        }
        Ok(tags)
    }
}
