//! The storage limit held at fill time: a fill asks for room before it stores. When the
//! stored bytes, the fills already admitted and this one would pass the high watermark, it
//! wakes the eviction loop ([`Engine::evict_forever`](crate::Engine::evict_forever)) and
//! waits for its pass (one pass at a time, shared by every fill waiting); a fill that still
//! does not fit under `max_bytes` is served without being stored, and counted.
//!
//! The stored figure is the last pass's listing, plus what was committed since, minus
//! what was evicted: true between passes without a listing per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::stats::EngineStats;

/// How long a fill waits for the eviction pass it asked for, at most.
const PASS_WAIT: Duration = Duration::from_secs(60);

/// The limit as the eviction loop set it.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max: u64,
    high: u64,
}

/// The engine's storage limit state.
#[derive(Debug)]
pub(crate) struct Limit {
    stats: Arc<EngineStats>,
    bounds: Mutex<Option<Bounds>>,
    /// Bytes of fills admitted and not yet committed or given up.
    reserved: Mutex<u64>,
    /// Bytes of fills waiting for a pass.
    wanted: AtomicU64,
    wake: Notify,
    passes: watch::Sender<u64>,
}

/// Room one fill holds until it commits (counted as stored) or ends (released).
#[derive(Debug)]
pub(crate) struct Reservation {
    limit: Arc<Limit>,
    size: u64,
}

impl Reservation {
    /// The fill committed its blob of `size` bytes: they are stored now.
    pub(crate) fn stored(self, size: u64) {
        self.limit.committed(size);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut r = self.limit.reserved.lock();
        *r = r.saturating_sub(self.size);
    }
}

impl Limit {
    pub(crate) fn new(stats: Arc<EngineStats>) -> Self {
        Self {
            stats,
            bounds: Mutex::new(None),
            reserved: Mutex::new(0),
            wanted: AtomicU64::new(0),
            wake: Notify::new(),
            passes: watch::channel(0).0,
        }
    }

    /// Sets the limit (by the eviction loop, which then answers the wake-ups).
    #[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)] // byte counts well below 2^52
    pub(crate) fn set(&self, max: Option<u64>, high_watermark: f64) {
        *self.bounds.lock() = max.map(|max| Bounds {
            max,
            high: (max as f64 * high_watermark) as u64,
        });
    }

    /// The limit and its high watermark, when the eviction loop holds one.
    pub(crate) fn bounds(&self) -> Option<(u64, u64)> {
        self.bounds.lock().map(|b| (b.max, b.high))
    }

    /// Bytes admitted and not yet stored, plus bytes waiting for room: what a pass must
    /// leave room for.
    pub(crate) fn incoming(&self) -> u64 {
        *self.reserved.lock() + self.wanted.load(Ordering::Acquire)
    }

    /// Counts a committed blob that held no reservation (a manifest).
    pub(crate) fn committed(&self, size: u64) {
        EngineStats::add(&self.stats.stored_bytes, size);
        EngineStats::add(&self.stats.stored_objects, 1);
    }

    /// The wake-up the eviction loop waits for.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Says a pass has ended (stored figures updated).
    pub(crate) fn pass_done(&self) {
        self.passes.send_modify(|n| *n += 1);
    }

    /// Room for a blob of `size` bytes (`None`: unknown), or `None` when it must be served
    /// without being stored.
    pub(crate) async fn admit(self: &Arc<Self>, size: Option<u64>) -> Option<Reservation> {
        let size = size.unwrap_or(0);
        let Some(bounds) = *self.bounds.lock() else {
            return Some(self.reserve(size));
        };
        if size > bounds.max {
            return None;
        }
        if let Some(r) = self.try_reserve(size, bounds.high) {
            return Some(r);
        }
        // Over the high watermark: ask for a pass (coalesced with any running or asked
        // for), then take what fits under the limit itself.
        let mut passes = self.passes.subscribe();
        let seen = *passes.borrow_and_update();
        self.wanted.fetch_add(size, Ordering::AcqRel);
        self.wake.notify_one();
        let _ = tokio::time::timeout(PASS_WAIT, passes.wait_for(|n| *n > seen)).await;
        self.wanted.fetch_sub(size, Ordering::AcqRel);
        self.try_reserve(size, bounds.max)
    }

    /// Reserves `size` if the stored bytes and the reservations stay within `bound`.
    fn try_reserve(self: &Arc<Self>, size: u64, bound: u64) -> Option<Reservation> {
        let mut reserved = self.reserved.lock();
        let stored = self.stats.stored_bytes.load(Ordering::Acquire);
        if stored.saturating_add(*reserved).saturating_add(size) > bound {
            return None;
        }
        *reserved += size;
        Some(Reservation {
            limit: Arc::clone(self),
            size,
        })
    }

    fn reserve(self: &Arc<Self>, size: u64) -> Reservation {
        *self.reserved.lock() += size;
        Reservation {
            limit: Arc::clone(self),
            size,
        }
    }
}
