//! Blob keys of 100 containers, written in commits of 2,000 (a flush's worth), each commit's keys
//! in key order; names within a container either in the order they were written (a dataset
//! uploaded file by file) or in no order. Reported per layout: leaf pages, the share of their
//! bytes that entries use, and entries a leaf.

use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableHandle};

const BLOBS: u64 = 200_000;
const COMMIT: u64 = 2_000;
const VALUE: usize = 260;

fn key(i: u64, ordered: bool) -> Vec<u8> {
    // A multiplicative hash scatters names within a container when they are not in order.
    let n = if ordered { i } else { i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 24 };
    format!("devstoreaccount1\0c-{:05}\0blob-{n:012}", i % 100).into_bytes()
}

fn table_of(k: &[u8], per_container: bool) -> String {
    if !per_container {
        return "blobs".into();
    }
    let group = k.iter().enumerate().filter(|(_, &b)| b == 0).nth(1).map_or(k.len(), |(i, _)| i);
    format!("blobs\0{}", String::from_utf8_lossy(&k[..group]))
}

fn run(ordered: bool, per_container: bool) {
    let db = Database::builder().create_with_backend(InMemoryBackend::new()).expect("an in-memory database");
    let value = vec![7u8; VALUE];
    for start in (0..BLOBS).step_by(COMMIT as usize) {
        let tx = db.begin_write().expect("a write transaction");
        let mut batch: Vec<Vec<u8>> = (start..start + COMMIT).map(|i| key(i, ordered)).collect();
        batch.sort();
        for k in &batch {
            let name = table_of(k, per_container);
            let mut t = tx.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)).expect("a table");
            t.insert(k.as_slice(), value.as_slice()).expect("an insert");
        }
        tx.commit().expect("a commit");
    }
    let tx = db.begin_read().expect("a read transaction");
    let (mut leaves, mut stored) = (0, 0);
    for t in tx.list_tables().expect("the tables") {
        let def = TableDefinition::<&[u8], &[u8]>::new(t.name());
        let s = tx.open_table(def).expect("a table").stats().expect("its stats");
        leaves += s.leaf_pages();
        stored += s.stored_bytes();
    }
    println!(
        "| {} | {} | {leaves} | {:.0}% | {:.1} |",
        if ordered { "in order" } else { "no order" },
        if per_container { "per container" } else { "one" },
        100.0 * stored as f64 / (leaves * 4096) as f64,
        BLOBS as f64 / leaves as f64
    );
}

fn main() {
    println!("| names | tables | leaves | used | entries/leaf |\n|---|---|---:|---:|---:|");
    for ordered in [true, false] {
        for per_container in [false, true] {
            run(ordered, per_container);
        }
    }
}
