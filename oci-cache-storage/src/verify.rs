//! Re-hashing stored blobs (`oci-cache verify`): finds blobs whose bytes no longer match
//! their digest (disk corruption, tampering) and removes them if asked.

use futures_util::StreamExt;

use crate::{BlobStore, Digest, StorageError};

/// What a verification pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs checked.
    pub checked: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Blobs whose bytes do not hash to their digest.
    pub corrupt: Vec<Digest>,
    /// How many of those were removed.
    pub removed: u64,
}

/// Re-hashes every stored blob; with `remove`, deletes those that do not match.
pub async fn verify_blobs(
    store: &dyn BlobStore,
    remove: bool,
) -> Result<VerifyReport, StorageError> {
    let mut report = VerifyReport::default();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.list(after.as_ref(), 256).await?;
        for meta in &page.blobs {
            let (_, _, mut body) = match store.get(&meta.digest, None).await {
                Ok(found) => found,
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let mut verifier = meta.digest.verifier();
            let mut readable = true;
            while let Some(chunk) = body.next().await {
                let Ok(c) = chunk else {
                    readable = false;
                    break;
                };
                verifier.update(&c);
            }
            report.checked += 1;
            report.bytes += verifier.len();
            let intact =
                readable && verifier.len() == meta.size && verifier.finish() == meta.digest;
            if !intact {
                tracing::warn!(digest = %meta.digest, "stored blob does not match its digest");
                report.corrupt.push(meta.digest.clone());
                if remove {
                    store.delete(&meta.digest).await?;
                    report.removed += 1;
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::FsStore;
    use bytes::Bytes;

    #[tokio::test]
    async fn finds_and_removes_a_corrupted_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        let mut digests = Vec::new();
        for i in 0..3u8 {
            let data = vec![i; 1000];
            let d = Digest::sha256_of(&data);
            let mut w = store.writer(&d, None).await.unwrap();
            w.write(Bytes::from(data)).await.unwrap();
            w.commit().await.unwrap();
            digests.push(d);
        }
        let bad = &digests[1];
        let path = dir
            .path()
            .join("blobs/sha256")
            .join(&bad.hex()[..2])
            .join(bad.hex());
        std::fs::write(&path, vec![9u8; 1000]).unwrap();
        let report = verify_blobs(&store, false).await.unwrap();
        assert_eq!(
            (report.checked, report.corrupt.clone()),
            (3, vec![bad.clone()])
        );
        assert!(store.head(bad).await.unwrap().is_some(), "report only");
        let report = verify_blobs(&store, true).await.unwrap();
        assert_eq!(report.removed, 1);
        assert!(store.head(bad).await.unwrap().is_none());
        assert_eq!(
            verify_blobs(&store, true).await.unwrap().corrupt,
            Vec::<Digest>::new()
        );
    }
}
