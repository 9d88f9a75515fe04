//! The stream index of one shard: open addressing with linear probing over slots of 32 bytes
//! (two per cache line), each holding the stream's hash, the stream, and where its next point
//! will write: so that one prefetched slot tells a look-ahead everything to fetch next.
//!
//! Streams are never removed, so there are no tombstones; the table doubles at half load.

use crate::stream::Stream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// One slot; empty when `stream` is `None`.
#[derive(Default)]
pub(crate) struct Slot {
    pub hash: u64,
    pub stream: Option<Arc<Stream>>,
    /// Addresses the stream's next point is likely to touch (its newest samples, its held
    /// histogram counts), updated after each point; hints only, never dereferenced.
    pub hot: [usize; 2],
}

#[derive(Default)]
pub(crate) struct Index {
    slots: Vec<Slot>,
    len: usize,
}

impl Index {
    /// The slot of the stream with this hash whose key is `key`.
    // HOT PATH: a probe over one or two cache lines, one key comparison.
    #[inline]
    pub fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut Slot> {
        let at = self.position(hash, |s| s.key.packed() == key)?;
        Some(&mut self.slots[at])
    }

    /// The first slot whose hash is `hash`, with no key comparison: what a look-ahead
    /// prefetches (a wrong guess costs only a wasted prefetch).
    #[inline]
    pub fn guess(&self, hash: u64) -> Option<&Slot> {
        self.position(hash, |_| true).map(|at| &self.slots[at])
    }

    #[inline]
    fn position(&self, hash: u64, same: impl Fn(&Stream) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let slot = &self.slots[at];
            match &slot.stream {
                None => return None,
                Some(s) if slot.hash == hash && same(s) => return Some(at),
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    /// Adds a stream known to be absent.
    pub fn insert(&mut self, hash: u64, stream: Arc<Stream>, hint: &Hint) {
        if (self.len + 1) * 2 > self.slots.len() {
            let cap = (self.slots.len() * 2).max(16);
            let old = std::mem::replace(
                &mut self.slots,
                std::iter::repeat_with(Slot::default).take(cap).collect(),
            );
            for slot in old {
                if slot.stream.is_some() {
                    self.place(slot);
                }
            }
            hint.base.store(self.slots.as_ptr() as usize, Relaxed);
            hint.mask.store(cap - 1, Relaxed);
        }
        self.place(Slot {
            hash,
            stream: Some(stream),
            hot: [0; 2],
        });
        self.len += 1;
    }

    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut at = slot.hash as usize & mask;
        while self.slots[at].stream.is_some() {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
    }

    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
    }
}

/// Where a shard's slots are, readable without its lock: for prefetching only (a stale value
/// after a resize costs a wasted prefetch).
#[derive(Default)]
pub(crate) struct Hint {
    pub base: AtomicUsize,
    pub mask: AtomicUsize,
}

impl Hint {
    /// The address of the slot a probe for `hash` starts at (0 while the shard is empty).
    #[inline]
    pub fn slot_address(&self, hash: u64) -> usize {
        let base = self.base.load(Relaxed);
        if base == 0 {
            return 0;
        }
        base + (hash as usize & self.mask.load(Relaxed)) * size_of::<Slot>()
    }
}
