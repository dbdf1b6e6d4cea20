//! The storage limit held at fill time: a fill asks for room before it stores. Room is
//! there when the stored bytes, the fills already admitted and this one stay within
//! `max_bytes`; past the high watermark the fill also wakes the eviction loop
//! ([`Engine::evict_forever`](crate::Engine::evict_forever)), whose pass (one at a time,
//! spaced out) makes room. A fill without room waits for that pass, [`ADMIT_WAIT`] at most
//! (it holds a fill slot and an upstream response meanwhile), then asks once more; still
//! without room it is served without being stored, and counted, as on a full disk. Until
//! the first pass has listed storage, the stored bytes are unknown and a fill under a limit
//! is not stored.
//!
//! The stored figure is the last listing plus what was committed since it began (a commit
//! during a listing may be counted twice: an overcount, on the safe side), minus what was
//! evicted: true between passes without a listing per request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::stats::EngineStats;

/// How long a fill without room waits for the eviction pass it woke.
pub(crate) const ADMIT_WAIT: Duration = Duration::from_secs(2);

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
    /// Bytes and blobs committed since the running listing began.
    since_listing: Mutex<(u64, u64)>,
    /// Whether a listing has given the stored figure yet.
    listed: AtomicBool,
    /// Bytes of fills waiting for a pass to make room.
    wanted: AtomicU64,
    wake: Notify,
    /// Passes ended so far.
    passes: watch::Sender<u64>,
}

/// Counts a fill's bytes as waiting for room until dropped (however the wait ends).
struct Wanting<'a> {
    limit: &'a Limit,
    size: u64,
}

impl Drop for Wanting<'_> {
    fn drop(&mut self) {
        self.limit.wanted.fetch_sub(self.size, Ordering::AcqRel);
    }
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
            since_listing: Mutex::new((0, 0)),
            listed: AtomicBool::new(false),
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

    /// Bytes admitted and not yet stored, and bytes waiting for room: what a pass leaves
    /// room for.
    pub(crate) fn incoming(&self) -> u64 {
        *self.reserved.lock() + self.wanted.load(Ordering::Acquire)
    }

    /// Says a pass has ended (its figures are in).
    pub(crate) fn pass_done(&self) {
        self.passes.send_modify(|n| *n += 1);
    }

    /// Counts a committed blob (with or without a reservation), and wakes a pass when the
    /// store is now past the high watermark.
    pub(crate) fn committed(&self, size: u64) {
        {
            let mut since = self.since_listing.lock();
            since.0 += size;
            since.1 += 1;
        }
        EngineStats::add(&self.stats.stored_bytes, size);
        EngineStats::add(&self.stats.stored_objects, 1);
        if let Some(b) = *self.bounds.lock() {
            if self.stats.stored_bytes.load(Ordering::Acquire) > b.high {
                self.wake.notify_one();
            }
        }
    }

    /// A listing begins: commits from now on are added to what it finds.
    pub(crate) fn listing_started(&self) {
        *self.since_listing.lock() = (0, 0);
    }

    /// A listing found `bytes` in `objects` blobs: the stored figure is that, plus what
    /// was committed while it ran.
    pub(crate) fn listed(&self, bytes: u64, objects: u64) {
        let (more_bytes, more_objects) = *self.since_listing.lock();
        EngineStats::set(&self.stats.stored_bytes, bytes + more_bytes);
        EngineStats::set(&self.stats.stored_objects, objects + more_objects);
        self.listed.store(true, Ordering::Release);
    }

    /// A pass deleted a blob of `size` bytes.
    pub(crate) fn evicted(&self, size: u64) {
        let sub = |c: &AtomicU64, n: u64| {
            let _ = c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub(&self.stats.stored_bytes, size);
        sub(&self.stats.stored_objects, 1);
    }

    /// The wake-up the eviction loop waits for.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Room for a blob of `size` bytes (`None`: unknown), or `None` when it must be served
    /// without being stored. Waits [`ADMIT_WAIT`] at most, for the pass it woke.
    pub(crate) async fn admit(self: &Arc<Self>, size: Option<u64>) -> Option<Reservation> {
        let size = size.unwrap_or(0);
        let Some(bounds) = *self.bounds.lock() else {
            return Some(self.reserve_unchecked(size));
        };
        if size > bounds.max || !self.listed.load(Ordering::Acquire) {
            return None;
        }
        let mut passes = self.passes.subscribe();
        let seen = *passes.borrow_and_update();
        if let Some(room) = self.try_reserve(size, bounds) {
            return Some(room);
        }
        self.wanted.fetch_add(size, Ordering::AcqRel);
        let _wanting = Wanting { limit: self, size };
        self.wake.notify_one();
        let _ = tokio::time::timeout(ADMIT_WAIT, passes.wait_for(|n| *n > seen)).await;
        self.try_reserve(size, bounds)
    }

    /// Reserves `size` if it fits under the limit (waking a pass past the high watermark).
    fn try_reserve(self: &Arc<Self>, size: u64, bounds: Bounds) -> Option<Reservation> {
        let mut reserved = self.reserved.lock();
        let stored = self.stats.stored_bytes.load(Ordering::Acquire);
        let after = stored.saturating_add(*reserved).saturating_add(size);
        if after > bounds.high {
            self.wake.notify_one();
        }
        if after > bounds.max {
            return None;
        }
        *reserved += size;
        Some(Reservation {
            limit: Arc::clone(self),
            size,
        })
    }

    fn reserve_unchecked(self: &Arc<Self>, size: u64) -> Reservation {
        *self.reserved.lock() += size;
        Reservation {
            limit: Arc::clone(self),
            size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_given_under_the_limit_only_once_storage_was_listed() {
        let limit = Arc::new(Limit::new(Arc::default()));
        assert!(
            limit.admit(Some(10)).await.is_some(),
            "no limit: always room"
        );
        limit.set(Some(100), 0.9);
        assert!(limit.admit(Some(10)).await.is_none(), "not listed yet");
        limit.listing_started();
        limit.listed(50, 5);
        let a = limit.admit(Some(30)).await.expect("50 + 30 fits");
        assert!(
            limit.admit(Some(30)).await.is_none(),
            "50 + 30 + 30 > 100, no pass ran"
        );
        assert_eq!(
            limit.incoming(),
            30,
            "the waiting fill is no longer counted"
        );
        assert!(
            limit.admit(Some(101)).await.is_none(),
            "larger than the limit"
        );
        a.stored(30);
        assert_eq!(limit.stats.stored_bytes.load(Ordering::Acquire), 80);
        assert_eq!(limit.incoming(), 0);
        limit.evicted(70);
        assert!(limit.admit(Some(90)).await.is_some());
        // A fill without room gets it when the pass it woke frees some in time.
        let b = limit.admit(Some(60)).await.expect("10 + 60 fits");
        let waiting = {
            let limit = Arc::clone(&limit);
            tokio::spawn(async move { limit.admit(Some(50)).await.is_some() })
        };
        tokio::task::yield_now().await;
        assert_eq!(limit.incoming(), 110, "60 admitted, 50 waiting");
        limit.evicted(10);
        drop(b);
        limit.pass_done();
        assert!(waiting.await.unwrap(), "room after the pass");
        // A listing counts what was committed while it ran.
        limit.listing_started();
        limit.committed(5);
        limit.listed(40, 4);
        assert_eq!(limit.stats.stored_bytes.load(Ordering::Acquire), 45);
    }
}
