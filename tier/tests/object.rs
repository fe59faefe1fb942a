//! Sealed objects (the tier's metadata): what is sealed opens under its name, kind and node only;
//! every changed byte and every other key is refused; nothing is in the clear; and the header's
//! bytes are the ones format.md describes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgeblob_tier::{open_object, seal_object, seal_object_with, DataKey, NodeKey, ObjectKind, OBJECT_HEADER_LEN};

const NODE: [u8; 16] = [7; 16];
const NAME: &str = "0707/meta/0000000000000003/0000000000000009/0001/00000000";

fn node_key() -> NodeKey {
    NodeKey::new([0xAB; 16], [0x11; 32])
}

fn fixed() -> Vec<u8> {
    let key = node_key();
    seal_object_with(ObjectKind::MetaPart, &NODE, NAME, &key, DataKey::new([0x22; 32]), [0x33; 12], b"CANARY body")
}

#[test]
fn an_object_opens_under_its_name_kind_and_node_only() {
    let key = node_key();
    let obj = seal_object(ObjectKind::Manifest, &NODE, NAME, &key, b"CANARY manifest").unwrap();
    assert_eq!(open_object(ObjectKind::Manifest, &NODE, NAME, &key, &obj).unwrap(), b"CANARY manifest");
    assert!(!obj.windows(6).any(|w| w == b"CANARY"), "plaintext in the clear");
    assert!(open_object(ObjectKind::MetaPart, &NODE, NAME, &key, &obj).is_err(), "another kind");
    assert!(open_object(ObjectKind::Manifest, &[8; 16], NAME, &key, &obj).is_err(), "another node");
    assert!(open_object(ObjectKind::Manifest, &NODE, "other", &key, &obj).is_err(), "another name");
    let other = NodeKey::new([0xAB; 16], [0x12; 32]);
    assert!(open_object(ObjectKind::Manifest, &NODE, NAME, &other, &obj).is_err(), "another key");
    for at in [0, 20, 50, 100, OBJECT_HEADER_LEN, obj.len() - 1] {
        let mut bad = obj.clone();
        bad[at] ^= 1;
        assert!(open_object(ObjectKind::Manifest, &NODE, NAME, &key, &bad).is_err(), "byte {at} changed");
    }
    assert!(open_object(ObjectKind::Manifest, &NODE, NAME, &key, &obj[..obj.len() - 1]).is_err(), "cut short");
    assert!(open_object(ObjectKind::Manifest, &NODE, NAME, &key, &[]).is_err());
    // Two seals of one plaintext differ (a fresh data key each).
    let again = seal_object(ObjectKind::Manifest, &NODE, NAME, &key, b"CANARY manifest").unwrap();
    assert_ne!(obj, again);
}

#[test]
fn golden_bytes() {
    let obj = fixed();
    assert_eq!(obj.len(), OBJECT_HEADER_LEN + 11 + 16);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        hex(&obj[..48]),
        concat!(
            "45424f424a303031",                 // magic
            "01000000",                         // version
            "01000000",                         // kind: a metadata part
            "07070707070707070707070707070707", // node
            "abababababababababababababababab", // node key id
        )
    );
    assert_eq!(&obj[48..60], &[0x33; 12], "the wrapping's nonce");
    assert_eq!(u64::from_le_bytes(obj[108..116].try_into().unwrap()), 11 + 16, "the sealed body's length");
    assert_eq!(
        u64::from_le_bytes(obj[116..124].try_into().unwrap()),
        xxhash_rust::xxh3::xxh3_64(&obj[..116]),
        "the header's checksum"
    );
    assert_eq!(xxhash_rust::xxh3::xxh3_64(&obj), 13546926681169135660, "the whole object: format.md's bytes");
    assert_eq!(open_object(ObjectKind::MetaPart, &NODE, NAME, &node_key(), &obj).unwrap(), b"CANARY body");
}
