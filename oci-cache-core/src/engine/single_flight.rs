//! One computation per key at a time: the first caller runs it, concurrent callers with the
//! same key wait for its result. Used for tag revalidation (one upstream HEAD for a burst).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::watch;

/// Coalesces concurrent calls by key.
#[derive(Debug)]
pub(crate) struct SingleFlight<K, V> {
    inflight: Mutex<HashMap<K, watch::Receiver<Option<V>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    /// Runs `f` unless a call with `key` is running; then waits for that call's result. If
    /// the running call is cancelled (its client left), a waiter runs `f` itself.
    pub(crate) async fn run<F, Fut>(&self, key: K, f: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let joined = {
            let Ok(mut map) = self.inflight.lock() else {
                return f().await;
            };
            if let Some(rx) = map.get(&key) {
                Err(rx.clone())
            } else {
                let (tx, rx) = watch::channel(None);
                map.insert(key.clone(), rx);
                Ok(tx)
            }
        };
        match joined {
            Ok(tx) => {
                let _guard = Remove {
                    map: &self.inflight,
                    key,
                };
                let value = f().await;
                tx.send_replace(Some(value.clone()));
                value
            }
            Err(mut rx) => loop {
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

/// Removes the key when the leading call ends, however it ends.
struct Remove<'a, K: Eq + Hash, V> {
    map: &'a Mutex<HashMap<K, watch::Receiver<Option<V>>>>,
    key: K,
}

impl<K: Eq + Hash, V> Drop for Remove<'_, K, V> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_calls_share_one_run() {
        let sf = Arc::new(SingleFlight::<&str, u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (sf, runs) = (sf.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                sf.run("k", || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    7
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(
            sf.run("k", || async { 8 }).await,
            8,
            "a later call runs again"
        );
    }

    #[tokio::test]
    async fn a_cancelled_leader_lets_a_waiter_run() {
        let sf = Arc::new(SingleFlight::<&str, u32>::default());
        let leader = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", std::future::pending::<u32>).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", || async { 3 }).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        assert_eq!(waiter.await.unwrap(), 3);
    }
}
