//! Golden bytes of the on-disk formats (docs/format.md). v1: the superblock, a self-checking page,
//! a log half header, and a log frame of every record type, under `tests/golden/v1/` (the log and
//! the pages are unchanged in v2). v2: its superblock, an index header slot, and a key and value
//! of every index table, under `tests/golden/v2/`.
//! Each is decoded to the value it must hold and encoded back byte for byte. A failure here
//! means the format changed: that must be a deliberate act, with a version bump, a migration
//! and new fixtures beside these (`EDGEBLOB_BLESS=1` writes fixtures that do not exist yet; it
//! never overwrites one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use edgeblob_io::superblock::{Layout, Member, Superblock, FORMAT_VERSION, SECRET_LEN};
use edgeblob_io::{page, Extent, PAGE_SIZE};
use edgeblob_meta::index::keys;
use edgeblob_meta::index::region::{Header, IndexPlace, HEADER_LEN};
use edgeblob_meta::index::space::{group_key, SpaceMap, GROUP_PAGES};
use edgeblob_meta::model::*;
use edgeblob_meta::wal::{encode_frame, parse_frame, HalfHeader, LOG_VERSION};
use edgeblob_meta::Record;

/// The format version and log version this build writes, which the newest fixtures are of.
const VERSION: u32 = 2;
const LOG: u32 = 1;

fn fixture(version: u32, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/v{version}/{name}"))
}

/// The committed v1 bytes of `name` (see [`golden_in`]).
fn golden(name: &str, encoded: &[u8]) -> Vec<u8> {
    golden_in(1, name, encoded)
}

/// The committed bytes of `name` in format `version`; with `EDGEBLOB_BLESS=1`, a missing fixture
/// is written from `encoded` first.
fn golden_in(version: u32, name: &str, encoded: &[u8]) -> Vec<u8> {
    let path = fixture(version, name);
    if !path.exists() && std::env::var_os("EDGEBLOB_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, encoded).unwrap();
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (EDGEBLOB_BLESS=1 writes it)", path.display()))
}

#[test]
fn these_fixtures_are_of_the_current_format() {
    assert_eq!((FORMAT_VERSION, LOG_VERSION), (VERSION, LOG), "a new version needs new fixtures and a migration");
}

fn superblock_of(version: u32) -> Superblock {
    let device_len = 1 << 30;
    Superblock {
        version,
        uuid: *b"golden-uuid-0001",
        device_len,
        layout: Layout::for_version(device_len, 2, version).unwrap(),
        created_unix: 1_795_339_877,
        secret: std::array::from_fn::<u8, SECRET_LEN, _>(|i| (i * 7 + 3) as u8),
        member: None,
        restoring: false,
    }
}

#[test]
fn superblock_v1_and_v2() {
    for version in [1, 2] {
        let sb = superblock_of(version);
        let bytes = golden_in(version, "superblock.bin", &sb.encode());
        assert_eq!(bytes.len(), PAGE_SIZE);
        let back = Superblock::decode(&bytes, sb.device_len).unwrap();
        assert_eq!(back, sb);
        assert_eq!(back.encode()[..], bytes[..]);
    }
    let v2 = superblock_of(2).layout;
    assert_eq!((v2.index_area, v2.segment_len), (1 << 20, 1 << 20), "a 1 GiB device of two shards");
    assert_eq!(v2.index_header(1), Some(v2.region_start(1) + v2.log_len));
}

/// Device 1 of a node on three: flags bit 0, then its place and its own uuid at 288..308.
#[test]
fn superblock_of_a_member_v2() {
    let sb = Superblock { member: Some(Member { index: 1, count: 3, uuid: *b"golden-device-01" }), ..superblock_of(2) };
    let bytes = golden_in(2, "superblock-member.bin", &sb.encode());
    let back = Superblock::decode(&bytes, sb.device_len).unwrap();
    assert_eq!(back, sb);
    assert_eq!(back.encode()[..], bytes[..]);
    assert_eq!((back.index(), back.devices(), back.uuid, back.device_uuid()), (1, 3, sb.uuid, *b"golden-device-01"));
    assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 1, "flags: a member");
    let plain = superblock_of(2).encode();
    assert_eq!(bytes[..12], plain[..12]);
    assert_eq!(bytes[16..288], plain[16..288], "the rest as a node on one device writes it");
    assert!(bytes[308..PAGE_SIZE - 8].iter().all(|&b| b == 0));
}

#[test]
fn index_header_v2() {
    let place = IndexPlace { shard: 1, uuid: *b"golden-uuid-0001", header: 40 << 20, segment_len: 1 << 20 };
    let h = Header {
        seq: 7,
        len: 5 << 20,
        high_water: (3 << 20) + 4096,
        segments: vec![48 << 20, 0, 50 << 20],
        spares: vec![],
    };
    let bytes = golden_in(2, "index-header.bin", &h.encode(&place));
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(Header::decode(&bytes, &place), Some(h.clone()), "a hole (0) is a segment not taken yet");
    assert_eq!(h.encode(&place), bytes);
    let other = IndexPlace { shard: 0, ..place };
    assert_eq!(Header::decode(&bytes, &other), None, "another shard's header is not this one's");
    // Spares follow the segments; a header written before they were kept names none (its
    // count's bytes were zeros), which is the fixture above.
    let h = Header { spares: vec![52 << 20, 60 << 20], ..h };
    let bytes = golden_in(2, "index-header-spares.bin", &h.encode(&place));
    assert_eq!(Header::decode(&bytes, &place), Some(h.clone()));
    assert_eq!(h.encode(&place), bytes);
}

#[test]
fn an_entry_of_every_index_table_v2() {
    let (_, blob_rec) = every_record().into_iter().find(|(n, _)| *n == "blob-put").unwrap();
    let Record::BlobPut { key: k, blob } = blob_rec else { unreachable!() };
    let container = every_record()
        .into_iter()
        .find_map(|(_, r)| match r {
            Record::ContainerPut { container, .. } => Some(container),
            _ => None,
        })
        .unwrap();
    let staged = keys::StagedEntry {
        container_id: 9,
        place: 3,
        block: StagedBlock { block: block("AAAC"), staged_ns: 1_795_339_881_000_000_000 },
    };
    let c = ChunkRef { flags: CHUNK_DEDUP | CHUNK_COMPRESSED, ..chunk(1) };
    let chunk_entry = ChunkEntry { chunk: c, location: Location::Local { offset: c.offset }, refs: 3 };
    let packed = Packed { pack: 7, entry: 1, at: 256 + (1 << 20) + 16 };
    let both = ChunkEntry { location: Location::Both { offset: c.offset, packed }, ..chunk_entry };
    let tiered = ChunkEntry { location: Location::Tiered { packed }, ..chunk_entry };
    // The image of one chunk of three pages at page 5 of group 2 (device bytes 64 MiB + 20 KiB).
    let mut space = SpaceMap::default();
    space.set(Extent { offset: 2 * GROUP_PAGES * 4096 + 5 * 4096, len: 3 * 4096 });
    let entries: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("space", group_key(2).to_vec(), space.encode_group(2).unwrap()),
        ("meta-space", keys::SPACE.to_vec(), keys::SPACE_VERSION.to_vec()),
        ("blobs", keys::blob(&k), keys::encode_blob(&blob)),
        ("blocks", keys::blob(&k), keys::encode_blocks(&blob.blocks)),
        ("blocks-piece", keys::piece(&keys::blob(&k), 4096), keys::encode_blocks(&blob.blocks)),
        ("staged", keys::staged(&k, b"AAAC"), keys::encode_staged(&staged)),
        ("catalog", keys::container("devstoreaccount1", "golden"), keys::encode_container(&container)),
        ("chunks", keys::chunk(&chunk_entry.chunk.id()), keys::encode_chunk(&chunk_entry)),
        ("dedup", chunk_entry.chunk.hash.to_vec(), keys::chunk(&chunk_entry.chunk.id())),
        ("meta-applied", keys::applied(3), 77u64.to_le_bytes().to_vec()),
        ("meta-clock", keys::CLOCK.to_vec(), keys::encode_clock(0x8DC_0000_0000_0004)),
        ("chunks-both", keys::chunk(&c.id()), keys::encode_chunk(&both)),
        ("chunks-tiered", keys::chunk(&c.id()), keys::encode_chunk(&tiered)),
        ("packs", keys::pack(7), keys::encode_pack(&pack_info())),
        ("meta-tier-generation", keys::TIER_GENERATION.to_vec(), 3u64.to_le_bytes().to_vec()),
        ("meta-warm", keys::WARM.to_vec(), keys::encode_warm([&k, &BlobKey::new("a", "b", "c")].into_iter())),
    ];
    for (table, key_bytes, value) in entries {
        let mut both = (key_bytes.len() as u32).to_le_bytes().to_vec();
        both.extend_from_slice(&key_bytes);
        both.extend_from_slice(&value);
        let bytes = golden_in(2, &format!("index-{table}.bin"), &both);
        assert_eq!(bytes, both, "{table}: encodes to other bytes");
    }
    assert_eq!(keys::parse_blob(&keys::blob(&k)), Some(k.clone()));
    assert_eq!(keys::parse_staged(&keys::staged(&k, b"\0id\0")), Some(k.clone()), "ids may hold NULs");
    let v = golden_in(2, "index-blobs.bin", &[]);
    let klen = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
    assert_eq!(keys::decode_blob(&v[4 + klen..]).unwrap(), blob);
    assert_eq!(keys::decode_blob_head(&v[4 + klen..]).unwrap(), blob.head(), "a listing reads the head alone");
    assert!(keys::decode_blob_head(&v[4 + klen..v.len() - 1]).is_err(), "and validates the whole value");
    let v = golden_in(2, "index-blocks.bin", &[]);
    let klen = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
    assert_eq!(keys::decode_blocks(&v[4 + klen..]).unwrap(), blob.blocks, "a blob's blocks kept apart");
    assert!(keys::is_head_only(&blob.head()) && !keys::is_head_only(&blob), "a head is told from a whole entry");
    let v = golden_in(2, "index-blocks-piece.bin", &[]);
    let klen = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
    assert_eq!(keys::parse_piece(&keys::blob(&k), &v[4..4 + klen]), Some(4096), "a piece's first byte");
    assert_eq!(keys::decode_blocks(&v[4 + klen..]).unwrap(), blob.blocks);
    let v = golden_in(2, "index-staged.bin", &[]);
    let klen = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
    assert_eq!(keys::decode_staged(&v[4 + klen..]).unwrap(), staged);
    let v = golden_in(2, "index-chunks.bin", &[]);
    let klen = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
    assert_eq!(keys::parse_chunk(&v[4..4 + klen]), Some(c.id()));
    assert_eq!(keys::decode_chunk(&v[4 + klen..]).unwrap(), chunk_entry);
    for (name, entry) in [("chunks-both", both), ("chunks-tiered", tiered)] {
        let v = golden_in(2, &format!("index-{name}.bin"), &[]);
        let klen = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
        assert_eq!(keys::decode_chunk(&v[4 + klen..]).unwrap(), entry, "{name}");
    }
    assert_eq!(both.local_extent(), chunk_entry.local_extent());
    let anchor = Extent { offset: c.offset, len: PAGE_SIZE as u64 };
    assert_eq!(tiered.local_extent(), Some(anchor), "a released chunk keeps the first page of its place");
    let v = golden_in(2, "index-packs.bin", &[]);
    assert_eq!(&v[4..12], &7u64.to_be_bytes(), "packs sort by number");
    assert_eq!(keys::decode_pack(&v[12..]).unwrap(), pack_info());
    let v = golden_in(2, "index-meta-applied.bin", &[]);
    let klen = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
    assert_eq!(keys::parse_applied(&v[4..4 + klen], &v[4 + klen..]), Some((3, 77)));
    let v = golden_in(2, "index-space.bin", &[]);
    let mut back = SpaceMap::default();
    back.load_group(&v[4..12], &v[12..]).unwrap();
    assert_eq!(back.runs(), space.runs());
    let v = golden_in(2, "index-meta-clock.bin", &[]);
    let klen = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
    assert_eq!((&v[4..4 + klen], keys::decode_clock(&v[4 + klen..])), (keys::CLOCK, Some(0x8DC_0000_0000_0004)));
    let v = golden_in(2, "index-meta-warm.bin", &[]);
    let klen = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
    assert_eq!(&v[4 + klen..4 + klen + 2], &(keys::blob(&k).len() as u16).to_le_bytes(), "a key after its length");
    assert_eq!(keys::decode_warm(&v[4 + klen..]), Some(vec![k.clone(), BlobKey::new("a", "b", "c")]));
    assert_eq!(keys::decode_warm(&v[4 + klen..v.len() - 1]), None, "a list cut short is damaged");
}

/// A block listed again shares its chunk list: stored once, read back shared.
#[test]
fn a_chunk_list_shared_by_blocks_is_stored_once_v2() {
    let one = block("AAAA");
    let blob = Blob {
        container_id: 9,
        etag: 0x8DC_0000_0000_0004,
        created_ns: 1_795_339_879_000_000_000,
        modified_ns: 1_795_339_880_000_000_000,
        size: 9 << 20,
        props: BlobProps::default(),
        blocks: vec![one.clone(), block("AAAB"), one],
        single_put: false,
    };
    let encoded = keys::encode_blob(&blob);
    let bytes = golden_in(2, "index-blob-shared-chunks.bin", &encoded);
    assert_eq!(bytes, encoded);
    let back = keys::decode_blob(&bytes).unwrap();
    assert_eq!(back, blob);
    assert!(std::sync::Arc::ptr_eq(&back.blocks[0].chunks, &back.blocks[2].chunks), "read back shared");
    assert!(!std::sync::Arc::ptr_eq(&back.blocks[0].chunks, &back.blocks[1].chunks));
    let unshared = Blob { blocks: vec![block("AAAA"), block("AAAB"), block("AAAA")], ..blob };
    assert_eq!(keys::encode_blob(&unshared).len(), bytes.len() + 3 * 40, "one list of three chunks less");
}

#[test]
fn page_v1() {
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
    let seed = 0xC0FF_EE01;
    let mut encoded = vec![0u8; page::pages_for(payload.len()) * PAGE_SIZE];
    page::encode(&payload, seed, &mut encoded);
    let bytes = golden("pages.bin", &encoded);
    assert_eq!(bytes, encoded, "two pages of 4092 payload bytes and a CRC-32C each");
    let mut back = vec![0u8; payload.len()];
    page::decode(&bytes, seed, 0, 0, &mut back).unwrap();
    assert_eq!(back, payload);
}

#[test]
fn log_half_header_v1() {
    let h = HalfHeader { shard: 1, generation: 7, first_lsn: 4242, uuid: *b"golden-uuid-0001" };
    let bytes = golden("log-half-header.bin", &h.encode());
    assert_eq!(HalfHeader::decode(&bytes, 1, b"golden-uuid-0001"), Some(h));
    assert_eq!(h.encode()[..], bytes[..]);
}

fn chunk(i: u8) -> ChunkRef {
    ChunkRef { hash: [i; 16], offset: 1 << 20 | (i as u64) << 12, stored_len: 4092 * 3 - 5, len: 1 << 20, flags: i % 4 }
}

fn block(id: &str) -> Block {
    Block { id: id.as_bytes().to_vec(), size: 3 << 20, chunks: vec![chunk(1), chunk(2), chunk(3)].into() }
}

fn props() -> BlobProps {
    BlobProps {
        content_type: Some("application/x-golden".into()),
        content_encoding: Some("zstd".into()),
        content_language: Some("en-GB".into()),
        content_disposition: Some("attachment; filename=\"g.bin\"".into()),
        cache_control: Some("no-cache".into()),
        content_md5: Some([0xD4; 16]),
        metadata: vec![("Mixed_Case".into(), "ü value".into()), ("k".into(), "".into())],
        copy: Some(CopyInfo {
            id: "0b2f3c4d-0000-4000-8000-000000000001".into(),
            source: "https://src.blob.core.windows.net/c/b?sv=2026-10-06&sig=x".into(),
            completed_ns: 1_795_339_877_000_000_001,
            bytes: 3 << 20,
        }),
    }
}

fn key() -> BlobKey {
    BlobKey::new("devstoreaccount1", "golden", "dir/ü name.bin")
}

/// One record of every type, named; the match has no wildcard, so a new record type does not
/// compile until it has a fixture here.
/// A pack as the tier records it (its header's bytes stand for a real one's).
fn pack_info() -> PackInfo {
    PackInfo {
        number: 7,
        generation: 3,
        shard: 1,
        len: 64 << 20,
        entries: 2,
        committed_ns: 1_795_339_882_000_000_000,
        header: (0..=255u8).collect(),
    }
}

fn every_record() -> Vec<(&'static str, Record)> {
    let container = Container {
        id: 9,
        etag: 0x8DC_0000_0000_0001,
        created_ns: 1_795_339_877_000_000_000,
        modified_ns: 1_795_339_878_000_000_000,
        metadata: vec![("Owner".into(), "golden".into())],
        public_access: PublicAccess::Blob,
    };
    let blob = Blob {
        container_id: 9,
        etag: 0x8DC_0000_0000_0002,
        created_ns: 1_795_339_879_000_000_000,
        modified_ns: 1_795_339_880_000_000_000,
        size: 6 << 20,
        props: props(),
        blocks: vec![block("AAAA"), block("AAAB")],
        single_put: false,
    };
    let blob_v2 = blob.clone();
    let records = vec![
        Record::CheckpointEnd,
        Record::ContainerPut { account: "devstoreaccount1".into(), name: "golden".into(), container },
        Record::ContainerDelete { account: "devstoreaccount1".into(), name: "golden".into(), id: 9 },
        Record::ContainerPurge { account: "devstoreaccount1".into(), name: "golden".into(), id: 9 },
        Record::BlockStaged {
            key: key(),
            container_id: 9,
            block: StagedBlock { block: block("AAAC"), staged_ns: 1_795_339_881_000_000_000 },
        },
        Record::BlobPut { key: key(), blob },
        Record::BlobPropsSet {
            key: key(),
            etag: 0x8DC_0000_0000_0003,
            modified_ns: 1_795_339_882_000_000_000,
            props: props(),
        },
        Record::BlobDelete { key: key() },
        Record::StagedDropped { key: key() },
        Record::BlockListPut {
            key: key(),
            blob: Box::new(Blob { blocks: Vec::new(), ..blob_v2.clone() }),
            list: vec![ListedBlock::Uncommitted(0), ListedBlock::Committed(1), ListedBlock::Uncommitted(0)],
        },
        Record::RefsApplied {
            source: 3,
            lsn: 77,
            changes: vec![
                RefChange { chunk: chunk(1), add: 2, drop: 0 },
                RefChange { chunk: ChunkRef { flags: CHUNK_DEDUP, ..chunk(2) }, add: 1, drop: 1 },
            ],
        },
        Record::TierStarted { generation: 3 },
        Record::PackCommitted {
            pack: Box::new(pack_info()),
            chunks: vec![
                PackedChunk { offset: chunk(1).offset, hash: chunk(1).hash, entry: 0, at: 256 },
                PackedChunk { offset: chunk(2).offset, hash: chunk(2).hash, entry: 1, at: 256 + (1 << 20) + 16 },
            ],
            replaces: vec![5, 6],
        },
        Record::ChunksReleased { chunks: vec![chunk(1).id(), chunk(2).id()] },
        Record::PackDeleted { number: 5 },
        Record::ChunksRestored {
            pack: 7,
            chunks: vec![
                RestoredChunk { chunk: chunk(1), entry: 0, at: 256 },
                RestoredChunk {
                    chunk: ChunkRef { flags: CHUNK_DEDUP, ..chunk(2) },
                    entry: 1,
                    at: 256 + (1 << 20) + 16,
                },
            ],
        },
        Record::ChunkHydrated { chunk: chunk(1).id() },
        Record::RefsReplaced {
            sources: vec![(2, 0), (5, 41)],
            changes: vec![
                RefChange { chunk: chunk(1), add: 1, drop: 3 },
                RefChange { chunk: ChunkRef { flags: CHUNK_DEDUP, ..chunk(2) }, add: 2, drop: 0 },
            ],
        },
    ];
    records
        .into_iter()
        .map(|r| {
            let name = match &r {
                Record::CheckpointEnd => "checkpoint-end",
                Record::ContainerPut { .. } => "container-put",
                Record::ContainerDelete { .. } => "container-delete",
                Record::ContainerPurge { .. } => "container-purge",
                Record::BlockStaged { .. } => "block-staged",
                Record::BlobPut { .. } => "blob-put",
                Record::BlobPropsSet { .. } => "blob-props-set",
                Record::BlobDelete { .. } => "blob-delete",
                Record::StagedDropped { .. } => "staged-dropped",
                // Format v2 logs only: v1 logs stay readable by the binaries that wrote them.
                Record::BlockListPut { .. } => "block-list-put",
                Record::RefsApplied { .. } => "refs-applied",
                Record::TierStarted { .. } => "tier-started",
                Record::PackCommitted { .. } => "pack-committed",
                Record::ChunksReleased { .. } => "chunks-released",
                Record::PackDeleted { .. } => "pack-deleted",
                Record::ChunksRestored { .. } => "chunks-restored",
                Record::ChunkHydrated { .. } => "chunk-hydrated",
                Record::RefsReplaced { .. } => "refs-replaced",
            };
            (name, r)
        })
        .collect()
}

#[test]
fn a_frame_of_every_record_type_v1_and_v2() {
    for (i, (name, rec)) in every_record().into_iter().enumerate() {
        let (lsn, group) = (1000 + i as u64, 1000);
        let mut frame = Vec::new();
        encode_frame(&mut frame, lsn, group, &rec.encode());
        let version = match rec {
            Record::BlockListPut { .. }
            | Record::RefsApplied { .. }
            | Record::TierStarted { .. }
            | Record::PackCommitted { .. }
            | Record::ChunksReleased { .. }
            | Record::PackDeleted { .. }
            | Record::ChunksRestored { .. }
            | Record::ChunkHydrated { .. }
            | Record::RefsReplaced { .. } => 2,
            _ => 1,
        };
        let bytes = golden_in(version, &format!("frame-{name}.bin"), &frame);
        let f = parse_frame(&bytes, 0).unwrap_or_else(|| panic!("{name}: the fixture is not a frame"));
        assert_eq!((f.lsn, f.group_lsn, f.end), (lsn, group, bytes.len()), "{name}");
        assert_eq!(
            Record::decode(f.payload).unwrap_or_else(|e| panic!("{name}: {e}")),
            rec,
            "{name}: decodes to another record"
        );
        assert_eq!(frame, bytes, "{name}: encodes to other bytes");
    }
}

/// The tier's metadata (format.md, "Tier metadata"): a part's stream of every item kind, and a
/// manifest, as the tier seals them.
#[test]
fn tier_metadata_items_and_manifest() {
    use edgeblob_meta::export::*;
    let blob = Blob {
        container_id: 9,
        etag: 0x8DC_0000_0000_0002,
        created_ns: 1_795_339_879_000_000_000,
        modified_ns: 1_795_339_880_000_000_000,
        size: 6 << 20,
        props: props(),
        blocks: Vec::new(),
        single_put: false,
    };
    let container = Container {
        id: 9,
        etag: 0x8DC_0000_0000_0001,
        created_ns: 1_795_339_877_000_000_000,
        modified_ns: 1_795_339_878_000_000_000,
        metadata: vec![("Owner".into(), "golden".into())],
        public_access: PublicAccess::Container,
    };
    let items = vec![
        ExportItem::Container { account: "devstoreaccount1".into(), name: "golden".into(), container },
        ExportItem::Blob { key: key(), blob: Box::new(blob), blocks: 2 },
        ExportItem::Block(block("AAAA")),
        ExportItem::Block(block("AAAB")),
        ExportItem::Pack(pack_info()),
        ExportItem::Chunk { chunk: chunk(1), packed: Packed { pack: 7, entry: 3, at: 4096 } },
    ];
    let mut stream = Vec::new();
    for i in &items {
        push_item(&mut stream, i);
    }
    let bytes = golden_in(2, "tier-meta-part.bin", &stream);
    let back: Vec<ExportItem> = edgeblob_meta::export::items(&bytes).map(|i| i.unwrap()).collect();
    assert_eq!(back, items, "the fixture decodes to other items");
    assert_eq!(stream, bytes, "the items encode to other bytes");
    assert!(edgeblob_meta::export::items(&bytes[..bytes.len() - 1]).any(|i| i.is_err()), "a cut stream");

    let manifest = Manifest {
        version: MANIFEST_VERSION,
        epoch: 12,
        generation: 4,
        cut_ns: 1_795_339_890_000_000_000,
        written_ns: 1_795_339_891_000_000_000,
        geometry: Geometry { device_len: 1 << 30, shards: 2, format_version: 2 },
        secret: vec![0x5A; 192],
        tier_generation: 4,
        parts: vec![PartRef {
            shard: 1,
            name: "meta/0000000000000004/000000000000000c/0001/b00000000".into(),
            len: 5000,
            digest: 0x0123_4567_89AB_CDEF,
            chunks: false,
        }],
        packs: vec![PackRef { shard: 1, generation: 3, number: 7, len: 64 << 20 }],
        previous: Some("manifest/0000000000000004-000000000000000b".into()),
        counts: ManifestCounts { containers: 1, blobs: 10, blocks: 20, chunks: 30, bytes: 40 },
        devices: Vec::new(),
    };
    let bytes = golden_in(2, "tier-manifest.bin", &manifest.encode());
    assert_eq!(Manifest::decode(&bytes).unwrap(), manifest);
    assert_eq!(manifest.encode(), bytes);

    // Of a node on three devices (version 2): the devices' header, then the record.
    let lens = vec![1 << 30, 1 << 30, 3 << 29];
    let several = Manifest {
        version: MANIFEST_VERSION_DEVICES,
        geometry: Geometry { shards: 6, ..manifest.geometry.clone() },
        devices: lens.clone(),
        ..manifest.clone()
    };
    let bytes = golden_in(2, "tier-manifest-devices.bin", &several.encode());
    assert_eq!(&bytes[..12], b"EBMANDEV\x03\0\0\0");
    assert_eq!(Manifest::decode(&bytes).unwrap(), several);
    assert_eq!(several.encode(), bytes);
    assert_eq!(several.device_lens(), lens);
    assert_eq!(manifest.device_lens(), vec![1 << 30], "one device: the geometry's");
    // The record alone, as a build reading only version 1 would take it: refused, not one device.
    let err = Manifest::decode(&bytes[48..]).unwrap_err();
    assert!(err.contains("version and devices disagree"), "{err}");
    // A header whose count is not the node's, or that says one device.
    let mut bad = bytes.clone();
    bad[8] = 1;
    assert!(Manifest::decode(&bad).is_err());
    bad[8] = 4;
    assert!(Manifest::decode(&bad).is_err());
}
