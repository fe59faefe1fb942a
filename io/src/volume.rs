//! A node's devices as one address space. A node offset carries the device's index in its top 16
//! bits and the offset on that device below (`at`), so a node on one device addresses it exactly
//! as before, and a chunk's offset says which device holds it. Shards are spread evenly: device
//! `d` holds shards `d * per_device ..`, each in a region of that device (`Layout`).

use std::ops::Range;

use crate::superblock::{Layout, Superblock, SuperblockError};

/// Bits of a node offset below the device index.
pub const DEVICE_SHIFT: u32 = 48;
/// Bytes one device may hold.
pub const DEVICE_SPAN: u64 = 1 << DEVICE_SHIFT;

/// The node offset of `local` on device `device`.
pub fn at(device: usize, local: u64) -> u64 {
    debug_assert!(local < DEVICE_SPAN && device < 1 << 16);
    (device as u64) << DEVICE_SHIFT | local
}

/// The device a node offset lies on, and the offset there.
pub fn split(offset: u64) -> (usize, u64) {
    ((offset >> DEVICE_SHIFT) as usize, offset & (DEVICE_SPAN - 1))
}

/// Where every shard's region, log and data area lie, in node offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    /// Each device's own layout (`shards` is the count on each).
    devices: Vec<Layout>,
    /// Each device's length, and where it starts in the devices laid end to end (`linear`).
    lens: Vec<u64>,
    starts: Vec<u64>,
}

impl NodeLayout {
    /// The layout of a node whose devices hold these superblocks, in device order. They must be
    /// one node's: same identity, version and shards on each, each at its index.
    pub fn of(sbs: &[Superblock]) -> Result<NodeLayout, SuperblockError> {
        let bad = |m: String| Err(SuperblockError::Layout(m));
        let Some(first) = sbs.first() else { return bad("a node needs a device".into()) };
        for (i, sb) in sbs.iter().enumerate() {
            if sb.index() != i || sb.devices() != sbs.len() {
                return bad(format!(
                    "device {i} of {} says it is device {} of {}",
                    sbs.len(),
                    sb.index(),
                    sb.devices()
                ));
            }
            if sb.uuid != first.uuid || sb.secret != first.secret || sb.version != first.version {
                return bad(format!("device {i} belongs to another node (or another format of it)"));
            }
            if sb.layout.shards != first.layout.shards {
                return bad(format!("device {i} has {} shards, device 0 {}", sb.layout.shards, first.layout.shards));
            }
        }
        let lens: Vec<u64> = sbs.iter().map(|sb| sb.device_len).collect();
        let starts = lens.iter().scan(0u64, |sum, len| Some(std::mem::replace(sum, *sum + len))).collect();
        Ok(NodeLayout { devices: sbs.iter().map(|sb| sb.layout).collect(), lens, starts })
    }

    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// Shards on each device.
    pub fn per_device(&self) -> u32 {
        self.devices[0].shards
    }

    pub fn shards(&self) -> u32 {
        self.per_device() * self.devices.len() as u32
    }

    /// The device a shard's region lies on, and the shard's index among that device's regions.
    pub fn place(&self, shard: u32) -> (usize, u32) {
        debug_assert!(shard < self.shards());
        ((shard / self.per_device()) as usize, shard % self.per_device())
    }

    /// The shards whose regions lie on `device`.
    pub fn shards_on(&self, device: usize) -> Range<usize> {
        let per = self.per_device() as usize;
        device * per..(device + 1) * per
    }

    /// Device `device`'s own layout.
    pub fn device(&self, device: usize) -> &Layout {
        &self.devices[device]
    }

    pub fn device_len(&self, device: usize) -> u64 {
        self.lens[device]
    }

    /// Bytes of every device together.
    pub fn total_len(&self) -> u64 {
        self.lens.iter().sum()
    }

    pub fn region_start(&self, shard: u32) -> u64 {
        let (d, s) = self.place(shard);
        at(d, self.devices[d].region_start(s))
    }

    pub fn region_len(&self, shard: u32) -> u64 {
        self.devices[self.place(shard).0].region_len
    }

    /// The log half `half` of a shard: (offset, length).
    pub fn log_half(&self, shard: u32, half: u8) -> (u64, u64) {
        let (d, s) = self.place(shard);
        let (offset, len) = self.devices[d].log_half(s, half);
        (at(d, offset), len)
    }

    /// The data area of a shard: (offset, length).
    pub fn data_area(&self, shard: u32) -> (u64, u64) {
        let (d, s) = self.place(shard);
        let (offset, len) = self.devices[d].data_area(s);
        (at(d, offset), len)
    }

    /// Where a shard's index header slots lie (format 2; None in 1).
    pub fn index_header(&self, shard: u32) -> Option<u64> {
        let (d, s) = self.place(shard);
        self.devices[d].index_header(s).map(|o| at(d, o))
    }

    /// The length of the segments of a shard's index (0 in format 1).
    pub fn segment_len(&self, shard: u32) -> u64 {
        self.devices[self.place(shard).0].segment_len
    }

    /// The shard whose region holds node offset `offset`, if any.
    pub fn shard_of(&self, offset: u64) -> Option<u32> {
        let (d, local) = split(offset);
        let s = self.devices.get(d)?.shard_of(local)?;
        Some(d as u32 * self.per_device() + s)
    }

    /// Where `offset` falls with the devices laid end to end: a dense index over the node's bytes
    /// (for maps by position, which node offsets would make sparse).
    pub fn linear(&self, offset: u64) -> Option<u64> {
        let (d, local) = split(offset);
        (local < *self.lens.get(d)?).then(|| self.starts[d] + local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::superblock::FORMAT_VERSION;

    #[test]
    fn one_device_keeps_its_offsets() {
        let sbs = Superblock::new_node(&[1 << 30], 4, FORMAT_VERSION).unwrap();
        let l = NodeLayout::of(&sbs).unwrap();
        let own = sbs[0].layout;
        for s in 0..4 {
            assert_eq!(l.region_start(s), own.region_start(s));
            assert_eq!(l.data_area(s), own.data_area(s));
            assert_eq!(l.log_half(s, 1), own.log_half(s, 1));
            assert_eq!(l.index_header(s), own.index_header(s));
            assert_eq!(l.shard_of(own.region_start(s)), Some(s));
        }
        assert_eq!((l.linear(12345), l.linear(1 << 30), l.total_len()), (Some(12345), None, 1 << 30));
    }

    #[test]
    fn shards_spread_evenly_and_every_offset_maps_back_to_its_shard() {
        let sbs = Superblock::new_node(&[1 << 30, 1 << 30, 2 << 30], 2, FORMAT_VERSION).unwrap();
        let l = NodeLayout::of(&sbs).unwrap();
        assert_eq!((l.shards(), l.devices(), l.shards_on(1)), (6, 3, 2..4));
        for s in 0..6 {
            let (d, local) = l.place(s);
            assert_eq!((d, local), (s as usize / 2, s % 2));
            let (start, len) = l.data_area(s);
            assert_eq!(split(start), (d, sbs[d].layout.data_area(local).0));
            assert_eq!((l.shard_of(start), l.shard_of(start + len - 1)), (Some(s), Some(s)));
            assert!(l.log_half(s, 0).0 >= l.region_start(s) && l.log_half(s, 1).0 < start);
        }
        assert_eq!(l.shard_of(at(3, 1 << 20)), None, "no fourth device");
        assert_eq!(l.linear(at(2, 5)), Some((2 << 30) + 5));
        assert_eq!(l.linear(at(1, 1 << 30)), None, "past device 1's end");
        assert_eq!(l.total_len(), 4 << 30);
    }

    #[test]
    fn devices_of_different_nodes_or_out_of_order_are_refused() {
        let a = Superblock::new_node(&[1 << 30, 1 << 30], 2, FORMAT_VERSION).unwrap();
        let b = Superblock::new_node(&[1 << 30, 1 << 30], 2, FORMAT_VERSION).unwrap();
        assert!(NodeLayout::of(&[a[0].clone(), b[1].clone()]).is_err(), "another node's device");
        assert!(NodeLayout::of(&[a[1].clone(), a[0].clone()]).is_err(), "out of order");
        assert!(NodeLayout::of(&a[..1]).is_err(), "one of two");
        assert!(NodeLayout::of(&a).is_ok());
    }
}
