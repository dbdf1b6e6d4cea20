//! The one single-flight mechanism of the engine: at most one piece of work per key runs at
//! a time, and every caller with that key shares it through a handle.
//!
//! [`Flights`] is the map of running work. The first caller of a key becomes its leader
//! and holds a [`Lease`]; the key is free again when the lease is dropped, however the work
//! ends (finished, failed, cancelled, panicked). Fills (`fill.rs`) keep a handle on a
//! download that runs in its own task; [`SingleFlight`] runs a future in the leader's task
//! and hands its result to the callers that joined.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

/// Work running now, by key, each with the handle its joiners get.
#[derive(Debug)]
pub(crate) struct Flights<K, H> {
    running: Arc<Mutex<HashMap<K, H>>>,
}

impl<K, H> Default for Flights<K, H> {
    fn default() -> Self {
        Self {
            running: Arc::default(),
        }
    }
}

/// How a caller came to a key: it joined running work, or leads new work.
pub(crate) enum Flight<K: Eq + Hash, H, T> {
    /// Work with this key runs already; here is its handle.
    Joined(H),
    /// This caller leads: `T` is what `start` made besides the handle; the key stays taken
    /// until the lease is dropped.
    Leads(H, T, Lease<K, H>),
}

impl<K: Eq + Hash + Clone, H: Clone> Flights<K, H> {
    /// Number of keys with running work.
    pub(crate) fn len(&self) -> usize {
        self.running.lock().len()
    }

    /// Every key with running work, and its handle.
    pub(crate) fn all(&self) -> Vec<(K, H)> {
        self.running
            .lock()
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect()
    }

    /// The handle of the work running for `key`, if any.
    pub(crate) fn get(&self, key: &K) -> Option<H> {
        self.running.lock().get(key).cloned()
    }

    /// Joins the work running for `key`, or, when none runs, registers the handle that
    /// `start` makes and returns the caller's lease (with what else `start` made).
    pub(crate) fn join_or_lead<T>(
        &self,
        key: K,
        start: impl FnOnce() -> (H, T),
    ) -> Flight<K, H, T> {
        let mut running = self.running.lock();
        if let Some(handle) = running.get(&key) {
            return Flight::Joined(handle.clone());
        }
        let (handle, extra) = start();
        running.insert(key.clone(), handle.clone());
        Flight::Leads(
            handle,
            extra,
            Lease {
                running: Arc::clone(&self.running),
                key,
            },
        )
    }
}

/// The leader's hold on a key. Dropping it frees the key.
pub(crate) struct Lease<K: Eq + Hash, H> {
    running: Arc<Mutex<HashMap<K, H>>>,
    key: K,
}

impl<K: Eq + Hash, H> Drop for Lease<K, H> {
    fn drop(&mut self) {
        self.running.lock().remove(&self.key);
    }
}

/// Coalesces concurrent calls by key; used for tag and tag-list revalidation (one upstream
/// request for a burst of clients).
pub(crate) type SingleFlight<K, V> = Flights<K, watch::Receiver<Option<V>>>;

impl<K: Eq + Hash + Clone, V: Clone> Flights<K, watch::Receiver<Option<V>>> {
    /// Runs `f` unless a call with `key` is running; then waits for that call's result. If
    /// the running call is cancelled (its client left), a waiter runs `f` itself.
    pub(crate) async fn run<F, Fut>(&self, key: K, f: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        match self.join_or_lead(key, || {
            let (tx, rx) = watch::channel(None);
            (rx, tx)
        }) {
            Flight::Leads(_, tx, lease) => {
                let value = f().await;
                tx.send_replace(Some(value.clone()));
                drop(lease);
                value
            }
            Flight::Joined(mut rx) => loop {
                let current = rx.borrow_and_update().clone();
                if let Some(v) = current {
                    return v;
                }
                if rx.changed().await.is_err() {
                    let last = rx.borrow().clone();
                    return match last {
                        Some(v) => v,
                        None => f().await,
                    };
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::sync::{oneshot, Notify};

    #[tokio::test]
    async fn concurrent_calls_share_one_run() {
        let sf = Arc::new(SingleFlight::<&str, u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        // The leader runs until released, so every caller below finds it running.
        let leader = {
            let (sf, runs, release) = (sf.clone(), runs.clone(), release.clone());
            tokio::spawn(async move {
                sf.run("k", || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    7
                })
                .await
            })
        };
        while sf.len() == 0 {
            tokio::task::yield_now().await;
        }
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (sf, runs) = (sf.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                sf.run("k", || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    8
                })
                .await
            }));
        }
        release.notify_one();
        assert_eq!(leader.await.unwrap(), 7);
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(sf.len(), 0, "the key is free once the leader is done");
        assert_eq!(
            sf.run("k", || async { 8 }).await,
            8,
            "a later call runs again"
        );
    }

    #[tokio::test]
    async fn a_cancelled_leader_lets_a_waiter_run() {
        let sf = Arc::new(SingleFlight::<&str, u32>::default());
        let (started_tx, started) = oneshot::channel();
        let leader = {
            let sf = sf.clone();
            tokio::spawn(async move {
                sf.run("k", || async move {
                    let _ = started_tx.send(());
                    std::future::pending::<u32>().await
                })
                .await
            })
        };
        started.await.unwrap();
        let waiter = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", || async { 3 }).await })
        };
        // On this single-threaded runtime, yielding lets the waiter run until it waits on
        // the leader.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        assert_eq!(waiter.await.unwrap(), 3);
        assert_eq!(sf.len(), 0);
    }

    #[test]
    fn a_dropped_lease_frees_its_key() {
        let flights = Flights::<u8, u8>::default();
        let Flight::Leads(h, (), lease) = flights.join_or_lead(1, || (5, ())) else {
            panic!("the first caller leads");
        };
        assert_eq!(h, 5);
        assert!(matches!(
            flights.join_or_lead(1, || (6, ())),
            Flight::Joined(5)
        ));
        assert_eq!(flights.get(&1), Some(5));
        drop(lease);
        assert_eq!(flights.len(), 0);
        assert!(matches!(
            flights.join_or_lead(1, || (6, ())),
            Flight::Leads(6, (), _)
        ));
    }
}
