//! Process-wide resources the device layer leans on: descriptor and locked-memory limits, and
//! (feature `mimalloc`, for the node) the allocator's cached memory. Here because they need
//! `unsafe` or FFI, which only this crate may hold.

/// Raises the open-file limit to its hard maximum (every connection and device is a
/// descriptor). Returns the soft limit in force afterwards.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// The soft open-file limit; 1024 if unknown.
pub fn nofile_limit() -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// The soft RLIMIT_MEMLOCK in bytes (what io_uring buffer registration may pin); 0 if unknown.
pub fn memlock_limit() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_MEMLOCK).map_or(0, |(soft, _)| soft.min(usize::MAX as u64) as usize)
}

/// Hands memory the allocator has cached but nobody uses back to the OS now, rather than when
/// its threads next allocate (mimalloc keeps freed pages per thread).
#[cfg(feature = "mimalloc")]
pub fn release_free_memory() {
    // SAFETY: mi_collect takes no pointers and only walks mimalloc's own heaps; `force` makes
    // it return memory eagerly. It is sound whether or not mimalloc is the global allocator.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
