//! A shard's metadata over its log and index (`meta::index::shard`) against the in-memory model
//! (`ShardMeta`, which applies every record to everything): with a cache far smaller than the
//! state (entries come and go), flushes every few records and log halves that switch often, the
//! visible state and every listing agree with the model, across restarts, and after a power cut
//! at any write the state is the model's after some prefix of the records that holds every
//! acknowledged one.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use edgeblob_io::fault::{Crash, Op, SimDisk};
use edgeblob_io::BlockDevice;
use edgeblob_meta::index::db::Index;
use edgeblob_meta::index::memtable::Memtable;
use edgeblob_meta::index::region::{IndexPlace, RegionBackend, Segments, SharedDevice};
use edgeblob_meta::index::shard::{
    build_filters, ensure, list_blobs, scan_all, space_in_use, wants_of, IndexConfig, ShardIndex, Want,
};
use edgeblob_meta::index::space::SpaceMap;
use edgeblob_meta::index::thread::IndexThread;
use edgeblob_meta::index::{keys, Table};
use edgeblob_meta::listing::{ListEntry, ListQuery};
use edgeblob_meta::model::*;
use edgeblob_meta::refs::RefCounts;
use edgeblob_meta::replay::format_log;
use edgeblob_meta::store::Commit;
use edgeblob_meta::wal::{AppendError, LogPlace};
use edgeblob_meta::{Record, ShardMeta};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;
const HALF: u64 = 32 * 1024;
const ACCOUNTS: [&str; 2] = ["acct", "other"];
const CONTAINERS: [&str; 2] = ["box", "box-2"];
const NAMES: usize = 24;

fn log_place() -> LogPlace {
    LogPlace { shard: 0, uuid: [4; 16], halves: [(MIB, HALF), (MIB + HALF, HALF)] }
}

fn index_place() -> IndexPlace {
    IndexPlace { shard: 0, uuid: [4; 16], header: 2 * MIB, segment_len: MIB }
}

fn cfg() -> IndexConfig {
    // A few entries resident at a time, a flush every few records.
    IndexConfig { cache_bytes: 6 * 1024, flush_bytes: 2 * 1024, ..IndexConfig::default() }
}

fn new_disk() -> SimDisk {
    let disk = SimDisk::new(32 * MIB as usize);
    let dev = disk.device();
    futures_lite_block_on(format_log(&log_place(), &dev)).unwrap();
    RegionBackend::format(&dev, &index_place()).unwrap();
    disk
}

/// The simulated disk completes operations at once.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(f)
}

async fn open(disk: &SimDisk) -> RefCell<ShardIndex> {
    open_with(disk, cfg()).await
}

async fn open_with(disk: &SimDisk, cfg: IndexConfig) -> RefCell<ShardIndex> {
    let m = open_unfiltered(disk, cfg).await;
    // As at a node's start: the key filters are built, so that keys the index never held are
    // settled without a read from here on.
    build_filters(&m, |_, _| {}).await.unwrap();
    assert!(m.borrow().filter_bytes() > 0);
    m
}

async fn open_unfiltered(disk: &SimDisk, cfg: IndexConfig) -> RefCell<ShardIndex> {
    let segments = Arc::new(Segments::default());
    let backend =
        RegionBackend::open(Arc::new(disk.device()) as SharedDevice, index_place(), segments.clone()).unwrap();
    let held = backend.segments();
    segments.grant((4..32).map(|i| i * MIB).filter(|s| !held.contains(s)));
    let ix = IndexThread::spawn("index-test".into(), Index::open(backend, MIB as usize).unwrap()).unwrap();
    let dev: Rc<dyn BlockDevice> = Rc::new(disk.device());
    let (m, _) = ShardIndex::open(log_place(), dev, ix, cfg).await.unwrap();
    RefCell::new(m)
}

fn key(rng: &mut StdRng) -> BlobKey {
    BlobKey::new(
        ACCOUNTS[rng.gen_range(0..2)],
        CONTAINERS[rng.gen_range(0..2)],
        &format!("{}/{:02}", ["a", "b", "c"][rng.gen_range(0..3)], rng.gen_range(0..NAMES)),
    )
}

fn all_keys() -> Vec<BlobKey> {
    let mut out = Vec::new();
    for a in ACCOUNTS {
        for c in CONTAINERS {
            for d in ["a", "b", "c"] {
                for n in 0..NAMES {
                    out.push(BlobKey::new(a, c, &format!("{d}/{n:02}")));
                }
            }
        }
    }
    out
}

fn chunk(n: u64) -> ChunkRef {
    ChunkRef { hash: [n as u8; 16], offset: 4096 * n, stored_len: 100, len: 100, flags: 0 }
}

/// The chunks reference changes are made to: pairs share a hash (a dedup candidate is the
/// first counted chunk with its hash), and every third is not flagged for dedup.
const COUNTED: u64 = 12;

fn counted(i: u64) -> ChunkRef {
    let flags = if i.is_multiple_of(3) { 0 } else { CHUNK_DEDUP };
    ChunkRef { hash: [100 + (i / 2) as u8; 16], offset: (1 << 30) + 4096 * i, stored_len: 100, len: 100, flags }
}

/// Reference changes from one of three source shards, valid against the model: never more
/// references dropped than it holds.
fn ref_changes(rng: &mut StdRng, m: &ShardMeta) -> Record {
    let source = rng.gen_range(0..3u32);
    let lsn = m.applied.get(&source).copied().unwrap_or(0) + rng.gen_range(1..4);
    let mut picked: Vec<u64> = (0..rng.gen_range(1..4)).map(|_| rng.gen_range(0..COUNTED)).collect();
    picked.sort_unstable();
    picked.dedup();
    let changes = picked
        .into_iter()
        .map(|i| {
            let chunk = counted(i);
            let held = m.chunks.get(&chunk.id()).map_or(0, |e| e.refs);
            let add = rng.gen_range(0..3);
            let drop = rng.gen_range(0..=held + add);
            RefChange { chunk, add: add.max(u32::from(drop == 0)), drop }
        })
        .collect();
    Record::RefsApplied { source, lsn, changes }
}

/// A pack of `chunks`, as a shard at the model's generation records it.
fn pack_of(m: &ShardMeta, number: u64, chunks: &[PackedChunk], n: u64) -> PackInfo {
    PackInfo {
        number,
        generation: m.tier_generation,
        shard: 0,
        len: 256 + 116 * chunks.len() as u64 + 64,
        entries: chunks.len() as u32,
        committed_ns: n as i64,
        header: vec![n as u8; 256],
    }
}

/// A tier's change, valid against the model: a new generation, a release, a promotion, or a
/// pack of chunks that are not in one yet (counted now or not: one freed during its upload is garbage in the pack).
fn tier_change(rng: &mut StdRng, m: &ShardMeta, n: u64) -> Record {
    if rng.gen_bool(0.2) {
        return Record::TierStarted { generation: m.tier_generation + 1 };
    }
    let both: Vec<ChunkId> = m
        .chunks
        .values()
        .filter(|e| matches!(e.location, Location::Both { .. }))
        .map(|e| e.chunk.id())
        .filter(|_| rng.gen_bool(0.5))
        .collect();
    if !both.is_empty() && rng.gen_bool(0.4) {
        return Record::ChunksReleased { chunks: both };
    }
    // A released chunk promoted back to flash by a random read.
    let tiered = m.chunks.values().find(|e| matches!(e.location, Location::Tiered { .. }));
    if let Some(e) = tiered.filter(|_| rng.gen_bool(0.3)) {
        return Record::ChunkHydrated { chunk: e.chunk.id() };
    }
    // A pack no chunk is in is deleted; one that holds some is repacked.
    if let Some(&old) = m.packs.keys().next().filter(|_| rng.gen_bool(0.3)) {
        let held: Vec<ChunkRef> =
            m.chunks.values().filter(|e| e.location.packed().is_some_and(|p| p.pack == old)).map(|e| e.chunk).collect();
        if held.is_empty() {
            return Record::PackDeleted { number: old };
        }
        let number = m.packs.keys().next_back().map_or(1, |l| l + 1);
        let chunks: Vec<PackedChunk> = held
            .iter()
            .enumerate()
            .map(|(i, c)| PackedChunk { offset: c.offset, hash: c.hash, entry: i as u32, at: 256 + 116 * i as u64 })
            .collect();
        let pack = pack_of(m, number, &chunks, n);
        return Record::PackCommitted { pack: Box::new(pack), chunks, replaces: vec![old] };
    }
    let number = m.packs.keys().next_back().map_or(1, |l| l + 1);
    let chunks: Vec<PackedChunk> = (0..COUNTED)
        .map(counted)
        .filter(|c| m.chunks.get(&c.id()).is_none_or(|e| e.location.packed().is_none()))
        .filter(|_| rng.gen_bool(0.5))
        .enumerate()
        .map(|(i, c)| PackedChunk { offset: c.offset, hash: c.hash, entry: i as u32, at: 256 + 116 * i as u64 })
        .collect();
    Record::PackCommitted { pack: Box::new(pack_of(m, number, &chunks, n)), chunks, replaces: Vec::new() }
}

/// A random change, valid against the model `m`.
fn change(rng: &mut StdRng, m: &ShardMeta, n: u64) -> Record {
    match rng.gen_range(0..20) {
        0..=3 => return ref_changes(rng, m),
        4 => return tier_change(rng, m, n),
        _ => {}
    }
    let k = key(rng);
    let cid = m.containers.get(&(k.account.clone(), k.container.clone())).map_or(1, |c| c.id);
    match rng.gen_range(0..100) {
        0..=34 => Record::BlockStaged {
            key: k,
            container_id: cid,
            block: StagedBlock {
                block: Block {
                    id: format!("blk{}", rng.gen_range(0..5)).into_bytes(),
                    size: n,
                    chunks: vec![chunk(n)].into(),
                },
                staged_ns: n as i64,
            },
        },
        35..=47 => {
            // A list of blocks by place, repeats included, from what is staged and committed.
            let staged = m.staged.get(&k).filter(|s| s.container_id == cid).map_or(0, |s| s.len() as u32);
            let committed =
                m.blobs.get(&k).filter(|b| b.container_id == cid && !b.single_put).map_or(0, |b| b.blocks.len() as u32);
            let list: Vec<ListedBlock> = (0..rng.gen_range(1..6))
                .filter_map(|_| match rng.gen_range(0..2) {
                    0 if staged > 0 => Some(ListedBlock::Uncommitted(rng.gen_range(0..staged))),
                    _ if committed > 0 => Some(ListedBlock::Committed(rng.gen_range(0..committed))),
                    _ => None,
                })
                .collect();
            let size = m.resolve_list(&k, cid, &list).expect("places within range").iter().map(|b| b.size).sum();
            let blob = Blob {
                container_id: cid,
                etag: n,
                created_ns: n as i64,
                modified_ns: n as i64,
                size,
                props: BlobProps::default(),
                blocks: Vec::new(),
                single_put: false,
            };
            Record::BlockListPut { key: k, blob: Box::new(blob), list }
        }
        48..=59 => {
            let blocks = m
                .staged
                .get(&k)
                .map(|s| s.blocks().map(|b| b.block.clone()).collect())
                .unwrap_or_else(|| vec![Block { id: Vec::new(), size: n, chunks: vec![chunk(n)].into() }]);
            let blob = Blob {
                container_id: cid,
                etag: n,
                created_ns: n as i64,
                modified_ns: n as i64,
                size: blocks.iter().map(|b| b.size).sum(),
                props: BlobProps { content_type: Some(format!("t/{n}")), ..Default::default() },
                blocks,
                single_put: false,
            };
            Record::BlobPut { key: k, blob }
        }
        60..=69 => Record::BlobPropsSet {
            key: k,
            etag: n,
            modified_ns: n as i64,
            props: BlobProps { metadata: vec![("m".into(), format!("{n}"))], ..Default::default() },
        },
        70..=84 => Record::BlobDelete { key: k },
        85..=89 => Record::StagedDropped { key: k },
        _ => Record::ContainerPut {
            account: k.account,
            name: k.container,
            container: Container {
                id: cid,
                etag: n,
                created_ns: 0,
                modified_ns: n as i64,
                metadata: Vec::new(),
                public_access: PublicAccess::None,
            },
        },
    }
}

/// What clients can see of one blob: the blob and its staged block ids in order.
type View = (Option<Blob>, Vec<Vec<u8>>);

fn view_of(m: &ShardMeta, k: &BlobKey) -> View {
    (
        m.blobs.get(k).cloned(),
        m.staged.get(k).map(|s| s.blocks().map(|b| b.block.id.clone()).collect()).unwrap_or_default(),
    )
}

async fn check(store: &RefCell<ShardIndex>, model: &ShardMeta) -> Result<(), String> {
    for k in all_keys() {
        // Ids alone (chunk lists may stay apart), then whole.
        ensure(store, &[Want::Blob(k.clone()), Want::StagedList(k.clone())]).await.unwrap();
        let ids = |m: &ShardMeta| -> Vec<Vec<u8>> {
            m.staged.get(&k).map(|s| s.held().map(|(b, _)| b.block.id.clone()).collect()).unwrap_or_default()
        };
        if ids(&store.borrow().state) != ids(model) {
            return Err(format!("{k:?}: staged ids {:?} != {:?}", ids(&store.borrow().state), ids(model)));
        }
        ensure(store, &[Want::Blob(k.clone()), Want::Staged(k.clone())]).await.unwrap();
        let got = view_of(&store.borrow().state, &k);
        if got != view_of(model, &k) {
            return Err(format!("{k:?}: {got:?} != {:?}", view_of(model, &k)));
        }
        let whole = |m: &ShardMeta| m.staged.get(&k).map(|s| s.blocks().cloned().collect::<Vec<_>>());
        if whole(&store.borrow().state) != whole(model) {
            return Err(format!("{k:?}: staged blocks {:?} != {:?}", whole(&store.borrow().state), whole(model)));
        }
    }
    if store.borrow().state.containers != model.containers {
        return Err("catalog differs".into());
    }
    if store.borrow().state.applied != model.applied {
        return Err(format!("applied LSNs: {:?} != {:?}", store.borrow().state.applied, model.applied));
    }
    if (store.borrow().state.tier_generation, &store.borrow().state.packs) != (model.tier_generation, &model.packs) {
        return Err(format!(
            "tier: generation {} and {} packs != {} and {}",
            store.borrow().state.tier_generation,
            store.borrow().state.packs.len(),
            model.tier_generation,
            model.packs.len()
        ));
    }
    if store.borrow().clock() != Some(model.clock) {
        return Err(format!("clock floor: {:?} != {}", store.borrow().clock(), model.clock));
    }
    for i in 0..COUNTED {
        let id = counted(i).id();
        ensure(store, &[Want::Chunk(id), Want::Dedup(id.hash)]).await.unwrap();
        let m = store.borrow();
        if m.state.chunks.get(&id) != model.chunks.get(&id) {
            return Err(format!("chunk {i}: {:?} != {:?}", m.state.chunks.get(&id), model.chunks.get(&id)));
        }
        if m.state.dedup.get(&id.hash) != model.dedup.get(&id.hash) {
            return Err(format!(
                "dedup of chunk {i}: {:?} != {:?}",
                m.state.dedup.get(&id.hash),
                model.dedup.get(&id.hash)
            ));
        }
    }
    // The allocator's image (what the index holds, changed by what is dirty) marks exactly the
    // space of the chunks counted.
    let mut want = SpaceMap::default();
    for e in model.chunks.values().filter_map(|e| e.local_extent()) {
        want.set(e);
    }
    let got = space_in_use(store).await.unwrap().ok_or("the index keeps no allocator's image")?;
    if got.runs() != want.runs() {
        return Err(format!("space in use: {:?} != {:?}", got.runs(), want.runs()));
    }
    for a in ACCOUNTS {
        for c in CONTAINERS {
            for (max, delimiter, prefix) in [(1000, None, ""), (3, Some("/"), ""), (5, None, "b/"), (2, Some("/"), "c")]
            {
                let mut q = ListQuery {
                    prefix: prefix.into(),
                    delimiter: delimiter.map(Into::into),
                    marker: None,
                    max,
                    uncommitted: false,
                };
                loop {
                    let got = list_blobs(store, a, c, 1, &q).await.unwrap();
                    let want = model.list_blobs(a, c, 1, &q);
                    if got != want {
                        return Err(format!("listing {a}/{c} {q:?}: {got:?} != {want:?}"));
                    }
                    match (got.1, got.0.last()) {
                        (true, Some(e)) => q.marker = Some(ListEntry::name(e).to_owned()),
                        _ => break,
                    }
                }
                // With the uncommitted blobs, a shard's part may end sooner where the index's and
                // the memory's are known to (more parts, each with some): the whole walk is what
                // must agree.
                let q = ListQuery { marker: None, uncommitted: true, ..q };
                let (got, want) = (walk(store, a, c, q.clone()).await, walk_model(model, a, c, q.clone()));
                if got != want {
                    return Err(format!("listing {a}/{c} with uncommitted blobs, {q:?}: {got:?} != {want:?}"));
                }
            }
        }
    }
    Ok(())
}

/// Every entry of a listing, page after page.
async fn walk(store: &RefCell<ShardIndex>, a: &str, c: &str, mut q: ListQuery) -> Vec<ListEntry> {
    let mut all: Vec<ListEntry> = Vec::new();
    loop {
        let (entries, more) = list_blobs(store, a, c, 1, &q).await.unwrap();
        assert!(!more || !entries.is_empty(), "a part with more gives some: {q:?}");
        all.extend(entries);
        match (more, all.last()) {
            (true, Some(e)) => q.marker = Some(ListEntry::name(e).to_owned()),
            _ => return all,
        }
    }
}

fn walk_model(model: &ShardMeta, a: &str, c: &str, mut q: ListQuery) -> Vec<ListEntry> {
    let mut all: Vec<ListEntry> = Vec::new();
    loop {
        let (entries, more) = model.list_blobs(a, c, 1, &q);
        assert!(!more || !entries.is_empty(), "a part with more gives some: {q:?}");
        all.extend(entries);
        match (more, all.last()) {
            (true, Some(e)) => q.marker = Some(ListEntry::name(e).to_owned()),
            _ => return all,
        }
    }
}

/// Makes what `rec` changes resident, as the engine does: a staged list's ids may show that it
/// is needed whole.
async fn ensure_for(store: &RefCell<ShardIndex>, rec: &Record) {
    let mut wants = wants_of(rec);
    loop {
        if store.borrow().all_resident(&wants) {
            // Held to its size all the same, as the engine's `resident` does.
            store.borrow_mut().trim(&wants);
        } else {
            ensure(store, &wants).await.unwrap();
        }
        // What it made resident stays until the next await: only what is still missing is
        // asked for again, with the rest.
        let needed = store.borrow().wants_for(rec);
        if store.borrow().all_resident(&needed) {
            return;
        }
        wants.extend(needed);
    }
}

/// Commits `rec` once what it changes is resident, waiting out a log half that is full (a flush
/// may still be due when a test's log halves hold a few records each, as for a client).
async fn commit_when_ready(store: &RefCell<ShardIndex>, rec: &Record) -> Commit {
    loop {
        let ready = store.borrow_mut().ready();
        ready.await.unwrap();
        ensure_for(store, rec).await;
        // Nothing awaits between the residency check and the commit.
        let tried = store.borrow_mut().commit(rec.clone());
        match tried {
            Err(AppendError::Busy) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
            other => return other.unwrap(),
        }
    }
}

/// Runs `n` random changes on `store` and the model; returns the model after each change.
async fn drive(
    store: &RefCell<ShardIndex>,
    model: &mut ShardMeta,
    rng: &mut StdRng,
    n: usize,
    at: u64,
) -> Vec<ShardMeta> {
    let mut after = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let rec = change(rng, model, at + i);
        let commit = commit_when_ready(store, &rec).await;
        model.apply(&rec);
        // Most changes are awaited; some overlap the next (a group commit).
        if rng.gen_bool(0.7) {
            commit.durable.await.unwrap();
        }
        after.push(model.clone());
    }
    let sync = store.borrow().sync();
    sync.await.unwrap();
    after
}

fn local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

#[test]
fn the_working_set_over_the_index_behaves_as_the_whole_state_in_memory() {
    for seed in 0..3 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut disk = new_disk();
        let mut model = ShardMeta::default();
        local(async {
            let mut at = 1;
            for round in 0..4u64 {
                let flush_bytes = if round.is_multiple_of(2) { 24 * 1024 } else { 2 * 1024 };
                // Staged lists evicted or read for their ids alone keep their chunk lists apart
                // in rounds 1 and 2.
                let apart_bytes = if round % 3 == 0 { IndexConfig::default().apart_bytes } else { 0 };
                let store = open_with(&disk, IndexConfig { flush_bytes, apart_bytes, ..cfg() }).await;
                check(&store, &model)
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed} round {round} after reopening: {e}"));
                drive(&store, &mut model, &mut rng, 250, at).await;
                at += 250;
                check(&store, &model).await.unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
                let m = store.borrow();
                assert!(m.epoch() >= 2, "flushes happened ({})", m.epoch());
                assert!(m.resident_bytes() <= 64 * 1024, "entries were evicted ({} resident)", m.resident_bytes());
                assert!(m.generation() > 2 * round + 1, "log halves switched ({})", m.generation());
                drop(m);
                // A crash with whatever the index thread was writing in flight.
                disk = disk.crash(Crash::LoseUnflushed);
            }
        });
    }
}

#[test]
fn a_power_cut_at_any_write_keeps_a_prefix_holding_every_acknowledged_change() {
    let mut cases = 0;
    for seed in 0..24u64 {
        let mut rng = StdRng::seed_from_u64(100 + seed);
        let disk = new_disk();
        let base = ShardMeta::default();
        let cut_at = rng.gen_range(5..probe_writes(100 + seed));
        let how = match seed % 3 {
            0 => Crash::LoseUnflushed,
            1 => Crash::Reorder { seed },
            _ => Crash::Tear { write: 1, sectors: 3 },
        };
        local(async {
            // Flushes that lag most of a half behind (so recovery replays the older half too),
            // or follow every few records.
            let flush_bytes = if seed.is_multiple_of(2) { 24 * 1024 } else { 2 * 1024 };
            let store = open_with(&disk, IndexConfig { flush_bytes, ..cfg() }).await;
            let mut model = base.clone();
            disk.cut_power(Op::Write, cut_at, how);
            // Every change is awaited here, so "acknowledged before the cut" is exact: a change
            // is acknowledged before the cut if no write had been cut when it was.
            let mut states = vec![base.clone()];
            let mut acked = 0;
            for i in 0..200u64 {
                let rec = change(&mut rng, &model, 1 + i);
                ensure(&store, &wants_of(&rec)).await.unwrap();
                let ready = store.borrow_mut().ready();
                ready.await.unwrap();
                ensure(&store, &wants_of(&rec)).await.unwrap();
                let commit = store.borrow_mut().commit(rec.clone()).unwrap();
                model.apply(&rec);
                commit.durable.await.unwrap();
                states.push(model.clone());
                if disk.count(Op::Write) <= cut_at {
                    acked = states.len() - 1;
                }
            }
            drop(store);
            let Some(image) = disk.power_cuts().pop() else { return };
            // Reopened with room for everything, all of it loaded once, then compared with each
            // candidate prefix.
            let store = open_with(&image, IndexConfig { cache_bytes: 64 * MIB as usize, ..cfg() }).await;
            for k in all_keys() {
                ensure(&store, &[Want::Blob(k.clone()), Want::Staged(k)]).await.unwrap();
            }
            ensure(&store, &counted_wants()).await.unwrap();
            let found = states[acked..].iter().position(|s| visible_is(&store, s));
            assert!(found.is_some(), "seed {seed}: cut at write {cut_at} ({how:?}): no prefix from {acked} matches");
            cases += 1;
        });
    }
    assert!(cases >= 12, "{cases} cuts fired");
}

/// How many writes the run of `seed` makes without a cut (so cuts land anywhere in it).
fn probe_writes(seed: u64) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let _ = rng.gen_range(5..6);
    let disk = new_disk();
    local(async {
        let flush_bytes = if seed.is_multiple_of(2) { 24 * 1024 } else { 2 * 1024 };
        let store = open_with(&disk, IndexConfig { flush_bytes, ..cfg() }).await;
        let before = disk.count(Op::Write);
        let mut model = ShardMeta::default();
        drive(&store, &mut model, &mut rng, 200, 1).await;
        disk.count(Op::Write) - before
    })
}

#[test]
fn recovery_replays_the_older_half_when_the_index_lags_behind_it() {
    let mut rng = StdRng::seed_from_u64(7);
    let disk = new_disk();
    let mut model = ShardMeta::default();
    let image = local(async {
        // Room for every entry: nothing need be read from the index while its thread is held.
        let store = open_with(&disk, IndexConfig { cache_bytes: 64 * MIB as usize, ..cfg() }).await;
        for k in all_keys() {
            ensure(&store, &[Want::Blob(k.clone()), Want::Staged(k)]).await.unwrap();
        }
        drive(&store, &mut model, &mut rng, 60, 1).await;
        store.borrow_mut().flush_now();
        let flushed = store.borrow().flushed();
        flushed.await;
        // Hold the index writer: no flush completes from here on.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let stalled = store.borrow().index_thread().write(move |_| {
            let _ = held.recv();
        });
        let generation = store.borrow().generation();
        let mut at = 61;
        while store.borrow().generation() == generation {
            drive(&store, &mut model, &mut rng, 1, at).await;
            at += 1;
        }
        drive(&store, &mut model, &mut rng, 5, at).await;
        let lsn = store.borrow().lsn();
        let image = disk.crash(Crash::LoseUnflushed);
        release.send(()).unwrap();
        stalled.await.unwrap();
        assert!(lsn > 0, "the index held a flush from before the stall");
        image
    });
    local(async {
        let store = open(&image).await;
        check(&store, &model).await.unwrap();
    });
}

/// Whether the store's resident state is `model`'s (blobs, staged lists, catalog, chunk table,
/// dedup candidates, applied LSNs and the clock floor).
fn visible_is(store: &RefCell<ShardIndex>, model: &ShardMeta) -> bool {
    let m = store.borrow();
    m.state.containers == model.containers
        && all_keys().iter().all(|k| view_of(&m.state, k) == view_of(model, k))
        && m.state.chunks == model.chunks
        && m.state.dedup == model.dedup
        && m.state.applied == model.applied
        && m.clock() == Some(model.clock)
}

/// Every chunk table and dedup entry the tests can make.
fn counted_wants() -> Vec<Want> {
    (0..COUNTED).flat_map(|i| [Want::Chunk(counted(i).id()), Want::Dedup(counted(i).hash)]).collect()
}

/// Making one entry resident never evicts another the same change needs, however small the
/// cache: here the blob is resident and clean, its staged blocks are read (no key filter yet,
/// as before a node's filters are built) and settled absent, and a cache of one byte would
/// otherwise evict the blob to make room.
#[test]
fn entries_a_change_needs_stay_resident_together_in_the_smallest_cache() {
    let disk = new_disk();
    local(async {
        let store =
            open_unfiltered(&disk, IndexConfig { cache_bytes: 1, flush_bytes: 1, ..IndexConfig::default() }).await;
        let k = BlobKey::new("acct", "box", "a/00");
        let blob = Blob {
            container_id: 1,
            etag: 1,
            created_ns: 1,
            modified_ns: 1,
            size: 100,
            props: BlobProps::default(),
            blocks: vec![Block { id: Vec::new(), size: 100, chunks: vec![chunk(1)].into() }],
            single_put: true,
        };
        let rec = Record::BlobPut { key: k.clone(), blob };
        ensure(&store, &wants_of(&rec)).await.unwrap();
        let commit = store.borrow_mut().commit(rec).unwrap();
        commit.durable.await.unwrap();
        // Written to the index and clean: evictable from here on. Another key's entry takes the
        // whole cache (both of this key's go), then the blob alone is read back.
        edgeblob_meta::index::shard::flush_all(&store).await.unwrap();
        ensure(&store, &[Want::Staged(BlobKey::new("acct", "box", "b/01"))]).await.unwrap();
        assert!(store.borrow().missing(&wants_of(&Record::BlobDelete { key: k.clone() })).len() == 2);
        let blob_only = [Want::Blob(k.clone())];
        ensure(&store, &blob_only).await.unwrap();
        assert!(store.borrow().all_resident(&blob_only));
        let both = [Want::Blob(k.clone()), Want::Staged(k.clone())];
        ensure(&store, &both).await.unwrap();
        assert!(store.borrow().all_resident(&both), "the blob was evicted to make room for its staged blocks");
    });
}

/// Every record's reference changes stay in the outbox until delivered, across flushes, a crash
/// and a restart (the records the index covers from its outbox table, the others by replay); a
/// change delivered may come back after a crash (its counting shard logs it once), one not
/// delivered never goes missing.
#[test]
fn undelivered_reference_changes_survive_a_crash_and_delivered_ones_are_dropped() {
    use edgeblob_meta::refs::RefCounts;
    use std::collections::BTreeMap;
    let mut rng = StdRng::seed_from_u64(11);
    let disk = new_disk();
    let mut model = ShardMeta::default();
    let mut all: BTreeMap<u64, Vec<RefChange>> = BTreeMap::new();
    let mut pending: BTreeMap<u64, Vec<RefChange>> = BTreeMap::new();
    let image = local(async {
        let store = open(&disk).await;
        for i in 1..=300u64 {
            let rec = change(&mut rng, &model, i);
            ensure(&store, &wants_of(&rec)).await.unwrap();
            let ready = store.borrow_mut().ready();
            ready.await.unwrap();
            ensure(&store, &wants_of(&rec)).await.unwrap();
            let commit = store.borrow_mut().commit(rec.clone()).unwrap();
            let released = model.apply(&rec);
            let added = model.added_by(&rec);
            if !added.is_empty() || !released.is_empty() {
                let changes = RefCounts::changes(&added, &released);
                all.insert(commit.lsn, changes.clone());
                pending.insert(commit.lsn, changes);
            }
            commit.durable.await.unwrap();
            if rng.gen_bool(0.1) {
                // Deliveries lag: dozens of records are in flight at the crash.
                let upto = commit.lsn.saturating_sub(rng.gen_range(20..40));
                store.borrow_mut().delivered(upto);
                pending.retain(|l, _| *l > upto);
            }
            let got: Vec<u64> = store.borrow().outbox(usize::MAX).into_iter().map(|(l, _)| l).collect();
            assert_eq!(got, pending.keys().copied().collect::<Vec<_>>(), "the outbox holds what is undelivered");
        }
        assert!(store.borrow().epoch() >= 2, "flushes wrote outbox entries");
        disk.crash(Crash::LoseUnflushed)
    });
    assert!(pending.len() > 10 && all.len() > pending.len() + 10, "{} pending of {}", pending.len(), all.len());
    local(async {
        let store = open(&image).await;
        let got: BTreeMap<u64, Vec<RefChange>> =
            store.borrow().outbox(usize::MAX).into_iter().map(|(l, c)| (l, (*c).clone())).collect();
        for (l, changes) in &pending {
            assert_eq!(got.get(l), Some(changes), "record {l}'s changes, not delivered, are still to send");
        }
        for (l, changes) in &got {
            assert_eq!(all.get(l), Some(changes), "record {l}: only a record's own changes come back");
        }
    });
}

/// While the outbox holds `max_undelivered` changes no counting shard has taken, changes that
/// add to the metadata are refused (a 503 to the client: memory for the outbox stays bounded
/// when a counting shard cannot log); deletes still pass, and once the changes are delivered
/// growth is admitted again.
#[test]
fn a_full_outbox_refuses_growth_until_its_changes_are_delivered() {
    let disk = new_disk();
    local(async {
        let store = open_with(&disk, IndexConfig { max_undelivered: 3, ..cfg() }).await;
        let stage = |i: u64| Record::BlockStaged {
            key: BlobKey::new("a", "c", &format!("b{i}")),
            container_id: 1,
            block: StagedBlock {
                block: Block { id: b"blk".to_vec(), size: 1, chunks: vec![chunk(i)].into() },
                staged_ns: 1,
            },
        };
        let commit = |rec: Record| {
            let store = &store;
            async move {
                ensure(store, &wants_of(&rec)).await.unwrap();
                let ready = store.borrow_mut().ready();
                ready.await.unwrap();
                ensure(store, &wants_of(&rec)).await.unwrap();
                let res = store.borrow_mut().commit(rec);
                match res {
                    Ok(c) => {
                        c.durable.await.unwrap();
                        Ok(c.lsn)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let mut last = 0;
        for i in 1..=3 {
            last = commit(stage(i)).await.unwrap();
        }
        assert_eq!(
            commit(stage(4)).await,
            Err(edgeblob_meta::MetaError::Undelivered),
            "three changes wait: growth waits"
        );
        let dropped = commit(Record::StagedDropped { key: BlobKey::new("a", "c", "b1") }).await;
        assert!(dropped.is_ok(), "a delete passes: {dropped:?}");
        store.borrow_mut().delivered(last);
        assert_eq!(store.borrow().outbox(usize::MAX).len(), 1, "the drop is still to deliver");
        assert!(commit(stage(4)).await.is_ok(), "delivered: growth is admitted again");
    });
}

/// The key filters are built while changes go on and flushes write new keys: whatever the
/// interleaving, no key the index holds is missing from them (a missing one would make an
/// entry the index holds look absent, and the state would part from the model).
#[test]
fn key_filters_built_while_changes_flush_miss_no_key() {
    for seed in 0..4 {
        let mut rng = StdRng::seed_from_u64(100 + seed);
        let disk = new_disk();
        let mut model = ShardMeta::default();
        let image = local(async {
            let store = open(&disk).await;
            drive(&store, &mut model, &mut rng, 200, 1).await;
            store.borrow_mut().flush_now();
            disk.crash(Crash::LoseUnflushed)
        });
        local(async {
            let store = open_unfiltered(&image, cfg()).await;
            assert_eq!(store.borrow().filter_bytes(), 0, "not built yet");
            let build = build_filters(&store, |_, _| {});
            let changes = drive(&store, &mut model, &mut rng, 150, 1000);
            let (built, _) = tokio::join!(build, changes);
            built.unwrap();
            assert!(store.borrow().filter_bytes() > 0);
            drive(&store, &mut model, &mut rng, 100, 2000).await;
            check(&store, &model).await.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        });
    }
}

/// A flush of records that carry no stamp still writes the clock floor: a start must never
/// take an index written by this build for one written before the floor was kept.
#[test]
fn the_first_flush_keeps_the_clock_floor_whatever_it_holds() {
    let disk = new_disk();
    let image = local(async {
        let store = open(&disk).await;
        let rec = Record::BlockStaged {
            key: BlobKey::new("a", "c", "b"),
            container_id: 1,
            block: StagedBlock {
                block: Block { id: b"blk".to_vec(), size: 1, chunks: vec![chunk(1)].into() },
                staged_ns: 1,
            },
        };
        commit_flushed(&store, rec).await;
        assert!(store.borrow().lsn() > 0, "the flush is in the index");
        disk.crash(Crash::LoseUnflushed)
    });
    local(async {
        let store = open(&image).await;
        assert_eq!(store.borrow().clock(), Some(0), "the floor is known: nothing stamped yet");
    });
}

/// Commits `rec` and waits until it is durable and flushed into the index.
async fn commit_flushed(store: &RefCell<ShardIndex>, rec: Record) {
    ensure(store, &wants_of(&rec)).await.unwrap();
    let commit = store.borrow_mut().commit(rec).unwrap();
    commit.durable.await.unwrap();
    store.borrow_mut().flush_now();
    let flushed = store.borrow().flushed();
    flushed.await;
    store.borrow_mut().reap();
}

fn space_of(chunks: &[ChunkRef]) -> Vec<edgeblob_io::Extent> {
    let mut map = SpaceMap::default();
    for c in chunks {
        map.set(c.extent());
    }
    map.runs()
}

#[test]
fn a_chunk_written_where_one_was_freed_keeps_its_space_in_the_image() {
    let disk = new_disk();
    // Two chunks of one place: the first freed, the second written there, in one flush.
    let freed = ChunkRef { hash: [1; 16], ..counted(0) };
    let again = ChunkRef { hash: [0; 16], ..counted(0) };
    let other = counted(1);
    let image = local(async {
        let store = open(&disk).await;
        let add = |chunk: ChunkRef, lsn: u64| Record::RefsApplied {
            source: 1,
            lsn,
            changes: vec![RefChange { chunk, add: 1, drop: 0 }],
        };
        commit_flushed(&store, add(freed, 1)).await;
        commit_flushed(&store, add(other, 2)).await;
        let drop =
            Record::RefsApplied { source: 1, lsn: 3, changes: vec![RefChange { chunk: freed, add: 0, drop: 1 }] };
        ensure(&store, &wants_of(&drop)).await.unwrap();
        store.borrow_mut().commit(drop).unwrap();
        // Its key sorts before the freed one's: the order of the keys must not decide.
        assert!(again.id() < freed.id());
        commit_flushed(&store, add(again, 4)).await;
        let runs = space_in_use(&store).await.unwrap().unwrap().runs();
        assert_eq!(runs, space_of(&[again, other]));
        disk.crash(Crash::LoseUnflushed)
    });
    local(async {
        let store = open(&image).await;
        let (lsn, applied) = (store.borrow().lsn(), store.borrow().applied());
        assert_eq!(lsn, applied, "nothing replayed: the image is the index's");
        assert_eq!(space_in_use(&store).await.unwrap().unwrap().runs(), space_of(&[again, other]));
    });
}

#[test]
fn an_index_written_before_the_image_was_kept_builds_it_at_its_next_flush() {
    let disk = new_disk();
    let mut rng = StdRng::seed_from_u64(5);
    let mut model = ShardMeta::default();
    let disk = local(async {
        let store = open(&disk).await;
        drive(&store, &mut model, &mut rng, 200, 1).await;
        store.borrow_mut().flush_now();
        let flushed = store.borrow().flushed();
        flushed.await;
        drop(store);
        disk.crash(Crash::LoseUnflushed)
    });
    assert!(!model.chunks.is_empty(), "the changes counted chunks");
    // What an index written by an earlier build looks like: no image, no mark of one.
    let backend =
        RegionBackend::open(Arc::new(disk.device()) as SharedDevice, index_place(), Arc::new(Segments::default()))
            .unwrap();
    let ix = Index::open(backend, MIB as usize).unwrap();
    let mut m = edgeblob_meta::index::memtable::Memtable::default();
    for (k, _) in ix.range(Table::Space, b"", None, usize::MAX).unwrap().entries {
        m.delete(Table::Space, k);
    }
    m.delete(Table::Meta, keys::SPACE.to_vec());
    m.applied(ix.lsn().unwrap());
    ix.write(&m).unwrap();
    drop(ix);
    local(async {
        let store = open(&disk).await;
        assert!(space_in_use(&store).await.unwrap().is_none(), "no image: the chunk table must be read");
        // A flush of one change to one other chunk: the image holds every chunk counted.
        let source = 2;
        let lsn = model.applied.get(&source).copied().unwrap_or(0) + 1;
        let rec =
            Record::RefsApplied { source, lsn, changes: vec![RefChange { chunk: counted(COUNTED), add: 1, drop: 0 }] };
        model.apply(&rec);
        commit_flushed(&store, rec).await;
        check(&store, &model).await.unwrap();
        drive(&store, &mut model, &mut rng, 100, 201).await;
        check(&store, &model).await.unwrap();
    });
}

/// A key the index never held is resident at once, known absent by its key filter: a new
/// blob's Put reads nothing and puts nothing in the cache. Entries still become clean when
/// their flush ends, without a read, and the cache is held to its size all the same.
/// A Put Blob of one byte in one chunk (`chunk(i + 1)`) of blob `name` of `acct/box`.
fn small_put(name: &str, i: u64) -> Record {
    let blob = Blob {
        container_id: 1,
        etag: i + 1,
        created_ns: 1,
        modified_ns: 1,
        size: 1,
        props: BlobProps::default(),
        blocks: vec![Block { id: Vec::new(), size: 1, chunks: vec![chunk(i + 1)].into() }],
        single_put: true,
    };
    Record::BlobPut { key: BlobKey::new("acct", "box", name), blob }
}

#[test]
fn new_keys_take_nothing_from_the_cache_and_flushed_ones_stay_within_its_size() {
    let disk = new_disk();
    local(async {
        let cache_bytes = 16 * 1024;
        let store = open_with(&disk, IndexConfig { cache_bytes, flush_bytes: 4 * 1024, ..cfg() }).await;
        for i in 0..2_000u64 {
            let rec = small_put(&format!("new/{i:05}"), i);
            let wants = wants_of(&rec);
            let ready = store.borrow_mut().ready();
            ready.await.unwrap();
            let before = store.borrow().resident_bytes();
            assert!(store.borrow().all_resident(&wants), "put {i}: a new key is known absent without a read");
            ensure(&store, &wants).await.unwrap();
            assert!(
                store.borrow().resident_bytes() <= before.max(cache_bytes),
                "put {i}: the cache grew past its size"
            );
            let commit = store.borrow_mut().commit(rec).unwrap();
            commit.durable.await.unwrap();
        }
        assert!(store.borrow().epoch() > 10, "flushes ended while the puts went on ({})", store.borrow().epoch());
        let last = [Want::Blob(BlobKey::new("acct", "box", "new/01999"))];
        edgeblob_meta::index::shard::flush_all(&store).await.unwrap();
        ensure(&store, &last).await.unwrap();
        assert!(store.borrow().resident_bytes() <= cache_bytes, "{} bytes cached", store.borrow().resident_bytes());
        assert!(store.borrow().all_resident(&last), "what was asked for stays");
    });
}

/// A blob's entry is encoded when it changes, not when its flush runs: changed again and again
/// between flushes, and while one is in flight, the index holds its last change (deleted,
/// put, its properties set), read back from the index alone after a restart.
#[test]
fn a_blob_changed_between_flushes_is_written_as_its_last_change() {
    let disk = new_disk();
    local(async {
        let mut model = ShardMeta::default();
        let store = open_with(&disk, IndexConfig { flush_bytes: 1 << 30, ..cfg() }).await;
        let props = |n: u64| Record::BlobPropsSet {
            key: BlobKey::new("acct", "box", "a"),
            etag: 100 + n,
            modified_ns: n as i64,
            props: BlobProps { metadata: vec![("m".into(), format!("{n}"))], ..Default::default() },
        };
        let deleted = |name: &str| Record::BlobDelete { key: BlobKey::new("acct", "box", name) };
        let steps: Vec<Vec<Record>> = vec![
            vec![small_put("a", 1), props(1), small_put("b", 2), deleted("b"), small_put("c", 3)],
            vec![props(2), deleted("a"), small_put("a", 4), props(3), small_put("b", 5), deleted("c")],
            vec![props(4), small_put("c", 6), props(5)],
        ];
        for (i, step) in steps.into_iter().enumerate() {
            for rec in step {
                let commit = commit_when_ready(&store, &rec).await;
                model.apply(&rec);
                commit.durable.await.unwrap();
                if i == 1 {
                    // Changes land while this step's first flush is in flight, and after it.
                    store.borrow_mut().flush_now();
                }
            }
            edgeblob_meta::index::shard::flush_all(&store).await.unwrap();
        }
        drop(store);
        let reopened = open_with(&disk, cfg()).await;
        check(&reopened, &model).await.unwrap();
        let a = model.blobs.get(&BlobKey::new("acct", "box", "a")).expect("a stands");
        assert_eq!(a.props.metadata, vec![("m".to_string(), "5".to_string())], "its last properties");
        assert!(model.blobs.contains_key(&BlobKey::new("acct", "box", "b")));
        assert!(model.blobs.contains_key(&BlobKey::new("acct", "box", "c")));
    });
}

/// A blob's mark holds its entry encoded until the flush: a small record of a large entry (a
/// property set of a blob of 200 chunks) counts its entry toward the flush threshold, so the
/// encoded entries held are bounded by it, not by the records' own few bytes.
#[test]
fn a_small_change_to_a_large_entry_counts_its_entry_toward_the_next_flush() {
    let disk = new_disk();
    local(async {
        let flush_bytes = 64 * 1024;
        let store = open_with(&disk, IndexConfig { flush_bytes, ..cfg() }).await;
        let name = |i: u64| BlobKey::new("acct", "box", &format!("large-{i:02}"));
        for i in 0..20u64 {
            let chunks: Vec<ChunkRef> = (0..200).map(|c| chunk(1000 + i * 200 + c)).collect();
            let blob = Blob {
                container_id: 1,
                etag: i + 1,
                created_ns: 1,
                modified_ns: 1,
                size: 200,
                props: BlobProps::default(),
                blocks: vec![Block { id: Vec::new(), size: 200, chunks: chunks.into() }],
                single_put: true,
            };
            let commit = commit_when_ready(&store, &Record::BlobPut { key: name(i), blob }).await;
            commit.durable.await.unwrap();
        }
        edgeblob_meta::index::shard::flush_all(&store).await.unwrap();
        let before = store.borrow().epoch();
        let mut record_bytes = 0;
        for i in 0..20u64 {
            let rec = Record::BlobPropsSet {
                key: name(i),
                etag: 100 + i,
                modified_ns: 2,
                props: BlobProps { metadata: vec![("m".into(), format!("{i}"))], ..Default::default() },
            };
            record_bytes += rec.encode().len();
            let commit = commit_when_ready(&store, &rec).await;
            commit.durable.await.unwrap();
            // No flush in flight at the next change: one that comes due starts there, whatever
            // the machine's speed (one in flight would take the next one's changes with it).
            let flushed = store.borrow().flushed();
            flushed.await;
            store.borrow_mut().reap();
        }
        edgeblob_meta::index::shard::flush_all(&store).await.unwrap();
        assert!(record_bytes < flush_bytes / 4, "the records alone are far below the threshold ({record_bytes})");
        let flushes = store.borrow().epoch() - before;
        // 20 entries of about 8 KiB each against 64 KiB: two flushes came due during the sets,
        // and the last wrote the rest.
        assert!(flushes >= 3, "{flushes} flushes for 20 property sets of large entries");
    });
}

/// The index in a disk image, with every free segment to grow into.
fn index_of(disk: &SimDisk) -> Index {
    let segments = Arc::new(Segments::default());
    let backend =
        RegionBackend::open(Arc::new(disk.device()) as SharedDevice, index_place(), segments.clone()).unwrap();
    let held = backend.segments();
    segments.grant((4..32).map(|i| i * MIB).filter(|s| !held.contains(s)));
    Index::open(backend, MIB as usize).unwrap()
}

/// Keys of the index's `blocks` table in a disk image.
fn blocks_keys(disk: &SimDisk) -> Vec<Vec<u8>> {
    let ix = index_of(disk);
    ix.range(Table::Blocks, b"", None, usize::MAX).unwrap().entries.into_iter().map(|(k, _)| k).collect()
}

fn blocks_entries(disk: &SimDisk) -> usize {
    blocks_keys(disk).len()
}

/// Keeps blob `key`'s blocks as a build before pieces did: one entry, whole, under its key.
fn keep_blocks_whole(disk: &SimDisk, key: &[u8], blocks: &[Block]) {
    let ix = index_of(disk);
    let lsn = ix.lsn().unwrap();
    let mut gone = Memtable::default();
    gone.delete(Table::Blocks, key.to_vec());
    gone.applied(lsn);
    ix.write(&gone).unwrap();
    let mut whole = Memtable::default();
    whole.put(Table::Blocks, key.to_vec(), keys::encode_blocks(&blocks.to_vec()));
    whole.applied(lsn);
    ix.write(&whole).unwrap();
}

/// A blob that names more chunks than an entry keeps (`keys::INLINE_CHUNKS`) keeps its blocks
/// apart: read back whole (a chunk list named twice still shared), listed from its head, walked
/// whole, and its blocks go with it when a small blob replaces it.
#[test]
fn a_blob_of_many_chunks_keeps_its_blocks_apart_and_reads_back_whole() {
    let k = BlobKey::new("acct", "box", "big");
    let shared: Arc<[ChunkRef]> = (1..=200).map(chunk).collect::<Vec<_>>().into();
    let own: Arc<[ChunkRef]> = (201..=300).map(chunk).collect::<Vec<_>>().into();
    let block = |id: &[u8], chunks: &Arc<[ChunkRef]>| Block {
        id: id.to_vec(),
        size: chunks.len() as u64 * 100,
        chunks: chunks.clone(),
    };
    let blocks = vec![block(b"a", &shared), block(b"b", &own), block(b"c", &shared)];
    let big = Blob {
        container_id: 1,
        etag: 5,
        created_ns: 1,
        modified_ns: 2,
        size: blocks.iter().map(|b| b.size).sum(),
        props: BlobProps::default(),
        blocks,
        single_put: false,
    };
    assert!(keys::blocks_apart(&big));
    let small = Blob { etag: 6, size: 100, blocks: vec![block(b"d", &vec![chunk(301)].into())], ..big.clone() };
    assert!(!keys::blocks_apart(&small));
    let disk = new_disk();
    let image = local(async {
        let store = open(&disk).await;
        commit_flushed(&store, Record::BlobPut { key: k.clone(), blob: big.clone() }).await;
        disk.crash(Crash::LoseUnflushed)
    });
    assert_eq!(blocks_keys(&image), [keys::piece(&keys::blob(&k), 0)], "the blocks are apart, one piece");
    // Read back as well from the one entry a build before pieces kept.
    keep_blocks_whole(&image, &keys::blob(&k), &big.blocks);
    assert_eq!(blocks_keys(&image), [keys::blob(&k)]);
    let image = local(async {
        let store = open(&image).await;
        let q = ListQuery { max: 10, ..ListQuery::default() };
        let (listed, _) = list_blobs(&store, "acct", "box", 1, &q).await.unwrap();
        match listed.as_slice() {
            [ListEntry::Blob(b)] => assert_eq!((b.name.as_str(), b.size, b.etag), ("big", big.size, 5)),
            other => panic!("{other:?}"),
        }
        let mut walked = Vec::new();
        scan_all(&store, |key, b| walked.push((key.clone(), b.clone())), |_, _, _| {}).await.unwrap();
        assert_eq!(walked, vec![(k.clone(), big.clone())], "a walk sees the whole blob");
        ensure(&store, &[Want::Blob(k.clone())]).await.unwrap();
        let got = store.borrow().state.blobs.get(&k).cloned().unwrap();
        assert_eq!(got, big);
        assert!(Arc::ptr_eq(&got.blocks[0].chunks, &got.blocks[2].chunks), "read back shared");
        commit_flushed(&store, Record::BlobPut { key: k.clone(), blob: small.clone() }).await;
        image.crash(Crash::LoseUnflushed)
    });
    assert_eq!(blocks_entries(&image), 0, "the blocks went with the blob they belonged to, kept whole");
    let image = local(async {
        let store = open(&image).await;
        ensure(&store, &[Want::Blob(k.clone())]).await.unwrap();
        assert_eq!(store.borrow().state.blobs.get(&k), Some(&small));
        // Apart again, replaced by another blob apart, then deleted, each flushed.
        commit_flushed(&store, Record::BlobPut { key: k.clone(), blob: big.clone() }).await;
        let other = Blob { etag: 7, blocks: big.blocks[..2].to_vec(), size: 30_000, ..big.clone() };
        commit_flushed(&store, Record::BlobPut { key: k.clone(), blob: other.clone() }).await;
        image.crash(Crash::LoseUnflushed)
    });
    assert_eq!(blocks_keys(&image), [keys::piece(&keys::blob(&k), 0)]);
    keep_blocks_whole(&image, &keys::blob(&k), &big.blocks[..2]);
    let image = local(async {
        let store = open(&image).await;
        ensure(&store, &[Want::Blob(k.clone())]).await.unwrap();
        assert_eq!(store.borrow().state.blobs.get(&k).map(|b| b.etag), Some(7), "the newer blocks apart");
        commit_flushed(&store, Record::BlobDelete { key: k.clone() }).await;
        image.crash(Crash::LoseUnflushed)
    });
    assert_eq!(blocks_entries(&image), 0, "a deleted blob's blocks go with it");
}

/// A blob's staged list that outgrows the cache keeps its ids, places and sizes resident while
/// its chunk lists stay in the index: each block staged into it reads nothing (the list read
/// again per Put Block made an upload of a few million chunks quadratic), the cache keeps to its
/// size, Get Block List's ids come from memory, and a block staged again, or the commit, reads
/// the chunk lists back whole.
#[test]
fn a_staged_list_larger_than_the_cache_keeps_its_ids_resident_and_its_chunk_lists_apart() {
    let k = BlobKey::new("acct", "box", "upload");
    let block = |i: u64, first: u64| StagedBlock {
        block: Block {
            id: format!("{i:04}").into_bytes(),
            size: 200 * 100,
            chunks: (first..first + 200).map(chunk).collect::<Vec<_>>().into(),
        },
        staged_ns: i as i64,
    };
    let staged = |i: u64, first: u64| Record::BlockStaged { key: k.clone(), container_id: 1, block: block(i, first) };
    let cache_bytes = 16 * 1024;
    let config = IndexConfig { cache_bytes, flush_bytes: 8 * 1024, apart_bytes: 8 * 1024, ..cfg() };
    let disk = new_disk();
    let mut model = ShardMeta::default();
    let image = local(async {
        let store = open_with(&disk, config).await;
        let list = [Want::StagedList(k.clone())];
        for i in 0..60u64 {
            let rec = staged(i, 1 + 200 * i);
            assert!(store.borrow().all_resident(&list), "block {i}: the list's ids are resident, nothing to read");
            let commit = commit_when_ready(&store, &rec).await;
            commit.durable.await.unwrap();
            model.apply(&rec);
            // Another client's read between two blocks: its trim keeps to the cache's size.
            ensure(&store, &[Want::Blob(BlobKey::new("acct", "box", &format!("other/{i}")))]).await.unwrap();
            assert!(store.borrow().resident_bytes() <= cache_bytes, "block {i}: the cache grew past its size");
            // Only the blocks not flushed yet keep their chunk lists: two log halves' worth at
            // most (a list kept whole would hold all 60, 480,000 bytes).
            let held = store.borrow().state.staged[&k].chunk_bytes();
            assert!(held <= 2 * HALF as usize, "block {i}: {held} bytes of chunk lists in memory");
        }
        // 60 chunk lists of 200 references: many times the cache, held apart.
        assert!(store.borrow().epoch() > 5, "flushes ended meanwhile ({})", store.borrow().epoch());
        let held = |m: &ShardMeta| -> Vec<(Vec<u8>, u64)> {
            m.staged[&k].held().map(|(b, _)| (b.block.id.clone(), b.block.size)).collect()
        };
        ensure(&store, &list).await.unwrap();
        assert!(!store.borrow().state.staged[&k].is_whole());
        assert_eq!(held(&store.borrow().state), held(&model), "Get Block List's ids and sizes");
        // A block staged again drops the one it replaces: its chunk list is read back first.
        let again = staged(3, 50_000);
        let wants = store.borrow().wants_for(&again);
        assert!(wants.contains(&Want::Staged(k.clone())), "the replaced block's chunk list is needed: {wants:?}");
        let commit = commit_when_ready(&store, &again).await;
        let replaced = block(3, 1 + 200 * 3).block;
        assert!(commit.released == RefCounts::of_block(&replaced), "the replaced block's references");
        commit.durable.await.unwrap();
        model.apply(&again);
        // The commit reads every chunk list back.
        let list: Vec<ListedBlock> = (0..60).map(ListedBlock::Uncommitted).collect();
        let blocks = model.resolve_list(&k, 1, &list).unwrap();
        let head = Blob {
            container_id: 1,
            etag: 9,
            created_ns: 1,
            modified_ns: 1,
            size: blocks.iter().map(|b| b.size).sum(),
            props: BlobProps::default(),
            blocks: Vec::new(),
            single_put: false,
        };
        let put = Record::BlockListPut { key: k.clone(), blob: Box::new(head), list };
        let commit = commit_when_ready(&store, &put).await;
        let sorted = |r: &RefCounts| {
            let mut v: Vec<(u64, u32)> = r.iter().map(|(c, n)| (c.offset, *n)).collect();
            v.sort_unstable();
            v
        };
        let (got, want) = (sorted(&commit.released), sorted(&model.staged[&k].refs()));
        assert!(got == want, "every staged block's references, read back: {} of {}", got.len(), want.len());
        commit.durable.await.unwrap();
        model.apply(&put);
        assert_eq!(store.borrow().state.blobs[&k], model.blobs[&k]);
        assert!(!store.borrow().state.staged.contains_key(&k));
        let sync = store.borrow().sync();
        sync.await.unwrap();
        disk.crash(Crash::LoseUnflushed)
    });
    local(async {
        let store = open_with(&image, config).await;
        ensure(&store, &[Want::Blob(k.clone()), Want::Staged(k.clone())]).await.unwrap();
        assert_eq!(store.borrow().state.blobs.get(&k), model.blobs.get(&k), "after a restart");
        assert!(!store.borrow().state.staged.contains_key(&k));
    });
}

/// A clean stop keeps the keys of the blobs it holds in memory (the cache's, no more); the next
/// start hands them over once, cold until read back; the first flush after it deletes the list,
/// so a start after a later crash reads back nothing from before it.
#[test]
fn a_clean_stop_keeps_what_it_holds_for_the_next_start_to_read_back_once() {
    let disk = new_disk();
    let cfg = IndexConfig { cache_bytes: 16 * 1024, flush_bytes: 4 * 1024, ..cfg() };
    let put = |i: u64| small_put(&format!("warm/{i:04}"), i);
    let held = local(async {
        let store = open_with(&disk, cfg).await;
        for i in 0..400 {
            commit_when_ready(&store, &put(i)).await.durable.await.unwrap();
        }
        edgeblob_meta::index::shard::flush_all(&store).await.unwrap();
        let held: Vec<BlobKey> = store.borrow().state.blobs.keys().cloned().collect();
        assert!(held.len() > 10 && held.len() < 400, "the cache holds some of the blobs: {}", held.len());
        store.borrow_mut().keep_warm();
        edgeblob_meta::index::shard::flush_all(&store).await.unwrap();
        held
    });
    let listed = local(async {
        let store = open_with(&disk, cfg).await;
        let listed = store.borrow_mut().take_warm();
        assert!(store.borrow_mut().take_warm().is_empty(), "handed over once");
        let wants: Vec<Want> = listed.iter().map(|k| Want::Blob(k.clone())).collect();
        assert!(!store.borrow().all_resident(&wants[..1]), "cold after the start");
        ensure(&store, &wants).await.unwrap();
        for k in &listed {
            assert!(store.borrow().state.blobs.contains_key(k), "{k:?} read back");
        }
        // A change, flushed: the list goes with it.
        commit_when_ready(&store, &put(1000)).await.durable.await.unwrap();
        edgeblob_meta::index::shard::flush_all(&store).await.unwrap();
        listed
    });
    assert_eq!(listed, held, "what the cache held, in key order");
    local(async {
        let store = open_with(&disk, cfg).await;
        assert!(store.borrow_mut().take_warm().is_empty(), "deleted by the first flush after the start");
    });
}

/// A count is logged at once until the shard serves (a start drains the outboxes with nothing
/// else written), then lazily: alone, it waits `LAZY_WAIT` for a round a client wants.
#[test]
fn counts_go_at_once_until_the_shard_counts_lazily() {
    let disk = new_disk();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let store = open(&disk).await;
        let add = |n: u64| Record::RefsApplied {
            source: 1,
            lsn: n,
            changes: vec![RefChange { chunk: counted(n), add: 1, drop: 0 }],
        };
        let waited = |rec: Record| async {
            ensure(&store, &wants_of(&rec)).await.unwrap();
            let commit = store.borrow_mut().commit(rec).unwrap();
            let start = tokio::time::Instant::now();
            commit.durable.await.unwrap();
            start.elapsed()
        };
        assert_eq!(waited(add(1)).await, Duration::ZERO, "a count before the shard serves goes at once");
        store.borrow_mut().count_lazily();
        assert_eq!(waited(add(2)).await, edgeblob_meta::wal::LAZY_WAIT, "a lone count waits for a client's round");
    });
}
