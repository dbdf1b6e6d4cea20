//! The `oci-cache` binary: `oci-cache serve` runs the pull-through cache.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use oci_cache_core::{Engine, EngineConfig, Upstreams};
use oci_cache_server::client_config::{render, ClientKind};
use oci_cache_server::config::{Config, UpstreamEntry};
use oci_cache_server::{serve_with_limit, CacheService};
use oci_cache_storage::fs::FsStore;
use oci_cache_storage::verify::verify_blobs;
use oci_cache_storage::{BlobStore, TagStore};

/// A pull-through cache for OCI and Docker registries.
#[derive(Parser)]
#[command(name = "oci-cache", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cache.
    Serve(ServeArgs),
    /// Print the client configuration (containerd, k3s, docker, podman) for the configured
    /// upstreams.
    Config(ClientConfigArgs),
    /// Show (with --dry-run) or run one eviction pass with the configured `[gc]` limits.
    Gc(GcArgs),
    /// Re-hash every stored blob; report (or with --remove, delete) those that do not match
    /// their digest. Exits 1 when corrupt blobs remain.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct GcArgs {
    #[command(flatten)]
    source: Source,
    /// Directory of the filesystem storage (default: the config's, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Stored bytes allowed (overrides the config's gc.max_bytes).
    #[arg(long)]
    max_bytes: Option<u64>,
    /// Print what would be evicted; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// Directory of the filesystem storage (default: the config's, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Delete corrupt blobs instead of only reporting them.
    #[arg(long)]
    remove: bool,
}

/// Where the configuration comes from: a file, overridden by flags.
#[derive(clap::Args)]
struct Source {
    /// TOML configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// An upstream as NAME=URL; repeatable; the first is the default. Replaces the
    /// config file's upstreams.
    #[arg(long = "upstream", value_name = "NAME=URL")]
    upstreams: Vec<String>,
    /// Keep blobs and tags in S3: `s3://BUCKET/PREFIX` (endpoint, region and keys from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    storage: Option<String>,
}

impl Source {
    fn load(&self) -> Result<Config, Box<dyn std::error::Error>> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(storage) = &self.storage {
            config.storage = Some(storage.clone());
        }
        if !self.upstreams.is_empty() {
            config.upstreams = self
                .upstreams
                .iter()
                .map(|f| UpstreamEntry::from_flag(f))
                .collect::<Result<_, _>>()?;
        }
        Ok(config)
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    source: Source,
    /// Address to listen on (default 0.0.0.0:5000).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Directory of the filesystem storage and the local spool (default ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[derive(clap::Args)]
struct ClientConfigArgs {
    /// The client: containerd, k3s, docker or podman.
    #[arg(value_parser = ["containerd", "k3s", "docker", "podman"])]
    client: String,
    /// The URL clients reach the cache at.
    #[arg(long, default_value = "http://localhost:5000")]
    cache_url: String,
    #[command(flatten)]
    source: Source,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Config(args) => return print_client_config(&args),
        Command::Verify(args) => return verify(&args),
        Command::Gc(args) => return gc(&args),
    };
    init_logs(args.log_json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oci-cache: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("oci-cache: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn gc(args: &GcArgs) -> ExitCode {
    init_logs(false);
    let run = async {
        let mut config = args.source.load()?;
        if let Some(dir) = &args.data_dir {
            config.data_dir.clone_from(dir);
        }
        if args.max_bytes.is_some() {
            config.gc.max_bytes = args.max_bytes;
        }
        let policy = config.gc.policy()?;
        let (blobs, tags) = open_storage(&config).await?;
        let engine = Engine::new(blobs, tags, EngineConfig::default());
        let plan = engine.collect_garbage(&policy, args.dry_run).await?;
        Ok::<_, Box<dyn std::error::Error>>(plan)
    };
    match tokio::runtime::Runtime::new().map(|rt| rt.block_on(run)) {
        Ok(Ok(plan)) => {
            let verb = if args.dry_run {
                "would evict"
            } else {
                "evicted"
            };
            for d in &plan.evict {
                println!("{verb} {d}");
            }
            println!(
                "{} blobs, {} bytes stored; {verb} {} blobs, {} bytes",
                plan.objects,
                plan.total,
                plan.evict.len(),
                plan.freed
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("oci-cache gc: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("oci-cache gc: {e}");
            ExitCode::FAILURE
        }
    }
}

fn verify(args: &VerifyArgs) -> ExitCode {
    init_logs(false);
    let run = async {
        let mut config = args.source.load()?;
        if let Some(dir) = &args.data_dir {
            config.data_dir.clone_from(dir);
        }
        let (blobs, _) = open_storage(&config).await?;
        let report = verify_blobs(blobs.as_ref(), args.remove).await?;
        Ok::<_, Box<dyn std::error::Error>>(report)
    };
    let report = match tokio::runtime::Runtime::new().map(|rt| rt.block_on(run)) {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            eprintln!("oci-cache verify: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("oci-cache verify: {e}");
            return ExitCode::FAILURE;
        }
    };
    for d in &report.corrupt {
        println!("corrupt {d}{}", if args.remove { " (removed)" } else { "" });
    }
    println!(
        "checked {} blobs, {} bytes: {} corrupt, {} removed",
        report.checked,
        report.bytes,
        report.corrupt.len(),
        report.removed
    );
    if report.corrupt.len() as u64 > report.removed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_client_config(args: &ClientConfigArgs) -> ExitCode {
    let kind = match args.client.as_str() {
        "containerd" => ClientKind::Containerd,
        "k3s" => ClientKind::K3s,
        "docker" => ClientKind::Docker,
        _ => ClientKind::Podman,
    };
    match args.source.load() {
        Ok(config) => {
            print!("{}", render(kind, &args.cache_url, &config.upstreams));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oci-cache: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = args.source.load()?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let access = config.access_policy()?;
    let upstreams = Arc::new(Upstreams::new(config.upstream_configs()?)?);
    let (blobs, tags) = open_storage(&config).await?;
    let spool_dir = config.data_dir.join("spool");
    std::fs::create_dir_all(&spool_dir)?;
    let engine_config = EngineConfig {
        spool_dir,
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(blobs, tags, engine_config));
    let policy = config.gc.policy()?;
    spawn_gc(Arc::clone(&engine), policy, config.gc.interval());
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        upstreams = ?upstreams.all().iter().map(|u| u.name().to_owned()).collect::<Vec<_>>(),
        "oci-cache listening"
    );
    let service = CacheService::new(engine, upstreams).with_access(access);
    serve_with_limit(listener, service, config.max_connections, shutdown_signal()).await?;
    Ok(())
}

/// The configured storage: S3 when `storage` names a bucket, else the filesystem.
async fn open_storage(
    config: &Config,
) -> Result<(Arc<dyn BlobStore>, Arc<dyn TagStore>), Box<dyn std::error::Error>> {
    match config.storage.as_deref() {
        None => {
            let store = Arc::new(FsStore::open(config.data_dir.join("store")).await?);
            Ok((store.clone(), store))
        }
        #[cfg(feature = "s3")]
        Some(url) => {
            let store = Arc::new(oci_cache_storage::s3::S3Store::from_url(url)?);
            tracing::info!(storage = url, "blobs and tags in S3");
            Ok((store.clone(), store))
        }
        #[cfg(not(feature = "s3"))]
        Some(url) => Err(format!("storage {url:?} needs the s3 feature").into()),
    }
}

/// Runs an eviction pass every `interval` while the cache serves.
fn spawn_gc(
    engine: Arc<Engine>,
    policy: oci_cache_core::gc::GcPolicy,
    interval: std::time::Duration,
) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = engine.collect_garbage(&policy, false).await {
                tracing::warn!(error = %e, "eviction pass failed");
            }
            tokio::time::sleep(interval).await;
        }
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
