//! Run with: cargo bench -p oci-cache-benches --bench hot_path
//!
//! Criterion micro-benchmarks of what a cache hit costs, piece by piece:
//! - `route/*`: parsing a request path, a `Range` header, choosing the upstream among four;
//! - `manifest/inspect_oci_image`: checking and typing a manifest's bytes;
//! - `storage_hit/*`: reading a whole 4 KiB blob and a 1 MiB blob from the memory and the
//!   filesystem backends (page cache warm);
//! - `service/*`: a whole cached request through `CacheService` in process (routing,
//!   engine, storage, response headers; no socket): a manifest GET by digest, by tag
//!   (inside the freshness window), and a 4 KiB blob GET.
//!
//! The upstream URL points at a closed port: a request that reached it would fail the run.

use std::error::Error;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput};
use futures_util::TryStreamExt;
use oci_cache_core::manifest::inspect;
use oci_cache_core::range::parse_range;
use oci_cache_core::route::parse_path;
use oci_cache_core::{Engine, EngineConfig, UpstreamConfig, Upstreams};
use oci_cache_server::CacheService;
use oci_cache_storage::fs::FsStore;
use oci_cache_storage::memory::MemoryStore;
use oci_cache_storage::{BlobStore, Digest, TagKey, TagRecord, TagStore};

type BoxError = Box<dyn Error>;

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}"#;

fn bytes(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<_>>()
        .into()
}

async fn put(store: &dyn BlobStore, data: &Bytes) -> Result<Digest, BoxError> {
    let digest = Digest::sha256_of(data);
    let mut w = store.writer(&digest, Some(data.len() as u64)).await?;
    w.write(data.clone()).await?;
    w.commit().await?;
    Ok(digest)
}

fn bench_route(c: &mut Criterion) -> Result<(), BoxError> {
    let upstreams = Upstreams::new(
        ["docker.io", "quay.io", "ghcr.io", "registry.internal"]
            .into_iter()
            .map(|n| UpstreamConfig::new(n, "http://127.0.0.1:9"))
            .collect(),
    )?;
    let mut group = c.benchmark_group("route");
    group.bench_function("parse_blob_path", |b| {
        b.iter(|| {
            parse_path(black_box(
                "/v2/library/alpine/blobs/sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            ))
        });
    });
    group.bench_function("parse_manifest_path", |b| {
        b.iter(|| parse_path(black_box("/v2/quay.io/org/team/app/manifests/v1.2.3")));
    });
    group.bench_function("parse_range", |b| {
        b.iter(|| parse_range(black_box("bytes=1048576-2097151")));
    });
    group.bench_function("select_upstream_by_prefix", |b| {
        b.iter(|| upstreams.select(None, Some("cache:5000"), black_box("quay.io/org/app")));
    });
    group.finish();
    let mut group = c.benchmark_group("manifest");
    group.bench_function("inspect_oci_image", |b| {
        b.iter(|| inspect(black_box(MANIFEST.as_bytes()), None));
    });
    group.finish();
    Ok(())
}

fn bench_storage(c: &mut Criterion, rt: &tokio::runtime::Runtime) -> Result<(), BoxError> {
    let dir = tempfile::Builder::new()
        .prefix("hot-path-bench-")
        .tempdir()?;
    let fs: Arc<dyn BlobStore> = Arc::new(rt.block_on(FsStore::open(dir.path()))?);
    let memory: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    for (name, store) in [("memory", &memory), ("fs", &fs)] {
        for (label, size) in [("4KiB", 4096), ("1MiB", 1 << 20)] {
            let digest = rt.block_on(put(store.as_ref(), &bytes(1, size)))?;
            let mut group = c.benchmark_group("storage_hit");
            group
                .throughput(Throughput::Bytes(size as u64))
                .measurement_time(Duration::from_secs(3));
            group.bench_function(format!("{name}_get_{label}"), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let (_, _, body) = store.get(&digest, None).await.ok()?;
                        let whole: Vec<Bytes> = body.try_collect().await.ok()?;
                        Some(whole.len())
                    })
                });
            });
            group.finish();
        }
    }
    Ok(())
}

fn bench_service(c: &mut Criterion, rt: &tokio::runtime::Runtime) -> Result<(), BoxError> {
    let dir = tempfile::Builder::new()
        .prefix("hot-path-bench-")
        .tempdir()?;
    let store = Arc::new(rt.block_on(FsStore::open(dir.path()))?);
    let manifest = Bytes::from_static(MANIFEST.as_bytes());
    let manifest_digest = rt.block_on(put(store.as_ref(), &manifest))?;
    let blob_digest = rt.block_on(put(store.as_ref(), &bytes(2, 4096)))?;
    let key = TagKey {
        namespace: "docker.io".to_owned(),
        repository: "library/app".to_owned(),
        tag: "latest".to_owned(),
    };
    let record = TagRecord {
        digest: manifest_digest.clone(),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        fetched_at: std::time::SystemTime::now(),
    };
    rt.block_on(store.put(&key, &record))?;
    let upstreams = Arc::new(Upstreams::new(vec![UpstreamConfig::new(
        "docker.io",
        "http://127.0.0.1:9",
    )])?);
    let engine = Arc::new(Engine::new(store.clone(), store, EngineConfig::default()));
    // As after a pull through library/app: both belong there.
    let repo = oci_cache_core::name::RepositoryName::parse("library/app")?;
    rt.block_on(engine.link(
        "docker.io",
        &repo,
        &[manifest_digest.clone(), blob_digest.clone()],
    ))?;
    let service = CacheService::new(engine, upstreams);
    let cases = [
        (
            "manifest_by_digest",
            format!("/v2/library/app/manifests/{manifest_digest}"),
        ),
        (
            "manifest_by_tag",
            "/v2/library/app/manifests/latest".to_owned(),
        ),
        ("blob_4KiB", format!("/v2/library/app/blobs/{blob_digest}")),
    ];
    let mut group = c.benchmark_group("service");
    group.sampling_mode(SamplingMode::Flat);
    for (name, path) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let req = http::Request::get(&path).body(()).ok()?;
                    let resp = service.call_request(req).await;
                    assert_eq!(resp.status(), 200, "{path}");
                    let body = http_body_util::BodyExt::collect(resp.into_body())
                        .await
                        .ok()?;
                    Some(body.to_bytes().len())
                })
            });
        });
    }
    group.finish();
    Ok(())
}

fn main() -> Result<(), BoxError> {
    oci_cache_core::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    bench_route(&mut c)?;
    bench_storage(&mut c, &rt)?;
    bench_service(&mut c, &rt)?;
    c.final_summary();
    Ok(())
}
