//! The memory tier: entries weighted by their bytes, least recently used out first, within
//! a budget. (Not `moka`: it would turn on a feature of `equivalent`, under hashbrown and
//! indexmap, and so rebuild all of DataFusion; this is all the cache needs.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::{Entry, Key};

#[derive(Debug)]
pub struct Lru {
    budget: u64,
    bytes: u64,
    tick: u64,
    entries: HashMap<Key, (Arc<Entry>, u64)>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, Key>,
}

impl Lru {
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            bytes: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The entry for `key` if it is younger than `ttl` (an older one is dropped).
    pub fn get(&mut self, key: &Key, ttl: Duration) -> Option<Arc<Entry>> {
        let (entry, used) = self.entries.get(key)?.clone();
        if entry.age() > ttl {
            self.remove(key);
            return None;
        }
        self.tick += 1;
        self.order.remove(&used);
        self.order.insert(self.tick, *key);
        if let Some(slot) = self.entries.get_mut(key) {
            slot.1 = self.tick;
        }
        Some(entry)
    }

    /// Keep an entry, evicting the least recently used until it fits; returns how many were
    /// evicted. An entry larger than the whole budget is not kept.
    pub fn insert(&mut self, entry: Arc<Entry>) -> usize {
        if entry.bytes > self.budget {
            return 0;
        }
        self.remove(&entry.key);
        let mut evicted = 0;
        while self.bytes + entry.bytes > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.entries.remove(&oldest) {
                self.bytes -= old.bytes;
                evicted += 1;
            }
        }
        self.tick += 1;
        self.bytes += entry.bytes;
        self.order.insert(self.tick, entry.key);
        self.entries.insert(entry.key, (entry, self.tick));
        evicted
    }

    fn remove(&mut self, key: &Key) {
        if let Some((old, used)) = self.entries.remove(key) {
            self.order.remove(&used);
            self.bytes -= old.bytes;
        }
    }

    pub fn clear(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
        n
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Every entry, most recently used first.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.order
            .values()
            .rev()
            .filter_map(|k| self.entries.get(k).map(|(e, _)| e.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::SystemTime;

    fn entry(id: u8, bytes: u64) -> Arc<Entry> {
        Arc::new(Entry {
            key: [id; 32],
            messages: Vec::new(),
            bytes,
            rows: 0,
            tables: Vec::new(),
            shared: true,
            text: String::new(),
            created: SystemTime::now(),
            hits: AtomicU64::new(0),
            restored: false,
        })
    }

    #[test]
    fn least_recently_used_goes_first_and_the_budget_holds() {
        let ttl = Duration::from_secs(60);
        let mut lru = Lru::new(100);
        lru.insert(entry(1, 40));
        lru.insert(entry(2, 40));
        assert!(lru.get(&[1; 32], ttl).is_some());
        assert_eq!(lru.insert(entry(3, 40)), 1);
        assert!(
            lru.get(&[2; 32], ttl).is_none(),
            "2 was least recently used"
        );
        assert!(lru.get(&[1; 32], ttl).is_some());
        assert_eq!(lru.bytes(), 80);
        assert_eq!(lru.insert(entry(4, 101)), 0);
        assert!(lru.get(&[4; 32], ttl).is_none(), "larger than the budget");
        assert!(lru.get(&[1; 32], Duration::ZERO).is_none(), "expired");
        assert_eq!((lru.len(), lru.bytes()), (1, 40));
    }
}
