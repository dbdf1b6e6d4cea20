//! Work the engine starts in the background (link records, an index's children): counted,
//! so that a shutdown or a one-shot job can wait until it is done instead of cutting it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The engine's background tasks. Cheap to clone; clones share the count.
#[derive(Debug, Clone, Default)]
pub(crate) struct Background {
    running: Arc<AtomicUsize>,
}

/// Counts one task until dropped.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Background {
    /// Runs `task` in its own task, counted until it ends (or is cancelled).
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(Arc::clone(&self.running));
        tokio::spawn(async move {
            let _running = running;
            task.await;
        });
    }

    /// Tasks running now.
    pub(crate) fn len(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }
}
