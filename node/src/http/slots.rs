//! The bound on requests a shard runs at once.

use std::cell::Cell;

/// The requests a shard runs at once, counted by guards: a request's slot is given back when its
/// future ends or is dropped (hyper drops it when the client goes away mid-request), so no path
/// can leak one.
pub struct Slots {
    in_use: Cell<usize>,
    max: usize,
}

/// One request's slot, given back on drop.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots { in_use: Cell::new(0), max }
    }

    /// A slot, or `None` when all `max` are taken.
    pub fn take(&self) -> Option<Slot<'_>> {
        let n = self.in_use.get();
        (n < self.max).then(|| {
            self.in_use.set(n + 1);
            Slot(self)
        })
    }

    pub fn in_use(&self) -> usize {
        self.in_use.get()
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let n = self.0.in_use.get();
        debug_assert!(n > 0 && n <= self.0.max, "a slot given back that was never taken");
        self.0.in_use.set(n - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn slots_are_bounded_and_given_back_on_drop() {
        let s = Slots::new(2);
        let (a, b) = (s.take(), s.take());
        assert!(a.is_some() && b.is_some());
        assert!(s.take().is_none(), "a third request past a bound of two");
        drop(a);
        assert_eq!(s.in_use(), 1);
        let c = s.take();
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(s.in_use(), 0);
    }
}
