//! The local tier's own promises, beyond the store contract (tests/conformance.rs): a hot
//! blob is read from the local disk, a copy is verified before it is kept, the tier stays
//! within its capacity, and tag records are read locally first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use oci_cache_storage::conformance::{put, read_all};
use oci_cache_storage::memory::MemoryStore;
use oci_cache_storage::tiered::{TieredStore, TAG_LOCAL_FOR};
use oci_cache_storage::{
    BlobMeta, BlobStore, BlobStream, BlobWriter, ByteRange, Digest, ListPage, ResolvedRange,
    StorageError, TagKey, TagRecord, TagStore,
};
use tempfile::TempDir;

/// The shared store, counting the reads it answers; it can be made to send wrong bytes or
/// to fail every tag read.
#[derive(Default)]
struct Shared {
    inner: MemoryStore,
    gets: AtomicUsize,
    tag_gets: AtomicUsize,
    lie: AtomicBool,
    down: AtomicBool,
}

#[async_trait]
impl BlobStore for Shared {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>, StorageError> {
        self.inner.head(digest).await
    }
    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobMeta, ResolvedRange, BlobStream), StorageError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let (meta, resolved, stream) = BlobStore::get(&self.inner, digest, range).await?;
        if !self.lie.load(Ordering::SeqCst) {
            return Ok((meta, resolved, stream));
        }
        let lying = stream.map(|chunk| {
            chunk.map(|c| {
                let mut v = c.to_vec();
                v[0] ^= 1;
                Bytes::from(v)
            })
        });
        Ok((meta, resolved, Box::pin(lying)))
    }
    async fn writer(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StorageError> {
        self.inner.writer(digest, size).await
    }
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        BlobStore::delete(&self.inner, digest).await
    }
    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<ListPage, StorageError> {
        self.inner.list(after, limit).await
    }
    async fn touch(&self, digest: &Digest) -> Result<(), StorageError> {
        self.inner.touch(digest).await
    }
}

#[async_trait]
impl TagStore for Shared {
    async fn get(&self, key: &TagKey) -> Result<Option<TagRecord>, StorageError> {
        self.tag_gets.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StorageError::Backend {
                op: "get tag",
                source: "the shared store is down".into(),
            });
        }
        TagStore::get(&self.inner, key).await
    }
    async fn put(&self, key: &TagKey, record: &TagRecord) -> Result<(), StorageError> {
        TagStore::put(&self.inner, key, record).await
    }
    async fn delete(&self, key: &TagKey) -> Result<(), StorageError> {
        TagStore::delete(&self.inner, key).await
    }
    async fn tags(&self, namespace: &str, repository: &str) -> Result<Vec<String>, StorageError> {
        self.inner.tags(namespace, repository).await
    }
}

async fn tier(capacity: u64) -> (TempDir, Arc<Shared>, TieredStore) {
    let dir = TempDir::new().unwrap();
    let shared = Arc::new(Shared::default());
    let store = TieredStore::open(shared.clone(), shared.clone(), dir.path(), capacity)
        .await
        .unwrap();
    (dir, shared, store)
}

/// Waits until the tier holds `digest` (its copy commits after the read ends).
async fn held(store: &TieredStore, digest: &Digest) -> bool {
    for _ in 0..100 {
        if store.holds_locally(digest) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_blob_read_once_is_read_from_the_local_disk_after() {
    let (_dir, shared, store) = tier(1 << 20).await;
    let bytes = vec![7u8; 100_000];
    let digest = put(&*shared, &bytes).await;
    let (_, _, stream) = BlobStore::get(&store, &digest, None).await.unwrap();
    assert_eq!(read_all(stream).await, bytes);
    assert!(held(&store, &digest).await, "the read was not copied");
    let before = shared.gets.load(Ordering::SeqCst);
    for range in [None, Some(ByteRange::From { start: 99_990 })] {
        let (_, _, stream) = BlobStore::get(&store, &digest, range).await.unwrap();
        let got = read_all(stream).await;
        assert_eq!(got.len(), if range.is_some() { 10 } else { 100_000 });
    }
    let file = store.open_file(&digest, None).await.unwrap();
    assert!(file.is_some(), "a held blob can be sent from its file");
    assert_eq!(
        shared.gets.load(Ordering::SeqCst),
        before,
        "hits asked the shared store"
    );
}

#[tokio::test]
async fn a_copy_that_does_not_hash_to_its_digest_is_not_kept() {
    let (_dir, shared, store) = tier(1 << 20).await;
    let digest = put(&*shared, &[3u8; 5000]).await;
    shared.lie.store(true, Ordering::SeqCst);
    let (_, _, stream) = BlobStore::get(&store, &digest, None).await.unwrap();
    let _ = read_all(stream).await;
    shared.lie.store(false, Ordering::SeqCst);
    assert!(!held(&store, &digest).await, "a wrong copy was kept");
    let (_, _, stream) = BlobStore::get(&store, &digest, None).await.unwrap();
    assert_eq!(read_all(stream).await, vec![3u8; 5000]);
}

/// An HTTP server that sent `Content-Length` bytes stops reading the body there, without
/// polling for its end: the copy is complete all the same.
#[tokio::test]
async fn a_read_of_every_byte_keeps_the_copy_without_polling_for_the_end() {
    let (_dir, shared, store) = tier(1 << 20).await;
    let digest = put(&*shared, &vec![6u8; 200_000]).await;
    let (meta, _, mut stream) = BlobStore::get(&store, &digest, None).await.unwrap();
    let mut got = 0u64;
    while got < meta.size {
        got += stream.next().await.unwrap().unwrap().len() as u64;
    }
    drop(stream);
    assert!(held(&store, &digest).await, "the copy was given up");
}

/// A delete while a copy runs wins: the copy does not bring the blob back.
#[tokio::test]
async fn a_delete_during_a_copy_is_not_undone_by_it() {
    let (_dir, shared, store) = tier(1 << 20).await;
    let digest = put(&*shared, &vec![4u8; 100_000]).await;
    let (_, _, mut stream) = BlobStore::get(&store, &digest, None).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    BlobStore::delete(&store, &digest).await.unwrap();
    let mut got = first.len();
    while let Some(chunk) = stream.next().await {
        got += chunk.unwrap().len();
    }
    assert_eq!(got, 100_000, "the reader was cut");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !store.holds_locally(&digest),
        "the copy brought the blob back"
    );
    assert!(BlobStore::head(&store, &digest).await.unwrap().is_none());
}

#[tokio::test]
async fn a_read_stopped_early_leaves_no_copy() {
    let (_dir, shared, store) = tier(1 << 20).await;
    let digest = put(&*shared, &vec![5u8; 200_000]).await;
    let (_, _, mut stream) = BlobStore::get(&store, &digest, None).await.unwrap();
    let _first = stream.next().await;
    drop(stream);
    assert!(!held(&store, &digest).await);
}

#[tokio::test]
async fn the_tier_stays_within_its_capacity_least_recently_used_out_first() {
    let (_dir, shared, store) = tier(100_000).await;
    let mut digests = Vec::new();
    for n in 0..8u8 {
        // Written through the tier, as a fill does: each copy is 20 KB.
        let digest = put(&store, &vec![n; 20_000]).await;
        if n == 1 {
            // Blob 0 is used again: it outlives the blobs written after it.
            assert!(store.holds_locally(&digests[0]));
        }
        digests.push(digest);
        assert!(
            store.local_bytes() <= 100_000,
            "{} bytes held",
            store.local_bytes()
        );
    }
    assert!(store.holds_locally(&digests[7]));
    assert!(
        !store.holds_locally(&digests[2]),
        "the oldest unused blob is still held"
    );
    for d in &digests {
        assert!(BlobStore::head(&*shared, d).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn what_the_disk_held_survives_a_restart_and_is_cut_to_a_smaller_capacity() {
    let dir = TempDir::new().unwrap();
    let shared = Arc::new(Shared::default());
    let open = |capacity| TieredStore::open(shared.clone(), shared.clone(), dir.path(), capacity);
    let store = open(1 << 20).await.unwrap();
    let a = put(&store, &vec![1u8; 30_000]).await;
    let b = put(&store, &vec![2u8; 30_000]).await;
    drop(store);
    // Charged by 4 KiB disk blocks: 30,000 bytes take 32 KiB.
    let store = open(1 << 20).await.unwrap();
    assert_eq!(store.local_bytes(), 2 * 32_768);
    drop(store);
    let store = open(40_000).await.unwrap();
    assert_eq!(store.local_bytes(), 32_768);
    assert!(store.holds_locally(&b) != store.holds_locally(&a));
}

fn key(tag: &str) -> TagKey {
    TagKey {
        namespace: "docker.io".into(),
        repository: "library/alpine".into(),
        tag: tag.into(),
    }
}

fn record(n: u8) -> TagRecord {
    TagRecord {
        digest: Digest::sha256_of(&[n]),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        fetched_at: SystemTime::now(),
    }
}

#[tokio::test]
async fn tag_records_are_read_locally_first_and_again_from_the_shared_store_later() {
    let (_dir, shared, store) = tier(1 << 20).await;
    TagStore::put(&store, &key("3.20"), &record(1))
        .await
        .unwrap();
    TagStore::put(&store, &key("@sha256:link"), &record(2))
        .await
        .unwrap();
    let before = shared.tag_gets.load(Ordering::SeqCst);
    for _ in 0..5 {
        let got = TagStore::get(&store, &key("3.20")).await.unwrap().unwrap();
        assert_eq!(got.digest, record(1).digest);
    }
    assert_eq!(
        shared.tag_gets.load(Ordering::SeqCst),
        before,
        "reads of a fresh local copy asked the shared store"
    );
    // Another replica changes the tag in the shared store: seen once the local copy ages.
    TagStore::put(&*shared, &key("3.20"), &record(9))
        .await
        .unwrap();
    tokio::time::sleep(TAG_LOCAL_FOR + Duration::from_millis(200)).await;
    let seen = TagStore::get(&store, &key("3.20")).await.unwrap().unwrap();
    assert_eq!(seen.digest, record(9).digest);
    // The engine's own records (`@...`) are never copied: each read asks the shared store.
    let before = shared.tag_gets.load(Ordering::SeqCst);
    let link = TagStore::get(&store, &key("@sha256:link")).await.unwrap();
    assert_eq!(link.unwrap().digest, record(2).digest);
    assert_eq!(shared.tag_gets.load(Ordering::SeqCst), before + 1);
    // The shared store goes down: tags answer from the local disk, and for a while the
    // shared store is not asked at all.
    shared.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(TAG_LOCAL_FOR + Duration::from_millis(200)).await;
    let tag = TagStore::get(&store, &key("3.20")).await.unwrap().unwrap();
    assert_eq!(tag.digest, record(9).digest);
    let asked = shared.tag_gets.load(Ordering::SeqCst);
    let tag = TagStore::get(&store, &key("3.20")).await.unwrap().unwrap();
    assert_eq!(tag.digest, record(9).digest);
    assert_eq!(
        shared.tag_gets.load(Ordering::SeqCst),
        asked,
        "asked a store known down"
    );
    assert!(TagStore::get(&store, &key("@sha256:link")).await.is_err());
    assert!(TagStore::get(&store, &key("never")).await.is_err());
}
