//! Tag records of the S3 backend: one small JSON object per tag.

use async_trait::async_trait;
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};

use super::{backend, S3Store};
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
}
