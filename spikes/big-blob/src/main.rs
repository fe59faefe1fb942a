use std::time::Instant;

use edgeblob_meta::index::keys::{decode_blob, decode_blob_head, decode_blocks, encode_blob, encode_blocks, pieces};
use edgeblob_meta::model::{Blob, BlobProps, Block, ChunkRef};

/// A blob of `blocks` distinct blocks of `chunks` chunks each.
fn blob(blocks: u32, chunks: u32) -> Blob {
    let mut next = 0u64;
    let blocks = (0..blocks)
        .map(|b| {
            let list: Vec<ChunkRef> = (0..chunks)
                .map(|_| {
                    next += 1;
                    ChunkRef { hash: [(next % 251) as u8; 16], offset: next << 20, stored_len: 1 << 20, len: 1 << 20, flags: 0 }
                })
                .collect();
            Block { id: format!("{b:08}").into_bytes(), size: chunks as u64 * (1 << 20), chunks: list.into() }
        })
        .collect::<Vec<_>>();
    let size = blocks.iter().map(|b| b.size).sum();
    Blob { container_id: 1, etag: 1, created_ns: 1, modified_ns: 1, size, props: BlobProps::default(), blocks, single_put: false }
}

fn main() {
    println!("| blocks × chunks | logical | one value: MB | encode ms | decode ms | head ms | apart: head bytes | head µs | blocks decode ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (blocks, chunks) in [(1_000u32, 8u32), (50_000, 8), (10_000, 100), (50_000, 100)] {
        let b = blob(blocks, chunks);
        let t = Instant::now();
        let v = encode_blob(&b);
        let enc = t.elapsed();
        let t = Instant::now();
        let back = decode_blob(&v).expect("decodes");
        let dec = t.elapsed();
        assert_eq!(back.blocks.len(), blocks as usize);
        let t = Instant::now();
        let head = decode_blob_head(&v).expect("decodes");
        let hd = t.elapsed();
        assert_eq!(head.size, b.size);
        // Blocks apart: the entry is the head, the blocks a value of their own.
        let hv = encode_blob(&b.head());
        let t = Instant::now();
        let h2 = decode_blob_head(&hv).expect("decodes");
        let hd2 = t.elapsed();
        assert_eq!(h2.size, b.size);
        let bv = encode_blocks(&b.blocks);
        let t = Instant::now();
        let bl = decode_blocks(&bv).expect("decodes");
        let bd = t.elapsed();
        assert_eq!(bl.len(), blocks as usize);
        println!(
            "| {blocks} × {chunks} | {:.2} TiB | {:.1} | {:.0} | {:.0} | {:.1} | {} | {:.1} | {:.0} |",
            b.size as f64 / (1u64 << 40) as f64,
            v.len() as f64 / 1e6,
            enc.as_secs_f64() * 1e3,
            dec.as_secs_f64() * 1e3,
            hd.as_secs_f64() * 1e3,
            hv.len(),
            hd2.as_secs_f64() * 1e6,
            bd.as_secs_f64() * 1e3
        );
    }
    // In pieces (keys::pieces): what a read in part decodes, against the blocks whole above.
    println!();
    println!("| blocks × chunks | pieces | largest piece: KB | its decode µs (median of 101) |");
    println!("|---|---:|---:|---:|");
    for (blocks, chunks) in [(1_000u32, 8u32), (50_000, 8), (10_000, 100), (50_000, 100), (1_250, 4_000)] {
        let b = blob(blocks, chunks);
        let cut = pieces(&b.blocks);
        let largest = cut
            .iter()
            .map(|(_, r)| encode_blocks(&b.blocks[r.clone()].to_vec()))
            .max_by_key(Vec::len)
            .expect("a blob of blocks has a piece");
        let mut times: Vec<f64> = (0..101)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(decode_blocks(&largest).expect("decodes"));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("| {blocks} × {chunks} | {} | {:.0} | {:.0} |", cut.len(), largest.len() as f64 / 1e3, times[50]);
    }
}
