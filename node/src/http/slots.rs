//! Bounds on what a shard holds at once (requests running, connections open), counted by
//! guards: a slot is given back when its guard is dropped, whichever way its holder ends (a
//! request future that hyper drops when the client goes away mid-request, a connection task
//! that fails), so no path can leak one.

use std::cell::Cell;
use std::rc::Rc;

pub struct Slots {
    in_use: Rc<Cell<usize>>,
    max: usize,
}

/// One slot, given back on drop. It owns its counter, so it can move into a spawned task.
pub struct Slot {
    in_use: Rc<Cell<usize>>,
    max: usize,
}

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots { in_use: Rc::new(Cell::new(0)), max }
    }

    /// A slot, or `None` when all `max` are taken.
    pub fn take(&self) -> Option<Slot> {
        let n = self.in_use.get();
        (n < self.max).then(|| {
            self.in_use.set(n + 1);
            Slot { in_use: self.in_use.clone(), max: self.max }
        })
    }

    pub fn in_use(&self) -> usize {
        self.in_use.get()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let n = self.in_use.get();
        debug_assert!(n > 0 && n <= self.max, "a slot given back that was never taken");
        self.in_use.set(n - 1);
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
        assert!(s.take().is_none(), "a third past a bound of two");
        drop(a);
        assert_eq!(s.in_use(), 1);
        let c = s.take();
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(s.in_use(), 0);
    }
}
