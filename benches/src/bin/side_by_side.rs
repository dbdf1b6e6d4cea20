//! Run with: cargo run --release -p oci-cache-benches --bin side_by_side -- [--rounds 3] [--big-mib 1024] [--oci-cache PATH] [--registry PATH]
//!
//! oci-cache against CNCF distribution (`docker-registry serve`) in proxy mode, on the
//! same machine, in front of the same upstream (a third distribution registry), with the
//! same content. Build the cache first: `cargo build --release -p oci-cache-server`.
//!
//! The upstream holds a big random blob (`--big-mib`), a 64 MiB blob, 100 blobs of
//! 4 KiB and an OCI image manifest tagged `latest` referencing some of them. Each round
//! measures both caches (alternating which goes first), each with fresh processes and
//! data directories: cold and warm big-blob GETs (throughput, time to first byte, server
//! CPU, upstream GETs and bytes from the upstream's log), 20 concurrent cold GETs of the
//! 64 MiB blob, manifest storms (GET by digest, GET by tag, HEAD by tag; 64 connections,
//! 2000 requests, 20 s cap), 100 sequential 4 KiB GETs, and peak RSS. Every blob body is
//! streamed through sha256 and checked. It prints a Markdown table of medians over rounds
//! with the ratio oci-cache / distribution and writes it to `target/side_by_side.md`,
//! with a TSV (`target/side_by_side.tsv`). Requests, rounds and the whole run are bounded
//! in time; child processes are killed when it ends, fails or is interrupted.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use oci_cache_benches::metrics::METRICS;
use oci_cache_benches::report::Results;
use oci_cache_benches::rounds::{Bench, Blob, Content, Phases};
use oci_cache_benches::subject::{Binaries, Kind};
use oci_cache_benches::upstream::oci_manifest;
use oci_cache_benches::{procfs, transfer_timeout, BoxError, Registry};

const REPO: &str = "bench/app";
const TAG: &str = "latest";
const MID_MIB: u64 = 64;
const SMALL_COUNT: u64 = 100;
const SMALL_SIZE: u64 = 4096;

/// oci-cache against CNCF distribution in proxy mode, same upstream, same content.
#[derive(Debug, Parser)]
#[command(name = "side_by_side")]
struct Args {
    /// Rounds (each measures both caches with fresh processes).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Size of the big random blob, MiB.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=4096))]
    big_mib: u64,
    /// The `oci-cache` executable (build it with `cargo build --release -p oci-cache-server`).
    #[arg(long, value_name = "PATH", default_value_os_t = oci_cache_benches::default_oci_cache())]
    oci_cache: PathBuf,
    /// The `docker-registry` executable (upstream and proxy).
    #[arg(long, value_name = "PATH", default_value = "docker-registry")]
    registry: PathBuf,
    /// Only the 200-client phase, for each cache (with `--big-mib 16`, about 30 s a round).
    #[arg(long, conflicts_with = "only_cold")]
    only_mixed: bool,
    /// Only the cold GET of the big blob (with the direct GET and the bare relay), for each
    /// cache (about 20 s a round).
    #[arg(long)]
    only_cold: bool,
}

/// The arguments; Err unless the `oci-cache` executable exists.
fn parse_args() -> Result<Args, BoxError> {
    let args = Args::parse();
    oci_cache_benches::check_oci_cache(&args.oci_cache)?;
    Ok(args)
}

/// Pushes the benchmark's content to the upstream.
async fn seed(
    upstream: &mut Registry,
    client: &reqwest::Client,
    big_mib: u64,
) -> Result<Content, BoxError> {
    let mut push = async |seed: u64, size: u64| -> Result<Blob, BoxError> {
        let digest = upstream.push_random_blob(client, REPO, seed, size).await?;
        Ok(Blob { digest, size })
    };
    let big = push(1, big_mib << 20).await?;
    let mid = push(2, MID_MIB << 20).await?;
    let mut small = Vec::new();
    for i in 0..SMALL_COUNT {
        small.push(push(1000 + i, SMALL_SIZE).await?);
    }
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_size = config.len() as u64;
    let config_digest = upstream.push_bytes(client, REPO, config.to_vec()).await?;
    let mut layers = vec![
        (big.digest.as_str(), big.size),
        (mid.digest.as_str(), mid.size),
    ];
    layers.extend(small.iter().take(8).map(|b| (b.digest.as_str(), b.size)));
    let manifest = oci_manifest((&config_digest, config_size), &layers);
    let manifest = upstream.push_manifest(client, REPO, TAG, manifest).await?;
    let mixed = oci_cache_benches::mixed::seed(upstream, client, REPO).await?;
    Ok(Content {
        repo: REPO,
        tag: TAG,
        big,
        mid,
        small,
        manifest,
        mixed,
    })
}

async fn bench(args: Args) -> Result<(), BoxError> {
    let client = oci_cache_benches::bench_client()?;
    let ticks = procfs::clock_ticks()?;
    let mut upstream = Registry::start(&args.registry).await?;
    eprintln!(
        "upstream on {}; seeding ({} MiB big blob)…",
        upstream.addr, args.big_mib
    );
    let content = seed(&mut upstream, &client, args.big_mib).await?;
    eprintln!("seeded; manifest {}", content.manifest);
    let bare_file = oci_cache_benches::bare_loop::file(content.big.size)?;
    let mut bench = Bench {
        client,
        upstream: &upstream,
        bins: Binaries {
            oci_cache: &args.oci_cache,
            registry: &args.registry,
        },
        content: &content,
        ticks,
        bare_file: bare_file.path(),
        phases: if args.only_mixed {
            Phases::Mixed
        } else if args.only_cold {
            Phases::Cold
        } else {
            Phases::All
        },
        results: Results::default(),
    };
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            Kind::ALL
        } else {
            [Kind::Distribution, Kind::OciCache]
        };
        for kind in order {
            let started = std::time::Instant::now();
            bench.round(kind).await?;
            eprintln!(
                "round {}/{}: {} done in {:.1} s",
                round + 1,
                args.rounds,
                kind.name(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let title = format!(
        "side_by_side: oci-cache vs CNCF distribution {} (proxy mode); big blob {} MiB; \
         {} rounds; medians over rounds; {} CPU(s)",
        registry_version(&args.registry),
        args.big_mib,
        args.rounds,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    );
    let table = bench.results.markdown(&title, METRICS);
    println!("\n{table}");
    let target = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .join("target");
    std::fs::create_dir_all(&target)?;
    std::fs::write(target.join("side_by_side.md"), &table)?;
    std::fs::write(target.join("side_by_side.tsv"), bench.results.tsv(METRICS))?;
    eprintln!(
        "wrote {0}/side_by_side.md and {0}/side_by_side.tsv",
        target.display()
    );
    Ok(())
}

/// `docker-registry --version`'s version word, or `?`.
fn registry_version(binary: &Path) -> String {
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(2).map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| e.to_string())?;
    // Per cache and round: about 14 big-blob transfers, 20 × 64 MiB, three capped storms.
    let big = transfer_timeout(args.big_mib << 20);
    let per_round =
        (big * 14 + transfer_timeout(MID_MIB << 20) * 20 + Duration::from_secs(120)) * 2;
    let limit = per_round * args.rounds + big * 2;
    oci_cache_benches::run_bounded(limit, bench(args)).await
}
