//! What the accept loop, the IO wrapper ([`super::deadline`]) and the request gate
//! ([`super::gate`]) know of each open connection, and the hard cap on open connections:
//! when it is reached, the connection that has gone unserved the longest is closed to make
//! room, so a newly connecting client (a health probe) is always accepted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The shared state of one connection.
pub(super) struct ConnState {
    /// When the registry started (the origin of `last_active_ms`).
    origin: Instant,
    /// Requests whose head has arrived and whose response is not finished.
    in_request: AtomicUsize,
    /// Bumped each time `in_request` drops to 0.
    finished: AtomicU64,
    /// Connection slots held (requests being served).
    serving: AtomicUsize,
    /// When the connection was accepted or last finished a request (ms since `origin`).
    last_active_ms: AtomicU64,
    /// Woken when the connection goes idle, so the read side starts the idle deadline.
    read_waker: AtomicWaker,
    /// Set once the accept loop has asked the connection to close.
    shed: AtomicBool,
    /// Notified when the accept loop needs the connection's place.
    close: Notify,
}

impl ConnState {
    fn new(origin: Instant) -> Self {
        let state = Self {
            origin,
            in_request: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
            serving: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            read_waker: AtomicWaker::new(),
            shed: AtomicBool::new(false),
            close: Notify::new(),
        };
        state.touch();
        state
    }

    /// Whether a request is in progress (head received, response not finished).
    pub(super) fn in_request(&self) -> bool {
        self.in_request.load(Ordering::Acquire) > 0
    }

    /// How many requests have finished with none left in progress (a counter).
    pub(super) fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    /// Registers the waker to wake when the connection goes idle.
    pub(super) fn wake_on_idle(&self, waker: &std::task::Waker) {
        self.read_waker.register(waker);
    }

    /// Completes when the accept loop asks the connection to close.
    pub(super) async fn closing(&self) {
        self.close.notified().await;
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::Release);
    }
}

/// A request in progress on a connection, from its head to the end (or drop) of its
/// response body.
pub(super) struct InRequest(Arc<ConnState>);

impl InRequest {
    pub(super) fn begin(state: &Arc<ConnState>) -> Self {
        state.in_request.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(state))
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        if self.0.in_request.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.touch();
            self.0.finished.fetch_add(1, Ordering::AcqRel);
            self.0.read_waker.wake();
        }
    }
}

/// A connection slot held by a request being served.
pub(super) struct Serving {
    state: Arc<ConnState>,
    _slot: OwnedSemaphorePermit,
}

impl Serving {
    pub(super) fn new(state: &Arc<ConnState>, slot: OwnedSemaphorePermit) -> Self {
        state.serving.fetch_add(1, Ordering::AcqRel);
        Self {
            state: Arc::clone(state),
            _slot: slot,
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.state.serving.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections of one listener, at most a fixed number.
pub(super) struct Connections {
    origin: Instant,
    open: Arc<Semaphore>,
    next_id: AtomicU64,
    all: Mutex<HashMap<u64, Arc<ConnState>>>,
}

/// A connection's place among the open ones; given back on drop.
pub(super) struct Place {
    id: u64,
    state: Arc<ConnState>,
    conns: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Place {
    /// The connection's shared state.
    pub(super) fn state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.conns.all.lock().remove(&self.id);
    }
}

impl Connections {
    /// Room for `max_open` connections (at least 1).
    pub(super) fn new(max_open: usize) -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            open: Arc::new(Semaphore::new(max_open.max(1))),
            next_id: AtomicU64::new(0),
            all: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection just accepted: at once while fewer than the maximum are
    /// open; else the connection unserved the longest is asked to close and its place is
    /// taken when it has. Waits (without closing more) while every open connection holds a
    /// slot, which [`super::ServeOptions`] rules out by keeping the maximum above the slots.
    pub(super) async fn admit(self: &Arc<Self>) -> Place {
        let permit = if let Ok(permit) = Arc::clone(&self.open).try_acquire_owned() {
            permit
        } else {
            if !self.shed_one() {
                tracing::debug!("every open connection is being served; waiting for one to end");
            }
            // The semaphore is never closed.
            match Arc::clone(&self.open).acquire_owned().await {
                Ok(permit) => permit,
                Err(_) => std::future::pending().await,
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::new(self.origin));
        self.all.lock().insert(id, Arc::clone(&state));
        Place {
            id,
            state,
            conns: Arc::clone(self),
            _permit: permit,
        }
    }

    /// Asks one connection that holds no slot to close: an idle or half-sent one first,
    /// the one unserved the longest; else one waiting for a slot or answering a probe.
    /// Returns whether one was found.
    fn shed_one(&self) -> bool {
        let all = self.all.lock();
        // Ties (the same millisecond) go to the earlier accepted.
        let victim = all
            .iter()
            .filter(|(_, s)| {
                s.serving.load(Ordering::Acquire) == 0 && !s.shed.load(Ordering::Acquire)
            })
            .min_by_key(|(id, s)| {
                let last_active = s.last_active_ms.load(Ordering::Acquire);
                (s.in_request(), last_active, **id)
            });
        match victim {
            Some((_, state)) => {
                state.shed.store(true, Ordering::Release);
                state.close.notify_one();
                tracing::debug!("open-connection limit reached; closing an unserved connection");
                true
            }
            None => false,
        }
    }
}
