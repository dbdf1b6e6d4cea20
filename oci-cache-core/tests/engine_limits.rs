//! Bounded work per request: queued fills have a cap and a wait limit (a fast `Busy`), and an
//! index's children fetched in the background are capped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use oci_cache_core::name::{Reference, RepositoryName};
use oci_cache_core::{Digest, EngineError, UpstreamClient, UpstreamConfig};
use support::{data, engine, respond, Fake};

fn repo() -> RepositoryName {
    RepositoryName::parse("lib/app").unwrap()
}

/// One fill slot, one waiting place, a short wait: a hanging upstream holds the slot.
#[tokio::test]
async fn a_full_fill_queue_answers_busy_at_once_and_a_waiting_fill_gives_up() {
    let fake = Fake::start(|_req, stream| async move {
        // Holds the connection (and the cache's fill slot) without answering.
        tokio::time::sleep(Duration::from_secs(20)).await;
        drop(stream);
    })
    .await;
    let mut config = UpstreamConfig::new("fake", fake.url());
    config.max_fills = 1;
    config.max_queued_fills = 1;
    config.fill_queue_timeout = Duration::from_millis(1500);
    config.first_byte_timeout = Duration::from_secs(30);
    let client = Arc::new(UpstreamClient::new(config).unwrap());
    let (engine, _store, _dir) = engine();
    let engine = Arc::new(engine);
    let digests: Vec<Digest> = (0..3u8).map(|i| Digest::sha256_of(&[i])).collect();

    // The first fill takes the slot and hangs upstream.
    let first = {
        let (engine, client, d) = (engine.clone(), client.clone(), digests[0].clone());
        tokio::spawn(async move { engine.blob(&client, &repo(), &d, None).await.map(|_| ()) })
    };
    wait_for(|| fake.count_path("/blobs/") == 1).await;
    // The second waits for the slot; the third finds the queue full.
    let second = {
        let (engine, client, d) = (engine.clone(), client.clone(), digests[1].clone());
        tokio::spawn(async move { engine.blob(&client, &repo(), &d, None).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = engine.blob(&client, &repo(), &digests[2], None).await;
    // Refused at once: the fill that waits in the queue has not given up yet.
    assert!(
        !second.is_finished(),
        "the third fill waited instead of being refused"
    );
    assert!(
        matches!(
            third.as_ref().map(|_| ()).map_err(EngineError::root),
            Err(EngineError::Busy { .. })
        ),
        "{third:?}"
    );
    let second = second.await.unwrap();
    assert!(
        matches!(
            second.as_ref().map_err(EngineError::root),
            Err(EngineError::Busy { .. })
        ),
        "{second:?}"
    );
    assert_eq!(
        fake.count_path("/blobs/"),
        1,
        "a refused fill reached the upstream"
    );
    first.abort();
}

async fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 5 s");
}

/// An index with 5 children and `index_children = 2`: two child GETs in the background.
#[tokio::test]
async fn only_index_children_up_to_the_cap_are_fetched_in_the_background() {
    let children: Vec<(Digest, Vec<u8>)> = (0..5u64)
        .map(|i| {
            let cfg = data(16, i);
            let body = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256_of(&cfg).to_string(), "size": 16},
                "layers": [],
            }))
            .unwrap();
            (Digest::sha256_of(&body), body)
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children.iter().map(|(d, b)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d.to_string(),
            "size": b.len(),
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let served = Arc::new((index.clone(), children.clone()));
    let fake = Fake::start(move |req, stream| {
        let served = served.clone();
        async move {
            let (index, children) = &*served;
            let found = if req.path.ends_with("/manifests/v1") {
                Some((index.clone(), "application/vnd.oci.image.index.v1+json"))
            } else {
                children
                    .iter()
                    .find(|(d, _)| req.path.ends_with(&d.to_string()))
                    .map(|(_, b)| (b.clone(), "application/vnd.oci.image.manifest.v1+json"))
            };
            match found {
                Some((body, media)) => {
                    let digest = Digest::sha256_of(&body).to_string();
                    respond(
                        stream,
                        "200 OK",
                        &[
                            ("Content-Type", media.to_owned()),
                            ("Docker-Content-Digest", digest),
                        ],
                        &body,
                    )
                    .await;
                }
                None => respond(stream, "404 Not Found", &[], b"").await,
            }
        }
    })
    .await;
    let mut config = UpstreamConfig::new("fake", fake.url());
    config.index_children = 2;
    let client = Arc::new(UpstreamClient::new(config).unwrap());
    let (engine, _store, _dir) = engine();
    let m = engine
        .manifest(&client, &repo(), &Reference::Tag("v1".into()))
        .await
        .unwrap();
    assert_eq!(m.bytes.as_ref(), index.as_slice());
    wait_for(|| fake.count_path("/manifests/sha256:") >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.count_path("/manifests/sha256:"),
        2,
        "children past the cap were fetched"
    );
    // A child past the cap is fetched when asked for.
    let late = &children[4];
    let got = engine
        .manifest(&client, &repo(), &Reference::Digest(late.0.clone()))
        .await
        .unwrap();
    assert_eq!(got.bytes.as_ref(), late.1.as_slice());
}

/// With storage refusing writers and no spool directory, fills spool in memory, and all of
/// them together stay within one `memory_spool_limit` (not one each): of two concurrent
/// 2 MiB fills under a 3 MiB budget, at most one is served whole and the others fail with
/// `SpoolBudgetSpent`; once they are done their bytes are given back and each succeeds
/// alone.
#[tokio::test]
async fn memory_spools_share_one_budget() {
    use futures_util::StreamExt;
    use support::faulty::{Fault, FaultyStore};

    const SIZE: usize = 2 * 1024 * 1024;
    let blobs: Vec<Vec<u8>> = (0..2).map(|i| data(SIZE, 40 + i)).collect();
    let served = Arc::new(blobs.clone());
    let fake = Fake::start(move |req, mut s| {
        let served = served.clone();
        async move {
            use tokio::io::AsyncWriteExt;
            let Some(blob) = served
                .iter()
                .find(|b| req.path.ends_with(&Digest::sha256_of(b).to_string()))
            else {
                return respond(s, "404 Not Found", &[], b"{}").await;
            };
            support::respond_head_then(&mut s, blob.len(), &[]).await;
            for piece in blob.chunks(256 * 1024) {
                if s.write_all(piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            let _ = s.shutdown().await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FaultyStore {
        inner: Arc::new(oci_cache_storage::memory::MemoryStore::new()),
        fault: Fault::RefuseWriters,
    });
    let mut config = oci_cache_core::EngineConfig::default();
    config.spool_dir = dir.path().join("no-such-dir");
    config.memory_spool_limit = 3 * 1024 * 1024;
    let engine = Arc::new(oci_cache_core::Engine::new(
        store,
        Arc::new(oci_cache_storage::memory::MemoryStore::new()),
        config,
    ));
    let client = fake.client();
    let get = |i: usize| {
        let (engine, client) = (engine.clone(), client.clone());
        let digest = Digest::sha256_of(&blobs[i]);
        async move {
            let mut body = engine.blob(&client, &repo(), &digest, None).await?.body;
            let mut got = Vec::new();
            while let Some(chunk) = body.next().await {
                got.extend_from_slice(&chunk?);
            }
            Ok::<Vec<u8>, EngineError>(got)
        }
    };
    let (a, b) = tokio::join!(tokio::spawn(get(0)), tokio::spawn(get(1)));
    let results = [a.unwrap(), b.unwrap()];
    let summary: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(got) => format!("{} bytes", got.len()),
            Err(e) => format!("{e:?}"),
        })
        .collect();
    let whole: Vec<usize> = (0..2)
        .filter(|&i| results[i].as_ref().is_ok_and(|got| *got == blobs[i]))
        .collect();
    // 4 MiB do not fit in 3: at most one is served whole (when they interleave, both may
    // run out), and every other one fails for the budget, nothing else.
    assert!(
        whole.len() <= 1,
        "both fit a shared 3 MiB budget: {summary:?}"
    );
    let spent = |r: &Result<Vec<u8>, EngineError>| match r {
        Err(EngineError::SpoolBudgetSpent { .. }) => true,
        Err(EngineError::Shared(e)) => matches!(**e, EngineError::SpoolBudgetSpent { .. }),
        _ => false,
    };
    let failed: Vec<usize> = (0..2).filter(|i| !whole.contains(i)).collect();
    for i in &failed {
        assert!(spent(&results[*i]), "{summary:?}");
    }
    // The memory is given back: alone, each fits.
    for i in failed {
        let again = get(i).await.unwrap();
        assert!(again == blobs[i], "served whole once the budget is free");
    }
}
