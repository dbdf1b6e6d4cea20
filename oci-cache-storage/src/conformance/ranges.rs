//! Cases for ranged reads.

use super::{content, put, read_all};
use crate::{BlobStore, ByteRange, Digest, ResolvedRange, StorageError};

/// Stores a 1000-byte blob.
async fn thousand(store: &dyn BlobStore) -> (Digest, Vec<u8>) {
    let bytes = content(20, 1000);
    (put(store, &bytes).await, bytes)
}

/// Reads `range` of `digest` and checks it resolves to `start..end` of `bytes`.
async fn assert_range(
    store: &dyn BlobStore,
    digest: &Digest,
    bytes: &[u8],
    range: ByteRange,
    (start, end): (u64, u64),
) {
    let (meta, resolved, stream) = store.get(digest, Some(range)).await.unwrap();
    assert_eq!(meta.size, bytes.len() as u64);
    assert_eq!(resolved, ResolvedRange { start, end }, "{range:?}");
    let read = read_all(stream).await;
    assert!(
        read == bytes[start as usize..end as usize],
        "{range:?} read wrong bytes"
    );
}

/// `bytes=10-19` gives exactly those ten bytes.
pub async fn bounded_range_returns_those_bytes(store: &dyn BlobStore) {
    let (digest, bytes) = thousand(store).await;
    let r = ByteRange::Bounded { start: 10, end: 19 };
    assert_range(store, &digest, &bytes, r, (10, 20)).await;
    let r = ByteRange::Bounded { start: 0, end: 0 };
    assert_range(store, &digest, &bytes, r, (0, 1)).await;
    let r = ByteRange::Bounded {
        start: 999,
        end: 999,
    };
    assert_range(store, &digest, &bytes, r, (999, 1000)).await;
}

/// `bytes=990-` gives the last ten bytes; `bytes=0-` the whole blob.
pub async fn open_range_reads_to_the_end(store: &dyn BlobStore) {
    let (digest, bytes) = thousand(store).await;
    let r = ByteRange::From { start: 990 };
    assert_range(store, &digest, &bytes, r, (990, 1000)).await;
    let r = ByteRange::From { start: 0 };
    assert_range(store, &digest, &bytes, r, (0, 1000)).await;
}

/// `bytes=-5` gives the last five bytes; a suffix longer than the blob gives it whole.
pub async fn suffix_range_returns_the_tail(store: &dyn BlobStore) {
    let (digest, bytes) = thousand(store).await;
    let r = ByteRange::Suffix { len: 5 };
    assert_range(store, &digest, &bytes, r, (995, 1000)).await;
    let r = ByteRange::Suffix { len: 5000 };
    assert_range(store, &digest, &bytes, r, (0, 1000)).await;
}

/// A bounded range ending past the blob is clamped to its end.
pub async fn bounded_range_past_the_end_is_clamped(store: &dyn BlobStore) {
    let (digest, bytes) = thousand(store).await;
    let r = ByteRange::Bounded {
        start: 995,
        end: 5000,
    };
    assert_range(store, &digest, &bytes, r, (995, 1000)).await;
    let r = ByteRange::Bounded {
        start: 0,
        end: u64::MAX,
    };
    assert_range(store, &digest, &bytes, r, (0, 1000)).await;
}

/// A range starting at or past the end is `RangeNotSatisfiable` with the blob's size.
pub async fn range_starting_at_or_past_the_end_is_not_satisfiable(store: &dyn BlobStore) {
    let (digest, _) = thousand(store).await;
    let ranges = [
        ByteRange::From { start: 1000 },
        ByteRange::From { start: 5000 },
        ByteRange::Bounded {
            start: 1000,
            end: 1010,
        },
        ByteRange::Suffix { len: 0 },
    ];
    for range in ranges {
        match store.get(&digest, Some(range)).await {
            Err(StorageError::RangeNotSatisfiable { size }) => assert_eq!(size, 1000),
            other => panic!(
                "{range:?}: expected RangeNotSatisfiable, got {:?}",
                other.map(|(m, r, _)| (m, r))
            ),
        }
    }
}

/// Ranges of a 1 MiB blob that start and end inside streaming chunks read back exactly.
pub async fn range_across_chunk_boundaries_reads_back_identical(store: &dyn BlobStore) {
    let bytes = content(21, 1 << 20);
    let digest = put(store, &bytes).await;
    let r = ByteRange::Bounded {
        start: 100_001,
        end: 700_002,
    };
    assert_range(store, &digest, &bytes, r, (100_001, 700_003)).await;
    let r = ByteRange::From { start: 65_535 };
    assert_range(store, &digest, &bytes, r, (65_535, 1 << 20)).await;
    let r = ByteRange::Suffix { len: 131_073 };
    assert_range(store, &digest, &bytes, r, ((1 << 20) - 131_073, 1 << 20)).await;
}
