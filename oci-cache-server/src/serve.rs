//! Accepting connections and serving [`CacheService`] on them, over plain HTTP or TLS,
//! with a connection limit and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::CacheService;

/// How long in-flight requests may run after shutdown is asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head (request line and headers) read; a larger one is refused.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Time a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How [`serve_with`] serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Client connections served at once (at least 1); further ones wait in the listen
    /// queue until a connection closes. Default 1024.
    pub max_connections: usize,
    /// TLS settings (see [`ReloadingCert::server_config`](crate::tls::ReloadingCert::server_config));
    /// `None` (the default) serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            tls: None,
        }
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish (bounded by 30 s). At most 1024 connections at once, plain HTTP.
pub async fn serve(
    listener: TcpListener,
    service: CacheService,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, service, ServeOptions::default(), shutdown).await
}

/// As [`serve`], with at most `max_connections` client connections at once.
pub async fn serve_with_limit(
    listener: TcpListener,
    service: CacheService,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let options = ServeOptions {
        max_connections,
        tls: None,
    };
    serve_with(listener, service, options, shutdown).await
}

/// As [`serve`], with the given [`ServeOptions`].
pub async fn serve_with(
    listener: TcpListener,
    service: CacheService,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let tls = options.tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (service, watcher) = (service.clone(), graceful.watcher());
                match &tls {
                    None => {
                        tokio::spawn(connection(stream, peer, service, watcher, slot));
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => connection(stream, peer, service, watcher, slot).await,
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down; draining in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
    Ok(())
}

/// Serves one client connection until it closes; frees its slot then.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    service: CacheService,
    watcher: Watcher,
    slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    drop(slot);
}
