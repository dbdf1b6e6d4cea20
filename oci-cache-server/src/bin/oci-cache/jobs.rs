//! One-shot jobs beside a running cache: prefetch, gc, verify, and printing client config.

use std::process::ExitCode;

use oci_cache_core::{Engine, EngineConfig, Upstreams};
use oci_cache_storage::verify::verify_blobs;

use crate::args::{ClientConfigArgs, GcArgs, HealthcheckArgs, PrefetchArgs, VerifyArgs};
use crate::client_config::{render, ClientKind};
use crate::init_logs;
use crate::prefetch_cmd;
use crate::storage::open_storage_shared;

/// Runs a job's future on a fresh runtime; prints its error as `oci-cache NAME: ...`.
fn block_on<T>(
    name: &str,
    job: impl std::future::Future<Output = Result<T, Box<dyn std::error::Error>>>,
) -> Option<T> {
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| -> Box<dyn std::error::Error> { Box::new(e) })
        .and_then(|rt| rt.block_on(job));
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("oci-cache {name}: {e}");
            None
        }
    }
}

pub(crate) fn prefetch(args: &PrefetchArgs) -> ExitCode {
    init_logs(false);
    let run = async {
        let mut config = args.source.load()?;
        if let Some(dir) = &args.data_dir {
            config.data_dir.clone_from(dir);
        }
        let refs = prefetch_cmd::references(&args.references, args.file.as_deref())?;
        if refs.is_empty() {
            return Err("no image references given".into());
        }
        let upstreams = Upstreams::new(config.upstream_configs()?)?;
        let (blobs, tags) = open_storage_shared(&config).await?;
        let spool_dir = config.data_dir.join("spool");
        std::fs::create_dir_all(&spool_dir)?;
        let mut engine_config = EngineConfig::default();
        engine_config.spool_dir = spool_dir;
        let engine = Engine::new(blobs, tags, engine_config);
        Ok::<_, Box<dyn std::error::Error>>(prefetch_cmd::run(&engine, &upstreams, &refs).await)
    };
    let Some(report) = block_on("prefetch", run) else {
        return ExitCode::FAILURE;
    };
    print!("{}", prefetch_cmd::summary(&report));
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub(crate) fn gc(args: &GcArgs) -> ExitCode {
    init_logs(false);
    let run = async {
        let mut config = args.source.load()?;
        if let Some(dir) = &args.data_dir {
            config.data_dir.clone_from(dir);
        }
        if args.max_bytes.is_some() {
            config.gc.max_bytes = args.max_bytes;
        }
        // Beside running caches on S3, what they read shows only as last access: blobs
        // read within min_idle_secs stay. (A filesystem blob being read stays readable
        // after its file is removed.)
        let policy = if config.storage.is_some() {
            config.gc.shared_policy()?
        } else {
            config.gc.policy()?
        };
        let (blobs, tags) = open_storage_shared(&config).await?;
        let engine = Engine::new(blobs, tags, EngineConfig::default());
        let plan = engine.collect_garbage(&policy, args.dry_run).await?;
        Ok::<_, Box<dyn std::error::Error>>(plan)
    };
    let Some(plan) = block_on("gc", run) else {
        return ExitCode::FAILURE;
    };
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

pub(crate) fn verify(args: &VerifyArgs) -> ExitCode {
    init_logs(false);
    let run = async {
        let mut config = args.source.load()?;
        if let Some(dir) = &args.data_dir {
            config.data_dir.clone_from(dir);
        }
        let (blobs, _) = open_storage_shared(&config).await?;
        let report = verify_blobs(blobs.as_ref(), args.remove).await?;
        Ok::<_, Box<dyn std::error::Error>>(report)
    };
    let Some(report) = block_on("verify", run) else {
        return ExitCode::FAILURE;
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

pub(crate) fn print_client_config(args: &ClientConfigArgs) -> ExitCode {
    let kind = match args.client.as_str() {
        "containerd" => ClientKind::Containerd,
        "k3s" => ClientKind::K3s,
        "rke2" => ClientKind::Rke2,
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

pub(crate) fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
    oci_cache_core::install_crypto_provider();
    let (url, insecure) = match (&args.url, &args.config) {
        (Some(url), _) => (url.clone(), args.insecure),
        (None, Some(path)) => match oci_cache_server::config::Config::from_file(path) {
            Ok(config) => {
                let scheme = if config.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                // A wildcard listener answers on loopback (of its address family).
                let mut addr = config.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(match addr {
                        std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                (
                    format!("{scheme}://{addr}/healthz"),
                    args.insecure || config.tls.is_some(),
                )
            }
            Err(e) => {
                eprintln!("oci-cache healthcheck: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => ("http://127.0.0.1:5000/healthz".to_owned(), args.insecure),
    };
    let run = async move {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .tls_danger_accept_invalid_certs(insecure)
            .build()?;
        let status = client.get(&url).send().await?.status();
        if status == reqwest::StatusCode::OK {
            Ok(())
        } else {
            Err(format!("{url} answered {status}").into())
        }
    };
    match block_on("healthcheck", run) {
        Some(()) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}
