//! Eviction and pass-through: least recently used images go first, whole; a store that
//! refuses writes never fails a pull.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use oci_cache_core::gc::GcPolicy;
use oci_cache_core::name::{Reference, RepositoryName};
use oci_cache_core::{BlobStore, ByteRange, Digest, Engine, EngineConfig};
use oci_cache_storage::memory::MemoryStore;
use oci_cache_storage::StorageError;
use oci_cache_testkit::wait_until_async;
use support::faulty::{Fault, FaultyStore};
use support::{data, respond, Fake};

/// Bound of every wait for the engine's background work.
const WAIT: Duration = Duration::from_secs(5);

fn repo() -> RepositoryName {
    RepositoryName::parse("test/app").unwrap()
}

/// An image: a manifest referencing one layer.
struct Image {
    tag: String,
    manifest: Vec<u8>,
    layer: Vec<u8>,
}

fn image(n: u8) -> Image {
    let layer = data(10_000, u64::from(n));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":10000}}]}}"#,
        Digest::sha256_of(b""),
        Digest::sha256_of(&layer)
    )
    .into_bytes();
    Image {
        tag: format!("v{n}"),
        manifest,
        layer,
    }
}

async fn registry(images: &[Image]) -> Fake {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for i in images {
        files.insert(format!("/manifests/{}", i.tag), i.manifest.clone());
        files.insert(
            format!("/blobs/{}", Digest::sha256_of(&i.layer)),
            i.layer.clone(),
        );
    }
    let files = Arc::new(files);
    Fake::start(move |req, s| {
        let files = files.clone();
        async move {
            match files.iter().find(|(k, _)| req.path.ends_with(k.as_str())) {
                Some((_, body)) => respond(s, "200 OK", &[], body).await,
                None => respond(s, "404 Not Found", &[], b"{}").await,
            }
        }
    })
    .await
}

/// The newest last access of an image's stored manifest and layer, once both are stored.
async fn newest_access(store: &dyn BlobStore, i: &Image) -> SystemTime {
    let digests = [Digest::sha256_of(&i.manifest), Digest::sha256_of(&i.layer)];
    wait_until_async("the image stored", WAIT, || async {
        let mut newest = SystemTime::UNIX_EPOCH;
        for d in &digests {
            newest = newest.max(store.head(d).await.unwrap()?.last_access);
        }
        Some(newest)
    })
    .await
}

async fn pull(engine: &Engine, client: &Arc<oci_cache_core::UpstreamClient>, i: &Image) {
    let m = engine
        .manifest(client, &repo(), &Reference::Tag(i.tag.clone()))
        .await
        .unwrap();
    assert_eq!(m.bytes.as_ref(), i.manifest.as_slice());
    let mut body = engine
        .blob(client, &repo(), &Digest::sha256_of(&i.layer), None)
        .await
        .unwrap()
        .body;
    let mut got = Vec::new();
    while let Some(c) = body.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert!(got == i.layer);
}

#[tokio::test]
async fn eviction_removes_the_least_recently_used_image_whole() {
    let images: Vec<Image> = (1..=3).map(image).collect();
    let fake = registry(&images).await;
    let (engine, store, _dir) = support::engine();
    let client = fake.client();
    for i in &images {
        pull(&engine, &client, i).await;
        support::committed_size(store.as_ref(), &Digest::sha256_of(&i.layer))
            .await
            .unwrap();
        // The next image's blobs must be stored strictly later than this one's.
        let stored = newest_access(store.as_ref(), i).await;
        wait_until_async(
            "the clock to pass the image's last access",
            WAIT,
            || async { (SystemTime::now() > stored).then_some(()) },
        )
        .await;
    }
    // Image 1 is used again (by digest, from the cache): now image 2 is the oldest.
    let m1 = Digest::sha256_of(&images[0].manifest);
    engine
        .manifest(&client, &repo(), &Reference::Digest(m1.clone()))
        .await
        .unwrap();
    let l1 = Digest::sha256_of(&images[0].layer);
    drop(engine.blob(&client, &repo(), &l1, None).await.unwrap());
    // The engine refreshes last access in the background: wait until image 1's manifest
    // (which dates its whole image) is newer than anything of image 3.
    let newest = newest_access(store.as_ref(), &images[2]).await;
    wait_until_async("image 1's manifest touched", WAIT, || async {
        let meta = store.head(&m1).await.unwrap()?;
        (meta.last_access > newest).then_some(())
    })
    .await;

    let total: u64 = images
        .iter()
        .map(|i| (i.manifest.len() + i.layer.len()) as u64)
        .sum();
    let mut policy = GcPolicy::default();
    policy.max_bytes = Some(total - 1);
    policy.high_watermark = 0.99;
    policy.low_watermark = 0.7;
    policy.max_age = None;
    let dry = engine.collect_garbage(&policy, true).await.unwrap();
    assert_eq!(dry.total, total);
    let m2 = Digest::sha256_of(&images[1].manifest);
    let l2 = Digest::sha256_of(&images[1].layer);
    let mut want = vec![m2.clone(), l2.clone()];
    want.sort();
    let mut planned = dry.evict.clone();
    planned.sort();
    assert_eq!(
        planned, want,
        "image 2, the least recently used, goes whole"
    );
    assert!(
        store.head(&m2).await.unwrap().is_some(),
        "a dry run deletes nothing"
    );

    engine.collect_garbage(&policy, false).await.unwrap();
    assert!(store.head(&m2).await.unwrap().is_none() && store.head(&l2).await.unwrap().is_none());
    for i in [&images[0], &images[2]] {
        assert!(store
            .head(&Digest::sha256_of(&i.layer))
            .await
            .unwrap()
            .is_some());
        assert!(store
            .head(&Digest::sha256_of(&i.manifest))
            .await
            .unwrap()
            .is_some());
    }
    let stats = engine.stats();
    assert_eq!((stats.evicted_blobs, stats.stored_objects), (2, 4));
    // A pull of the evicted image fills it again.
    pull(&engine, &client, &images[1]).await;
}

#[tokio::test]
async fn a_blob_being_read_is_not_evicted() {
    let images = vec![image(7)];
    let fake = registry(&images).await;
    let (engine, store, _dir) = support::engine();
    let client = fake.client();
    pull(&engine, &client, &images[0]).await;
    let layer = Digest::sha256_of(&images[0].layer);
    support::committed_size(store.as_ref(), &layer)
        .await
        .unwrap();
    let reading = engine
        .blob(&client, &repo(), &layer, Some(ByteRange::From { start: 0 }))
        .await
        .unwrap();
    let mut policy = GcPolicy::default();
    policy.max_bytes = Some(1);
    policy.high_watermark = 0.5;
    policy.low_watermark = 0.5;
    policy.max_age = None;
    let plan = engine.collect_garbage(&policy, false).await.unwrap();
    assert!(!plan.evict.contains(&layer), "the layer's group is in use");
    assert!(store.head(&layer).await.unwrap().is_some());
    drop(reading);
    engine.collect_garbage(&policy, false).await.unwrap();
    assert!(
        store.head(&layer).await.unwrap().is_none(),
        "once nobody reads it, it goes"
    );
}

#[tokio::test]
async fn a_store_that_refuses_writes_never_fails_a_pull() {
    let images = vec![image(9)];
    let fake = registry(&images).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FaultyStore {
        inner: Arc::new(MemoryStore::new()),
        fault: Fault::RefuseWriters,
    });
    let tags = Arc::new(MemoryStore::new());
    let mut config = EngineConfig::default();
    config.spool_dir = dir.path().to_path_buf();
    let engine = Engine::new(store.clone(), tags, config);
    let client = fake.client();
    for _ in 0..2 {
        pull(&engine, &client, &images[0]).await;
    }
    let stats = engine.stats();
    assert_eq!(
        stats.pass_through_bytes,
        2 * images[0].layer.len() as u64,
        "both pulls passed through"
    );
    assert!(store
        .head(&Digest::sha256_of(&images[0].layer))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn prefetch_fills_every_platform_of_an_index_and_reports_failures() {
    let platforms: Vec<Image> = (30..32).map(image).collect();
    let entries: Vec<String> = platforms
        .iter()
        .map(|p| format!(r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}"#, Digest::sha256_of(&p.manifest), p.manifest.len()))
        .collect();
    let index = format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#, entries.join(",")).into_bytes();
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    files.insert("/manifests/multi".into(), index.clone());
    files.insert(format!("/blobs/{}", Digest::sha256_of(b"")), Vec::new());
    for p in &platforms {
        files.insert(
            format!("/manifests/{}", Digest::sha256_of(&p.manifest)),
            p.manifest.clone(),
        );
        files.insert(
            format!("/blobs/{}", Digest::sha256_of(&p.layer)),
            p.layer.clone(),
        );
    }
    let files = Arc::new(files);
    let fake = Fake::start(move |req, s| {
        let files = files.clone();
        async move {
            match files.iter().find(|(k, _)| req.path.ends_with(k.as_str())) {
                Some((_, body)) => respond(s, "200 OK", &[], body).await,
                None => respond(s, "404 Not Found", &[], b"{}").await,
            }
        }
    })
    .await;
    let (engine, store, _dir) = support::engine();
    let upstreams = oci_cache_core::Upstreams::new(vec![oci_cache_core::UpstreamConfig::new(
        "fake.example",
        fake.url(),
    )])
    .unwrap();
    let events = std::sync::Mutex::new(0usize);
    let refs = vec![
        "fake.example/test/app:multi".to_owned(),
        "fake.example/test/app:missing".to_owned(),
        "unknown.example/x:1".to_owned(),
    ];
    let report = engine
        .prefetch(&upstreams, &refs, &|_| *events.lock().unwrap() += 1)
        .await;
    assert_eq!(report.images, 1);
    assert_eq!(report.manifests, 3, "the index and both platforms");
    assert_eq!(report.blobs, 4, "each platform's config and layer");
    assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
    assert!(*events.lock().unwrap() >= 8);
    for p in &platforms {
        let layer = Digest::sha256_of(&p.layer);
        assert!(support::committed_size(store.as_ref(), &layer)
            .await
            .is_some());
        assert!(store
            .head(&Digest::sha256_of(&p.manifest))
            .await
            .unwrap()
            .is_some());
    }
    assert_eq!(
        report.bytes,
        platforms.iter().map(|p| p.layer.len() as u64).sum::<u64>()
    );
}

#[tokio::test]
async fn a_disk_filling_up_during_a_fill_never_fails_its_readers() {
    disk_fills_up_during_a_fill(true).await;
}

#[tokio::test]
async fn with_no_room_for_a_spool_file_either_the_fill_spools_in_memory() {
    disk_fills_up_during_a_fill(false).await;
}

/// Storage fails at 1 MiB into a 3 MiB fill; `spool_usable: false` puts the spool directory
/// where no file can be made, as on a full disk.
async fn disk_fills_up_during_a_fill(spool_usable: bool) {
    let blob = data(3 * 1024 * 1024, 77);
    let digest = Digest::sha256_of(&blob);
    let b2 = Arc::new(blob.clone());
    let fake = Fake::start(move |_r, mut s| {
        let blob = b2.clone();
        async move {
            use tokio::io::AsyncWriteExt;
            support::respond_head_then(&mut s, blob.len(), &[]).await;
            for piece in blob.chunks(256 * 1024) {
                let _ = s.write_all(piece).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = s.shutdown().await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let fs = oci_cache_storage::fs::FsStore::open(dir.path().join("store"))
        .await
        .unwrap();
    let store = Arc::new(FaultyStore {
        inner: Arc::new(fs),
        fault: Fault::FailAfter(1024 * 1024),
    });
    let spool_dir = if spool_usable {
        dir.path().to_owned()
    } else {
        dir.path().join("no-such-dir")
    };
    let mut config = EngineConfig::default();
    config.spool_dir = spool_dir;
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(MemoryStore::new()),
        config,
    ));
    let client = fake.client();
    let mut readers = Vec::new();
    for start in [0u64, 2 * 1024 * 1024] {
        let (engine, client, digest) = (engine.clone(), client.clone(), digest.clone());
        readers.push(tokio::spawn(async move {
            let range = (start > 0).then_some(ByteRange::From { start });
            let mut body = engine
                .blob(&client, &repo(), &digest, range)
                .await
                .unwrap()
                .body;
            let mut got = Vec::new();
            while let Some(c) = body.next().await {
                got.extend_from_slice(&c.unwrap());
            }
            got
        }));
    }
    let full = readers.remove(0).await.unwrap();
    let tail = readers.remove(0).await.unwrap();
    assert!(
        full == blob,
        "the whole blob, verified, although storage failed at 1 MiB"
    );
    assert!(tail == blob[2 * 1024 * 1024..], "a range reader too");
    assert!(
        store.head(&digest).await.unwrap().is_none(),
        "nothing stored"
    );
    assert_eq!(engine.stats().pass_through_bytes, blob.len() as u64);
    assert_eq!(
        std::fs::read_dir(dir.path().join("store/tmp"))
            .unwrap()
            .count(),
        0,
        "the failed temp file is gone"
    );
}

/// A store whose listing shows every blob idle for a day, and whose last access, asked
/// again right before a delete, cannot be read for the blobs in `unreadable`.
struct StaleListing {
    inner: Arc<MemoryStore>,
    unreadable: Vec<Digest>,
}

#[async_trait::async_trait]
impl BlobStore for StaleListing {
    async fn head(&self, d: &Digest) -> Result<Option<oci_cache_core::BlobMeta>, StorageError> {
        self.inner.head(d).await
    }
    async fn get(
        &self,
        d: &Digest,
        r: Option<ByteRange>,
    ) -> Result<
        (
            oci_cache_core::BlobMeta,
            oci_cache_storage::ResolvedRange,
            oci_cache_storage::BlobStream,
        ),
        StorageError,
    > {
        self.inner.get(d, r).await
    }
    async fn writer(
        &self,
        d: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn oci_cache_storage::BlobWriter>, StorageError> {
        self.inner.writer(d, size).await
    }
    async fn delete(&self, d: &Digest) -> Result<(), StorageError> {
        self.inner.delete(d).await
    }
    async fn list(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<oci_cache_storage::ListPage, StorageError> {
        let mut page = self.inner.list(after, limit).await?;
        for b in &mut page.blobs {
            b.last_access = SystemTime::now() - Duration::from_secs(86_400);
        }
        Ok(page)
    }
    async fn touch(&self, d: &Digest) -> Result<(), StorageError> {
        self.inner.touch(d).await
    }
    async fn last_access(&self, d: &Digest) -> Result<Option<SystemTime>, StorageError> {
        if self.unreadable.contains(d) {
            return Err(StorageError::Io {
                op: "head last access",
                source: std::io::Error::other("500 Internal Server Error"),
            });
        }
        Ok(Some(SystemTime::now() - Duration::from_secs(86_400)))
    }
}

/// With storage shared by several processes (`min_idle`), a blob whose last access cannot
/// be read right before its delete is kept, never taken for an idle one, and the pass
/// goes on with the others.
#[tokio::test]
async fn a_blob_whose_last_access_cannot_be_read_is_not_evicted() {
    let inner = Arc::new(MemoryStore::new());
    let blobs: Vec<Vec<u8>> = (0..3u64).map(|i| data(1000, 60 + i)).collect();
    let mut digests = Vec::new();
    for b in &blobs {
        let d = Digest::sha256_of(b);
        let mut w = inner.writer(&d, Some(1000)).await.unwrap();
        w.write(bytes::Bytes::copy_from_slice(b)).await.unwrap();
        w.commit().await.unwrap();
        digests.push(d);
    }
    let store = Arc::new(StaleListing {
        inner: inner.clone(),
        unreadable: vec![digests[1].clone()],
    });
    let engine = Engine::new(store, Arc::new(MemoryStore::new()), EngineConfig::default());
    let mut policy = GcPolicy::default();
    policy.max_age = Some(Duration::from_secs(3600));
    policy.min_idle = Some(Duration::from_secs(60));
    engine
        .collect_garbage_of(&policy, false, &|_| true)
        .await
        .expect("the pass goes on past the unreadable one");
    let left: Vec<Digest> = inner
        .list(None, 10)
        .await
        .unwrap()
        .blobs
        .into_iter()
        .map(|b| b.digest)
        .collect();
    assert_eq!(
        left,
        vec![digests[1].clone()],
        "only the unreadable one stays"
    );
}

/// Two replicas on one storage: each evicts only the blobs it owns. The plan is the
/// fleet's (everything must go here); the first pass deletes only the first replica's
/// share, the second replica's pass the rest.
#[tokio::test]
async fn each_replica_evicts_only_the_blobs_it_owns() {
    let images = vec![image(8), image(9)];
    let fake = registry(&images).await;
    let (a, store, _dir) = support::engine();
    let client = fake.client();
    for i in &images {
        pull(&a, &client, i).await;
    }
    a.wait_for_fills(Duration::from_secs(10)).await;
    let tags = Arc::new(MemoryStore::new());
    let b = Engine::new(store.clone(), tags, EngineConfig::default());
    let mut policy = GcPolicy::default();
    policy.max_bytes = Some(1);
    policy.high_watermark = 0.5;
    policy.low_watermark = 0.5;
    policy.max_age = None;
    let stored = |store: Arc<MemoryStore>| async move {
        let page = store.list(None, 1000).await.unwrap();
        page.blobs
            .into_iter()
            .map(|m| m.digest)
            .collect::<Vec<Digest>>()
    };
    let all = stored(store.clone()).await;
    assert!(all.len() >= 4, "{all:?}");
    // Ownership by the digest's last hex digit, as a stand-in for rendezvous hashing.
    let mine = |d: &Digest| {
        d.to_string()
            .ends_with(['0', '1', '2', '3', '4', '5', '6', '7'])
    };
    let theirs = |d: &Digest| !mine(d);
    let plan = a.collect_garbage_of(&policy, false, &mine).await.unwrap();
    assert_eq!(plan.evict.len(), all.len(), "the plan is the fleet's");
    let left = stored(store.clone()).await;
    assert!(left.iter().all(&theirs), "a deleted only its own: {left:?}");
    assert_eq!(
        left.len(),
        all.iter().filter(|d| theirs(d)).count(),
        "and all of its own"
    );
    b.collect_garbage_of(&policy, false, &theirs).await.unwrap();
    assert!(stored(store.clone()).await.is_empty(), "b deleted the rest");
}
