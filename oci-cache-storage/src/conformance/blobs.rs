//! Cases for writing, committing and reading whole blobs.

use bytes::Bytes;
use futures_util::future::join_all;

use super::{content, get_all, put, read_all, write_as};
use crate::{
    Algorithm, BlobStore, ByteRange, CommitOutcome, Digest, ResolvedRange, StorageError, Verifier,
};

/// A committed blob reads back whole, with its size and digest.
pub async fn put_then_get_round_trips(store: &dyn BlobStore) {
    let bytes = b"hello, registry";
    let digest = Digest::sha256_of(bytes);
    let outcome = write_as(store, &digest, Some(15), bytes, 4).await.unwrap();
    assert_eq!(outcome, CommitOutcome::Stored);

    let head = store
        .head(&digest)
        .await
        .unwrap()
        .expect("head of a stored blob");
    assert_eq!((head.digest.clone(), head.size), (digest.clone(), 15));
    let (meta, range, stream) = store.get(&digest, None).await.unwrap();
    assert_eq!((meta.digest, meta.size), (digest, 15));
    assert_eq!(range, ResolvedRange { start: 0, end: 15 });
    assert_eq!(read_all(stream).await, bytes);
}

/// `head` of a digest never stored is `None`.
pub async fn head_of_missing_is_none(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(b"never stored");
    assert!(store.head(&digest).await.unwrap().is_none());
}

/// `get` of a digest never stored is `NotFound`, with or without a range.
pub async fn get_of_missing_is_not_found(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(b"never stored");
    for range in [None, Some(ByteRange::From { start: 0 })] {
        match store.get(&digest, range).await {
            Err(StorageError::NotFound { digest: d }) => assert_eq!(d, digest),
            other => panic!("expected NotFound, got {:?}", other.map(|(m, r, _)| (m, r))),
        }
    }
}

/// Asserts that no blob at all is visible.
async fn assert_nothing_visible(store: &dyn BlobStore, digests: &[&Digest]) {
    for digest in digests {
        assert!(
            store.head(digest).await.unwrap().is_none(),
            "{digest} is visible"
        );
        assert!(matches!(
            store.get(digest, None).await,
            Err(StorageError::NotFound { .. })
        ));
    }
    assert!(store.list(None, 100).await.unwrap().blobs.is_empty());
}

/// Bytes that do not hash to the writer's digest are rejected and never visible.
pub async fn commit_rejects_wrong_digest_and_nothing_is_visible(store: &dyn BlobStore) {
    let claimed = Digest::sha256_of(b"the real thing");
    let sent = b"an impostor";
    match write_as(store, &claimed, None, sent, 3).await {
        Err(StorageError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, Digest::sha256_of(sent));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_nothing_visible(store, &[&claimed, &Digest::sha256_of(sent)]).await;
}

/// Bytes of the right digest but not of the expected size are rejected.
pub async fn commit_rejects_wrong_expected_size_and_nothing_is_visible(store: &dyn BlobStore) {
    let bytes = b"twelve bytes";
    let digest = Digest::sha256_of(bytes);
    for expected in [13, 11] {
        match write_as(store, &digest, Some(expected), bytes, 5).await {
            Err(StorageError::SizeMismatch {
                expected: e,
                actual,
            }) => assert_eq!((e, actual), (expected, 12)),
            other => panic!("expected SizeMismatch, got {other:?}"),
        }
    }
    assert_nothing_visible(store, &[&digest]).await;
}

/// Committing a stored digest again succeeds as `AlreadyExists` and changes nothing.
pub async fn commit_of_stored_digest_is_already_exists_and_keeps_content(store: &dyn BlobStore) {
    let bytes = content(1, 5000);
    let digest = put(store, &bytes).await;
    let again = write_as(store, &digest, Some(5000), &bytes, 777).await;
    assert_eq!(again.unwrap(), CommitOutcome::AlreadyExists);
    // A wrong write of a stored digest is still rejected and does not damage it.
    let wrong = write_as(store, &digest, None, b"garbage", 7).await;
    assert!(matches!(wrong, Err(StorageError::DigestMismatch { .. })));
    assert_eq!(get_all(store, &digest).await, bytes);
    assert_eq!(store.list(None, 10).await.unwrap().blobs.len(), 1);
}

/// An aborted writer leaves nothing visible.
pub async fn abort_leaves_nothing(store: &dyn BlobStore) {
    let bytes = content(2, 10_000);
    let digest = Digest::sha256_of(&bytes);
    let mut writer = store.writer(&digest, Some(10_000)).await.unwrap();
    writer.write(Bytes::from(bytes)).await.unwrap();
    writer.abort().await.unwrap();
    assert_nothing_visible(store, &[&digest]).await;
}

/// A writer dropped without commit leaves nothing visible.
pub async fn drop_without_commit_leaves_nothing(store: &dyn BlobStore) {
    let bytes = content(3, 10_000);
    let digest = Digest::sha256_of(&bytes);
    let mut writer = store.writer(&digest, None).await.unwrap();
    writer.write(Bytes::from(bytes)).await.unwrap();
    drop(writer);
    assert_nothing_visible(store, &[&digest]).await;
}

/// The empty blob stores and reads back as an empty stream; any range of it is
/// unsatisfiable.
pub async fn empty_blob_stores_and_reads_back(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(b"");
    let writer = store.writer(&digest, Some(0)).await.unwrap();
    assert_eq!(writer.commit().await.unwrap(), CommitOutcome::Stored);
    assert_eq!(store.head(&digest).await.unwrap().unwrap().size, 0);
    let (meta, range, stream) = store.get(&digest, None).await.unwrap();
    assert_eq!((meta.size, range), (0, ResolvedRange { start: 0, end: 0 }));
    assert!(read_all(stream).await.is_empty());
    let ranged = store.get(&digest, Some(ByteRange::From { start: 0 })).await;
    assert!(matches!(
        ranged,
        Err(StorageError::RangeNotSatisfiable { size: 0 })
    ));
}

/// A sha512-addressed blob is verified and stored like a sha256 one.
pub async fn sha512_blob_round_trips(store: &dyn BlobStore) {
    let bytes = content(4, 3000);
    let mut verifier = Verifier::new(Algorithm::Sha512);
    verifier.update(&bytes);
    let digest = verifier.finish();
    let outcome = write_as(store, &digest, Some(3000), &bytes, 512).await;
    assert_eq!(outcome.unwrap(), CommitOutcome::Stored);
    assert_eq!(get_all(store, &digest).await, bytes);
    let wrong = write_as(store, &digest, None, &bytes[1..], 512).await;
    assert!(matches!(wrong, Err(StorageError::DigestMismatch { .. })));
}

/// A 7 MiB blob written in chunks of 4 KiB to 64 KiB reads back byte for byte.
pub async fn large_blob_written_in_small_chunks_reads_back_identical(store: &dyn BlobStore) {
    let bytes = content(5, 7 * 1024 * 1024);
    let digest = Digest::sha256_of(&bytes);
    let mut writer = store
        .writer(&digest, Some(bytes.len() as u64))
        .await
        .unwrap();
    let (mut at, mut step) = (0, 0);
    while at < bytes.len() {
        let len = (4096 + step * 3001 % 61_440).min(bytes.len() - at);
        writer
            .write(Bytes::copy_from_slice(&bytes[at..at + len]))
            .await
            .unwrap();
        (at, step) = (at + len, step + 1);
    }
    assert_eq!(writer.commit().await.unwrap(), CommitOutcome::Stored);
    assert_eq!(store.head(&digest).await.unwrap().unwrap().size, 7 << 20);
    let read = get_all(store, &digest).await;
    assert!(read == bytes, "large blob read back differs");
}

/// Eight concurrent writers of one digest all succeed and one whole copy is visible.
pub async fn concurrent_writers_of_one_digest_all_succeed_with_one_copy(store: &dyn BlobStore) {
    let bytes = content(6, 300_000);
    let digest = Digest::sha256_of(&bytes);
    let writers = (0..8).map(|i| write_as(store, &digest, Some(300_000), &bytes, 10_000 + i));
    let outcomes = join_all(writers).await;
    let outcomes: Vec<CommitOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
    assert!(outcomes.contains(&CommitOutcome::Stored), "{outcomes:?}");
    let listed = store.list(None, 10).await.unwrap().blobs;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].digest.clone(), listed[0].size),
        (digest.clone(), 300_000)
    );
    assert!(get_all(store, &digest).await == bytes);
}
