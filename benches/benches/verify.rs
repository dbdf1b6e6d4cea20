//! Run with: cargo bench -p oci-cache-benches --bench verify
//!
//! Criterion micro-benchmarks of the two costs every cache fill pays per byte:
//! - `verify/sha256_64MiB_in_64KiB_chunks`: the streaming [`Verifier`] (sha256) fed 64 MiB
//!   in 64 KiB chunks, as the engine feeds it from an upstream response;
//! - `fs_store/write_commit_64MiB`: [`FsStore`] writing a 64 MiB blob in 64 KiB chunks and
//!   committing it (verification, fsync, atomic publish), in a temporary directory. The
//!   blob is deleted after each iteration, outside the measured time.
//!
//! Ten flat samples and short measurement times keep the whole run under a minute.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use oci_cache_benches::Rng;
use oci_cache_storage::fs::FsStore;
use oci_cache_storage::{Algorithm, BlobStore, CommitOutcome, Digest, Verifier};

/// Bytes per benchmark iteration.
const SIZE: usize = 64 << 20;
/// Bytes per chunk, like the chunks of an HTTP body.
const CHUNK: usize = 64 << 10;

fn random_blob() -> Bytes {
    let mut data = vec![0; SIZE];
    Rng::new(42).fill(&mut data);
    data.into()
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(SIZE as u64));
    group
}

fn bench_verifier(c: &mut Criterion, blob: &Bytes) {
    let mut group = configure(c, "verify");
    group.bench_function("sha256_64MiB_in_64KiB_chunks", |b| {
        b.iter(|| {
            let mut verifier = Verifier::new(Algorithm::Sha256);
            for chunk in black_box(blob.as_ref()).chunks(CHUNK) {
                verifier.update(chunk);
            }
            black_box(verifier.finish())
        });
    });
    group.finish();
}

/// Writes `blob` in chunks, commits it, and returns the time that took; then deletes it.
async fn write_commit(
    store: &FsStore,
    digest: &Digest,
    blob: &Bytes,
) -> Result<Duration, Box<dyn Error>> {
    let started = Instant::now();
    let mut writer = store.writer(digest, Some(blob.len() as u64)).await?;
    for offset in (0..blob.len()).step_by(CHUNK) {
        writer
            .write(blob.slice(offset..(offset + CHUNK).min(blob.len())))
            .await?;
    }
    let outcome = writer.commit().await?;
    let elapsed = started.elapsed();
    if outcome != CommitOutcome::Stored {
        return Err(format!("commit: {outcome:?}, want Stored").into());
    }
    store.delete(digest).await?;
    Ok(elapsed)
}

fn bench_fs_store(c: &mut Criterion, blob: &Bytes) -> Result<(), Box<dyn Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::Builder::new().prefix("verify-bench-").tempdir()?;
    let store = runtime.block_on(FsStore::open(dir.path().join("store")))?;
    let digest = Digest::sha256_of(blob);
    let mut failure: Option<Box<dyn Error>> = None;

    let mut group = configure(c, "fs_store");
    group.bench_function("write_commit_64MiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                match runtime.block_on(write_commit(&store, &digest, blob)) {
                    Ok(elapsed) => total += elapsed,
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            total
        });
    });
    group.finish();
    match failure {
        Some(e) => Err(format!("FsStore write + commit failed: {e}").into()),
        None => Ok(()),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let blob = random_blob();
    let mut c = Criterion::default().configure_from_args();
    bench_verifier(&mut c, &blob);
    bench_fs_store(&mut c, &blob)?;
    c.final_summary();
    Ok(())
}
