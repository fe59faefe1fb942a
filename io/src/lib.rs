//! The device layer of edgeblob.
//!
//! Everything here is about bytes at offsets: aligned buffers, self-checking pages, devices opened
//! with `O_DIRECT` and driven through one io_uring ring per shard, the superblock that says how a
//! device is laid out, and the extent allocator of a shard's region. Nothing here knows what a blob
//! is.

pub mod alloc;
pub mod buf;
pub mod counted;
pub mod device;
pub mod executor;
pub mod failpoint;
pub mod fault;
pub mod file;
pub mod page;
pub mod routed;
pub mod superblock;
pub mod sync_device;
pub mod sys;
pub mod uring;
pub mod volume;

pub use alloc::{Extent, ExtentAllocator};
pub use buf::{AlignedBuf, FixedPool, PAGE_SIZE};
pub use device::{BlockDevice, IoFuture};
pub use file::DeviceFile;
pub use superblock::{Layout, Superblock};
