//! Tag records as JSON files, one per tag, replaced atomically.
//!
//! A key maps to `tags/<namespace>/<repository segment>/.../%tags/<tag>.json`, each
//! component encoded by `crate::key::encode`: bytes in `[a-z0-9._-]` are kept, except a leading `.`;
//! every other byte becomes `%XX` (uppercase hex). Encoded names
//! therefore never are `.` or `..`, never contain a separator, and never equal the `%tags`
//! marker, so distinct keys get distinct files, all inside `tags/`.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use async_trait::async_trait;

use super::publish::{self, Mode};
use super::{blocking, FsStore, Layout};
use crate::key::{tag_of_file_name, tag_segments, tags_dir_segments};
use crate::{StorageError, TagKey, TagRecord, TagStore};

impl Layout {
    fn tag_path(&self, key: &TagKey) -> PathBuf {
        let mut path = self.tags.clone();
        path.extend(tag_segments(key));
        path
    }
}

fn key_name(key: &TagKey) -> String {
    format!("{}/{}:{}", key.namespace, key.repository, key.tag)
}

#[async_trait]
impl TagStore for FsStore {
    async fn get(&self, key: &TagKey) -> Result<Option<TagRecord>, StorageError> {
        let path = self.layout.tag_path(key);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("read tag")(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Corrupt {
                key: key_name(key),
                reason: e.to_string(),
            })
    }

    async fn put(&self, key: &TagKey, record: &TagRecord) -> Result<(), StorageError> {
        let json = serde_json::to_vec(record).map_err(|e| StorageError::Corrupt {
            key: key_name(key),
            reason: e.to_string(),
        })?;
        let temp = publish::temp_path(&self.layout.tmp, "tag");
        let target = self.layout.tag_path(key);
        blocking("write tag", move || {
            let written = File::options()
                .write(true)
                .create_new(true)
                .open(&temp)
                .and_then(|mut file| {
                    file.write_all(&json)?;
                    publish::publish(file, &temp, &target, Mode::Replace)
                });
            if written.is_err() {
                // Best effort: `open` sweeps whatever is left.
                let _ = publish::remove_if_exists(&temp);
            }
            written.map(drop).map_err(StorageError::io("write tag"))
        })
        .await
    }

    async fn tags(&self, namespace: &str, repository: &str) -> Result<Vec<String>, StorageError> {
        let mut dir = self.layout.tags.clone();
        dir.extend(tags_dir_segments(namespace, repository));
        blocking("list tags", move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(StorageError::io("list tags")(e)),
            };
            let mut tags = Vec::new();
            for entry in entries {
                let entry = entry.map_err(StorageError::io("list tags"))?;
                if let Some(tag) = entry.file_name().to_str().and_then(tag_of_file_name) {
                    tags.push(tag);
                }
            }
            Ok(tags)
        })
        .await
    }

    async fn delete(&self, key: &TagKey) -> Result<(), StorageError> {
        let path = self.layout.tag_path(key);
        blocking("delete tag", move || {
            publish::remove_if_exists(&path).map_err(StorageError::io("delete tag"))
        })
        .await
    }
}
