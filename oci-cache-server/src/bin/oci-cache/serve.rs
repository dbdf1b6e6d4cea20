//! `oci-cache serve`: storage, engine, eviction schedule, listener, graceful shutdown.

use std::sync::Arc;

use oci_cache_core::{Engine, EngineConfig, Upstreams};
use oci_cache_server::config::TlsSection;
use oci_cache_server::peers::Peers;
use oci_cache_server::tls::ReloadingCert;
use oci_cache_server::{serve_with, CacheService, Role};

use crate::args::ServeArgs;
use crate::storage::open_storage;

pub(crate) async fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = args.source.load()?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if !args.peers.is_empty() {
        config.peers = args.peers;
        config.peers_dns = None;
    }
    if let Some(file) = args.peer_secret_file {
        config.peer_secret_file = Some(file);
    }
    if let Some(url) = args.advertise {
        config.advertise = Some(url);
    }
    if let (Some(cert_file), Some(key_file)) = (args.tls_cert, args.tls_key) {
        let reload_secs = config.tls.as_ref().map_or(30, |t| t.reload_secs);
        config.tls = Some(TlsSection {
            cert_file,
            key_file,
            reload_secs,
        });
    }
    let tls = match &config.tls {
        Some(section) => {
            let cert = ReloadingCert::load(&section.cert_file, &section.key_file)?;
            if let Some(every) = section.reload_interval() {
                cert.watch(every);
            }
            Some(cert.server_config()?)
        }
        None => None,
    };
    let access = config.access_policy()?;
    let upstreams = Arc::new(Upstreams::new(config.upstream_configs()?)?);
    let (blobs, tags) = open_storage(&config).await?;
    let spool_dir = config.data_dir.join("spool");
    std::fs::create_dir_all(&spool_dir).map_err(|e| {
        format!(
            "cannot create the spool directory {}: {e}",
            spool_dir.display()
        )
    })?;
    let mut engine_config = EngineConfig::default();
    engine_config.spool_dir = spool_dir;
    engine_config.touch_every = config
        .gc
        .touch_every()
        .min(std::time::Duration::from_secs(60));
    let engine = Arc::new(Engine::new(blobs, tags, engine_config));
    if let Some(url) = &config.storage {
        tokio::spawn(watch_storage(Arc::clone(&engine), url.clone()));
    }
    let peers = match config.peer_config()? {
        Some(peer_config) => {
            let peers = Peers::new(peer_config)?;
            // Kept running for the process's life (it ends when the peers are dropped).
            let _refresh = peers.refresh().await;
            if !peers.includes_me() {
                tracing::warn!(me = peers.me(), members = ?peers.members(), "this replica is not among its peers: it owns no blob and forwards every miss");
            }
            tracing::info!(me = peers.me(), members = ?peers.members(), "replica of a fleet: misses of blobs other replicas own are forwarded to them");
            Some(peers)
        }
        None => None,
    };
    // Replicas evict from one storage: a blob another replica reads stays.
    let policy = if peers.is_some() {
        config.gc.shared_policy()?
    } else {
        config.gc.policy()?
    };
    spawn_gc(
        Arc::clone(&engine),
        policy,
        config.gc.interval(),
        peers.clone(),
    );
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        upstreams = ?upstreams.all().iter().map(|u| u.name().to_owned()).collect::<Vec<_>>(),
        tls = tls.is_some(),
        "oci-cache listening"
    );
    let mut service = CacheService::new(Arc::clone(&engine), upstreams)
        .with_access(access)
        .with_storage_limit(config.gc.max_bytes);
    if let Some(peers) = peers {
        service = service.with_peers(peers);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut admin_connections = 0;
    let main_service = match config.admin_listen {
        Some(addr) => {
            let admin = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(addr = %admin.local_addr()?, "admin listener (metrics, readiness, status)");
            let admin_service = service.clone().with_role(Role::Admin);
            // The timeouts of [limits]; the open-connection cap of its 64 slots (256).
            let mut options = config.limits.serve_options(64, tls.clone());
            options.max_open_connections = None;
            admin_connections = options.effective_max_open_connections();
            tokio::spawn(serve_with(
                admin,
                admin_service,
                options,
                stopped(stop_rx.clone()),
            ));
            service.with_role(Role::Api)
        }
        None => service,
    };
    let options = config.limits.serve_options(config.max_connections, tls);
    crate::fd_limit::warn_if_low(options.effective_max_open_connections() + admin_connections);
    serve_with(listener, main_service, options, stopped(stop_rx)).await?;
    // Downloads whose clients are gone still commit what they fetched (on S3, the
    // multipart upload completes), so it is a hit after the restart.
    let running = engine.fills_in_flight();
    if running > 0 {
        tracing::info!(running, "waiting for running downloads to finish storing");
        let left = engine.wait_for_fills(FILL_DRAIN).await;
        if left > 0 {
            tracing::warn!(
                left,
                "stopping with downloads still running; they are not stored"
            );
        }
    }
    Ok(())
}

/// Lists the shared storage at start, and says clearly when it cannot be reached (which
/// bucket, which endpoint, why): the cache serves meanwhile (misses pass through, hits
/// fail over to the upstream) and `/readyz` fails until a probe succeeds.
async fn watch_storage(engine: Arc<Engine>, url: String) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS S3".to_owned());
    let mut failed = false;
    loop {
        // A listing: read-only, it leaves nothing in the bucket (/readyz writes a probe).
        let result = match tokio::time::timeout(EVERY, engine.blobs().list(None, 1)).await {
            Ok(r) => r.map(|_| ()).map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", EVERY.as_secs())),
        };
        match result {
            Ok(()) if failed => {
                tracing::info!(storage = %url, %endpoint, "storage reachable now; /readyz passes");
                return;
            }
            Ok(()) => return,
            Err(e) => {
                failed = true;
                tracing::error!(storage = %url, %endpoint, error = %e, "storage cannot be reached (bucket, endpoint and keys from AWS_*); serving, /readyz fails until it can; trying again in 10 s");
                tokio::time::sleep(EVERY).await;
            }
        }
    }
}

/// How long a shutdown waits for running downloads after the connections are drained.
const FILL_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs an eviction pass every `interval` while the cache serves.
fn spawn_gc(
    engine: Arc<Engine>,
    policy: oci_cache_core::gc::GcPolicy,
    interval: std::time::Duration,
    peers: Option<Arc<Peers>>,
) {
    tokio::spawn(async move {
        // With peers, each replica evicts only the blobs it owns.
        let owns = move |d: &oci_cache_core::Digest| {
            peers
                .as_ref()
                .is_none_or(|p| p.owner_elsewhere(d).is_none())
        };
        engine.evict_forever(policy, interval, &owns).await;
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
