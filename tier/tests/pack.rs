//! Packs: what is written reads back by ranges, one chunk at a time; every change to the bytes,
//! every move of a sealed chunk, and every wrong key is caught; nothing written is in the clear;
//! and the bytes are the ones format.md describes (golden bytes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeblob_tier::{
    verify, ChunkInfo, DataKey, Header, NodeKey, PackError, PackId, PackWriter, Trailer, HEADER_LEN, TRAILER_LEN,
};

const ID: PackId = PackId { node: [7; 16], generation: 3, shard: 1, seq: 42 };

fn node_key() -> NodeKey {
    NodeKey::new([0xAB; 16], [0x11; 32])
}

fn chunk(n: u8, stored: &[u8]) -> ChunkInfo {
    ChunkInfo {
        offset: 4096 * n as u64,
        hash: [n; 16],
        len: stored.len() as u32 * 2,
        stored_len: stored.len() as u32,
        flags: n % 2,
    }
}

/// Three chunks (one empty) with canary text in them, under fixed keys.
fn fixed_pack() -> (Vec<u8>, Vec<Vec<u8>>) {
    let chunks: Vec<Vec<u8>> = vec![b"CANARY-alpha: the first chunk".to_vec(), Vec::new(), b"CANARY-gamma".repeat(300)];
    let mut w = PackWriter::with_keys(ID, 1_700_000_000_000_000_000, &node_key(), DataKey::new([0x22; 32]), [0x33; 12]);
    for (i, c) in chunks.iter().enumerate() {
        let e = w.add(chunk(i as u8 + 1, c), c).unwrap();
        assert_eq!(e.index, i as u32);
    }
    let (pack, entries) = w.finish();
    assert_eq!(entries.len(), 3);
    (pack, chunks)
}

fn read(pack: &[u8], r: std::ops::Range<u64>) -> &[u8] {
    &pack[r.start as usize..r.end as usize]
}

#[test]
fn a_pack_reads_back_by_ranges_one_chunk_at_a_time() {
    let (pack, chunks) = fixed_pack();
    let t = verify(&pack).unwrap();
    assert_eq!(t.count, 3);
    // As a remote reader does: the header, the trailer, the footer, then one chunk's range.
    let h = Header::parse(&pack[..HEADER_LEN]).unwrap();
    assert_eq!(h.id, ID);
    assert_eq!(h.created_ns, 1_700_000_000_000_000_000);
    let key = h.data_key(&node_key()).unwrap();
    let t = Trailer::parse(&pack[pack.len() - TRAILER_LEN..]).unwrap();
    let entries = t.entries(&h.id, &key, read(&pack, t.footer_range())).unwrap();
    for (i, e) in entries.iter().enumerate().rev() {
        assert_eq!(e.chunk, chunk(i as u8 + 1, &chunks[i]));
        assert_eq!(e.open(&h.id, &key, read(&pack, e.range())).unwrap(), chunks[i], "chunk {i}");
    }
    assert_eq!(entries[0].at, HEADER_LEN as u64, "the chunks start after the header");
}

#[test]
fn nothing_written_is_in_the_clear() {
    let (pack, _) = fixed_pack();
    assert!(!pack.windows(6).any(|w| w == b"CANARY"), "a chunk's bytes appear in the pack");
    assert!(!pack.windows(8).any(|w| w == [0x22; 8]), "the data key appears in the pack");
}

#[test]
fn any_change_a_moved_chunk_or_another_key_is_refused() {
    let (pack, _) = fixed_pack();
    let h = Header::parse(&pack[..HEADER_LEN]).unwrap();
    let key = h.data_key(&node_key()).unwrap();
    let t = Trailer::parse(&pack[pack.len() - TRAILER_LEN..]).unwrap();
    let entries = t.entries(&h.id, &key, read(&pack, t.footer_range())).unwrap();
    let e = entries[0];

    // One flipped bit, anywhere in the pack: the checksum sees it without a key.
    for at in [0, 100, HEADER_LEN + 3, pack.len() / 2, pack.len() - TRAILER_LEN - 1] {
        let mut bad = pack.clone();
        bad[at] ^= 1;
        assert!(verify(&bad).is_err(), "a flip at {at}");
    }
    // In a chunk's range, its seal sees it too.
    let mut bad = read(&pack, e.range()).to_vec();
    bad[5] ^= 0x80;
    assert_eq!(e.open(&h.id, &key, &bad), Err(PackError::Sealed("chunk")));
    // A chunk's sealed bytes shown at another place, or as another pack's, or for another chunk.
    let moved = edgeblob_tier::Entry { index: 1, ..e };
    assert!(moved.open(&h.id, &key, read(&pack, e.range())).is_err());
    let other_pack = PackId { seq: 43, ..ID };
    assert!(e.open(&other_pack, &key, read(&pack, e.range())).is_err());
    let other_chunk = edgeblob_tier::Entry { chunk: ChunkInfo { hash: [9; 16], ..e.chunk }, ..e };
    assert!(other_chunk.open(&h.id, &key, read(&pack, e.range())).is_err());
    // A truncated range.
    assert!(e.open(&h.id, &key, &read(&pack, e.range())[..10]).is_err());
    // Another node key: refused by its id, and by the seal when the id is forged.
    assert!(h.data_key(&NodeKey::new([0xAB; 16], [0x12; 32])).is_err());
    assert!(h.data_key(&NodeKey::new([0xAC; 16], [0x11; 32])).is_err());
    // Another data key opens neither the footer nor a chunk.
    let wrong = DataKey::new([0x23; 32]);
    assert!(t.entries(&h.id, &wrong, read(&pack, t.footer_range())).is_err());
    assert!(e.open(&h.id, &wrong, read(&pack, e.range())).is_err());
    // A header or trailer that is not one.
    assert!(Header::parse(&pack[1..HEADER_LEN + 1]).is_err());
    assert!(Trailer::parse(&pack[pack.len() - TRAILER_LEN - 1..pack.len() - 1]).is_err());
    let mut w = PackWriter::start(ID, 0, &node_key()).unwrap();
    assert_eq!(w.add(chunk(1, b"abc"), b"ab"), Err(PackError::Length { got: 2, want: 3 }));
}

#[test]
fn fresh_packs_have_fresh_keys() {
    let a = PackWriter::start(ID, 0, &node_key()).unwrap().finish().0;
    let b = PackWriter::start(ID, 0, &node_key()).unwrap().finish().0;
    assert_ne!(a[80..140], b[80..140], "the wrapped data keys of two packs differ");
    for p in [&a, &b] {
        let h = Header::parse(&p[..HEADER_LEN]).unwrap();
        let t = verify(p).unwrap();
        assert_eq!(t.count, 0);
        assert!(t.entries(&h.id, &h.data_key(&node_key()).unwrap(), read(p, t.footer_range())).unwrap().is_empty());
    }
}

/// The bytes format.md describes, fixed: a change to the layout fails here first.
#[test]
fn golden_bytes() {
    let (pack, _) = fixed_pack();
    assert_eq!(pack.len(), 256 + (29 + 16) + 16 + (3600 + 16) + (4 + 3 * 48 + 16) + 32);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        hex(&pack[..80]),
        concat!(
            "45425041434b3031",
            "01000000",
            "00000000",                         // magic, version, reserved
            "07070707070707070707070707070707", // node
            "0300000000000000",
            "01000000",
            "2a00000000000000",
            "00000000",                         // generation, shard, seq, reserved
            "00002a36fe9c9717",                 // created_ns: 1.7e18
            "abababababababababababababababab", // node key id
        )
    );
    assert_eq!(&pack[80..92], &[0x33; 12], "the wrapping's nonce");
    assert!(pack[148..256].iter().all(|b| *b == 0), "the header's padding");
    let t = &pack[pack.len() - 32..];
    assert_eq!(&t[24..], b"EBPACKT1");
    assert_eq!(u32::from_le_bytes(t[12..16].try_into().unwrap()), 3);
    assert_eq!(
        xxhash_rust::xxh3::xxh3_64(&pack),
        GOLDEN_XXH3,
        "the pack's bytes changed: update format.md and this value together"
    );
}

const GOLDEN_XXH3: u64 = 10_541_362_797_496_411_421;
