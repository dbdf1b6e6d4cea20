//! The `custom-storage` example's backend: the storage conformance suite every built-in
//! backend passes, and its memory tier at work.

// Test helpers outside #[test] functions too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use oci_cache_examples::tiered::TieredStore;
use oci_cache_storage::conformance::{content, get_all, put};
use oci_cache_storage::fs::FsStore;
use oci_cache_storage::{BlobStore, Digest, StorageError};

async fn make(budget: u64) -> (tempfile::TempDir, TieredStore) {
    let dir = tempfile::tempdir().unwrap();
    let cold = FsStore::open(dir.path()).await.unwrap();
    (dir, TieredStore::new(cold, budget))
}

oci_cache_storage::blob_store_conformance!(tiered, super::make(1 << 20));

/// Removes a blob's file behind the store's back: only the memory tier can still serve it.
fn remove_file(dir: &tempfile::TempDir, digest: &Digest) {
    let hex = digest.hex();
    let path = dir.path().join("blobs/sha256").join(&hex[..2]).join(hex);
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn small_blobs_read_once_are_served_from_memory() {
    let (dir, store) = make(1 << 20).await;
    let small = content(1, 10_000);
    let large = content(2, 300_000);
    let (small_digest, large_digest) = (put(&store, &small).await, put(&store, &large).await);
    assert_eq!(get_all(&store, &small_digest).await, small);
    assert_eq!(get_all(&store, &large_digest).await, large);
    remove_file(&dir, &small_digest);
    remove_file(&dir, &large_digest);
    assert_eq!(get_all(&store, &small_digest).await, small, "from memory");
    assert!(
        matches!(
            store.get(&large_digest, None).await,
            Err(StorageError::NotFound { .. })
        ),
        "blobs over 256 KiB stay on disk only"
    );
}

#[tokio::test]
async fn memory_tier_keeps_within_its_budget() {
    let (dir, store) = make(250_000).await;
    let blobs: Vec<Vec<u8>> = (0..3).map(|i| content(10 + i, 100_000)).collect();
    let mut digests = Vec::new();
    for blob in &blobs {
        let digest = put(&store, blob).await;
        assert_eq!(&get_all(&store, &digest).await, blob);
        digests.push(digest);
    }
    for digest in &digests {
        remove_file(&dir, digest);
    }
    // 3 x 100 kB over a 250 kB budget: the oldest left the memory tier.
    assert!(matches!(
        store.get(&digests[0], None).await,
        Err(StorageError::NotFound { .. })
    ));
    assert_eq!(get_all(&store, &digests[1]).await, blobs[1]);
    assert_eq!(get_all(&store, &digests[2]).await, blobs[2]);
}
