//! Cases for the tag store.

use std::time::{Duration, SystemTime};

use crate::{Digest, TagKey, TagRecord, TagStore};

/// A tag key.
pub fn key(namespace: &str, repository: &str, tag: &str) -> TagKey {
    TagKey {
        namespace: namespace.to_owned(),
        repository: repository.to_owned(),
        tag: tag.to_owned(),
    }
}

/// A distinct tag record for each `n`.
pub fn record(n: u64) -> TagRecord {
    TagRecord {
        digest: Digest::sha256_of(&n.to_le_bytes()),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        fetched_at: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000 + n, 123_456_789),
    }
}

/// Puts a distinct record under each key, then checks each key reads back its own.
async fn assert_kept_apart(store: &dyn TagStore, keys: &[TagKey]) {
    for (n, k) in (0..).zip(keys) {
        store.put(k, &record(n)).await.unwrap();
    }
    for (n, k) in (0..).zip(keys) {
        assert_eq!(store.get(k).await.unwrap(), Some(record(n)), "{k:?}");
    }
}

/// A tag reads back what was put, then what replaced it, then nothing once deleted.
pub async fn tag_put_get_replace_delete(store: &dyn TagStore) {
    let k = key("docker.io", "library/alpine", "3.20");
    store.put(&k, &record(1)).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), Some(record(1)));
    store.put(&k, &record(2)).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), Some(record(2)));
    store.delete(&k).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), None);
}

/// The same repository and tag in two namespaces are two records.
pub async fn tag_namespaces_are_kept_apart(store: &dyn TagStore) {
    let keys = [
        key("docker.io", "library/alpine", "latest"),
        key("ghcr.io", "library/alpine", "latest"),
        key("docker.io/library", "alpine", "latest"),
    ];
    assert_kept_apart(store, &keys).await;
    store.delete(&keys[0]).await.unwrap();
    assert_eq!(store.get(&keys[1]).await.unwrap(), Some(record(1)));
}

/// Repositories nested by slashes, and their parents, are all distinct.
pub async fn tag_repositories_with_slashes_are_kept_apart(store: &dyn TagStore) {
    let keys = [
        key("docker.io", "library", "latest"),
        key("docker.io", "library/alpine", "latest"),
        key("docker.io", "library/alpine/extra", "latest"),
        key("docker.io", "library/alpine.json", "latest"),
        key("docker.io", "library", "alpine"),
        key("docker.io", "library/alpine", "latest.json"),
    ];
    assert_kept_apart(store, &keys).await;
}

/// An unknown tag is `None` and deleting it succeeds.
pub async fn unknown_tag_is_none_and_its_delete_succeeds(store: &dyn TagStore) {
    let k = key("docker.io", "library/alpine", "never");
    assert_eq!(store.get(&k).await.unwrap(), None);
    store.delete(&k).await.unwrap();
    store.put(&k, &record(1)).await.unwrap();
    let other = key("docker.io", "library/alpine", "other");
    assert_eq!(store.get(&other).await.unwrap(), None);
}

/// Keys with dots, separators, escapes, upper case, non-ASCII, empty and very long
/// components are stored and read back, each apart from the others.
pub async fn tag_keys_with_unusual_characters_round_trip(store: &dyn TagStore) {
    let long = "Ab".repeat(150);
    let keys = [
        key("..", "..", ".."),
        key(".", "../../etc", "passwd"),
        key("docker.io", "a/../b", "latest"),
        key("docker.io", "a/b", "latest"),
        key("docker.io", "a%2Fb", "latest"),
        key("docker.io", "/leading//double/", ""),
        key("docker.io", "Library/Alpine", "Latest"),
        key("docker.io", "library/alpine", "latest"),
        key("dockér.io", "ünï/cödé", "tàg"),
        key("docker.io", &long, &long),
        key("docker.io", "x", "%tags"),
        key("docker.io", "x/%tags", "y"),
        key("docker.io\\evil", "c:\\windows", "nul"),
    ];
    assert_kept_apart(store, &keys).await;
}

/// `tags` lists exactly one repository's tags: not a repository below it, not another
/// namespace; names with unusual characters read back as they were put.
pub async fn tags_lists_one_repository(store: &dyn TagStore) {
    let mine = ["v1", "v2", "Latest", "1.0_rc-1"];
    for (n, tag) in (0..).zip(mine) {
        store
            .put(&key("docker.io", "acme/app", tag), &record(n))
            .await
            .unwrap();
    }
    store
        .put(&key("docker.io", "acme/app/sub", "other"), &record(10))
        .await
        .unwrap();
    store
        .put(&key("docker.io", "acme", "parent"), &record(11))
        .await
        .unwrap();
    store
        .put(&key("ghcr.io", "acme/app", "elsewhere"), &record(12))
        .await
        .unwrap();
    let mut listed = store.tags("docker.io", "acme/app").await.unwrap();
    listed.sort();
    let mut want: Vec<String> = mine.iter().map(|t| (*t).to_owned()).collect();
    want.sort();
    assert_eq!(listed, want);
    store
        .delete(&key("docker.io", "acme/app", "v2"))
        .await
        .unwrap();
    let listed = store.tags("docker.io", "acme/app").await.unwrap();
    assert!(!listed.contains(&"v2".to_owned()), "{listed:?}");
    assert_eq!(
        store.tags("docker.io", "nothing/here").await.unwrap(),
        Vec::<String>::new()
    );
}
