//! A map that holds at most a budget of cost, dropping the oldest insertions first: the
//! bound behind the engine's in-memory sets (hot manifests, tag records, links).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A map holding at most `budget` units of cost, dropping the oldest insertions first.
#[derive(Debug)]
pub(crate) struct Bounded<K, V> {
    map: HashMap<K, (V, usize)>,
    order: VecDeque<K>,
    cost: usize,
    budget: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cost: 0,
            budget,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    pub(crate) fn insert(&mut self, key: K, value: V, cost: usize) {
        if cost > self.budget {
            return;
        }
        match self.map.insert(key.clone(), (value, cost)) {
            Some((_, old)) => self.cost -= old,
            None => self.order.push_back(key),
        }
        self.cost += cost;
        while self.cost > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, c)) = self.map.remove(&oldest) {
                self.cost -= c;
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &K) {
        if let Some((_, c)) = self.map.remove(key) {
            self.cost -= c;
            self.order.retain(|k| k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn drops_oldest_past_budget_and_counts_replacements_once() {
        let mut b = Bounded::new(10);
        b.insert("a", 1, 4);
        b.insert("b", 2, 4);
        b.insert("a", 3, 4); // replaces a: cost stays 8
        assert_eq!(b.get(&"a"), Some(&3));
        b.insert("c", 4, 4); // 12 > 10: the oldest insertion (a) goes
        assert_eq!(b.get(&"a"), None);
        assert_eq!(b.get(&"b"), Some(&2));
        assert_eq!(b.get(&"c"), Some(&4));
        b.insert("huge", 5, 11); // larger than the budget: not kept
        assert_eq!(b.get(&"huge"), None);
        b.remove(&"b");
        assert_eq!(b.get(&"b"), None);
        assert_eq!(b.cost, 4);
    }
}
