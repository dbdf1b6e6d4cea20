//! Runs the shared conformance suite against every backend of this crate.
// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use oci_cache_storage::fs::FsStore;
use oci_cache_storage::memory::MemoryStore;
use tempfile::TempDir;

async fn fs_store() -> (TempDir, FsStore) {
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    (dir, store)
}

oci_cache_storage::blob_store_conformance!(fs, fs_store());
oci_cache_storage::blob_store_conformance!(memory, std::future::ready(((), MemoryStore::new())));

/// A local tier (on a temporary directory) in front of a memory store: the tier keeps the
/// contract of the store it fronts. Its capacity is small (64 KiB) so that the suite's
/// blobs both enter and leave it.
async fn tiered_store() -> (TempDir, oci_cache_storage::tiered::TieredStore) {
    let dir = TempDir::new().unwrap();
    let shared = std::sync::Arc::new(MemoryStore::new());
    let store = oci_cache_storage::tiered::TieredStore::open(
        shared.clone(),
        shared,
        &dir.path().join("local"),
        64 * 1024,
    )
    .await
    .unwrap();
    (dir, store)
}

oci_cache_storage::blob_store_conformance!(tiered, tiered_store());
