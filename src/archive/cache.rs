//! Decompressed chunks shared by every reader of an archive (all the streams a server holds on
//! it, a seek and the read that follows it), bounded in bytes, least recently used first out.
//! A chunk is decompressed once while it stays here; a chunk checked against the hash the index
//! records is not checked again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::archive::reader::{PartData, PartIndex};

/// The budget of an archive opened without one: a few groups (a seek and the read after it
/// decompress once; a TUI stepping back and forth around one place reads nothing again).
pub const DEFAULT_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// A chunk, by the segment that holds it and its position in that file.
pub(crate) type PartKey = (u64, u64);

/// A new segment id: the key of its chunks in the cache (never reused, so a segment opened
/// again, as a followed file that grew, never sees another segment's chunks).
pub(crate) fn next_segment_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A cached chunk's decompressed records, where its messages are, and whether its hash was
/// checked.
#[derive(Clone)]
pub(crate) struct CachedPart {
    pub data: PartData,
    pub checked: bool,
}

impl CachedPart {
    fn size(&self) -> u64 {
        (self.data.bytes.len() + self.data.index.size()) as u64
    }
}

/// The hash-chain heads after each event of a group, run over its chunks as cached and
/// checked against what the index records: a full read of the group again from the cache
/// takes them instead of hashing every event again. Held with the group's first chunk.
pub(crate) struct GroupHeads {
    /// The head before the group's first event.
    pub before: [u8; 32],
    pub heads: Vec<[u8; 32]>,
    /// The cached chunks they were run over (the same chunks must be read to use them).
    pub parts: Vec<Weak<PartIndex>>,
}

impl GroupHeads {
    /// The chunks of a group as read (`None`: not read), as heads are kept for them.
    pub fn parts_of(data: &[Option<PartData>]) -> Option<Vec<Weak<PartIndex>>> {
        data.iter()
            .map(|d| d.as_ref().map(|d| Arc::downgrade(&d.index)))
            .collect()
    }

    /// Whether these are the heads of the group `data` (every chunk of it read), run from
    /// `before`: over these very chunks.
    pub fn fit(&self, before: [u8; 32], data: &[Option<PartData>]) -> bool {
        self.before == before && self.ran_over(data.iter().map(|d| d.as_ref().map(|d| &d.index)))
    }

    /// Whether they were run over exactly these chunks (`None`: a chunk not read or not held),
    /// in the group's order.
    fn ran_over<'a>(&self, indexes: impl IntoIterator<Item = Option<&'a Arc<PartIndex>>>) -> bool {
        let mut indexes = indexes.into_iter();
        self.parts.iter().all(|w| {
            indexes
                .next()
                .flatten()
                .is_some_and(|i| std::ptr::eq(w.as_ptr(), Arc::as_ptr(i)))
        }) && indexes.next().is_none()
    }

    fn size(&self) -> u64 {
        (self.heads.len() * 32 + self.parts.len() * 8) as u64
    }
}

struct Entry {
    part: CachedPart,
    heads: Option<Arc<GroupHeads>>,
    /// Its position in the use order.
    used: u64,
}

impl Entry {
    fn size(&self) -> u64 {
        self.part.size() + self.heads.as_ref().map_or(0, |h| h.size())
    }
}

#[derive(Default)]
struct State {
    parts: HashMap<PartKey, Entry>,
    /// Use order: tick -> key, oldest first.
    order: BTreeMap<u64, PartKey>,
    bytes: u64,
    tick: u64,
    hits: u64,
    misses: u64,
}

/// What the cache holds and has served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub budget: u64,
    pub bytes: u64,
    pub chunks: usize,
    pub hits: u64,
    pub misses: u64,
}

pub(crate) struct PartCache {
    budget: AtomicU64,
    state: Mutex<State>,
}

impl PartCache {
    pub fn new(budget: u64) -> PartCache {
        PartCache {
            budget: AtomicU64::new(budget),
            state: Mutex::new(State::default()),
        }
    }

    /// Sets the budget; what no longer fits goes, oldest first.
    pub fn set_budget(&self, budget: u64) {
        self.budget.store(budget, Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            s.evict_to(budget);
        }
    }

    /// The chunk at `key`, if held (now the most recently used).
    pub fn get(&self, key: PartKey) -> Option<CachedPart> {
        let mut s = self.state.lock().ok()?;
        let tick = s.tick;
        let Some(e) = s.parts.get_mut(&key) else {
            s.misses += 1;
            return None;
        };
        let old = std::mem::replace(&mut e.used, tick);
        let part = e.part.clone();
        s.order.remove(&old);
        s.order.insert(tick, key);
        s.tick += 1;
        s.hits += 1;
        Some(part)
    }

    /// Whether the chunk at `key` is held (neither a use nor a hit).
    pub fn contains(&self, key: PartKey) -> bool {
        self.state.lock().is_ok_and(|s| s.parts.contains_key(&key))
    }

    /// Holds `part` at `key` (replacing what was there), making room oldest first; a chunk
    /// larger than the whole budget is not held.
    pub fn insert(&self, key: PartKey, part: CachedPart) {
        let budget = self.budget.load(Ordering::Relaxed);
        let len = part.size();
        if len > budget {
            return;
        }
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.remove(&key);
        s.evict_to(budget - len);
        let tick = s.tick;
        s.tick += 1;
        s.bytes += len;
        s.order.insert(tick, key);
        s.parts.insert(
            key,
            Entry {
                part,
                heads: None,
                used: tick,
            },
        );
    }

    /// Records that `checked`, the chunk at `key`, passed its hash check — if the cache still
    /// holds that very chunk there (not one read again meanwhile, which nobody checked).
    pub fn mark_checked(&self, key: PartKey, checked: &PartData) {
        if let Ok(mut s) = self.state.lock()
            && let Some(e) = s.parts.get_mut(&key)
            && Arc::ptr_eq(&e.part.data.index, &checked.index)
        {
            e.part.checked = true;
        }
    }

    /// Holds `heads` with the chunk at `key` (the first of their group), if it is held; what no
    /// longer fits goes, oldest first.
    pub fn set_heads(&self, key: PartKey, heads: Arc<GroupHeads>) {
        let budget = self.budget.load(Ordering::Relaxed);
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let Some(e) = s.parts.get_mut(&key) else {
            return;
        };
        let added = heads.size();
        let replaced = e.heads.replace(heads).map_or(0, |h| h.size());
        s.bytes = s.bytes + added - replaced;
        s.evict_to(budget);
    }

    /// Whether every chunk `keys` names is held (neither a use nor a hit), under one lock; with
    /// `with_heads`, the keys being a whole group's chunks, also heads held with its first chunk
    /// that were run over these very chunks (as [`GroupHeads::fit`] tests with them in hand).
    pub fn holds_group(
        &self,
        keys: impl Iterator<Item = PartKey> + Clone,
        with_heads: bool,
    ) -> bool {
        let Ok(s) = self.state.lock() else {
            return false;
        };
        if !with_heads {
            return keys.into_iter().all(|k| s.parts.contains_key(&k));
        }
        let Some(heads) = keys
            .clone()
            .next()
            .and_then(|first| s.parts.get(&first)?.heads.as_ref())
        else {
            return false;
        };
        heads.ran_over(keys.map(|k| s.parts.get(&k).map(|e| &e.part.data.index)))
    }

    /// The heads held with the chunk at `key` (neither a use nor a hit).
    pub fn heads(&self, key: PartKey) -> Option<Arc<GroupHeads>> {
        let s = self.state.lock().ok()?;
        s.parts.get(&key)?.heads.clone()
    }

    pub fn stats(&self) -> CacheStats {
        let budget = self.budget.load(Ordering::Relaxed);
        match self.state.lock() {
            Ok(s) => CacheStats {
                budget,
                bytes: s.bytes,
                chunks: s.parts.len(),
                hits: s.hits,
                misses: s.misses,
            },
            Err(_) => CacheStats {
                budget,
                ..CacheStats::default()
            },
        }
    }
}

impl State {
    fn remove(&mut self, key: &PartKey) {
        if let Some(e) = self.parts.remove(key) {
            self.order.remove(&e.used);
            self.bytes -= e.size();
        }
    }

    /// Drops the least recently used chunks until at most `limit` bytes are held.
    fn evict_to(&mut self, limit: u64) {
        while self.bytes > limit {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.parts.remove(&key) {
                self.bytes -= e.size();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(len: usize) -> CachedPart {
        CachedPart {
            data: PartData::unindexed(bytes::Bytes::from(vec![7u8; len])),
            checked: false,
        }
    }

    #[test]
    fn least_recently_used_goes_first_and_the_budget_holds() {
        let c = PartCache::new(300);
        c.insert((1, 0), part(100));
        c.insert((1, 100), part(100));
        c.insert((1, 200), part(100));
        // Used: (1, 0) is now the newest.
        assert!(c.get((1, 0)).is_some());
        c.insert((2, 0), part(100));
        assert!(c.get((1, 100)).is_none(), "the least recently used went");
        assert!(c.get((1, 0)).is_some());
        assert!(c.get((1, 200)).is_some());
        assert!(c.get((2, 0)).is_some());
        let s = c.stats();
        assert_eq!((s.bytes, s.chunks, s.hits, s.misses), (300, 3, 4, 1));
    }

    #[test]
    fn a_chunk_larger_than_the_budget_is_not_held_and_a_smaller_budget_evicts() {
        let c = PartCache::new(150);
        c.insert((1, 0), part(200));
        assert_eq!(c.stats().chunks, 0);
        c.insert((1, 0), part(100));
        c.insert((1, 0), part(120));
        assert_eq!(c.stats().bytes, 120, "replaced, not counted twice");
        c.set_budget(0);
        assert_eq!((c.stats().bytes, c.stats().chunks), (0, 0));
        c.insert((1, 0), part(1));
        assert_eq!(c.stats().chunks, 0);
    }

    #[test]
    fn checked_is_remembered_for_the_chunk_that_was_checked_only() {
        let c = PartCache::new(1000);
        c.insert((1, 0), part(10));
        let held = c.get((1, 0)).unwrap();
        assert!(!held.checked);
        c.mark_checked((1, 0), &held.data);
        assert!(c.get((1, 0)).unwrap().checked);
        // Read again and replaced while the first copy was being checked: the new one is not.
        let first = c.get((1, 0)).unwrap();
        c.insert((1, 0), part(10));
        c.mark_checked((1, 0), &first.data);
        assert!(!c.get((1, 0)).unwrap().checked);
    }

    fn heads(events: usize) -> Arc<GroupHeads> {
        Arc::new(GroupHeads {
            before: [0; 32],
            heads: vec![[1; 32]; events],
            parts: vec![Weak::new()],
        })
    }

    /// Heads held with a chunk count in the budget, replace the ones before, go with their
    /// chunk, and are not held without it.
    #[test]
    fn chain_heads_count_in_the_budget_and_go_with_their_chunk() {
        let c = PartCache::new(10_000);
        c.set_heads((1, 0), heads(10));
        assert!(c.heads((1, 0)).is_none(), "no chunk to hold them with");
        assert_eq!(c.stats().bytes, 0);
        c.insert((1, 0), part(1_000));
        c.set_heads((1, 0), heads(10));
        assert_eq!(c.stats().bytes, 1_000 + 10 * 32 + 8);
        c.set_heads((1, 0), heads(20));
        assert_eq!(c.stats().bytes, 1_000 + 20 * 32 + 8);
        assert_eq!(c.heads((1, 0)).unwrap().heads.len(), 20);
        // Too big for what is left: the oldest chunk goes, with its heads.
        c.insert((1, 1_000), part(8_000));
        c.set_heads((1, 1_000), heads(50));
        assert!(c.get((1, 0)).is_none() && c.heads((1, 0)).is_none());
        assert_eq!(c.stats().bytes, 8_000 + 50 * 32 + 8);
        // A chunk and its heads larger than the whole budget: neither is held.
        c.set_heads((1, 1_000), heads(100));
        assert_eq!((c.stats().bytes, c.stats().chunks), (0, 0));
        c.insert((1, 1_000), part(8_000));
        c.set_budget(0);
        assert_eq!((c.stats().bytes, c.stats().chunks), (0, 0));
    }

    /// A group is held when all its chunks are; with heads, only when they were run over the
    /// chunks held now (not over a copy since evicted and read again).
    #[test]
    fn a_group_is_held_with_its_heads_only_over_the_chunks_they_were_run_over() {
        let c = PartCache::new(10_000);
        let keys = [(1, 0), (1, 100)];
        assert!(!c.holds_group(keys.into_iter(), false));
        c.insert((1, 0), part(100));
        assert!(!c.holds_group(keys.into_iter(), false));
        c.insert((1, 100), part(100));
        assert!(c.holds_group(keys.into_iter(), false));
        assert!(!c.holds_group(keys.into_iter(), true), "no heads yet");
        let over = |keys: &[PartKey]| {
            let parts = keys
                .iter()
                .map(|k| Arc::downgrade(&c.get(*k).unwrap().data.index))
                .collect();
            Arc::new(GroupHeads {
                before: [0; 32],
                heads: vec![[1; 32]; 4],
                parts,
            })
        };
        c.set_heads((1, 0), over(&keys));
        assert!(c.holds_group(keys.into_iter(), true));
        // Fewer chunks than the heads were run over, or more: not theirs.
        assert!(!c.holds_group(keys[..1].iter().copied(), true));
        c.insert((1, 200), part(100));
        assert!(!c.holds_group([(1, 0), (1, 100), (1, 200)].into_iter(), true));
        // The second chunk replaced by another copy: the heads stay, but do not fit.
        c.insert((1, 100), part(100));
        assert!(c.heads((1, 0)).is_some());
        assert!(c.holds_group(keys.into_iter(), false));
        assert!(!c.holds_group(keys.into_iter(), true));
    }
}
