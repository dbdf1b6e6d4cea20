//! Cases for deleting, listing and touching blobs.

use std::collections::BTreeSet;

use super::{content, get_all, put};
use crate::{BlobStore, Digest, StorageError};

/// A deleted blob is gone; deleting a missing blob succeeds.
pub async fn delete_removes_blob_and_delete_of_missing_succeeds(store: &dyn BlobStore) {
    let kept = put(store, b"kept").await;
    let digest = put(store, b"to be deleted").await;
    store.delete(&digest).await.unwrap();
    assert!(store.head(&digest).await.unwrap().is_none());
    assert!(matches!(
        store.get(&digest, None).await,
        Err(StorageError::NotFound { .. })
    ));
    store.delete(&digest).await.unwrap();
    store
        .delete(&Digest::sha256_of(b"never stored"))
        .await
        .unwrap();
    let listed = store.list(None, 10).await.unwrap().blobs;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, kept);
}

/// A blob stored, deleted and stored again is visible with its content.
pub async fn deleted_blob_can_be_stored_again(store: &dyn BlobStore) {
    let bytes = content(7, 2000);
    let digest = put(store, &bytes).await;
    store.delete(&digest).await.unwrap();
    assert_eq!(put(store, &bytes).await, digest);
    assert_eq!(get_all(store, &digest).await, bytes);
}

/// Listing an empty store gives no blob and no next page.
pub async fn list_of_empty_store_is_an_empty_last_page(store: &dyn BlobStore) {
    let page = store.list(None, 10).await.unwrap();
    assert!(page.blobs.is_empty());
    assert!(page.next.is_none());
    let after = Digest::sha256_of(b"anything");
    let page = store.list(Some(&after), 10).await.unwrap();
    assert!(page.blobs.is_empty() && page.next.is_none());
}

/// 25 blobs listed 10 at a time come in 3 pages, ascending, each blob once.
pub async fn list_paginates_in_ascending_order_without_duplicates(store: &dyn BlobStore) {
    let mut expected = BTreeSet::new();
    for seed in 0..25 {
        let bytes = content(100 + seed, 10 + seed as usize);
        expected.insert((put(store, &bytes).await, bytes.len() as u64));
    }
    let (mut seen, mut pages, mut after) = (Vec::new(), Vec::new(), None::<Digest>);
    loop {
        let page = store.list(after.as_ref(), 10).await.unwrap();
        pages.push(page.blobs.len());
        seen.extend(page.blobs.into_iter().map(|m| (m.digest, m.size)));
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), seen.last().map(|(d, _)| d));
                after = Some(next);
            }
            None => break,
        }
        assert!(pages.len() <= 3, "too many pages: {pages:?}");
    }
    assert_eq!(pages, [10, 10, 5]);
    let strings: Vec<String> = seen.iter().map(|(d, _)| d.to_string()).collect();
    assert!(strings.windows(2).all(|w| w[0] < w[1]), "not ascending");
    assert_eq!(seen, expected.into_iter().collect::<Vec<_>>());
}

/// `touch` never moves a blob's last access backwards.
pub async fn touch_does_not_move_last_access_backwards(store: &dyn BlobStore) {
    let digest = put(store, b"touched").await;
    let before = store.head(&digest).await.unwrap().unwrap().last_access;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store.touch(&digest).await.unwrap();
    let after = store.head(&digest).await.unwrap().unwrap().last_access;
    assert!(after >= before, "{after:?} is before {before:?}");
    let (meta, _, _) = store.get(&digest, None).await.unwrap();
    assert!(meta.last_access >= before);
}

/// `touch` moves a blob's last access to now: once the clock has passed the stored last
/// access by more than a second (the coarsest granularity a backend may keep, such as
/// S3's `Last-Modified`), a touch makes it later.
pub async fn touch_moves_last_access_forward(store: &dyn BlobStore) {
    let digest = put(store, b"touched later").await;
    let before = store.head(&digest).await.unwrap().unwrap().last_access;
    let due = before + std::time::Duration::from_millis(1050);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::SystemTime::now() < due {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock does not move"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.touch(&digest).await.unwrap();
    let after = store.head(&digest).await.unwrap().unwrap().last_access;
    assert!(after > before, "touch left last access at {after:?}");
}

/// `touch` of a blob that is not stored is `NotFound`.
pub async fn touch_of_missing_is_not_found(store: &dyn BlobStore) {
    let result = store.touch(&Digest::sha256_of(b"never stored")).await;
    assert!(matches!(result, Err(StorageError::NotFound { .. })));
}
