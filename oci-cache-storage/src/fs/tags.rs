//! Tag records as JSON files, one per tag, replaced atomically.
//!
//! A key maps to `tags/<namespace>/<repository segment>/.../%tags/<tag>.json`, each
//! component encoded by [`encode`]: bytes in `[a-z0-9._-]` are kept, except a leading `.`;
//! every other byte becomes `%XX` (uppercase hex). Encoded names
//! therefore never are `.` or `..`, never contain a separator, and never equal the `%tags`
//! marker, so distinct keys get distinct files, all inside `tags/`.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use super::publish::{self, Mode};
use super::{blocking, FsStore, Layout};
use crate::{StorageError, TagKey, TagRecord, TagStore};

/// Encoded components longer than this are replaced by a hash, to stay under the usual
/// 255-byte file name limit.
const MAX_COMPONENT: usize = 200;

/// Encodes one key component as a file name (see the module documentation). The empty
/// string becomes `%`; a component whose encoding is too long becomes `%h` and its sha256.
fn encode(component: &str) -> String {
    if component.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(component.len());
    for (i, b) in component.bytes().enumerate() {
        let keep = b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b);
        if keep || (b == b'.' && i > 0) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    if out.len() > MAX_COMPONENT {
        return format!("%h{}", hex::encode(Sha256::digest(component.as_bytes())));
    }
    out
}

impl Layout {
    fn tag_path(&self, key: &TagKey) -> PathBuf {
        let mut path = self.tags.join(encode(&key.namespace));
        for segment in key.repository.split('/') {
            path.push(encode(segment));
        }
        path.push("%tags");
        path.push(format!("{}.json", encode(&key.tag)));
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

    async fn delete(&self, key: &TagKey) -> Result<(), StorageError> {
        let path = self.layout.tag_path(key);
        blocking("delete tag", move || {
            publish::remove_if_exists(&path).map_err(StorageError::io("delete tag"))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn encode_keeps_safe_names_and_escapes_the_rest() {
        assert_eq!(encode("library"), "library");
        assert_eq!(encode("v1.2_rc-3"), "v1.2_rc-3");
        assert_eq!(encode(".."), "%2E.");
        assert_eq!(encode("."), "%2E");
        assert_eq!(encode("a/b"), "a%2Fb");
        assert_eq!(encode("Latest"), "%4Catest");
        assert_eq!(encode("%tags"), "%25tags");
        assert_eq!(encode(""), "%");
    }

    #[test]
    fn encode_hashes_overlong_components() {
        let long = "X".repeat(100);
        let encoded = encode(&long);
        assert!(encoded.starts_with("%h"));
        assert_eq!(encoded.len(), 66);
        assert_ne!(encoded, encode(&"X".repeat(101)));
    }
}
