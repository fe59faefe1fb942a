//! The key hierarchy: the customer's key opens the node key, which opens every pack's data key.
//! Rotating the customer's key rewrites one small object and leaves every pack readable; another
//! or a revoked customer key opens nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeblob_tier::{
    ChunkInfo, CustomerKey, Header, NodeKey, PackError, PackId, PackWriter, Trailer, WrappedNodeKey, HEADER_LEN,
    TRAILER_LEN,
};

fn cmk(name: &str, byte: u8) -> CustomerKey {
    CustomerKey::from_file(name, &[byte; 32]).unwrap()
}

/// Reads chunk 0 of `pack` with `node_key`.
fn first_chunk(pack: &[u8], node_key: &NodeKey) -> Result<Vec<u8>, PackError> {
    let h = Header::parse(&pack[..HEADER_LEN])?;
    let key = h.data_key(node_key)?;
    let t = Trailer::parse(&pack[pack.len() - TRAILER_LEN..])?;
    let f = t.footer_range();
    let entries = t.entries(&h.id, &key, &pack[f.start as usize..f.end as usize])?;
    let r = entries[0].range();
    entries[0].open(&h.id, &key, &pack[r.start as usize..r.end as usize])
}

#[test]
fn rotating_the_customer_key_rewraps_the_node_key_and_every_pack_still_opens() {
    let node = NodeKey::generate().unwrap();
    let id = PackId { node: [1; 16], generation: 1, shard: 0, seq: 1 };
    let mut w = PackWriter::start(id, 0, &node).unwrap();
    let c = ChunkInfo { offset: 0, hash: [5; 16], len: 5, stored_len: 5, flags: 0 };
    w.add(c, b"bytes").unwrap();
    let (pack, _) = w.finish();

    let old = cmk("file:/etc/edgeblob/cmk-1", 0x41);
    let stored = WrappedNodeKey::wrap(&node, &old).unwrap().encode();
    assert!(stored.len() < 1024, "the object a rotation rewrites is small: {} bytes", stored.len());

    // A start: the stored object, opened by the customer's key, opens the packs.
    let opened = WrappedNodeKey::decode(&stored).unwrap().unwrap(&old).unwrap();
    assert_eq!(first_chunk(&pack, &opened).unwrap(), b"bytes");

    // Rotation: open with the old key, wrap with the new; the packs are not touched.
    let new = cmk("file:/etc/edgeblob/cmk-2", 0x42);
    let rotated =
        WrappedNodeKey::wrap(&WrappedNodeKey::decode(&stored).unwrap().unwrap(&old).unwrap(), &new).unwrap().encode();
    let reopened = WrappedNodeKey::decode(&rotated).unwrap().unwrap(&new).unwrap();
    assert_eq!(first_chunk(&pack, &reopened).unwrap(), b"bytes");

    // Another key, or the old name with other bytes (a revoked and replaced key), opens nothing.
    let w = WrappedNodeKey::decode(&rotated).unwrap();
    assert!(w.unwrap(&old).is_err(), "the retired key");
    assert!(w.unwrap(&cmk("file:/etc/edgeblob/cmk-2", 0x43)).is_err(), "the same name, other bytes");
    // A changed byte anywhere in the stored object is caught.
    for at in [0, 10, 30, rotated.len() - 20, rotated.len() - 1] {
        let mut bad = rotated.clone();
        bad[at] ^= 1;
        assert!(WrappedNodeKey::decode(&bad).and_then(|w| w.unwrap(&new)).is_err(), "a flip at {at}");
    }
}

#[test]
fn key_files_hold_32_bytes_raw_or_in_base64() {
    let raw = CustomerKey::from_file("a", &[7; 32]).unwrap();
    let b64 = CustomerKey::from_file("a", b"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").unwrap();
    let node = NodeKey::new([3; 16], [9; 32]);
    let w = WrappedNodeKey::wrap_with_nonce(&node, &raw, [0; 12]);
    assert_eq!(w, WrappedNodeKey::wrap_with_nonce(&node, &b64, [0; 12]), "the same key either way");
    for bad in [&b"short"[..], &[7; 31][..], b"bm90IDMyIGJ5dGVz"] {
        assert!(CustomerKey::from_file("a", bad).is_err());
    }
}

/// The stored object's bytes, fixed (format.md, "Tier packs").
#[test]
fn golden_bytes_of_a_wrapped_node_key() {
    let node = NodeKey::new([0xAB; 16], [0x11; 32]);
    let b = WrappedNodeKey::wrap_with_nonce(&node, &cmk("k", 0x44), [0x55; 12]).encode();
    assert_eq!(b.len(), 8 + 16 + 2 + 1 + 12 + 48 + 8);
    assert_eq!(&b[..8], b"EBNKEY01");
    assert_eq!(&b[8..24], &[0xAB; 16]);
    assert_eq!(&b[24..27], &[1, 0, b'k']);
    assert_eq!(&b[27..39], &[0x55; 12]);
    assert_eq!(xxhash_rust::xxh3::xxh3_64(&b), GOLDEN_XXH3);
}

const GOLDEN_XXH3: u64 = 11_024_468_023_635_350_408;

/// A node key wrapped by Key Vault: its bytes fixed (format.md, "Tier packs"), and what Key
/// Vault gives back is known right or wrong by the check value before any pack is opened.
#[test]
fn a_vault_wrapped_node_key_round_trips_and_checks_what_is_unwrapped() {
    use edgeblob_tier::{StoredNodeKey, VaultWrappedNodeKey};
    let node = NodeKey::new([0xAB; 16], [0x11; 32]);
    let kid = "https://v.vault.azure.net/keys/cmk/0123";
    let w = VaultWrappedNodeKey::new(&node, kid, vec![0xEE; 256]);
    let b = w.encode();
    assert_eq!(b.len(), 8 + 16 + 2 + kid.len() + 16 + 2 + 256 + 8);
    assert_eq!(&b[..8], b"EBNKEY02");
    assert_eq!(&b[24..26], &(kid.len() as u16).to_le_bytes());
    assert_eq!(xxhash_rust::xxh3::xxh3_64(&b), GOLDEN_VAULT_XXH3);
    let back = match StoredNodeKey::decode(&b).unwrap() {
        StoredNodeKey::Vault(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(back, w);
    assert_eq!(back.node_key(&[0x11; 32]).unwrap().id, [0xAB; 16]);
    assert!(back.node_key(&[0x12; 32]).is_err(), "another key is refused");
    assert!(back.node_key(&[0x11; 31]).is_err());
    let mut flipped = b.clone();
    flipped[30] ^= 1;
    assert!(StoredNodeKey::decode(&flipped).is_err());
    assert!(matches!(
        StoredNodeKey::decode(&WrappedNodeKey::wrap_with_nonce(&node, &cmk("k", 0x44), [0x55; 12]).encode()).unwrap(),
        StoredNodeKey::Local(_)
    ));
}

const GOLDEN_VAULT_XXH3: u64 = 5_996_243_536_404_901_587;
