//! Windowed counters: [`SLOTS`] slots, each tagged with the full number of the time slot (its
//! *epoch*) it counts, so a count is exact at any idle length and after any clock jump.

use core::time::Duration;

use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::time::saturating_nanos;

/// The number of slots of every window (a constant, so finding a slot is a multiply, not a
/// division).
pub(crate) const SLOTS: usize = 10;

/// Set in a slot's tag while it moves to a newer epoch.
const BUSY: u64 = 1 << 63;

/// The time slots of a window: [`SLOTS`] of them over its length. Shared by the counters of
/// one budget or breaker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epochs {
    slot_nanos: u64,
}

impl Epochs {
    /// The shortest window the builders accept: its slots are at least 100 ns, so an epoch of
    /// any `u64` of nanoseconds is below 2⁶³ and leaves the tag's top bit to [`BUSY`].
    pub(crate) const MIN_WINDOW: Duration = Duration::from_micros(1);

    pub(crate) fn new(window: Duration) -> Self {
        Epochs {
            slot_nanos: (saturating_nanos(window) / SLOTS as u64).max(2),
        }
    }

    /// The epoch of `now_nanos`: the one division of an operation.
    pub(crate) fn epoch_at(self, now_nanos: u64) -> u64 {
        now_nanos / self.slot_nanos
    }
}

/// The count word of a slot: the low 8 bits of its epoch above a 56-bit count, so that an
/// update of the count can check, in the same compare-and-swap, that the slot still counts its
/// epoch.
const GEN_SHIFT: u32 = 56;
const COUNT_MASK: u64 = (1 << GEN_SHIFT) - 1;

fn pack(epoch: u64, count: u64) -> u64 {
    ((epoch & 0xFF) << GEN_SHIFT) | count.min(COUNT_MASK)
}

fn same_gen(word: u64, epoch: u64) -> bool {
    word >> GEN_SHIFT == epoch & 0xFF
}

/// One slot: the epoch it counts in full (with [`BUSY`] while it moves to a newer epoch), and
/// its `N` count words ([`pack`]). `rolling` is held while the slot moves to a newer epoch.
#[derive(Debug)]
struct Slot<const N: usize> {
    rolling: Mutex<()>,
    tag: AtomicU64,
    words: [AtomicU64; N],
}

/// `N` counts over one sliding window of [`SLOTS`] time slots (a budget's calls and spent
/// tokens, a breaker's failures and successes): the counts of a slot share its epoch, so a
/// sum of all of them reads each slot's epoch once.
///
/// Each slot holds its epoch in full (64 bits) beside 56-bit counts, so a slot left untouched
/// for any length of time is never read as current again, and a count cannot fill up in any
/// setting the builders accept. Adding to the current epoch's count is one compare-and-swap of
/// the count word, which also checks the epoch's low bits, so an add cannot land in a slot that
/// moved on; moving a slot to a new epoch (once per slot per window) takes the slot's lock and
/// marks the tag [`BUSY`]. Readers take no lock: they read the tag, the count words and the tag
/// again, and use the counts only if the tag did not change (a sequence lock); only when that
/// meets a slot moving do they read with the lock. `loom` models of these paths run in CI.
///
/// Its methods take the *epoch* (the number of the time slot) of the current time, from the
/// owner's [`Epochs`]: an operation that reads the clock once computes the epoch once.
///
/// A writer whose epoch is older than the one its slot holds (it read the clock a whole window
/// before writing) has its count dropped: that epoch has left every reader's window. (One that
/// read the clock 128 windows or more before writing could add to the slot's new epoch: the
/// count word keeps 8 bits of the epoch.)
#[derive(Debug)]
pub(crate) struct WindowedCounter<const N: usize = 1> {
    slots: [Slot<N>; SLOTS],
}

impl<const N: usize> WindowedCounter<N> {
    pub(crate) fn new() -> Self {
        WindowedCounter {
            slots: core::array::from_fn(|_| Slot {
                rolling: Mutex::new(()),
                tag: AtomicU64::new(0),
                words: core::array::from_fn(|_| AtomicU64::new(0)),
            }),
        }
    }

    /// The slot of `epoch`.
    fn slot(&self, epoch: u64) -> &Slot<N> {
        #[allow(clippy::cast_possible_truncation, reason = "a remainder below `SLOTS`")]
        &self.slots[(epoch % SLOTS as u64) as usize]
    }

    /// Applies `f` to count `i` of `epoch` in `slot`, which counts `epoch`: one
    /// compare-and-swap. False if the slot moved on meanwhile.
    #[inline]
    fn update(slot: &Slot<N>, i: usize, epoch: u64, f: impl Fn(u64) -> u64) -> bool {
        let word = &slot.words[i];
        let mut seen = word.load(Ordering::Acquire);
        while same_gen(seen, epoch) {
            let new = pack(epoch, f(seen & COUNT_MASK));
            match word.compare_exchange(seen, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => seen = now,
            }
        }
        false
    }

    /// Moves `slot` to `epoch` (newer than its own `old`), with `n` in count `i` and 0 in the
    /// others. With the lock.
    fn roll(slot: &Slot<N>, old: u64, epoch: u64, i: usize, n: u64) {
        // The busy mark first: a reader that sees a new word (Release/Acquire) also sees the
        // mark or the new tag, so it cannot take the new counts for the old epoch's.
        slot.tag.store(old | BUSY, Ordering::Relaxed);
        for (j, word) in slot.words.iter().enumerate() {
            // A swap, not a store: a read-modify-write, so that a late writer's
            // compare-and-swap of the old epoch's word is ordered against it and fails (the
            // loom model of a roll-over racing a late writer found a plain store was not
            // enough).
            word.swap(pack(epoch, if j == i { n } else { 0 }), Ordering::AcqRel);
        }
        slot.tag.store(epoch, Ordering::Release);
    }

    /// A consistent epoch and counts of one slot, read with its lock (a writer was moving it).
    #[cold]
    #[inline(never)]
    fn read_locked(slot: &Slot<N>) -> (u64, [u64; N]) {
        let _rolling = lock(&slot.rolling);
        let tag = slot.tag.load(Ordering::Acquire);
        (
            tag,
            core::array::from_fn(|j| slot.words[j].load(Ordering::Acquire) & COUNT_MASK),
        )
    }

    /// Adds `n` to count `i` of `epoch`.
    #[inline]
    pub(crate) fn add(&self, epoch: u64, i: usize, n: u64) {
        let slot = self.slot(epoch);
        if slot.tag.load(Ordering::Acquire) == epoch
            && Self::update(slot, i, epoch, |c| c.saturating_add(n))
        {
            return;
        }
        Self::add_slow(slot, epoch, i, n);
    }

    /// [`add`](Self::add) to a slot that moves to a new epoch (once per slot per window), or
    /// that another writer is moving.
    #[cold]
    #[inline(never)]
    fn add_slow(slot: &Slot<N>, epoch: u64, i: usize, n: u64) {
        let _rolling = lock(&slot.rolling);
        let tag = slot.tag.load(Ordering::Acquire);
        if tag < epoch {
            Self::roll(slot, tag, epoch, i, n);
        } else if tag == epoch {
            Self::update(slot, i, epoch, |c| c.saturating_add(n));
        }
        // A newer epoch holds the slot: this one has left every window.
    }

    /// Takes `n` back from count `i` of `epoch`, if its slot still counts it.
    pub(crate) fn sub(&self, epoch: u64, i: usize, n: u64) {
        let slot = self.slot(epoch);
        if slot.tag.load(Ordering::Acquire) == epoch {
            Self::update(slot, i, epoch, |c| c.saturating_sub(n));
        }
    }

    /// Empties every slot (a reset), keeping their epochs.
    pub(crate) fn clear(&self) {
        for slot in &self.slots {
            let _rolling = lock(&slot.rolling);
            let tag = slot.tag.load(Ordering::Acquire);
            for i in 0..N {
                Self::update(slot, i, tag, |_| 0);
            }
        }
    }

    /// The sums of the `N` counts over the window ending in `epoch`.
    pub(crate) fn sums(&self, epoch: u64) -> [u64; N] {
        let mut sums = [0; N];
        for slot in &self.slots {
            let before = slot.tag.load(Ordering::Acquire);
            let words: [u64; N] = core::array::from_fn(|j| slot.words[j].load(Ordering::Acquire));
            let (tag, counts) = if before & BUSY == 0 && slot.tag.load(Ordering::Acquire) == before
            {
                (before, words.map(|w| w & COUNT_MASK))
            } else {
                Self::read_locked(slot)
            };
            // A slot counts when its epoch is `epoch` or one of the `SLOTS - 1` before it (one
            // from after `epoch` wraps to a huge age).
            if epoch.wrapping_sub(tag) < SLOTS as u64 {
                for (sum, count) in sums.iter_mut().zip(counts) {
                    // At most `SLOTS` counts of 56 bits: no overflow.
                    *sum += count;
                }
            }
        }
        sums
    }
}

impl WindowedCounter<1> {
    /// The sum over the window ending in `epoch`.
    #[cfg(test)]
    pub(crate) fn sum(&self, epoch: u64) -> u64 {
        self.sums(epoch)[0]
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn at(nanos: u64) -> u64 {
        Epochs::new(Duration::from_secs(10)).epoch_at(nanos)
    }

    #[test]
    fn counts_expire_after_the_window() {
        let w = WindowedCounter::<1>::new();
        w.add(at(0), 0, 3);
        w.add(at(5 * S), 0, 4);
        assert_eq!(w.sum(at(5 * S)), 7);
        assert_eq!(w.sum(at(9 * S)), 7);
        assert_eq!(w.sum(at(10 * S)), 4, "slot 0 left the window");
        w.add(at(10 * S), 0, 1); // reuses slot 0 for a new epoch
        assert_eq!(w.sum(at(10 * S)), 5);
        assert_eq!(w.sum(at(40 * S)), 0);
    }

    /// Issue 11.4: with epochs kept modulo 2^30, a slot idle for 2^30 slots read as current
    /// again. Every idle length and jump is exact now.
    #[test]
    fn no_idle_length_or_clock_jump_resurrects_a_count() {
        for jump in [1 << 30, 1 << 31, 1 << 40, 1 << 62, (1 << 63) - 100] {
            let w = WindowedCounter::<1>::new();
            w.add(5, 0, 7);
            assert_eq!(w.sum(5 + jump), 0, "jump {jump}");
            w.add(5 + jump, 0, 1);
            assert_eq!(w.sum(5 + jump), 1, "jump {jump}");
            assert_eq!(w.sum(5 + jump + 9), 1, "jump {jump}");
            assert_eq!(w.sum(5 + jump + 10), 0, "jump {jump}");
        }
        // The largest epoch a clock of u64 nanoseconds can give, with the shortest window.
        let epochs = Epochs::new(Epochs::MIN_WINDOW);
        let last = epochs.epoch_at(u64::MAX);
        assert!(last < BUSY);
        let w = WindowedCounter::<1>::new();
        w.add(epochs.epoch_at(0), 0, 4);
        w.add(last, 0, 2);
        assert_eq!(w.sum(last), 2);
    }

    /// Issue 11.5: a slot kept 34 bits of count and stopped counting when full.
    #[test]
    fn a_slot_counts_past_any_32_or_34_bit_limit() {
        let w = WindowedCounter::<1>::new();
        for _ in 0..4 {
            w.add(3, 0, 1 << 40);
        }
        assert_eq!(w.sum(3), 1 << 42);
        w.add(3, 0, u64::MAX);
        assert_eq!(w.sum(3), COUNT_MASK, "saturates at 2^56 - 1, never wraps");
        // The low bits of the epoch in the count word do not leak into the count.
        w.add(255, 0, 1);
        assert_eq!(w.sum(255), 1);
    }

    #[test]
    fn a_late_writer_does_not_erase_a_newer_epoch() {
        let w = WindowedCounter::<1>::new();
        w.add(12, 0, 3);
        // Epoch 2 maps to the same slot as 12; its writer read the clock a window ago.
        w.add(2, 0, 5);
        assert_eq!(w.sum(12), 3);
        w.sub(2, 0, 3);
        assert_eq!(w.sum(12), 3);
        w.add(22, 0, 2);
        assert_eq!(w.sum(22), 2);
    }

    #[test]
    fn sub_and_clear() {
        let w = WindowedCounter::<1>::new();
        w.add(4, 0, 5);
        w.add(7, 0, 3);
        w.sub(7, 0, 1);
        assert_eq!(w.sum(7), 7);
        w.sub(7, 0, 10);
        assert_eq!(w.sum(7), 5, "saturates at zero");
        w.clear();
        assert_eq!(w.sum(7), 0);
        w.add(7, 0, 1);
        assert_eq!(w.sum(7), 1, "a cleared slot keeps its epoch");
    }

    #[test]
    fn concurrent_adds_are_all_counted() {
        let w = WindowedCounter::<1>::new();
        std::thread::scope(|s| {
            for t in 0..4 {
                let w = &w;
                s.spawn(move || {
                    for i in 0..10_000 {
                        // Half the threads also roll slots over to new epochs.
                        w.add(if t % 2 == 0 { 7 } else { 7 + (i % 3) }, 0, 1);
                    }
                });
            }
        });
        assert_eq!(w.sum(9), 40_000);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn single_thread() {
        crate::sync::model(|| {
            let w = WindowedCounter::<1>::new();
            w.add(3, 0, 1);
            assert_eq!(w.sum(3), 1);
        });
    }

    /// Two writers of one epoch and a reader: no count is lost, and the reader sees 0, 1 or 2.
    #[test]
    fn concurrent_adds_and_a_read() {
        crate::sync::model(|| {
            let w = Arc::new(WindowedCounter::<1>::new());
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    let w = w.clone();
                    thread::spawn(move || w.add(3, 0, 1))
                })
                .collect();
            let seen = w.sum(3);
            assert!(seen <= 2);
            for t in writers {
                t.join().unwrap();
            }
            assert_eq!(w.sum(3), 2);
        });
    }

    /// A roll-over (epoch 13 takes the slot of epoch 3) racing a reader of epoch 3 and a late
    /// writer of epoch 3: the reader never sees epoch 13's count as epoch 3's, and epoch 13's
    /// count is never erased.
    #[test]
    fn roll_over_against_a_reader_and_a_late_writer() {
        crate::sync::model(|| {
            let w = Arc::new(WindowedCounter::<1>::new());
            w.add(3, 0, 5);
            let roller = {
                let w = w.clone();
                thread::spawn(move || w.add(13, 0, 1))
            };
            let late = {
                let w = w.clone();
                thread::spawn(move || w.add(3, 0, 2))
            };
            let seen = w.sum(3);
            assert!(seen == 5 || seen == 7 || seen == 0, "saw {seen}");
            roller.join().unwrap();
            late.join().unwrap();
            assert_eq!(w.sum(13), 1);
        });
    }
}
