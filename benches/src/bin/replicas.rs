//! Run with: cargo run --release -p oci-cache-benches --bin replicas -- [--rounds 3] [--big-mib 128] [--clients 30] [--oci-cache PATH] [--registry PATH]
//!
//! Three replicas on one bucket of a real S3 server (`s3s-fs`), in front of one upstream
//! (CNCF distribution), with the same content: oci-cache's fleet (peers, local tier), the
//! same without the local tier, and three CNCF distribution proxies with S3 storage (how
//! distribution is scaled out). Build the cache first: `cargo build --release -p
//! oci-cache-server`.
//!
//! The upstream holds a big random blob (`--big-mib`) and 8 blobs of 4 MiB. Each round
//! starts each fleet fresh on a new bucket and measures:
//! - cold: for each blob, `--clients` concurrent GETs spread over the replicas (client i
//!   asks replica i mod 3), every body hashed and checked; the upstream GETs and bytes of
//!   those blobs (the upstream's log), per blob, and the time until the last client of the
//!   big blob is done;
//! - warm: 5 sequential GETs of the big blob through one replica, after one GET that warms
//!   that replica (bytes counted, not hashed, so the client is not the bottleneck): MB/s
//!   (median), CPU seconds of the whole fleet and of the S3 server per GiB served, S3
//!   requests per GET (the S3 server's log).
//!
//! It prints a Markdown table of medians over rounds and writes it to
//! `target/replicas.md`. Every request, round and the whole run is bounded in time; child
//! processes are killed when it ends, fails or is interrupted.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::future::try_join_all;
use oci_cache_benches::fleet::{Fleet, FleetKind};
use oci_cache_benches::load::{counted_get, verified_get};
use oci_cache_benches::upstream::Traffic;
use oci_cache_benches::{procfs, transfer_timeout, BoxError, Registry};
use oci_cache_testkit::s3::S3Server;

const REPO: &str = "bench/app";
const SMALL_COUNT: u64 = 8;
const SMALL_SIZE: u64 = 4 << 20;
const REPLICAS: usize = 3;
const WARM_GETS: usize = 5;

/// Three replicas on one S3 bucket: oci-cache against distribution.
#[derive(Debug, Parser)]
#[command(name = "replicas")]
struct Args {
    /// Rounds (each starts every fleet fresh).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// Size of the big random blob, MiB.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=2048))]
    big_mib: u64,
    /// Concurrent cold clients per blob, spread over the replicas.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=200))]
    clients: u64,
    /// The `oci-cache` executable (build it with `cargo build --release -p oci-cache-server`).
    #[arg(long, value_name = "PATH", default_value_os_t = oci_cache_benches::default_oci_cache())]
    oci_cache: PathBuf,
    /// The `docker-registry` executable (upstream and proxies).
    #[arg(long, value_name = "PATH", default_value = "docker-registry")]
    registry: PathBuf,
}

/// A blob of the upstream.
#[derive(Debug, Clone)]
struct Blob {
    digest: String,
    size: u64,
}

/// One fleet's figures in one round, by row name.
type Figures = BTreeMap<&'static str, f64>;

/// The rows of the table, in order, with how each is written.
const ROWS: [(&str, &str); 8] = [
    ("upstream GETs per cold blob", "{:.2}"),
    ("upstream bytes per cold byte", "{:.2}"),
    ("cold: last client of the big blob done (s)", "{:.2}"),
    ("warm MB/s (one client, median)", "{:.0}"),
    ("warm: fleet CPU s/GiB", "{:.3}"),
    ("warm: S3 server CPU s/GiB", "{:.3}"),
    ("warm: S3 requests per GET", "{:.2}"),
    ("cold: fleet CPU s/GiB sent to clients", "{:.3}"),
];

struct Bench<'a> {
    client: reqwest::Client,
    upstream: &'a Registry,
    s3: &'a S3Server,
    args: &'a Args,
    big: Blob,
    small: Vec<Blob>,
    ticks: f64,
}

impl Bench<'_> {
    /// The upstream's GET traffic of the benchmark's blobs so far.
    fn upstream_traffic(&self) -> Traffic {
        std::iter::once(&self.big)
            .chain(&self.small)
            .map(|b| {
                self.upstream
                    .traffic(Some("GET"), &format!("/blobs/{}", b.digest))
            })
            .fold(Traffic::default(), |t, b| Traffic {
                requests: t.requests + b.requests,
                bytes: t.bytes + b.bytes,
            })
    }

    /// `clients` concurrent verified GETs of `blob`, client i through replica i mod n.
    /// Returns the time until the last is done.
    async fn cold(&self, fleet: &Fleet, blob: &Blob) -> Result<Duration, BoxError> {
        let started = Instant::now();
        let gets = (0..self.args.clients).map(|i| {
            let addr = fleet.addrs[usize::try_from(i).unwrap_or(0) % fleet.addrs.len()];
            let url = format!("http://{addr}/v2/{REPO}/blobs/{}", blob.digest);
            let client = self.client.clone();
            let (digest, size) = (blob.digest.clone(), blob.size);
            async move {
                tokio::time::timeout(
                    transfer_timeout(size) * 4,
                    verified_get(&client, &url, &digest, size),
                )
                .await
                .map_err(|_| -> BoxError { format!("cold GET {url} timed out").into() })?
            }
        });
        try_join_all(gets).await?;
        Ok(started.elapsed())
    }

    /// One round of `kind` on a fresh fleet and bucket.
    async fn round(&self, kind: FleetKind, bucket: &str) -> Result<Figures, BoxError> {
        let mut fleet = Fleet::start(
            kind,
            (&self.args.oci_cache, &self.args.registry),
            self.upstream.addr,
            self.s3,
            bucket,
            REPLICAS,
        )
        .await?;
        let mut f = Figures::new();
        let blobs = 1 + self.small.len();
        let cold_bytes =
            self.args.clients * (self.big.size + self.small.iter().map(|b| b.size).sum::<u64>());
        let before = self.upstream_traffic();
        let cpu_before = fleet.cpu_seconds(self.ticks)?;
        let big_done = self.cold(&fleet, &self.big).await?;
        for blob in &self.small {
            self.cold(&fleet, blob).await?;
        }
        let cpu_cold = fleet.cpu_seconds(self.ticks)? - cpu_before;
        // Fills still storing (distribution writes to S3 after it answered).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let spent = self.upstream_traffic().since(before);
        let stored: u64 = self.big.size + self.small.iter().map(|b| b.size).sum::<u64>();
        f.insert(ROWS[0].0, ratio(spent.requests, blobs as u64));
        f.insert(ROWS[1].0, ratio(spent.bytes, stored));
        f.insert(ROWS[2].0, big_done.as_secs_f64());
        f.insert(ROWS[7].0, cpu_cold / gib(cold_bytes));

        // Warm, through the second replica: one GET to warm it, then the measured ones.
        let url = format!(
            "http://{}/v2/{REPO}/blobs/{}",
            fleet.addrs[1], self.big.digest
        );
        verified_get(&self.client, &url, &self.big.digest, self.big.size).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s3_pid = self.s3.pid().ok_or("the S3 server stopped")?;
        let (cpu0, s3_cpu0, s3_req0) = (
            fleet.cpu_seconds(self.ticks)?,
            procfs::cpu_seconds(s3_pid, self.ticks)?,
            self.s3.requests(),
        );
        let mut rates = Vec::new();
        for _ in 0..WARM_GETS {
            let got = counted_get(&self.client, &url, self.big.size).await?;
            rates.push(ratio(self.big.size, 1) / got.total.as_secs_f64() / 1e6);
        }
        let served = gib(self.big.size * WARM_GETS as u64);
        f.insert(ROWS[3].0, median(&mut rates));
        f.insert(ROWS[4].0, (fleet.cpu_seconds(self.ticks)? - cpu0) / served);
        f.insert(
            ROWS[5].0,
            (procfs::cpu_seconds(s3_pid, self.ticks)? - s3_cpu0) / served,
        );
        f.insert(
            ROWS[6].0,
            ratio((self.s3.requests() - s3_req0) as u64, WARM_GETS as u64),
        );
        Ok(f)
    }
}

#[allow(clippy::cast_precision_loss)] // counts and sizes well below 2^52
fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}

#[allow(clippy::cast_precision_loss)]
fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// Formats `value` as the row's format says (a fixed number of decimals).
fn format_value(format: &str, value: f64) -> String {
    match format {
        "{:.0}" => format!("{value:.0}"),
        "{:.2}" => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

fn table(title: &str, rounds: &BTreeMap<FleetKind, Vec<Figures>>) -> String {
    let mut out = format!("### {title}\n\n| |");
    for kind in FleetKind::ALL {
        let _ = write!(out, " {} |", kind.name());
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(FleetKind::ALL.len()));
    out.push('\n');
    for (row, format) in ROWS {
        let _ = write!(out, "| {row} |");
        for kind in FleetKind::ALL {
            let mut values: Vec<f64> = rounds
                .get(&kind)
                .map(|r| r.iter().filter_map(|f| f.get(row).copied()).collect())
                .unwrap_or_default();
            let _ = write!(out, " {} |", format_value(format, median(&mut values)));
        }
        out.push('\n');
    }
    out
}

async fn bench(args: Args) -> Result<(), BoxError> {
    let client = oci_cache_benches::bench_client()?;
    let mut upstream = Registry::start(&args.registry).await?;
    let s3 = tokio::task::block_in_place(|| S3Server::start(&[]));
    eprintln!(
        "upstream on {}, S3 on {}; seeding…",
        upstream.addr,
        s3.endpoint()
    );
    let mut push = async |seed: u64, size: u64| -> Result<Blob, BoxError> {
        let digest = upstream.push_random_blob(&client, REPO, seed, size).await?;
        Ok(Blob { digest, size })
    };
    let big = push(1, args.big_mib << 20).await?;
    let mut small = Vec::new();
    for i in 0..SMALL_COUNT {
        small.push(push(100 + i, SMALL_SIZE).await?);
    }
    let bench = Bench {
        client,
        upstream: &upstream,
        s3: &s3,
        args: &args,
        big,
        small,
        ticks: procfs::clock_ticks()?,
    };
    let mut results: BTreeMap<FleetKind, Vec<Figures>> = BTreeMap::new();
    for round in 0..args.rounds {
        for (k, kind) in FleetKind::ALL.into_iter().enumerate() {
            let started = Instant::now();
            let figures = bench.round(kind, &format!("r{round}k{k}")).await?;
            eprintln!(
                "round {}/{}: {} done in {:.1} s: {figures:?}",
                round + 1,
                args.rounds,
                kind.name(),
                started.elapsed().as_secs_f64()
            );
            results.entry(kind).or_default().push(figures);
        }
    }
    let title = format!(
        "replicas: 3 oci-cache replicas vs 3 CNCF distribution proxies, one S3 bucket (s3s-fs); \
         big blob {} MiB + {SMALL_COUNT} x 4 MiB; {} cold clients per blob; {} rounds; medians; {} CPU(s)",
        args.big_mib,
        args.clients,
        args.rounds,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    );
    let table = table(&title, &results);
    println!("\n{table}");
    let target = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .join("target");
    std::fs::create_dir_all(&target)?;
    std::fs::write(target.join("replicas.md"), &table)?;
    eprintln!("wrote {}/replicas.md", target.display());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    oci_cache_benches::check_oci_cache(&args.oci_cache).map_err(|e| e.to_string())?;
    let big = transfer_timeout(args.big_mib << 20);
    let limit = (big * 4 * 10 + Duration::from_secs(300)) * 3 * args.rounds;
    oci_cache_benches::run_bounded(limit, bench(args)).await
}
