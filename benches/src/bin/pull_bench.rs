//! Run with: cargo run --release -p oci-cache-benches --bin pull_bench -- [--size-mib 256] [--runs 5] [--clients 4] [--oci-cache PATH] [--registry PATH]
//!
//! End-to-end pull benchmark. Build the cache first:
//! `cargo build --release -p oci-cache-server` (the default `--oci-cache` is
//! `target/release/oci-cache` under the workspace root).
//!
//! It starts the CNCF distribution registry (`docker-registry`, Debian package
//! docker-registry) on 127.0.0.1 with filesystem storage in a temporary directory, pushes
//! one random blob of `--size-mib` MiB (streamed, never held in memory), then, for each
//! run, measures:
//! 1. `direct`: a GET from the registry (the baseline);
//! 2. `cold`: a GET through a fresh `oci-cache serve` (empty data directory);
//! 3. `warm`: the same GET again through that cache (a hit);
//! 4. `concurrent`: `--clients` simultaneous GETs through another fresh cache (wall time
//!    until the last one ends; MiB/s is the aggregate).
//!
//! Every GET streams the body through sha256 and checks size and digest. It reports the
//! median over runs, the cache process's peak RSS (`VmHWM`) and how many GETs of the blob
//! the registry served (from its log). Every request has a time limit, the whole benchmark
//! too, and child processes are killed when it ends, fails or is interrupted (Ctrl-C).

use std::error::Error;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use oci_cache_benches::{timed_get, transfer_timeout, BoxError, Cache, Registry};

/// Repository the blob is pushed to (two segments: no `library/` prefix on Docker Hub).
const REPO: &str = "bench/blob";
/// Seed of the blob's bytes.
const SEED: u64 = 0x0C1_CAC4E;
/// Time the registry gets to write its log line after a response ended.
const LOG_SETTLE: Duration = Duration::from_millis(300);

/// End-to-end pull benchmark: registry → oci-cache → clients.
#[derive(Debug, Parser)]
#[command(name = "pull_bench")]
struct Args {
    /// Size of the random blob, MiB.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=4096))]
    size_mib: u64,
    /// Runs (each with fresh caches).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// Concurrent clients of the `concurrent` phase.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    clients: u32,
    /// The `oci-cache` executable (build it with `cargo build --release -p oci-cache-server`).
    #[arg(long, value_name = "PATH", default_value_os_t = oci_cache_benches::default_oci_cache())]
    oci_cache: PathBuf,
    /// The `docker-registry` executable.
    #[arg(long, value_name = "PATH", default_value = "docker-registry")]
    registry: PathBuf,
}

/// The arguments; Err unless the `oci-cache` executable exists.
fn parse_args() -> Result<Args, BoxError> {
    let args = Args::parse();
    oci_cache_benches::check_oci_cache(&args.oci_cache)?;
    Ok(args)
}

/// One run's measurements.
#[derive(Debug, Default)]
struct Run {
    direct: Duration,
    cold: Duration,
    warm: Duration,
    concurrent: Duration,
    cold_gets: usize,
    warm_gets: usize,
    concurrent_gets: usize,
    /// Peak RSS of the cache serving cold then warm, KiB.
    rss_kib: u64,
    /// Peak RSS of the cache serving the concurrent GETs, KiB.
    concurrent_rss_kib: u64,
}

struct Bench {
    args: Args,
    client: reqwest::Client,
    registry: Registry,
    digest: String,
    size: u64,
}

impl Bench {
    fn blob_path(&self) -> String {
        format!("/v2/{REPO}/blobs/{}", self.digest)
    }

    /// Upstream GETs of the blob since `before`, once the registry's log has settled.
    async fn upstream_gets_since(&self, before: usize) -> Result<usize, BoxError> {
        tokio::time::sleep(LOG_SETTLE).await;
        Ok(self
            .registry
            .completed_gets(&self.blob_path())
            .saturating_sub(before))
    }

    async fn run(&self) -> Result<Run, BoxError> {
        let path = self.blob_path();
        let mut run = Run::default();

        let url = format!("http://{}{path}", self.registry.addr);
        run.direct = timed_get(&self.client, &url, &self.digest, self.size).await?;

        let mut cache = Cache::start(&self.args.oci_cache, self.registry.addr).await?;
        let url = format!("http://{}{path}", cache.addr);
        let before = self.registry.completed_gets(&path);
        run.cold = timed_get(&self.client, &url, &self.digest, self.size).await?;
        run.cold_gets = self.upstream_gets_since(before).await?;
        let before = self.registry.completed_gets(&path);
        run.warm = timed_get(&self.client, &url, &self.digest, self.size).await?;
        run.warm_gets = self.upstream_gets_since(before).await?;
        run.rss_kib = cache.peak_rss_kib()?;
        drop(cache);

        let mut cache = Cache::start(&self.args.oci_cache, self.registry.addr).await?;
        let url = format!("http://{}{path}", cache.addr);
        let before = self.registry.completed_gets(&path);
        let started = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.args.clients {
            let (client, url, digest, size) = (
                self.client.clone(),
                url.clone(),
                self.digest.clone(),
                self.size,
            );
            tasks.spawn(async move { timed_get(&client, &url, &digest, size).await });
        }
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        run.concurrent = started.elapsed();
        run.concurrent_gets = self.upstream_gets_since(before).await?;
        run.concurrent_rss_kib = cache.peak_rss_kib()?;
        Ok(run)
    }
}

impl Run {
    /// One line about this run.
    #[allow(clippy::cast_precision_loss, reason = "KiB counts are far below 2^52")]
    fn summary(&self, clients: u32) -> String {
        format!(
            "direct {:.0} ms, cold {:.0} ms, warm {:.0} ms, {clients}x concurrent {:.0} ms; \
             upstream GETs {}/{}/{}; peak RSS {:.1}/{:.1} MiB",
            ms(self.direct),
            ms(self.cold),
            ms(self.warm),
            ms(self.concurrent),
            self.cold_gets,
            self.warm_gets,
            self.concurrent_gets,
            self.rss_kib as f64 / 1024.0,
            self.concurrent_rss_kib as f64 / 1024.0,
        )
    }
}

/// The median (the upper one of an even count).
fn median<T: Copy + Ord>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut v: Vec<T> = values.collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[allow(
    clippy::cast_precision_loss,
    reason = "MiB and KiB counts are far below 2^52"
)]
fn print_table(args: &Args, digest: &str, runs: &[Run]) {
    let size = args.size_mib as f64;
    let med = |f: fn(&Run) -> Duration| median(runs.iter().map(f)).unwrap_or_default();
    let gets = |f: fn(&Run) -> usize| {
        runs.iter()
            .map(|r| f(r).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let rss = |f: fn(&Run) -> u64| median(runs.iter().map(f)).unwrap_or_default() as f64 / 1024.0;
    let direct = med(|r| r.direct);
    let clients = args.clients;
    let rows = [
        (
            "direct (registry)".to_owned(),
            direct,
            size,
            "-".to_owned(),
            "-".to_owned(),
        ),
        (
            "cold (via cache)".to_owned(),
            med(|r| r.cold),
            size,
            gets(|r| r.cold_gets),
            format!("{:.1}", rss(|r| r.rss_kib)),
        ),
        (
            "warm (via cache)".to_owned(),
            med(|r| r.warm),
            size,
            gets(|r| r.warm_gets),
            "(same process)".to_owned(),
        ),
        (
            format!("{clients}x concurrent cold"),
            med(|r| r.concurrent),
            size * f64::from(clients),
            gets(|r| r.concurrent_gets),
            format!("{:.1}", rss(|r| r.concurrent_rss_kib)),
        ),
    ];
    println!();
    println!(
        "pull_bench: blob {} MiB ({}…), {} runs, {clients} concurrent clients; medians over runs",
        args.size_mib,
        &digest[..digest.len().min(19)],
        runs.len()
    );
    println!(
        "{:<20} {:>10} {:>9} {:>10} {:>15} {:>15}",
        "phase", "ms", "MiB/s", "/direct", "upstream GETs", "peak RSS MiB"
    );
    for (name, time, mib, upstream, rss) in rows {
        println!(
            "{name:<20} {:>10.1} {:>9.1} {:>10.2} {upstream:>15} {rss:>15}",
            ms(time),
            mib / time.as_secs_f64(),
            time.as_secs_f64() / direct.as_secs_f64(),
        );
    }
    println!(
        "(/direct: time ratio to the direct GET; MiB/s of the concurrent row is the aggregate \
         of all clients; upstream GETs: per run; peak RSS of the cold row covers cold + warm, \
         one process)"
    );
}

async fn bench(args: Args) -> Result<(), BoxError> {
    let client = oci_cache_benches::bench_client()?;
    let mut registry = Registry::start(&args.registry).await?;
    let size = args.size_mib << 20;
    eprintln!(
        "registry on {}; pushing {} MiB…",
        registry.addr, args.size_mib
    );
    let digest = registry.push_random_blob(&client, REPO, SEED, size).await?;
    eprintln!("pushed {digest}");
    let bench = Bench {
        args,
        client,
        registry,
        digest,
        size,
    };
    let mut runs = Vec::new();
    for i in 1..=bench.args.runs {
        let run = bench.run().await?;
        eprintln!("run {i}: {}", run.summary(bench.args.clients));
        runs.push(run);
    }
    print_table(&bench.args, &bench.digest, &runs);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| e.to_string())?;
    // Per run: 2 + 2 * clients transfers, plus starts; bounded as a whole.
    let per_run =
        transfer_timeout(args.size_mib << 20) * (3 + args.clients) + Duration::from_secs(60);
    let limit = per_run * args.runs + transfer_timeout(args.size_mib << 20) * 2;
    oci_cache_benches::run_bounded(limit, bench(args)).await
}
