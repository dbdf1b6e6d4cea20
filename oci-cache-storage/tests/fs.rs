//! Behaviour specific to the filesystem backend: temporary files, crash leftovers, layout.
// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use oci_cache_storage::conformance::{content, get_all, key, put, record};
use oci_cache_storage::fs::FsStore;
use oci_cache_storage::{BlobStore, Digest, TagStore};
use tempfile::TempDir;

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    all
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in entries(dir) {
        if path.is_dir() {
            files.extend(files_below(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn open_creates_layout_and_sweeps_leftovers_in_tmp() {
    let dir = TempDir::new().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(tmp.join("half-done-dir")).unwrap();
    std::fs::write(tmp.join("blob-1-2-3.tmp"), b"partial").unwrap();
    std::fs::write(tmp.join("half-done-dir/inner"), b"partial").unwrap();

    let store = FsStore::open(dir.path()).await.unwrap();
    assert_eq!(store.root(), dir.path());
    assert!(entries(&tmp).is_empty());
    for sub in ["blobs", "tags"] {
        assert!(dir.path().join(sub).is_dir(), "{sub} missing");
    }
}

#[tokio::test]
async fn finished_or_dropped_writers_leave_no_temp_file() {
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let tmp = dir.path().join("tmp");
    let bytes = content(1, 600_000);
    let digest = Digest::sha256_of(&bytes);

    let mut writer = store.writer(&digest, None).await.unwrap();
    writer
        .write(Bytes::copy_from_slice(&bytes[..300_000]))
        .await
        .unwrap();
    assert_eq!(
        entries(&tmp).len(),
        1,
        "the writer's temp file lives in tmp"
    );
    drop(writer);
    assert!(entries(&tmp).is_empty(), "drop removes the temp file");

    let writer = store.writer(&digest, None).await.unwrap();
    writer.abort().await.unwrap();
    let mut writer = store.writer(&digest, None).await.unwrap();
    writer.write(Bytes::from_static(b"wrong")).await.unwrap();
    assert!(writer.commit().await.is_err());
    assert!(
        entries(&tmp).is_empty(),
        "abort and rejected commit remove it"
    );

    put(&store, &bytes).await;
    put(&store, &bytes).await;
    assert!(
        entries(&tmp).is_empty(),
        "commit and duplicate commit remove it"
    );
    let expected = dir.path().join(format!(
        "blobs/sha256/{}/{}",
        &digest.hex()[..2],
        digest.hex()
    ));
    assert_eq!(files_below(&dir.path().join("blobs")), [expected]);
}

/// A writer told the blob's size reserves its disk space before writing, a step
/// (`space::STEP`) ahead of its writes at most: a blob under a step at once, and a declared
/// size far beyond what arrives (an upstream that lies) no more than a step past it.
#[tokio::test]
async fn a_known_size_is_reserved_ahead_of_the_writes_a_step_at_most() {
    use oci_cache_storage::space::STEP;
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let tmp = dir.path().join("tmp");
    let allocated = || {
        let files = entries(&tmp);
        assert_eq!(files.len(), 1);
        let meta = std::fs::metadata(&files[0]).unwrap();
        (meta.len(), meta.blocks() * 512)
    };
    let bytes = content(3, 3 << 20);
    let digest = Digest::sha256_of(&bytes);

    let writer = store
        .writer(&digest, Some(bytes.len() as u64))
        .await
        .unwrap();
    let (len, blocks) = allocated();
    assert_eq!(len, 0, "the reservation does not change the size");
    let want = bytes.len() as u64;
    assert!(
        (want..want + (1 << 20)).contains(&blocks),
        "{blocks} bytes of blocks for {want}"
    );
    drop(writer);

    let mut writer = store.writer(&digest, Some(1 << 40)).await.unwrap();
    writer.write(Bytes::from(bytes.clone())).await.unwrap();
    let (len, blocks) = allocated();
    assert_eq!(len, bytes.len() as u64);
    assert!(
        (STEP..=STEP + (4 << 20)).contains(&blocks),
        "a 1 TiB declaration holds {blocks} bytes of disk"
    );
    drop(writer);
    assert!(entries(&tmp).is_empty());
    // Stored, the blob holds its own blocks and no more.
    put(&store, &bytes).await;
    let stored = files_below(&dir.path().join("blobs"));
    let blocks = std::fs::metadata(&stored[0]).unwrap().blocks() * 512;
    assert!((want..want + (1 << 20)).contains(&blocks), "{blocks}");
}

#[tokio::test]
async fn crashed_write_is_never_visible_and_is_swept_at_next_open() {
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let bytes = content(2, 400_000);
    let digest = Digest::sha256_of(&bytes);
    let mut writer = store.writer(&digest, Some(400_000)).await.unwrap();
    writer
        .write(Bytes::copy_from_slice(&bytes[..300_000]))
        .await
        .unwrap();
    // Simulates a crash: the writer never commits, aborts nor runs its destructor.
    std::mem::forget(writer);

    assert_eq!(entries(&dir.path().join("tmp")).len(), 1);
    assert!(store.head(&digest).await.unwrap().is_none());
    assert!(store.list(None, 10).await.unwrap().blobs.is_empty());

    drop(store);
    let store = FsStore::open(dir.path()).await.unwrap();
    assert!(entries(&dir.path().join("tmp")).is_empty());
    assert!(store.head(&digest).await.unwrap().is_none());
}

#[tokio::test]
async fn blobs_and_tags_survive_reopening() {
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let bytes = content(3, 1000);
    let digest = put(&store, &bytes).await;
    let k = key("docker.io", "library/alpine", "latest");
    TagStore::put(&store, &k, &record(7)).await.unwrap();
    drop(store);

    let store = FsStore::open(dir.path()).await.unwrap();
    assert_eq!(get_all(&store, &digest).await, bytes);
    assert_eq!(TagStore::get(&store, &k).await.unwrap(), Some(record(7)));
}

#[tokio::test]
async fn list_ignores_stray_files_in_the_blob_directory() {
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let fan_out = dir.path().join("blobs/sha256/ab");
    std::fs::create_dir_all(&fan_out).unwrap();
    std::fs::write(fan_out.join("not-a-digest"), b"x").unwrap();
    // A valid digest in the wrong fan-out directory.
    std::fs::write(fan_out.join(Digest::sha256_of(b"y").hex()), b"y").unwrap();
    std::fs::create_dir_all(dir.path().join("blobs/md5/00")).unwrap();
    assert!(store.list(None, 10).await.unwrap().blobs.is_empty());
}

#[tokio::test]
async fn touch_sets_the_modification_time_to_now() {
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let digest = put(&store, b"old").await;
    let path = dir.path().join(format!(
        "blobs/sha256/{}/{}",
        &digest.hex()[..2],
        digest.hex()
    ));
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(long_ago).unwrap();
    assert_eq!(
        store.head(&digest).await.unwrap().unwrap().last_access,
        long_ago
    );

    let before = SystemTime::now() - Duration::from_secs(1);
    store.touch(&digest).await.unwrap();
    assert!(store.head(&digest).await.unwrap().unwrap().last_access >= before);
}

#[tokio::test]
async fn tag_keys_with_path_traversal_stay_inside_the_tags_directory() {
    let outer = TempDir::new().unwrap();
    let root = outer.path().join("inner/store");
    let store = FsStore::open(&root).await.unwrap();
    let keys = [
        key("../../etc", "passwd", "x"),
        key("..", "../..", "../../../escape"),
        key("docker.io", "../../../../tmp", "..%2F..%2Fescape"),
        key("/", "/etc/passwd", "/"),
        key("docker.io", "a/./b/../c", "."),
    ];
    for (n, k) in (0..).zip(&keys) {
        TagStore::put(&store, k, &record(n)).await.unwrap();
    }
    for (n, k) in (0..).zip(&keys) {
        assert_eq!(TagStore::get(&store, k).await.unwrap(), Some(record(n)));
    }
    assert_eq!(files_below(outer.path()).len(), keys.len());
    for file in files_below(outer.path()) {
        assert!(
            file.starts_with(root.join("tags")),
            "{} escaped",
            file.display()
        );
        let relative = file.strip_prefix(&root).unwrap();
        assert!(relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_))));
        assert_eq!(file.extension().unwrap(), "json");
    }
}

#[tokio::test]
async fn blob_dropped_from_the_page_cache_reads_back_whole() {
    // Warm hits are read without waiting for the disk (RWF_NOWAIT); what is not cached is
    // read on the blocking pool. Dropping the blob's pages from the cache sends a read
    // down that second path, from the first byte or part way.
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let data = content(77, 3 * 1024 * 1024 + 12_345);
    let digest = put(&store, &data).await;
    let path = files_below(&dir.path().join("blobs")).pop().unwrap();
    let file = std::fs::File::open(&path).unwrap();
    for keep in [0, 700_000] {
        // Cache only the first `keep` bytes.
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        if keep > 0 {
            let mut head = vec![0; keep];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0).unwrap();
        }
        assert_eq!(
            get_all(&store, &digest).await,
            data,
            "with {keep} bytes cached"
        );
    }
}
