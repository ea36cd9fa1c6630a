//! The replay ring: a byte-bounded FIFO of recently sent batches. It evicts the oldest batches
//! first but always keeps the newest one, reports which offsets it covers, and serves a resume
//! from any offset it still holds.

use std::collections::VecDeque;
use std::sync::Arc;

/// Something the ring can hold: an event with an offset and a size in bytes.
pub trait RingItem: Clone {
    fn offset(&self) -> u64;
    fn size(&self) -> u64;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error(
        "offset {requested} is no longer held by the replay ring (it holds offsets {oldest} to {newest})"
    )]
    Evicted {
        requested: u64,
        oldest: u64,
        newest: u64,
    },
    #[error("offset {requested} has not been sent yet (the newest offset sent is {newest})")]
    Ahead { requested: u64, newest: u64 },
    #[error("the replay ring is empty: nothing has been sent yet")]
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingSnapshot {
    pub bytes_used: u64,
    pub capacity: u64,
    pub oldest_offset: Option<u64>,
    pub newest_offset: Option<u64>,
}

#[derive(Debug, Clone)]
struct Batch<T> {
    /// Shared with whoever sends the batch (a Session's frame), so keeping it copies nothing.
    items: Arc<Vec<T>>,
    bytes: u64,
}

#[derive(Debug, Clone)]
pub struct ReplayRing<T: RingItem> {
    batches: VecDeque<Batch<T>>,
    used: u64,
    capacity: u64,
}

impl<T: RingItem> ReplayRing<T> {
    pub fn new(capacity: u64) -> Self {
        ReplayRing {
            batches: VecDeque::new(),
            used: 0,
            capacity,
        }
    }

    /// Adds a batch (in offset order) and evicts the oldest ones beyond the capacity.
    pub fn push(&mut self, items: impl Into<Arc<Vec<T>>>) {
        let items = items.into();
        if items.is_empty() {
            return;
        }
        let bytes = items.iter().map(RingItem::size).sum();
        self.used += bytes;
        self.batches.push_back(Batch { items, bytes });
        while self.used > self.capacity && self.batches.len() > 1 {
            if let Some(old) = self.batches.pop_front() {
                self.used -= old.bytes;
            }
        }
    }

    pub fn clear(&mut self) {
        self.batches.clear();
        self.used = 0;
    }

    /// The offsets held, oldest and newest.
    pub fn covers(&self) -> Option<(u64, u64)> {
        let first = self.batches.front()?.items.first()?.offset();
        let last = self.batches.back()?.items.last()?.offset();
        Some((first, last))
    }

    pub fn snapshot(&self) -> RingSnapshot {
        let range = self.covers();
        RingSnapshot {
            bytes_used: self.used,
            capacity: self.capacity,
            oldest_offset: range.map(|r| r.0),
            newest_offset: range.map(|r| r.1),
        }
    }

    /// The items from the first one with offset >= `from` to the newest (a resume). Fails with
    /// the offsets held when `from` is older than the oldest item.
    pub fn from_offset(&self, from: u64) -> Result<Vec<T>, RingError> {
        let Some((oldest, newest)) = self.covers() else {
            return Err(RingError::Empty);
        };
        if from < oldest {
            return Err(RingError::Evicted {
                requested: from,
                oldest,
                newest,
            });
        }
        if from > newest + 1 {
            return Err(RingError::Ahead {
                requested: from,
                newest,
            });
        }
        Ok(self
            .batches
            .iter()
            .flat_map(|b| b.items.iter())
            .skip_while(|i| i.offset() < from)
            .cloned()
            .collect())
    }

    /// The item with this offset, if held.
    pub fn get(&self, offset: u64) -> Option<&T> {
        let (oldest, newest) = self.covers()?;
        if offset < oldest || offset > newest {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.items.last().is_some_and(|l| l.offset() >= offset))
            .and_then(|b| b.items.iter().find(|i| i.offset() == offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item(u64, u64);
    impl RingItem for Item {
        fn offset(&self) -> u64 {
            self.0
        }
        fn size(&self) -> u64 {
            self.1
        }
    }

    fn batch(first: u64, n: u64, size: u64) -> Vec<Item> {
        (first..first + n).map(|o| Item(o, size)).collect()
    }

    #[test]
    fn evicts_oldest_first_by_bytes() {
        let mut r = ReplayRing::new(100);
        r.push(batch(0, 4, 10)); // 40
        r.push(batch(4, 4, 10)); // 80
        r.push(batch(8, 4, 10)); // 120 -> evict first
        assert_eq!(r.covers(), Some((4, 11)));
        assert_eq!(r.snapshot().bytes_used, 80);
    }

    #[test]
    fn always_keeps_the_newest_batch() {
        let mut r = ReplayRing::new(10);
        r.push(batch(0, 2, 10));
        r.push(batch(2, 5, 100)); // far over capacity on its own
        assert_eq!(r.covers(), Some((2, 6)));
        assert_eq!(r.snapshot().bytes_used, 500);
    }

    #[test]
    fn resume_inside_returns_the_rest_and_outside_names_the_oldest() {
        let mut r = ReplayRing::new(100);
        r.push(batch(0, 5, 10));
        r.push(batch(5, 5, 10));
        r.push(batch(10, 5, 10)); // evicts 0..=4
        let got: Vec<u64> = r.from_offset(7).unwrap().iter().map(|i| i.0).collect();
        assert_eq!(got, (7..15).collect::<Vec<_>>());
        assert_eq!(r.from_offset(15).unwrap(), vec![]);
        let err = r.from_offset(3).unwrap_err();
        assert_eq!(
            err,
            RingError::Evicted {
                requested: 3,
                oldest: 5,
                newest: 14
            }
        );
        assert!(err.to_string().contains("offsets 5 to 14"));
        assert!(matches!(r.from_offset(20), Err(RingError::Ahead { .. })));
        assert_eq!(r.get(12), Some(&Item(12, 10)));
        assert_eq!(r.get(2), None);
    }
}
