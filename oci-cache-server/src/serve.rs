//! Accepting connections and serving [`CacheService`] on them, over plain HTTP or TLS,
//! with connection limits, timeouts and graceful shutdown.
//!
//! A client that connects and sends nothing, half a head, or stops reading its response
//! holds nothing for long: request slots are taken per request being served ([`gate`]),
//! deadlines close silent, slow and stalled connections ([`deadline`]), and the open
//! connections are capped, the longest unserved one closed to make room ([`conn`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::zero_copy::ZeroCopyIo;
use crate::CacheService;

mod conn;
mod deadline;
mod gate;

use conn::{Connections, Place};
use deadline::{Guarded, Timeouts};
use gate::Gate;

/// How long in-flight requests may run after shutdown is asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head (request line and headers) read; a larger one is refused.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How [`serve_with`] serves. Build it from [`ServeOptions::default`] and change the fields
/// you need (`ServeOptions { max_connections: 64, ..ServeOptions::default() }`).
///
/// A connection holds a slot only while a request on it is being served (from its head to
/// the end of its response body); idle and half-sent connections hold none and are closed
/// by the timeouts. `/healthz` and `/readyz` are answered without a slot.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Requests served at once (at least 1); a further request waits for a slot.
    /// Default 1024.
    pub max_connections: usize,
    /// Client connections open at once, served or not. When reached, the connection that
    /// has gone unserved the longest (idle, half-sent, waiting for a slot) is closed to make
    /// room for a new one. `None` (the default): 4 times `max_connections`. Raised to
    /// `max_connections + 1` when lower. Each connection is a file descriptor: keep it well
    /// below the process's limit (`ulimit -n`).
    pub max_open_connections: Option<usize>,
    /// Time a client has to send a complete request head: from the accept for the first
    /// request (TLS handshake included), from its first byte for each later one. Default
    /// 20 s. Zero counts as 1 s.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may stay silent between requests. Default 75 s. Zero
    /// counts as 1 s.
    pub idle_timeout: Duration,
    /// Time a response write may make no progress (the client stopped reading) before the
    /// connection is closed; a slow reader that keeps reading is never cut. Default 60 s.
    /// Zero counts as 1 s.
    pub stalled_write_timeout: Duration,
    /// TLS settings (see [`ReloadingCert::server_config`](crate::tls::ReloadingCert::server_config));
    /// `None` (the default) serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Send cached blobs of 64 KiB or more with `sendfile` on plain HTTP connections
    /// (default on; see ARCHITECTURE.md, "Zero-copy hits").
    pub zero_copy: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_open_connections: None,
            header_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(75),
            stalled_write_timeout: Duration::from_secs(60),
            tls: None,
            zero_copy: true,
        }
    }
}

impl ServeOptions {
    /// The open-connection cap in force: as configured (or 4 times the slots), and above
    /// the slots so that an unserved connection can always be closed to make room.
    #[must_use]
    pub fn effective_max_open_connections(&self) -> usize {
        let slots = self.max_connections.max(1);
        self.max_open_connections
            .unwrap_or(slots.saturating_mul(4))
            .max(slots.saturating_add(1))
    }

    fn timeouts(&self) -> Timeouts {
        let at_least_1s = |d: Duration| {
            if d.is_zero() {
                Duration::from_secs(1)
            } else {
                d
            }
        };
        Timeouts {
            header: at_least_1s(self.header_timeout),
            idle: at_least_1s(self.idle_timeout),
            stalled_write: at_least_1s(self.stalled_write_timeout),
        }
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish (bounded by 30 s). The limits and timeouts of [`ServeOptions::default`], plain HTTP.
pub async fn serve(
    listener: TcpListener,
    service: CacheService,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, service, ServeOptions::default(), shutdown).await
}

/// As [`serve`], with at most `max_connections` requests served at once.
pub async fn serve_with_limit(
    listener: TcpListener,
    service: CacheService,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let options = ServeOptions {
        max_connections,
        ..ServeOptions::default()
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
    let conns = Connections::new(options.effective_max_open_connections());
    let timeouts = options.timeouts();
    let zero_copy = options.zero_copy;
    let tls = options.tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let accepted = Instant::now();
        let place = tokio::select! {
            place = conns.admit() => place,
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let new = NewConnection {
            peer,
            accepted,
            timeouts,
            gate: Gate::new(
                service.clone(),
                Arc::clone(&slots),
                Arc::clone(place.state()),
            ),
            watcher: graceful.watcher(),
            place,
        };
        match &tls {
            None if zero_copy => {
                let (io, sends) = ZeroCopyIo::new(stream);
                let new = NewConnection {
                    gate: new.gate.with_sends(sends),
                    ..new
                };
                tokio::spawn(new.serve(io));
            }
            None => {
                tokio::spawn(new.serve(stream));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let deadline = new.accepted + new.timeouts.header;
                    let state = Arc::clone(new.place.state());
                    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream));
                    let peer = new.peer;
                    tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(stream)) => new.serve(stream).await,
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        },
                        () = state.closing() => tracing::debug!(%peer, "closed during the TLS handshake to make room"),
                    }
                });
            }
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

/// An accepted connection, with everything needed to serve it.
struct NewConnection {
    peer: SocketAddr,
    accepted: Instant,
    timeouts: Timeouts,
    gate: Gate,
    watcher: Watcher,
    place: Place,
}

impl NewConnection {
    /// Serves the connection until it closes, times out or is asked to make room; gives
    /// its place back then.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            peer,
            accepted,
            timeouts,
            gate,
            watcher,
            place,
        } = self;
        let state = Arc::clone(place.state());
        let io = Guarded::new(stream, Arc::clone(&state), timeouts, accepted);
        // hyper's header_read_timeout is off (it would also bound keep-alive idle time, see
        // deadline.rs); the deadlines are in `Guarded`.
        // Vectored writes always: zero-copy bodies rely on hyper never copying a body into
        // its own buffer (see zero_copy.rs).
        let conn = http1::Builder::new()
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES)
            .writev(true)
            .serve_connection(TokioIo::new(io), gate);
        tokio::select! {
            ended = watcher.watch(conn) => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            () = state.closing() => {
                tracing::debug!(%peer, "connection closed to make room for a new one");
            }
        }
        drop(place);
    }
}
