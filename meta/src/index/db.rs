//! The index proper: a redb database of byte-keyed tables on the shard's segments. It is written
//! only by flushes of memtables, each one durable transaction that also records the last LSN it
//! covers, so the log after that LSN is all recovery replays.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use super::memtable::Memtable;
use super::region::{lock, RegionBackend, SharedBackend};
use super::space::{group_key, groups_of, SpaceChanges, SpaceMap};
use super::{keys, Page, Table};

type Def<'n> = TableDefinition<'n, &'static [u8], &'static [u8]>;

/// The redb tables' names, by [`Table`]. Blobs are not in `blobs` but in a table per container
/// ([`keys::BLOB_TABLES`]); a table of that name is one a build before them wrote.
const NAMES: [&str; Table::COUNT] =
    ["blobs", "blocks", "staged", "chunks", "dedup", "space", "catalog", "meta", "outbox", "packs"];

/// The definition of table `t` (for [`Table::Blobs`], the old layout's single table).
const fn def(t: Table) -> Def<'static> {
    TableDefinition::new(NAMES[t as usize])
}

/// A piece of a blob's blocks kept apart, as stored: its first byte offset in the blob, and
/// its value (rkyv `Vec<Block>`).
pub type Piece = (u64, Vec<u8>);

/// The key in [`Table::Meta`] of the last LSN the index covers (u64 LE).
pub const META_LSN: &[u8] = b"lsn";

pub struct Index {
    /// Shared by every read and flush; held alone only by a compaction, which redb runs only
    /// with no transaction open, and to open the index again after a failed transaction.
    db: RwLock<Database>,
    /// The storage `db` runs on, to open again after a failed transaction (`Index::failed`).
    storage: Mutex<Arc<RegionBackend>>,
    cache_bytes: usize,
}

/// Why a flush or a compaction of the index failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The storage ran out of the segments granted to it: the transaction is lost, and the
    /// index was opened again as its last commit left it, ready for another once there is room.
    #[error("the metadata index ran out of the segments granted to it; it stands at its last commit")]
    Short,
    #[error(transparent)]
    Failed(#[from] redb::Error),
}

fn open_db(backend: &Arc<RegionBackend>, cache_bytes: usize) -> Result<Database, redb::Error> {
    Ok(Database::builder().set_cache_size(cache_bytes).create_with_backend(SharedBackend(backend.clone()))?)
}

impl Index {
    /// Opens the index on `backend` (creating an empty one on empty storage) with a cache of
    /// `cache_bytes`.
    pub fn open(backend: RegionBackend, cache_bytes: usize) -> Result<Index, redb::Error> {
        let backend = Arc::new(backend);
        let db = open_db(&backend, cache_bytes)?;
        let ix = Index { db: RwLock::new(db), storage: Mutex::new(backend), cache_bytes };
        // A build before blob tables per container kept blobs in `blobs`, where this one would
        // not see them.
        if ix.tables()?.iter().any(|t| t == NAMES[Table::Blobs as usize]) {
            return Err(redb::Error::Corrupted(
                "this index keeps its blobs as a pre-release build of format 2 did; export them with that build".into(),
            ));
        }
        Ok(ix)
    }

    /// The names of the redb tables the index holds, in order.
    pub fn tables(&self) -> Result<Vec<String>, redb::Error> {
        table_names(&self.db().begin_read()?)
    }

    fn db(&self) -> RwLockReadGuard<'_, Database> {
        // A job that panicked left redb as consistent as any abort would.
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the index's pages down into the room freed pages left and trims what is left free
    /// above them, so that its storage gives back the segments wholly above its new length
    /// ([`super::region`]). Waits for the reads in progress and holds off new ones until done;
    /// false when there was nothing to move.
    pub fn compact(&self) -> Result<bool, WriteError> {
        let res = self.db.write().unwrap_or_else(|e| e.into_inner()).compact();
        res.map_err(|e| self.failed(e.into()))
    }

    /// What a failed transaction leaves: where the storage ran short of segments, redb (which
    /// refuses every write after a failed one) is opened again on the storage as its last
    /// commit left it; any other failure stands.
    fn failed(&self, e: redb::Error) -> WriteError {
        let mut storage = lock(&self.storage);
        if !storage.pool().ran_short() {
            return WriteError::Failed(e);
        }
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        let reopened = storage
            .reopen()
            .map_err(redb::Error::Io)
            .map(Arc::new)
            .and_then(|b| Ok((open_db(&b, self.cache_bytes)?, b)));
        match reopened {
            Ok((fresh, backend)) => {
                // The old database writes nothing as it goes: its storage refuses it.
                *db = fresh;
                *storage = backend;
                tracing::warn!(%e, "metadata index transaction ran short of segments; reopened at its last commit");
                WriteError::Short
            }
            Err(again) => {
                tracing::error!(%e, %again, "metadata index could not be opened again after running short");
                WriteError::Failed(again)
            }
        }
    }

    /// The last LSN the index covers (0 for a new index).
    pub fn lsn(&self) -> Result<u64, redb::Error> {
        Ok(self.get(Table::Meta, META_LSN)?.and_then(|v| v.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0))
    }

    /// Writes every change of `m` and its last LSN in one transaction, durable when this returns.
    pub fn write(&self, m: &Memtable) -> Result<(), WriteError> {
        let res = self.write_tx(m);
        res.map_err(|e| self.failed(e))
    }

    fn write_tx(&self, m: &Memtable) -> Result<(), redb::Error> {
        // Durable at commit (redb's default durability); opening after a crash reads the
        // allocator state saved with it instead of walking the whole tree.
        let mut tx = self.db().begin_write()?;
        tx.set_quick_repair(true);
        {
            // `changes` comes table by table, and a table's keys in order: each redb table
            // (a container's blob table too) is opened once.
            let mut open: Option<OpenTable<'_>> = None;
            for (t, k, v) in m.changes() {
                let name = table_name(t, k)?;
                let open = match &mut open {
                    Some(o) if o.name == name => o,
                    _ => {
                        if let Some(done) = open.take() {
                            done.close(&tx)?;
                        }
                        let table = tx.open_table(Def::new(&name))?;
                        open.insert(OpenTable { name, table, removed: false })
                    }
                };
                match v {
                    Some(v) => {
                        open.table.insert(k, v.as_slice())?;
                    }
                    // A blob's blocks go whole: its pieces, or the entry a build before them kept.
                    None if t == Table::Blocks => remove_blocks(&mut open.table, k)?,
                    None => open.removed |= open.table.remove(k)?.is_some(),
                }
            }
            if let Some(done) = open {
                done.close(&tx)?;
            }
            if !m.blocks.is_empty() {
                let mut t = tx.open_table(def(Table::Blocks))?;
                for (k, blocks) in &m.blocks {
                    // The version before may have been cut elsewhere.
                    remove_blocks(&mut t, k)?;
                    for (first, r) in keys::pieces(blocks) {
                        t.insert(
                            keys::piece(k, first).as_slice(),
                            keys::encode_blocks(&blocks[r].to_vec()).as_slice(),
                        )?;
                    }
                }
            }
            write_space(&tx, &m.space)?;
            let mut meta = tx.open_table(def(Table::Meta))?;
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

    /// A blob's entry in `blobs`, given to `span` as the read finds it, and in the same read
    /// pieces of its blocks kept apart, each with its first byte offset. `span` says None for
    /// an entry that holds its blocks (no pieces are read), else the bytes `[start, end)` wanted
    /// (empty for a read of the head alone). A blob of at most [`keys::WHOLE_PIECES`] pieces
    /// comes whole, to be held in memory as any other; a larger one with the pieces that cover
    /// the bytes wanted and no others. None when there is no entry. A build before pieces kept
    /// a blob's blocks whole: they come as one piece at offset 0.
    pub fn blob_and_pieces(
        &self,
        key: &[u8],
        span: impl FnOnce(&[u8]) -> Result<Option<(u64, u64)>, String>,
    ) -> Result<Option<Vec<Piece>>, redb::Error> {
        let Ok(name) = table_name(Table::Blobs, key) else { return Ok(None) };
        let db = self.db();
        let tx = db.begin_read()?;
        let wanted = match tx.open_table(Def::new(&name)) {
            Ok(table) => match table.get(key)? {
                Some(v) => span(v.value()).map_err(redb::Error::Corrupted)?,
                None => return Ok(None),
            },
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some((start, end)) = wanted else { return Ok(Some(Vec::new())) };
        let table = match tx.open_table(def(Table::Blocks)) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Some(Vec::new())),
            Err(e) => return Err(e.into()),
        };
        let (lo, hi) = (key, blocks_end(key));
        let few = table.range::<&[u8]>(lo..hi.as_slice())?.nth(keys::WHOLE_PIECES).is_none();
        let from = if few {
            lo.to_vec()
        } else if start >= end {
            return Ok(Some(Vec::new()));
        } else {
            // The piece that holds byte `start`: the last to begin at or before it.
            match table.range::<&[u8]>(lo..=keys::piece(key, start).as_slice())?.next_back() {
                Some(e) => e?.0.value().to_vec(),
                None => lo.to_vec(),
            }
        };
        let mut out = Vec::new();
        for e in table.range::<&[u8]>(from.as_slice()..hi.as_slice())? {
            let (k, v) = e?;
            let first = piece_offset(key, k.value())?;
            if !few && first >= end && !out.is_empty() {
                break;
            }
            out.push((first, v.value().to_vec()));
        }
        Ok(Some(out))
    }

    /// Every piece of blob `key`'s blocks kept apart, in order, with its first byte offset (a
    /// build before pieces kept them whole: one piece at offset 0).
    pub fn pieces(&self, key: &[u8]) -> Result<Vec<Piece>, redb::Error> {
        let mut out = Vec::new();
        for (k, v) in self.range(Table::Blocks, key, Some(&blocks_end(key)), usize::MAX)?.entries {
            out.push((piece_offset(key, &k)?, v));
        }
        Ok(out)
    }

    pub fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        // A blob table holds only blob keys: another key is in none.
        let Ok(name) = table_name(t, key) else { return Ok(None) };
        // Held to the end of the read: a compaction waits for it.
        let db = self.db();
        let tx = db.begin_read()?;
        let table = match tx.open_table(Def::new(&name)) {
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
        let names = match t {
            Table::Blobs => blob_tables(&tx, from, to)?,
            _ => vec![Cow::Borrowed(NAMES[t as usize])],
        };
        let mut out = Vec::new();
        for name in names {
            let table = match tx.open_table(Def::new(&name)) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let iter = match to {
                Some(to) => table.range::<&[u8]>(from..to)?,
                None => table.range::<&[u8]>(from..)?,
            };
            for entry in iter {
                if out.len() == limit {
                    return Ok(Page { entries: out, complete: false });
                }
                let (k, v) = entry?;
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
        }
        Ok(Page { entries: out, complete: true })
    }
}

/// A table a flush has open: its name, and whether the flush removed anything from it.
struct OpenTable<'t> {
    name: Cow<'static, str>,
    table: redb::Table<'t, &'static [u8], &'static [u8]>,
    removed: bool,
}

impl OpenTable<'_> {
    /// Closes the table, and deletes it when it is a container's blob table left empty (so that
    /// containers that come and go leave no tables behind for scans to list).
    fn close(self, tx: &redb::WriteTransaction) -> Result<(), redb::Error> {
        let empty = self.removed && self.name.starts_with(keys::BLOB_TABLES) && self.table.is_empty()?;
        drop(self.table);
        if empty {
            tx.delete_table(Def::new(&self.name))?;
        }
        Ok(())
    }
}

/// The end of the keys that hold blob `key`'s blocks: `[key, key 1)` holds its pieces (`key 0
/// offset`) and the entry a build before pieces kept whole (`key`).
fn blocks_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    end.push(1);
    end
}

/// The first byte offset of blob `key`'s piece of key `k`: 0 for the entry a build before
/// pieces kept whole.
fn piece_offset(key: &[u8], k: &[u8]) -> Result<u64, redb::Error> {
    match keys::parse_piece(key, k) {
        Some(first) => Ok(first),
        None if k == key => Ok(0),
        None => Err(redb::Error::Corrupted("a key of the blocks table is no piece's".into())),
    }
}

/// Removes every entry of blob `key`'s blocks.
fn remove_blocks(table: &mut redb::Table<'_, &'static [u8], &'static [u8]>, key: &[u8]) -> Result<(), redb::Error> {
    let end = blocks_end(key);
    table.retain_in::<&[u8], _>(key..end.as_slice(), |_, _| false)?;
    Ok(())
}

/// The redb table that holds `key` of `t`: the table's own, or for a blob its container's
/// ([`keys::BLOB_TABLES`]); an error for a blob table's key that is not a blob's.
fn table_name(t: Table, key: &[u8]) -> Result<Cow<'static, str>, redb::Error> {
    if t != Table::Blobs {
        return Ok(Cow::Borrowed(NAMES[t as usize]));
    }
    let name = keys::blob_group(key).and_then(keys::blob_table);
    let name = name.ok_or_else(|| redb::Error::Corrupted("a blob table key that names no container".into()))?;
    Ok(Cow::Owned(name))
}

/// The containers' blob tables that may hold keys in `[from, to)`, in key order. A range within
/// one container (a listing's) names its table without listing the others.
fn blob_tables(
    tx: &redb::ReadTransaction,
    from: &[u8],
    to: Option<&[u8]>,
) -> Result<Vec<Cow<'static, str>>, redb::Error> {
    // Every key of a group's table lies in `[group, group 0x01)`.
    let after = |g: &[u8]| [g, &[1]].concat();
    if let (Some(g), Some(to)) = (keys::blob_group(from), to) {
        if to <= after(g).as_slice() {
            return Ok(keys::blob_table(g).map(Cow::Owned).into_iter().collect());
        }
    }
    let names = table_names(tx)?.into_iter().filter(|n| {
        n.strip_prefix(keys::BLOB_TABLES)
            .is_some_and(|g| after(g.as_bytes()).as_slice() > from && to.is_none_or(|to| g.as_bytes() < to))
    });
    Ok(names.map(Cow::Owned).collect())
}

/// The names of the tables `tx` sees, in order.
fn table_names(tx: &redb::ReadTransaction) -> Result<Vec<String>, redb::Error> {
    let mut names: Vec<String> = tx.list_tables()?.map(|t| t.name().to_owned()).collect();
    names.sort_unstable();
    Ok(names)
}

/// Changes the allocator's image as a flush says, in its transaction (after the chunk table's
/// changes, which a rebuild reads).
fn write_space(tx: &redb::WriteTransaction, changes: &SpaceChanges) -> Result<(), redb::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut table = tx.open_table(def(Table::Space))?;
    let mut map = SpaceMap::default();
    let touched: Vec<u64> = if changes.rebuild {
        table.retain(|_, _| false)?;
        let chunks = tx.open_table(def(Table::Chunks))?;
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
