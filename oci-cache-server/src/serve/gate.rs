//! [`Gate`]: the hyper service of one connection. Each request takes one of the listener's
//! connection slots from its head until its response body is finished (or dropped), so
//! only requests being served hold slots, never idle or half-sent connections. Health
//! probes take none. A request finding every slot taken waits for one.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Semaphore;

use super::conn::{ConnState, InRequest, Serving};
use crate::body::{Body, BodyError};
use crate::endpoint::is_probe;
use crate::zero_copy::Sends;
use crate::CacheService;

/// Serves the requests of one connection through `service`, each holding a slot.
pub(super) struct Gate {
    service: CacheService,
    slots: Arc<Semaphore>,
    conn: Arc<ConnState>,
    /// Set on plain TCP connections: blob hits may go out with `sendfile`.
    sends: Option<Sends>,
}

impl Gate {
    pub(super) fn new(service: CacheService, slots: Arc<Semaphore>, conn: Arc<ConnState>) -> Self {
        Self {
            service,
            slots,
            conn,
            sends: None,
        }
    }

    /// Lets this connection's blob hits go out zero-copy through `sends`.
    pub(super) fn with_sends(mut self, sends: Sends) -> Self {
        self.sends = Some(sends);
        self
    }
}

impl<B: Send + 'static> hyper::service::Service<Request<B>> for Gate {
    type Response = Response<Held>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Held>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<B>) -> Self::Future {
        // The request's duration counts from here: its wait for a slot is part of it.
        let arrived = Instant::now();
        if let Some(sends) = &self.sends {
            req.extensions_mut().insert(sends.clone());
        }
        // Counted at once, before the response future first runs: the read side stops
        // its header deadline as soon as the head is in.
        let busy = InRequest::begin(&self.conn);
        let (service, slots, conn) = (
            self.service.clone(),
            Arc::clone(&self.slots),
            Arc::clone(&self.conn),
        );
        Box::pin(async move {
            let serving = if is_probe(req.uri().path()) {
                None
            } else {
                // The semaphore is never closed; were it, the request would go unlimited.
                slots
                    .acquire_owned()
                    .await
                    .ok()
                    .map(|slot| Serving::new(&conn, slot))
            };
            let resp = service.call_request_since(req, arrived).await;
            Ok(resp.map(|body| Held {
                body,
                _serving: serving,
                _busy: busy,
            }))
        })
    }
}

/// A response body that holds its request's slot until it is finished or dropped.
pub(super) struct Held {
    body: Body,
    _serving: Option<Serving>,
    _busy: InRequest,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
