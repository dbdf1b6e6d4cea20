//! The `oci-cache` binary: `oci-cache serve` runs the pull-through cache; `prefetch`, `gc`,
//! `verify` and `config` are one-shot jobs beside it; `check` tells what a start would hit.

mod args;
mod check;
mod client_config;
mod fd_limit;
mod jobs;
mod malloc;
mod prefetch_cmd;
mod serve;
mod storage;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use args::{
    CheckArgs, ClientConfigArgs, GcArgs, HealthcheckArgs, PrefetchArgs, ServeArgs, VerifyArgs,
};

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
    /// Print the client configuration (containerd, k3s, rke2, docker, podman) for the configured
    /// upstreams.
    Config(ClientConfigArgs),
    /// Fill the storage with images (every platform) before they are needed; runs against
    /// the storage directly, so it works beside a running cache.
    Prefetch(PrefetchArgs),
    /// Show (with --dry-run) or run one eviction pass with the configured `[gc]` limits.
    Gc(GcArgs),
    /// Re-hash every stored blob; report (or with --remove, delete) those that do not match
    /// their digest. Exits 1 when corrupt blobs remain.
    Verify(VerifyArgs),
    /// Exit 0 when the cache answers its health URL with 200 (for container HEALTHCHECKs).
    Healthcheck(HealthcheckArgs),
    /// Report, line by line, what a start with this configuration would hit: config errors,
    /// storage (put, get, list, delete of a probe), each upstream and its auth, TLS files,
    /// listen addresses. Exits 0 only when all is well.
    Check(CheckArgs),
}

fn main() -> ExitCode {
    malloc::tune();
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Config(args) => return jobs::print_client_config(&args),
        Command::Verify(args) => return jobs::verify(&args),
        Command::Gc(args) => return jobs::gc(&args),
        Command::Prefetch(args) => return jobs::prefetch(&args),
        Command::Healthcheck(args) => return jobs::healthcheck(&args),
        Command::Check(args) => return check::check(&args),
    };
    init_logs(args.log_json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oci-cache: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("oci-cache: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never in a file or a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
