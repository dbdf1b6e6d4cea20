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
