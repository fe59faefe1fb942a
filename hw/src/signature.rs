//! What the first bytes of a device say it holds, as `blkid` and SPDK's setup script judge a
//! device in use: a partition table, a file system, a RAID or volume-manager member, swap, an
//! encrypted volume, or an edgeblob superblock. Nothing is formatted over a signature found here.

/// How many bytes from the start of a device [`identify`] looks at (the deepest signature it
/// knows, ZFS's first uberblock, starts at 128 KiB).
pub const PROBE_BYTES: usize = 136 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// Only zeros in the bytes read: a new or erased device.
    Blank,
    /// An edgeblob superblock: a device some node formatted (the ledger says whose).
    Edgeblob,
    /// Something another system wrote, by name.
    Foreign(&'static str),
    /// Bytes that are not zeros and match no signature known here.
    Unrecognised,
}

/// `(offset, magic, name)`, checked in order: the more specific first (a GPT disk also carries a
/// protective MBR).
const MAGICS: &[(usize, &[u8], &str)] = &[
    (0, b"EDGEBLOB", "edgeblob"),
    (512, b"EFI PART", "gpt partition table"),
    (4096, b"EFI PART", "gpt partition table"),
    (0, b"XFSB", "xfs"),
    (0x438, &[0x53, 0xef], "ext2/3/4"),
    (0x10040, b"_BHRfS_M", "btrfs"),
    (0, b"LUKS\xba\xbe", "luks"),
    (0x200, b"LABELONE", "lvm2 physical volume"),
    (0, &[0xfc, 0x4e, 0x2b, 0xa9], "linux raid member"),
    (0x1000, &[0xfc, 0x4e, 0x2b, 0xa9], "linux raid member"),
    (4086, b"SWAPSPACE2", "swap"),
    (4086, b"SWAP-SPACE", "swap"),
    (3, b"NTFS    ", "ntfs"),
    (0x8001, b"CD001", "iso9660"),
    (0x20000, &[0x0c, 0xb1, 0xba, 0x00, 0x00, 0x00, 0x00, 0x00], "zfs member"),
    (510, &[0x55, 0xaa], "dos partition table or boot sector"),
];

/// What `head`, the first bytes of a device (ideally [`PROBE_BYTES`] of them), holds.
pub fn identify(head: &[u8]) -> Signature {
    for &(at, magic, name) in MAGICS {
        if head.get(at..at + magic.len()) == Some(magic) {
            return if name == "edgeblob" { Signature::Edgeblob } else { Signature::Foreign(name) };
        }
    }
    if head.iter().all(|&b| b == 0) {
        Signature::Blank
    } else {
        Signature::Unrecognised
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(at: usize, magic: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; PROBE_BYTES];
        v[at..at + magic.len()].copy_from_slice(magic);
        v
    }

    #[test]
    fn each_signature_is_named_and_zeros_are_blank() {
        assert_eq!(identify(&vec![0u8; PROBE_BYTES]), Signature::Blank);
        assert_eq!(identify(&with(0, b"EDGEBLOB")), Signature::Edgeblob);
        assert_eq!(identify(&with(0x438, &[0x53, 0xef])), Signature::Foreign("ext2/3/4"));
        assert_eq!(identify(&with(0, b"XFSB")), Signature::Foreign("xfs"));
        assert_eq!(identify(&with(0x10040, b"_BHRfS_M")), Signature::Foreign("btrfs"));
        assert_eq!(identify(&with(4086, b"SWAPSPACE2")), Signature::Foreign("swap"));
        let mut gpt = with(512, b"EFI PART");
        gpt[510] = 0x55;
        gpt[511] = 0xaa;
        assert_eq!(identify(&gpt), Signature::Foreign("gpt partition table"), "gpt before its protective mbr");
        assert_eq!(identify(&with(510, &[0x55, 0xaa])), Signature::Foreign("dos partition table or boot sector"));
        assert_eq!(identify(&with(100, b"x")), Signature::Unrecognised);
        assert_eq!(identify(&[]), Signature::Blank, "nothing read is nothing found");
    }
}
