//! Model-based test: random operation sequences applied to a backend and to a `BTreeMap`
//! must give the same observable results.
// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use bytes::Bytes;
use oci_cache_storage::conformance::{content, read_all, write_as};
use oci_cache_storage::fs::FsStore;
use oci_cache_storage::memory::MemoryStore;
use oci_cache_storage::{BlobStore, ByteRange, CommitOutcome, Digest, StorageError};
use proptest::prelude::*;

/// The blobs operations pick from: empty, tiny, and one larger than a streaming chunk.
static POOL: LazyLock<Vec<(Digest, Vec<u8>)>> = LazyLock::new(|| {
    [0, 1, 100, 5000, 200_000]
        .into_iter()
        .zip(1..)
        .map(|(len, seed)| {
            let bytes = content(seed, len);
            (Digest::sha256_of(&bytes), bytes)
        })
        .collect()
});

#[derive(Debug, Clone)]
enum Op {
    Commit {
        blob: usize,
        chunk: usize,
    },
    CommitWrongDigest {
        blob: usize,
        claimed: usize,
    },
    CommitWrongSize {
        blob: usize,
    },
    Abort {
        blob: usize,
    },
    DropWriter {
        blob: usize,
    },
    Delete {
        blob: usize,
    },
    Get {
        blob: usize,
        range: Option<ByteRange>,
    },
    Head {
        blob: usize,
    },
    List {
        limit: usize,
    },
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![0..8u64, 0..6000u64, 0..210_000u64]
}

fn range() -> impl Strategy<Value = Option<ByteRange>> {
    prop_oneof![
        Just(None),
        (offset(), offset()).prop_map(|(start, end)| Some(ByteRange::Bounded { start, end })),
        offset().prop_map(|start| Some(ByteRange::From { start })),
        offset().prop_map(|len| Some(ByteRange::Suffix { len })),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let blob = 0..POOL.len();
    prop_oneof![
        3 => (blob.clone(), 1..70_000usize).prop_map(|(blob, chunk)| Op::Commit { blob, chunk }),
        1 => (blob.clone(), 1..POOL.len())
            .prop_map(|(blob, d)| Op::CommitWrongDigest { blob, claimed: (blob + d) % POOL.len() }),
        1 => blob.clone().prop_map(|blob| Op::CommitWrongSize { blob }),
        1 => blob.clone().prop_map(|blob| Op::Abort { blob }),
        1 => blob.clone().prop_map(|blob| Op::DropWriter { blob }),
        2 => blob.clone().prop_map(|blob| Op::Delete { blob }),
        3 => (blob.clone(), range()).prop_map(|(blob, range)| Op::Get { blob, range }),
        1 => blob.prop_map(|blob| Op::Head { blob }),
        1 => (1..4usize).prop_map(|limit| Op::List { limit }),
    ]
}

type Model = BTreeMap<Digest, Vec<u8>>;

async fn apply(store: &dyn BlobStore, model: &mut Model, op: &Op) {
    match *op {
        Op::Commit { blob, chunk } => {
            let (digest, bytes) = &POOL[blob];
            let outcome = write_as(store, digest, Some(bytes.len() as u64), bytes, chunk).await;
            let expected = if model.insert(digest.clone(), bytes.clone()).is_some() {
                CommitOutcome::AlreadyExists
            } else {
                CommitOutcome::Stored
            };
            assert_eq!(outcome.unwrap(), expected);
        }
        Op::CommitWrongDigest { blob, claimed } => {
            let result = write_as(store, &POOL[claimed].0, None, &POOL[blob].1, 4096).await;
            assert!(matches!(result, Err(StorageError::DigestMismatch { .. })));
        }
        Op::CommitWrongSize { blob } => {
            let (digest, bytes) = &POOL[blob];
            let size = Some(bytes.len() as u64 + 1);
            let result = write_as(store, digest, size, bytes, 4096).await;
            assert!(matches!(result, Err(StorageError::SizeMismatch { .. })));
        }
        Op::Abort { blob } | Op::DropWriter { blob } => {
            let (digest, bytes) = &POOL[blob];
            let mut writer = store.writer(digest, None).await.unwrap();
            writer.write(Bytes::copy_from_slice(bytes)).await.unwrap();
            if matches!(op, Op::Abort { .. }) {
                writer.abort().await.unwrap();
            }
        }
        Op::Delete { blob } => {
            store.delete(&POOL[blob].0).await.unwrap();
            model.remove(&POOL[blob].0);
        }
        Op::Get { blob, range } => check_get(store, model, &POOL[blob].0, range).await,
        Op::Head { blob } => {
            let digest = &POOL[blob].0;
            let size = store.head(digest).await.unwrap().map(|m| m.size);
            assert_eq!(size, model.get(digest).map(|b| b.len() as u64));
        }
        Op::List { limit } => check_list(store, model, limit).await,
    }
}

async fn check_get(
    store: &dyn BlobStore,
    model: &Model,
    digest: &Digest,
    range: Option<ByteRange>,
) {
    let result = store.get(digest, range).await;
    let Some(bytes) = model.get(digest) else {
        assert!(matches!(result, Err(StorageError::NotFound { .. })));
        return;
    };
    let size = bytes.len() as u64;
    let expected = match range {
        None => Some((0, size)),
        Some(r) => r.resolve(size).map(|r| (r.start, r.end)),
    };
    match (result, expected) {
        (Ok((meta, resolved, stream)), Some((start, end))) => {
            assert_eq!(meta.size, size);
            assert_eq!((resolved.start, resolved.end), (start, end));
            assert!(read_all(stream).await == bytes[start as usize..end as usize]);
        }
        (Err(StorageError::RangeNotSatisfiable { size: s }), None) => assert_eq!(s, size),
        (result, expected) => panic!(
            "got {:?}, expected {expected:?}",
            result.map(|(m, r, _)| (m, r))
        ),
    }
}

async fn check_list(store: &dyn BlobStore, model: &Model, limit: usize) {
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(after.as_ref(), limit).await.unwrap();
        assert!(page.blobs.len() <= limit);
        listed.extend(page.blobs.into_iter().map(|m| (m.digest, m.size)));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let expected: Vec<(Digest, u64)> = model
        .iter()
        .map(|(d, b)| (d.clone(), b.len() as u64))
        .collect();
    assert_eq!(listed, expected);
}

fn run(ops: &[Op], backend: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::TempDir::new().unwrap();
        let store: Box<dyn BlobStore> = match backend {
            "fs" => Box::new(FsStore::open(dir.path()).await.unwrap()),
            _ => Box::new(MemoryStore::new()),
        };
        let mut model = Model::new();
        for op in ops {
            apply(store.as_ref(), &mut model, op).await;
        }
        check_list(store.as_ref(), &model, 2).await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn fs_store_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..20)) {
        run(&ops, "fs");
    }

    #[test]
    fn memory_store_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..20)) {
        run(&ops, "memory");
    }
}
