//! Cases for what a writer offers a pull-through fill besides `write` and `commit`: its
//! local file, `flush`, and a caller that checks the digest itself.

use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::{content, get_all};
use crate::{BlobStore, CommitOutcome, Digest, StorageError};

/// Reads `len` bytes at 0 from a writer's local file.
fn read_file(file: &std::fs::File, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, 0)
        .expect("the local file holds every flushed byte");
    buf
}

/// After `flush`, every byte written is in the writer's local file (when it has one),
/// small chunks included; flushing makes nothing visible; after commit the file still
/// reads the same bytes and the blob is stored whole.
pub async fn flushed_bytes_are_in_the_local_file_and_invisible_until_commit(store: &dyn BlobStore) {
    let bytes = content(41, 300 * 1024);
    let digest = Digest::sha256_of(&bytes);
    let mut writer = store
        .writer(&digest, Some(bytes.len() as u64))
        .await
        .unwrap();
    let file = writer.local_file();
    let mut written = 0;
    // Chunks smaller than any backend's buffer, then a large one.
    for part in [&bytes[..10], &bytes[10..4096], &bytes[4096..]] {
        writer.write(Bytes::copy_from_slice(part)).await.unwrap();
        written += part.len();
        writer.flush().await.unwrap();
        if let Some(file) = &file {
            assert_eq!(read_file(file, written), &bytes[..written]);
        }
        assert!(
            store.head(&digest).await.unwrap().is_none(),
            "flush made the blob visible"
        );
    }
    assert_eq!(writer.commit().await.unwrap(), CommitOutcome::Stored);
    if let Some(file) = &file {
        assert_eq!(read_file(file, bytes.len()), bytes, "after commit");
    }
    assert_eq!(get_all(store, &digest).await, bytes);
}

/// A writer's local file stays readable after an abort, and nothing is visible.
pub async fn local_file_stays_readable_after_abort(store: &dyn BlobStore) {
    let bytes = content(42, 64 * 1024);
    let digest = Digest::sha256_of(&bytes);
    let mut writer = store.writer(&digest, None).await.unwrap();
    let file = writer.local_file();
    writer.write(Bytes::from(bytes.clone())).await.unwrap();
    writer.flush().await.unwrap();
    writer.abort().await.unwrap();
    if let Some(file) = &file {
        assert_eq!(read_file(file, bytes.len()), bytes);
    }
    assert!(store.head(&digest).await.unwrap().is_none());
}

/// A writer whose caller checks the digest (`digest_checked_by_caller`) still checks the
/// size: too few or too many bytes never become visible; the right bytes are stored.
pub async fn a_caller_checked_writer_still_checks_the_size(store: &dyn BlobStore) {
    let bytes = content(43, 10_000);
    let digest = Digest::sha256_of(&bytes);
    for wrong in [&bytes[..9_999], &[&bytes[..], b"x"].concat()[..]] {
        let mut writer = store
            .writer(&digest, Some(bytes.len() as u64))
            .await
            .unwrap();
        writer.digest_checked_by_caller();
        writer.write(Bytes::copy_from_slice(wrong)).await.unwrap();
        let result = writer.commit().await;
        assert!(
            matches!(result, Err(StorageError::SizeMismatch { .. })),
            "{} bytes for {}: {result:?}",
            wrong.len(),
            bytes.len()
        );
        assert!(store.head(&digest).await.unwrap().is_none());
    }
    let mut writer = store
        .writer(&digest, Some(bytes.len() as u64))
        .await
        .unwrap();
    writer.digest_checked_by_caller();
    writer.write(Bytes::from(bytes.clone())).await.unwrap();
    assert_eq!(writer.commit().await.unwrap(), CommitOutcome::Stored);
    assert_eq!(get_all(store, &digest).await, bytes);
}

/// `open_file` (for backends with local files) gives the blob's bytes, whole or the part a
/// range selects, and still reads them after the blob is deleted; a missing blob is
/// `NotFound` and a range past the end `RangeNotSatisfiable`, as for `get`.
pub async fn open_file_reads_the_stored_bytes_and_survives_a_delete(store: &dyn BlobStore) {
    use crate::ByteRange;
    let bytes = content(44, 200 * 1024);
    let digest = super::put(store, &bytes).await;
    let Some((meta, resolved, file)) = store.open_file(&digest, None).await.unwrap() else {
        return;
    };
    assert_eq!(
        (meta.size, resolved.start, resolved.end),
        (bytes.len() as u64, 0, bytes.len() as u64)
    );
    let range = Some(ByteRange::Bounded {
        start: 100,
        end: 199,
    });
    let (_, part, _) = store.open_file(&digest, range).await.unwrap().unwrap();
    assert_eq!((part.start, part.end), (100, 200));
    store.delete(&digest).await.unwrap();
    assert_eq!(
        read_file(&file, bytes.len()),
        bytes,
        "an open file outlives the delete"
    );
    let missing = store.open_file(&digest, None).await;
    assert!(
        matches!(missing, Err(StorageError::NotFound { .. })),
        "{missing:?}"
    );
    let digest = super::put(store, &bytes).await;
    let beyond = store
        .open_file(
            &digest,
            Some(ByteRange::From {
                start: bytes.len() as u64,
            }),
        )
        .await;
    assert!(
        matches!(beyond, Err(StorageError::RangeNotSatisfiable { .. })),
        "{beyond:?}"
    );
}

/// `write_chunks` appends its chunks in order, after and before single `write`s (small
/// ones pending in a buffer included), and its bytes are checked at commit like any others:
/// the blob reads back identical, and a commit of bytes that do not match is refused.
pub async fn chunks_written_in_groups_read_back_identical_and_are_checked(store: &dyn BlobStore) {
    let bytes = content(41, 3 * 1024 * 1024 + 777);
    let digest = Digest::sha256_of(&bytes);
    let mut writer = store
        .writer(&digest, Some(bytes.len() as u64))
        .await
        .unwrap();
    // A small single write (left pending by a buffering backend), then groups of mixed
    // sizes, then single writes again.
    let sizes = [100, 300_000, 5, 700_000, 1 << 20, 64, 200_000];
    let mut at = 0;
    writer
        .write(Bytes::copy_from_slice(&bytes[..sizes[0]]))
        .await
        .unwrap();
    at += sizes[0];
    let group: Vec<Bytes> = sizes[1..]
        .iter()
        .map(|&n| {
            let chunk = Bytes::copy_from_slice(&bytes[at..at + n]);
            at += n;
            chunk
        })
        .collect();
    writer.write_chunks(&group[..3]).await.unwrap();
    writer.write_chunks(&group[3..]).await.unwrap();
    writer.write_chunks(&[]).await.unwrap();
    for part in bytes[at..].chunks(100_000) {
        writer.write(Bytes::copy_from_slice(part)).await.unwrap();
    }
    assert_eq!(writer.commit().await.unwrap(), CommitOutcome::Stored);
    assert!(get_all(store, &digest).await == bytes, "read back differs");

    let other = content(42, 500_000);
    let mut writer = store
        .writer(&Digest::sha256_of(&other), None)
        .await
        .unwrap();
    let mut wrong = other.clone();
    wrong[499_999] ^= 1;
    let chunks: Vec<Bytes> = wrong
        .chunks(64 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    writer.write_chunks(&chunks).await.unwrap();
    assert!(
        matches!(
            writer.commit().await,
            Err(StorageError::DigestMismatch { .. })
        ),
        "bytes given with write_chunks were not checked"
    );
    assert!(store
        .head(&Digest::sha256_of(&other))
        .await
        .unwrap()
        .is_none());
}
