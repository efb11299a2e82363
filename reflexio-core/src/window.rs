//! A lock-free windowed counter: `slots` atomic slots, each tagged with the epoch (time slot) it
//! counts, so a slot from an older window is reset by the first writer of the new one.

use core::time::Duration;
use std::sync::atomic::{AtomicU64, Ordering};

const EPOCH_BITS: u32 = 28;
const COUNT_BITS: u32 = 64 - EPOCH_BITS;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

/// Counts over a sliding window of `slots` time slots. Every `add` lands in exactly one slot
/// (compare-and-swap), so no count is lost or doubled under contention.
#[derive(Debug)]
pub(crate) struct WindowedCounter {
    slots: Box<[AtomicU64]>,
    slot_nanos: u64,
}

impl WindowedCounter {
    pub(crate) fn new(window: Duration, slots: usize) -> Self {
        let slots = slots.max(1);
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1);
        WindowedCounter {
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            slot_nanos: (nanos / slots as u64).max(1),
        }
    }

    fn epoch(&self, now_nanos: u64) -> u64 {
        now_nanos / self.slot_nanos
    }

    /// The slot of `epoch`.
    fn index(&self, epoch: u64) -> usize {
        usize::try_from(epoch % self.slots.len() as u64).unwrap_or(0)
    }

    fn pack(epoch: u64, count: u64) -> u64 {
        ((epoch & EPOCH_MASK) << COUNT_BITS) | count.min(COUNT_MASK)
    }

    /// Adds `n` to the slot of `now_nanos`.
    pub(crate) fn add(&self, now_nanos: u64, n: u64) {
        let epoch = self.epoch(now_nanos);
        let slot = &self.slots[self.index(epoch)];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let count = if current >> COUNT_BITS == epoch & EPOCH_MASK {
                (current & COUNT_MASK).saturating_add(n)
            } else {
                n
            };
            match slot.compare_exchange_weak(
                current,
                Self::pack(epoch, count),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// The sum over the window ending at `now_nanos`, counting only slots whose epoch is at or
    /// after `since_epoch` (to forget everything before a reset).
    pub(crate) fn sum(&self, now_nanos: u64, since_epoch: u64) -> u64 {
        let now = self.epoch(now_nanos);
        let oldest = now
            .saturating_sub(self.slots.len() as u64 - 1)
            .max(since_epoch);
        let mut total = 0u64;
        // One division for the first slot, then the index steps with the epoch (a division
        // per slot was most of the cost of a sum).
        let mut i = self.index(oldest);
        for epoch in oldest..=now {
            let v = self.slots[i].load(Ordering::Acquire);
            if v >> COUNT_BITS == epoch & EPOCH_MASK {
                total = total.saturating_add(v & COUNT_MASK);
            }
            i += 1;
            if i == self.slots.len() {
                i = 0;
            }
        }
        total
    }

    /// The current slot's value and a way to replace it atomically: used to take tokens only
    /// if nobody else changed the slot in between.
    pub(crate) fn current(&self, now_nanos: u64) -> (usize, u64, u64) {
        let epoch = self.epoch(now_nanos);
        let i = self.index(epoch);
        (i, epoch, self.slots[i].load(Ordering::Acquire))
    }

    /// Replaces the raw value `seen` of slot `i` by `seen + n` in `epoch`; false if it changed.
    pub(crate) fn try_add_exact(&self, i: usize, epoch: u64, seen: u64, n: u64) -> bool {
        let count = if seen >> COUNT_BITS == epoch & EPOCH_MASK {
            (seen & COUNT_MASK).saturating_add(n)
        } else {
            n
        };
        self.slots[i]
            .compare_exchange(
                seen,
                Self::pack(epoch, count),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The epoch of `now_nanos`, for resets.
    pub(crate) fn epoch_at(&self, now_nanos: u64) -> u64 {
        self.epoch(now_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_expire_after_the_window() {
        let w = WindowedCounter::new(Duration::from_secs(10), 10);
        let s = 1_000_000_000;
        w.add(0, 3);
        w.add(5 * s, 4);
        assert_eq!(w.sum(5 * s, 0), 7);
        assert_eq!(w.sum(9 * s, 0), 7);
        assert_eq!(w.sum(10 * s, 0), 4, "slot 0 left the window");
        w.add(10 * s, 1); // reuses slot 0 for a new epoch
        assert_eq!(w.sum(10 * s, 0), 5);
        assert_eq!(w.sum(10 * s, 10), 1, "reset forgets older epochs");
        assert_eq!(w.sum(40 * s, 0), 0);
    }
}
