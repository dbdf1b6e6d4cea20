//! One memory budget for all memory spools (the last resort of fills when the disk is
//! full), so that many fills together cannot take more memory than it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The memory every memory spool together may hold.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    used: AtomicU64,
    limit: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
        })
    }

    /// A new holder of nothing yet, drawing on `budget`.
    pub(crate) fn hold(budget: &Arc<Self>) -> Held {
        Held {
            budget: Arc::clone(budget),
            bytes: AtomicU64::new(0),
        }
    }
}

/// What one memory spool holds of the budget; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    budget: Arc<MemoryBudget>,
    bytes: AtomicU64,
}

impl Held {
    /// Takes `n` more bytes if the budget has them.
    pub(crate) fn grow(&self, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n)
                    .filter(|total| *total <= self.budget.limit)
            })
            .is_ok();
        if taken {
            self.bytes.fetch_add(n, Ordering::AcqRel);
        }
        taken
    }

    /// The whole budget's size.
    pub(crate) fn limit(&self) -> u64 {
        self.budget.limit
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = *self.bytes.get_mut();
        self.budget.used.fetch_sub(n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_share_one_budget_and_give_back_on_drop() {
        let budget = MemoryBudget::new(10);
        let a = MemoryBudget::hold(&budget);
        let b = MemoryBudget::hold(&budget);
        assert!(a.grow(6));
        assert!(!b.grow(6), "two spools together went past the budget");
        assert!(b.grow(4));
        assert!(!a.grow(1));
        drop(a);
        assert_eq!(budget.used.load(Ordering::Relaxed), 4);
        assert!(b.grow(6));
        drop(b);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
    }
}
