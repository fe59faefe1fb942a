//! Page-aligned buffers, the only kind `O_DIRECT` accepts, and a per-shard pool of buffers
//! registered with the ring (`IORING_REGISTER_BUFFERS`) when the memlock limit allows it.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::rc::Rc;

/// Every device offset and length is a multiple of this; it is also the alignment of buffers.
pub const PAGE_SIZE: usize = 4096;

/// A buffer whose address and capacity are multiples of [`PAGE_SIZE`]. Its length (what `Deref`
/// shows) may be anything up to the capacity; device I/O uses the length rounded up to a page.
pub struct AlignedBuf {
    storage: Storage,
    len: usize,
}

enum Storage {
    Heap {
        ptr: NonNull<u8>,
        cap: usize,
    },
    /// A slot of a registered pool; goes back to the pool when dropped.
    Fixed {
        pool: Rc<PoolInner>,
        slot: u16,
    },
}

impl AlignedBuf {
    /// A zeroed buffer of at least `cap` bytes (rounded up to a page), with length `cap`.
    pub fn zeroed(cap: usize) -> AlignedBuf {
        let cap = round_up(cap.max(1), PAGE_SIZE);
        let layout = Layout::from_size_align(cap, PAGE_SIZE).expect("page-aligned layout");
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { storage: Storage::Heap { ptr, cap }, len: cap }
    }

    pub fn capacity(&self) -> usize {
        match &self.storage {
            Storage::Heap { cap, .. } => *cap,
            Storage::Fixed { pool, .. } => pool.slot_size,
        }
    }

    /// Sets the visible length. Bytes between the old and new length keep whatever they held.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity(), "length {len} past capacity {}", self.capacity());
        self.len = len;
    }

    /// The whole capacity, regardless of the visible length.
    pub fn full_mut(&mut self) -> &mut [u8] {
        let cap = self.capacity();
        // SAFETY: the allocation is `cap` bytes long and exclusively owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), cap) }
    }

    /// The registered-buffer index when this buffer belongs to a registered pool.
    pub fn fixed_index(&self) -> Option<u16> {
        match &self.storage {
            Storage::Fixed { pool, slot } if pool.registered.get() => Some(*slot),
            _ => None,
        }
    }

    pub fn as_ptr(&self) -> *const u8 {
        match &self.storage {
            Storage::Heap { ptr, .. } => ptr.as_ptr(),
            Storage::Fixed { pool, slot } => pool.slot_ptr(*slot),
        }
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.as_ptr() as *mut u8
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: len <= capacity and the memory is owned by self.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        // SAFETY: as above, and `&mut self` guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        match &self.storage {
            Storage::Heap { ptr, cap } => {
                let layout = Layout::from_size_align(*cap, PAGE_SIZE).expect("page-aligned layout");
                // SAFETY: allocated in `zeroed` with this very layout.
                unsafe { dealloc(ptr.as_ptr(), layout) }
            }
            Storage::Fixed { pool, slot } => pool.free.borrow_mut().push(*slot),
        }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf(len={}, cap={}, fixed={:?})", self.len, self.capacity(), self.fixed_index())
    }
}

pub fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// A shard's pool of equally sized buffers carved from one allocation, so that they can be
/// registered with the ring once and stay valid for its whole life.
#[derive(Clone)]
pub struct FixedPool {
    inner: Rc<PoolInner>,
}

struct PoolInner {
    base: AlignedBuf,
    slot_size: usize,
    free: RefCell<Vec<u16>>,
    registered: std::cell::Cell<bool>,
}

impl PoolInner {
    fn slot_ptr(&self, slot: u16) -> *const u8 {
        // SAFETY: slot < slots, so the offset lies inside `base`.
        unsafe { self.base.as_ptr().add(slot as usize * self.slot_size) }
    }
}

impl FixedPool {
    /// `slots` buffers of `slot_size` bytes (a page multiple).
    pub fn new(slots: u16, slot_size: usize) -> FixedPool {
        assert_eq!(slot_size % PAGE_SIZE, 0, "slot size must be page-aligned");
        let base = AlignedBuf::zeroed(slots as usize * slot_size);
        FixedPool {
            inner: Rc::new(PoolInner {
                base,
                slot_size,
                free: RefCell::new((0..slots).rev().collect()),
                registered: std::cell::Cell::new(false),
            }),
        }
    }

    pub fn slot_size(&self) -> usize {
        self.inner.slot_size
    }

    pub fn slots(&self) -> usize {
        self.inner.base.capacity() / self.inner.slot_size
    }

    /// The iovecs to register with the ring, one per slot.
    pub fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.slots() as u16)
            .map(|s| libc::iovec { iov_base: self.inner.slot_ptr(s) as *mut _, iov_len: self.inner.slot_size })
            .collect()
    }

    pub(crate) fn mark_registered(&self) {
        self.inner.registered.set(true);
    }

    pub fn is_registered(&self) -> bool {
        self.inner.registered.get()
    }

    /// A buffer of at least `len` bytes: a pool slot when one is free and big enough, else a
    /// plain heap buffer. The visible length is `len`.
    pub fn get(&self, len: usize) -> AlignedBuf {
        if len <= self.inner.slot_size {
            if let Some(slot) = self.inner.free.borrow_mut().pop() {
                return AlignedBuf { storage: Storage::Fixed { pool: self.inner.clone(), slot }, len };
            }
        }
        let mut b = AlignedBuf::zeroed(len);
        b.set_len(len);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_buffers_are_page_aligned_and_rounded() {
        let b = AlignedBuf::zeroed(5000);
        assert_eq!(b.as_ptr() as usize % PAGE_SIZE, 0);
        assert_eq!(b.capacity(), 8192);
        assert!(b.iter().all(|&x| x == 0));
    }

    #[test]
    fn pool_slots_return_on_drop_and_overflow_to_heap() {
        let pool = FixedPool::new(2, PAGE_SIZE);
        pool.mark_registered();
        let a = pool.get(100);
        let b = pool.get(PAGE_SIZE);
        assert!(a.fixed_index().is_some() && b.fixed_index().is_some());
        assert_ne!(a.fixed_index(), b.fixed_index());
        let c = pool.get(10);
        assert_eq!(c.fixed_index(), None, "pool exhausted: heap buffer");
        let big = pool.get(2 * PAGE_SIZE);
        assert_eq!(big.fixed_index(), None, "too big for a slot: heap buffer");
        drop(a);
        let d = pool.get(10);
        assert!(d.fixed_index().is_some());
        assert_eq!(d.as_ptr() as usize % PAGE_SIZE, 0);
    }
}
