//! The index proper: a redb database of byte-keyed tables on the shard's segments. It is written
//! only by flushes of memtables, each one durable transaction that also records the last LSN it
//! covers, so the log after that LSN is all recovery replays.

use std::sync::{RwLock, RwLockReadGuard};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::memtable::Memtable;
use super::region::RegionBackend;
use super::space::{group_key, groups_of, SpaceChanges, SpaceMap};
use super::{keys, Page, Table};

/// The table a flush has open, and which one it is.
type OpenTable<'t> = (Table, redb::Table<'t, &'static [u8], &'static [u8]>);

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

const DEFS: [Def; Table::COUNT] = [
    TableDefinition::new("blobs"),
    TableDefinition::new("staged"),
    TableDefinition::new("chunks"),
    TableDefinition::new("dedup"),
    TableDefinition::new("space"),
    TableDefinition::new("catalog"),
    TableDefinition::new("meta"),
    TableDefinition::new("outbox"),
];

/// The key in [`Table::Meta`] of the last LSN the index covers (u64 LE).
pub const META_LSN: &[u8] = b"lsn";

pub struct Index {
    /// Shared by every read and flush; held alone only by a compaction, which redb runs only
    /// with no transaction open.
    db: RwLock<Database>,
}

impl Index {
    /// Opens the index on `backend` (creating an empty one on empty storage) with a cache of
    /// `cache_bytes`.
    pub fn open(backend: RegionBackend, cache_bytes: usize) -> Result<Index, redb::Error> {
        let db = Database::builder().set_cache_size(cache_bytes).create_with_backend(backend)?;
        Ok(Index { db: RwLock::new(db) })
    }

    fn db(&self) -> RwLockReadGuard<'_, Database> {
        // A job that panicked left redb as consistent as any abort would.
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the index's pages down into the room freed pages left and trims what is left free
    /// above them, so that its storage gives back the segments wholly above its new length
    /// ([`super::region`]). Waits for the reads in progress and holds off new ones until done;
    /// false when there was nothing to move.
    pub fn compact(&self) -> Result<bool, redb::Error> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        Ok(db.compact()?)
    }

    /// The last LSN the index covers (0 for a new index).
    pub fn lsn(&self) -> Result<u64, redb::Error> {
        Ok(self.get(Table::Meta, META_LSN)?.and_then(|v| v.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0))
    }

    /// Writes every change of `m` and its last LSN in one transaction, durable when this returns.
    pub fn write(&self, m: &Memtable) -> Result<(), redb::Error> {
        // Durable at commit (redb's default durability); opening after a crash reads the
        // allocator state saved with it instead of walking the whole tree.
        let mut tx = self.db().begin_write()?;
        tx.set_quick_repair(true);
        {
            // `changes` comes table by table: each is opened once.
            let mut open: Option<OpenTable<'_>> = None;
            for (t, k, v) in m.changes() {
                let table = match &mut open {
                    Some((ot, table)) if *ot == t => table,
                    _ => {
                        open = None;
                        &mut open.insert((t, tx.open_table(DEFS[t as usize])?)).1
                    }
                };
                match v {
                    Some(v) => table.insert(k, v.as_slice())?,
                    None => table.remove(k)?,
                };
            }
            drop(open);
            write_space(&tx, &m.space)?;
            let mut meta = tx.open_table(DEFS[Table::Meta as usize])?;
            let before = meta.get(META_LSN)?.and_then(|v| v.value().try_into().ok()).map_or(0, u64::from_le_bytes);
            debug_assert!(before <= m.last_lsn(), "the index never goes back in the log ({before} > {})", m.last_lsn());
            meta.insert(META_LSN, m.last_lsn().to_le_bytes().as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The allocator's image as the index holds it.
    pub fn space(&self) -> Result<SpaceMap, redb::Error> {
        let mut map = SpaceMap::default();
        for (k, v) in self.range(Table::Space, b"", None, usize::MAX)?.entries {
            map.load_group(&k, &v).map_err(redb::Error::Corrupted)?;
        }
        Ok(map)
    }

    pub fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        // Held to the end of the read: a compaction waits for it.
        let db = self.db();
        let tx = db.begin_read()?;
        let table = match tx.open_table(DEFS[t as usize]) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// As [`Index::range`], reading the storage ahead ([`super::region::read_ahead`]): for
    /// scans over many leaves (listings, walks), not for reads of a key or two.
    pub fn scan(&self, t: Table, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Page, redb::Error> {
        super::region::read_ahead(|| self.range(t, from, to, limit))
    }

    /// Up to `limit` entries of `t` with keys in `[from, to)`, in order.
    pub fn range(&self, t: Table, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Page, redb::Error> {
        // Held to the end of the read: a compaction waits for it.
        let db = self.db();
        let tx = db.begin_read()?;
        let table = match tx.open_table(DEFS[t as usize]) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Page { entries: Vec::new(), complete: true }),
            Err(e) => return Err(e.into()),
        };
        let iter = match to {
            Some(to) => table.range::<&[u8]>(from..to)?,
            None => table.range::<&[u8]>(from..)?,
        };
        let mut out = Vec::new();
        for entry in iter {
            if out.len() == limit {
                return Ok(Page { entries: out, complete: false });
            }
            let (k, v) = entry?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(Page { entries: out, complete: true })
    }
}

/// Changes the allocator's image as a flush says, in its transaction (after the chunk table's
/// changes, which a rebuild reads).
fn write_space(tx: &redb::WriteTransaction, changes: &SpaceChanges) -> Result<(), redb::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut table = tx.open_table(DEFS[Table::Space as usize])?;
    let mut map = SpaceMap::default();
    let touched: Vec<u64> = if changes.rebuild {
        table.retain(|_, _| false)?;
        let chunks = tx.open_table(DEFS[Table::Chunks as usize])?;
        for entry in chunks.iter()? {
            let (_, v) = entry?;
            let e = keys::decode_chunk(v.value()).map_err(redb::Error::Corrupted)?;
            if let Some(e) = e.local_extent() {
                map.set(e);
            }
        }
        Vec::new()
    } else {
        let mut touched: Vec<u64> = changes.clear.iter().chain(&changes.set).flat_map(|e| groups_of(*e)).collect();
        touched.sort_unstable();
        touched.dedup();
        for &g in &touched {
            if let Some(v) = table.get(group_key(g).as_slice())? {
                map.load_group(&group_key(g), v.value()).map_err(redb::Error::Corrupted)?;
            }
        }
        map.apply(changes);
        touched
    };
    for g in touched {
        if map.encode_group(g).is_none() {
            table.remove(group_key(g).as_slice())?;
        }
    }
    for (k, v) in map.encoded() {
        table.insert(k.as_slice(), v.as_slice())?;
    }
    Ok(())
}
