//! The fill is a pipeline: bytes from the upstream reach readers while the disk is still
//! busy with earlier ones. A storage whose writes wait for the test's word shows it: the
//! client gets every byte but the last (held until the digest matched and everything is
//! stored) while no write has finished, then the rest once the storage moves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_cache_core::name::RepositoryName;
use oci_cache_core::{Digest, Engine, EngineConfig};
use oci_cache_storage::fs::FsStore;
use support::faulty::{Fault, FaultyStore};
use support::{data, respond, Fake};
use tokio::sync::Semaphore;

#[tokio::test]
async fn readers_get_the_bytes_while_the_disk_has_written_none_of_them() {
    let blob = data(3 * 1024 * 1024 + 5, 11);
    let digest = Digest::sha256_of(&blob);
    let served = Bytes::from(blob.clone());
    let fake = Fake::start(move |_req, stream| {
        let served = served.clone();
        async move { respond(stream, "200 OK", &[], &served).await }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(FsStore::open(dir.path().join("store")).await.unwrap());
    let gate = Arc::new(Semaphore::new(0));
    let store = Arc::new(FaultyStore {
        inner: inner.clone(),
        fault: Fault::WaitFor(Arc::clone(&gate)),
    });
    let mut config = EngineConfig::default();
    config.spool_dir = dir.path().to_path_buf();
    config.chunk_size = 64 * 1024;
    let engine = Engine::new(store, inner.clone(), config);
    let repo = RepositoryName::parse("lib/app").unwrap();

    let resp = engine
        .blob(&fake.client(), &repo, &digest, None)
        .await
        .unwrap();
    let mut body = resp.body;
    let mut got = Vec::new();
    // Every byte but the last arrives although no storage write has finished.
    tokio::time::timeout(Duration::from_secs(20), async {
        while got.len() < blob.len() - 1 {
            got.extend_from_slice(&body.next().await.unwrap().unwrap());
        }
    })
    .await
    .expect("the bytes waited for the disk");
    assert_eq!(
        got,
        blob[..blob.len() - 1],
        "the bytes before the disk are the blob's"
    );
    // The last byte waits for the disk (everything stored) and the digest.
    let last = tokio::time::timeout(Duration::from_millis(300), body.next()).await;
    assert!(
        last.is_err(),
        "the last byte came before the disk had the blob"
    );
    gate.add_permits(1000);
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, blob);
    let stored = support::committed_size(inner.as_ref(), &digest).await;
    assert_eq!(stored, Some(blob.len() as u64));
}
