//! A lock-free windowed counter: [`SLOTS`] atomic slots, each tagged with the epoch (time slot)
//! it counts, so a slot from an older window is reset by the first writer of the new one.

use core::time::Duration;
use std::sync::atomic::{AtomicU64, Ordering};

const EPOCH_BITS: u32 = 30;
const COUNT_BITS: u32 = 64 - EPOCH_BITS;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

/// How many epochs late a writer may be and still have its slot recognised as taken by a newer
/// epoch (see [`WindowedCounter`]).
const LATE: u64 = 64 * SLOTS as u64;

/// The number of slots of every window (a constant, so finding a slot is a multiply, not a
/// division).
pub(crate) const SLOTS: usize = 10;

/// Counts over a sliding window of [`SLOTS`] time slots. Every `add` lands in exactly one slot
/// (compare-and-swap), so no count is lost or doubled under contention. (A writer that read
/// the clock `SLOTS` slots or more before writing finds its slot taken by a newer epoch: its
/// count, already outside every reader's window, is dropped rather than erase the newer one;
/// beyond [`LATE`] slots late, it does replace it.)
///
/// Its methods take the *epoch* (the number of the time slot) of the current time, from the
/// owner's [`Epochs`]: an owner's counters share its slots in time, and an operation that reads
/// the clock once computes the epoch once. Slots store the epoch modulo 2³⁰ (and the count in
/// the other 34 bits), so a slot left untouched for a multiple of 2³⁰ slots would be read as
/// current again: 34 years with the default 1 s slots, 12 days with 1 ms slots.
#[derive(Debug)]
pub(crate) struct WindowedCounter {
    slots: [AtomicU64; SLOTS],
}

/// The time slots of a window: [`SLOTS`] of them over its length. Shared by the counters of
/// one budget or breaker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epochs {
    slot_nanos: u64,
}

impl Epochs {
    pub(crate) fn new(window: Duration) -> Self {
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1);
        Epochs {
            slot_nanos: (nanos / SLOTS as u64).max(1),
        }
    }

    /// The epoch of `now_nanos`: the one division of an operation.
    pub(crate) fn epoch_at(self, now_nanos: u64) -> u64 {
        now_nanos / self.slot_nanos
    }
}

impl WindowedCounter {
    pub(crate) const fn new() -> Self {
        WindowedCounter {
            slots: [const { AtomicU64::new(0) }; SLOTS],
        }
    }

    /// The slot of `epoch`.
    fn slot(&self, epoch: u64) -> &AtomicU64 {
        #[allow(clippy::cast_possible_truncation, reason = "a remainder below `SLOTS`")]
        &self.slots[(epoch % SLOTS as u64) as usize]
    }

    fn pack(epoch: u64, count: u64) -> u64 {
        ((epoch & EPOCH_MASK) << COUNT_BITS) | count.min(COUNT_MASK)
    }

    /// `n` added to the raw slot value `seen` in `epoch` (a slot of an older epoch restarts);
    /// `None` when the slot already counts a newer epoch (see the type's docs).
    fn plus(epoch: u64, seen: u64, n: u64) -> Option<u64> {
        let stored = seen >> COUNT_BITS;
        let ours = epoch & EPOCH_MASK;
        if stored == ours {
            return Some(Self::pack(epoch, (seen & COUNT_MASK).saturating_add(n)));
        }
        // The stored epoch is newer than ours when it is ahead by at most `LATE` slots (a
        // writer that late is already rare); anything else is older: a slot idle for a long
        // time, or never written (0).
        let ahead = stored.wrapping_sub(ours) & EPOCH_MASK;
        (seen == 0 || ahead > LATE).then(|| Self::pack(epoch, n))
    }

    /// Adds `n` to the slot of `epoch`.
    pub(crate) fn add(&self, epoch: u64, n: u64) {
        let slot = self.slot(epoch);
        let mut current = slot.load(Ordering::Relaxed);
        while let Some(new) = Self::plus(epoch, current, n) {
            match slot.compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// The sum over the window ending in `epoch`, counting only slots whose epoch is at or
    /// after `since_epoch` (to forget everything before a reset).
    pub(crate) fn sum(&self, epoch: u64, since_epoch: u64) -> u64 {
        let Some(max_age) = epoch.checked_sub(since_epoch) else {
            return 0; // reset after `epoch`: nothing counts yet
        };
        let max_age = max_age.min(SLOTS as u64 - 1);
        // A slot counts if its epoch is `epoch` or one of the `SLOTS - 1` before (and not
        // before `since_epoch`): its age, modulo the epoch's bits as stored, is at most
        // `max_age`. Each slot holds one epoch, so checking every slot's age is the same as
        // looking up each epoch of the window, without a data-dependent loop: a fixed `SLOTS`
        // loads, unrolled.
        let now = epoch & EPOCH_MASK;
        self.slots
            .iter()
            .map(|slot| {
                let v = slot.load(Ordering::Acquire);
                let age = now.wrapping_sub(v >> COUNT_BITS) & EPOCH_MASK;
                if age <= max_age { v & COUNT_MASK } else { 0 }
            })
            // At most `SLOTS` counts of 34 bits: no overflow.
            .sum()
    }

    /// The raw value of the slot of `epoch`, for [`try_add_exact`](Self::try_add_exact): used
    /// to take tokens only if nobody else changed the slot in between.
    pub(crate) fn current(&self, epoch: u64) -> u64 {
        self.slot(epoch).load(Ordering::Acquire)
    }

    /// Replaces the raw value `seen` of the slot of `epoch` by `seen + n`; false if it changed.
    /// True without a change when the slot already counts a newer epoch (the tokens would be
    /// taken in an epoch outside every reader's window: there is nothing to take them from).
    pub(crate) fn try_add_exact(&self, epoch: u64, seen: u64, n: u64) -> bool {
        let Some(new) = Self::plus(epoch, seen, n) else {
            return true;
        };
        self.slot(epoch)
            .compare_exchange(seen, new, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_expire_after_the_window() {
        let w = WindowedCounter::new();
        let s = 1_000_000_000;
        let at = |nanos: u64| Epochs::new(Duration::from_secs(10)).epoch_at(nanos);
        w.add(at(0), 3);
        w.add(at(5 * s), 4);
        assert_eq!(w.sum(at(5 * s), 0), 7);
        assert_eq!(w.sum(at(9 * s), 0), 7);
        assert_eq!(w.sum(at(10 * s), 0), 4, "slot 0 left the window");
        w.add(at(10 * s), 1); // reuses slot 0 for a new epoch
        assert_eq!(w.sum(at(10 * s), 0), 5);
        assert_eq!(w.sum(at(10 * s), 10), 1, "reset forgets older epochs");
        assert_eq!(
            w.sum(at(10 * s), 11),
            0,
            "a reset after now forgets everything"
        );
        assert_eq!(w.sum(at(40 * s), 0), 0);
    }

    #[test]
    fn sums_span_the_wrap_of_the_stored_epoch() {
        let w = WindowedCounter::new();
        let wrap = 1 << EPOCH_BITS; // stored epochs are kept modulo this
        for (i, e) in (wrap - 3..wrap + 3).enumerate() {
            w.add(e, 1 << i);
        }
        assert_eq!(w.sum(wrap + 2, 0), 0b11_1111);
        assert_eq!(w.sum(wrap + 2, wrap), 0b11_1000);
        assert_eq!(
            w.sum(wrap + 9, 0),
            0b11_1000,
            "epochs before wrap + 0 left the window"
        );
        assert_eq!(w.sum(wrap + 12, 0), 0);
    }

    #[test]
    fn a_slot_counts_again_only_a_multiple_of_the_wrap_later() {
        let w = WindowedCounter::new();
        let wrap = 1 << EPOCH_BITS;
        w.add(5, 7);
        assert_eq!(w.sum(5 + wrap - 1, 0), 0);
        assert_eq!(w.sum(5 + wrap + 10, 0), 0);
        // The documented limit: 2^30 slots later, the stored epoch reads as current.
        assert_eq!(w.sum(5 + wrap, 0), 7);
    }

    #[test]
    fn a_late_writer_does_not_erase_a_newer_epoch() {
        let w = WindowedCounter::new();
        w.add(12, 3);
        // Epoch 2 maps to the same slot as 12; its writer read the clock long ago.
        w.add(2, 5);
        assert_eq!(w.sum(12, 0), 3);
        let seen = w.current(2);
        assert!(
            w.try_add_exact(2, seen, 4),
            "nothing to take from: granted, unchanged"
        );
        assert_eq!(w.sum(12, 0), 3);
        // A slot never written counts as older than any epoch, even one just below the wrap.
        w.add(3, 1);
        assert_eq!(w.sum(3, 0), 1);
        let below_wrap = (1 << EPOCH_BITS) - 4; // maps to slot 0 (2^30 - 4 is a multiple of 10)
        w.add(below_wrap, 1);
        assert_eq!(w.sum(below_wrap, 0), 1);
        // And the newest writer still replaces an older epoch.
        w.add(22, 2);
        assert_eq!(w.sum(22, 0), 2);
    }

    #[test]
    fn concurrent_adds_are_all_counted() {
        let w = WindowedCounter::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        w.add(7, 1);
                    }
                });
            }
        });
        assert_eq!(w.sum(7, 0), 40_000);
    }

    #[test]
    fn exact_adds_fail_when_the_slot_changed() {
        let w = WindowedCounter::new();
        let e = Epochs::new(Duration::from_secs(10)).epoch_at(3_000_000_000);
        let seen = w.current(e);
        w.add(e, 1);
        assert!(
            !w.try_add_exact(e, seen, 5),
            "the slot changed since `seen`"
        );
        assert!(w.try_add_exact(e, w.current(e), 5));
        assert_eq!(w.sum(e, 0), 6);
        // A slot last written in an older epoch restarts from zero.
        let later = e + SLOTS as u64;
        assert!(w.try_add_exact(later, w.current(later), 2));
        assert_eq!(w.sum(later, 0), 2);
    }
}
