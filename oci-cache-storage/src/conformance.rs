//! The conformance suite every backend must pass: one `pub async fn` per behaviour of the
//! [`BlobStore`] and [`TagStore`](crate::TagStore) contracts, and
//! [`blob_store_conformance!`](crate::blob_store_conformance) to run them all as
//! `#[tokio::test]`s.
//!
//! Compiled for this crate's tests and, for other crates' backends, with the `conformance`
//! feature. The case functions panic (like any test) when the backend misbehaves.
//!
//! ```ignore
//! async fn make() -> (tempfile::TempDir, MyStore) { /* a fresh, empty store */ }
//! oci_cache_storage::blob_store_conformance!(my_store, make());
//! ```
#![allow(clippy::missing_panics_doc, clippy::unwrap_used, clippy::expect_used)]

mod blobs;
mod listing;
mod ranges;
mod tags;
mod writer;

use bytes::Bytes;
use futures_util::TryStreamExt;

pub use blobs::*;
pub use listing::*;
pub use ranges::*;
pub use tags::*;
pub use writer::*;

use crate::{BlobStore, BlobStream, CommitOutcome, Digest};

/// Runs every conformance case against a backend, each as its own `#[tokio::test]` in a
/// module called `$name`.
///
/// `$make` is an expression (evaluated inside that module, which `use`s `super::*`) of a
/// future that yields `(guard, store)`: a fresh, empty store implementing both
/// [`BlobStore`](crate::BlobStore) and [`TagStore`](crate::TagStore), and anything that
/// must live as long as it (a temporary directory, or `()`). The calling crate needs
/// `tokio` with the `macros` and `rt` features.
#[macro_export]
macro_rules! blob_store_conformance {
    ($name:ident, $make:expr) => {
        $crate::__conformance_cases!(
            $name,
            $make,
            [
                put_then_get_round_trips,
                head_of_missing_is_none,
                get_of_missing_is_not_found,
                commit_rejects_wrong_digest_and_nothing_is_visible,
                commit_rejects_wrong_expected_size_and_nothing_is_visible,
                commit_of_stored_digest_is_already_exists_and_keeps_content,
                abort_leaves_nothing,
                drop_without_commit_leaves_nothing,
                empty_blob_stores_and_reads_back,
                sha512_blob_round_trips,
                large_blob_written_in_small_chunks_reads_back_identical,
                concurrent_writers_of_one_digest_all_succeed_with_one_copy,
                delete_removes_blob_and_delete_of_missing_succeeds,
                deleted_blob_can_be_stored_again,
                list_of_empty_store_is_an_empty_last_page,
                list_paginates_in_ascending_order_without_duplicates,
                touch_does_not_move_last_access_backwards,
                touch_moves_last_access_forward,
                touch_of_missing_is_not_found,
                bounded_range_returns_those_bytes,
                open_range_reads_to_the_end,
                suffix_range_returns_the_tail,
                bounded_range_past_the_end_is_clamped,
                range_starting_at_or_past_the_end_is_not_satisfiable,
                range_across_chunk_boundaries_reads_back_identical,
                tag_put_get_replace_delete,
                tag_namespaces_are_kept_apart,
                tag_repositories_with_slashes_are_kept_apart,
                unknown_tag_is_none_and_its_delete_succeeds,
                tag_keys_with_unusual_characters_round_trip,
                tags_lists_one_repository,
                flushed_bytes_are_in_the_local_file_and_invisible_until_commit,
                local_file_stays_readable_after_abort,
                a_caller_checked_writer_still_checks_the_size,
                chunks_written_in_groups_read_back_identical_and_are_checked,
                open_file_reads_the_stored_bytes_and_survives_a_delete,
            ]
        );
    };
}

/// Expands each case of [`blob_store_conformance!`]. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($name:ident, $make:expr, [$($case:ident),* $(,)?]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let (_guard, store) = $make.await;
                    $crate::conformance::$case(&store).await;
                }
            )*
        }
    };
}

/// `len` deterministic pseudo-random bytes; different seeds give different contents.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Writes `bytes` (in chunks of `chunk` bytes) to a writer for `digest` and commits.
pub async fn write_as(
    store: &dyn BlobStore,
    digest: &Digest,
    expected_size: Option<u64>,
    bytes: &[u8],
    chunk: usize,
) -> Result<CommitOutcome, crate::StorageError> {
    let mut writer = store.writer(digest, expected_size).await?;
    for part in bytes.chunks(chunk.max(1)) {
        writer.write(Bytes::copy_from_slice(part)).await?;
    }
    writer.commit().await
}

/// Stores `bytes` under their sha256 digest, which it returns.
pub async fn put(store: &dyn BlobStore, bytes: &[u8]) -> Digest {
    let digest = Digest::sha256_of(bytes);
    write_as(store, &digest, Some(bytes.len() as u64), bytes, 1000)
        .await
        .expect("storing a valid blob");
    digest
}

/// Collects a blob stream.
pub async fn read_all(stream: BlobStream) -> Vec<u8> {
    stream
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .expect("reading a blob stream")
}

/// The whole content of a stored blob.
pub async fn get_all(store: &dyn BlobStore, digest: &Digest) -> Vec<u8> {
    let (_, _, stream) = store
        .get(digest, None)
        .await
        .expect("getting a stored blob");
    read_all(stream).await
}
