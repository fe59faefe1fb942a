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

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` is set (then
/// that says). mimalloc asks for huge pages on its arenas, and a host whose THP is `madvise` or
/// `always` then zeroes 2 MiB at each fresh page it touches: 14% of a small-PUT run's cycles, for
/// buffers that live a request (docs/performance.md, "mimalloc's huge pages"). Returns whether
/// they are off.
pub fn no_transparent_huge_pages() -> bool {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return thp_disabled();
    }
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integers only and sets a flag of this process
    // (inherited across fork and exec, which the node does not do).
    unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    thp_disabled()
}

/// Whether transparent huge pages are off for this process (PR_GET_THP_DISABLE).
fn thp_disabled() -> bool {
    // SAFETY: PR_GET_THP_DISABLE reads a flag of this process; no pointers.
    unsafe {
        libc::prctl(
            libc::PR_GET_THP_DISABLE,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        ) == 1
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
