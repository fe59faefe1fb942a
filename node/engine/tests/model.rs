//! Property test: random sequences of Put Block, Put Block List, Put Blob, Delete Blob, reads and
//! restarts against the engine and against a plain in-memory model; both must agree on every read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use edgeblob_engine::{BlockListItem, EngineError, Node};
use edgeblob_testkit::engine::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    PutBlock { blob: u8, id: u8, seed: u64, len: usize, via: u8 },
    Commit { blob: u8, list: Vec<(u8, u8)> },
    PutBlob { blob: u8, seed: u64, len: usize, via: u8 },
    Delete { blob: u8 },
    Read { blob: u8, start: u32, len: u32, via: u8 },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![Just(0usize), 1usize..5000, 60_000usize..200_000];
    prop_oneof![
        4 => (0u8..4, 0u8..4, any::<u64>(), len.clone(), 0u8..2).prop_map(|(blob, id, seed, len, via)| Op::PutBlock { blob, id, seed, len, via }),
        3 => (0u8..4, proptest::collection::vec((0u8..3, 0u8..4), 0..5)).prop_map(|(blob, list)| Op::Commit { blob, list }),
        3 => (0u8..4, any::<u64>(), len, 0u8..2).prop_map(|(blob, seed, len, via)| Op::PutBlob { blob, seed, len, via }),
        1 => (0u8..4).prop_map(|blob| Op::Delete { blob }),
        4 => (0u8..4, any::<u32>(), 0u32..300_000, 0u8..2).prop_map(|(blob, start, len, via)| Op::Read { blob, start, len, via }),
        1 => Just(Op::Restart),
    ]
}

/// Blocks as (id, bytes), in order.
type Blocks = Vec<(u8, Vec<u8>)>;

/// The model: committed content (with its block list; None for Put Blob) and staged blocks.
#[derive(Default, Debug)]
struct Model {
    committed: HashMap<u8, (Vec<u8>, Option<Blocks>)>,
    staged: HashMap<u8, Blocks>,
}

fn block_id(id: u8) -> Vec<u8> {
    format!("block-{id}").into_bytes()
}

fn run_case(ops: Vec<Op>, reduction: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path()).with_reduction(reduction);
    let rt = rt();
    let mut node = Some(open(&cfg));
    rt.block_on(node.as_ref().unwrap().create_container(ACCOUNT, "c", vec![])).unwrap();
    let mut m = Model::default();
    for op in ops {
        let n: &Node = node.as_ref().unwrap();
        let k = |b: u8| key("c", &format!("blob{b}"));
        match op {
            Op::PutBlock { blob, id, seed, len, via } => {
                let d = data(seed, len, seed % 2 == 0);
                rt.block_on(n.put_block(via as usize, k(blob), block_id(id), body(&d))).unwrap();
                let st = m.staged.entry(blob).or_default();
                st.retain(|(i, _)| *i != id);
                st.push((id, d));
            }
            Op::Commit { blob, list } => {
                let staged = m.staged.get(&blob).cloned().unwrap_or_default();
                let committed = m.committed.get(&blob).and_then(|(_, b)| b.clone()).unwrap_or_default();
                let mut items = Vec::new();
                let mut content = Vec::new();
                let mut blocks = Vec::new();
                let mut valid = true;
                for (kind, id) in &list {
                    let from_staged = staged.iter().find(|(i, _)| i == id);
                    let from_committed = committed.iter().find(|(i, _)| i == id);
                    let (item, found) = match kind {
                        0 => (BlockListItem::Committed(block_id(*id)), from_committed),
                        1 => (BlockListItem::Uncommitted(block_id(*id)), from_staged),
                        _ => (BlockListItem::Latest(block_id(*id)), from_staged.or(from_committed)),
                    };
                    items.push(item);
                    match found {
                        Some((i, d)) => {
                            content.extend_from_slice(d);
                            blocks.push((*i, d.clone()));
                        }
                        None => valid = false,
                    }
                }
                let res = rt.block_on(n.commit_block_list(k(blob), items, Default::default(), Default::default()));
                if valid {
                    res.unwrap();
                    m.committed.insert(blob, (content, Some(blocks)));
                    m.staged.remove(&blob);
                } else {
                    assert!(matches!(res, Err(EngineError::InvalidBlockList(_))), "{res:?}");
                }
            }
            Op::PutBlob { blob, seed, len, via } => {
                let d = data(seed, len, seed % 2 == 0);
                rt.block_on(n.put_blob(via as usize, k(blob), body(&d), Default::default(), Default::default()))
                    .unwrap();
                m.committed.insert(blob, (d, None));
                m.staged.remove(&blob);
            }
            Op::Delete { blob } => {
                let res = rt.block_on(n.delete_blob(k(blob), Default::default()));
                if m.committed.remove(&blob).is_some() {
                    res.unwrap();
                    m.staged.remove(&blob);
                } else {
                    assert!(matches!(res, Err(EngineError::BlobNotFound)), "{res:?}");
                }
            }
            Op::Read { blob, start, len, via } => {
                let res = rt.block_on(async {
                    match m.committed.get(&blob) {
                        Some((d, _)) if !d.is_empty() => {
                            let start = start as u64 % d.len() as u64;
                            let end = start + len as u64;
                            let (_, r, got) = n
                                .read_blob(via as usize, k(blob), Some((start, Some(end))), Default::default())
                                .await
                                .unwrap();
                            let want = &d[start as usize..(end as usize + 1).min(d.len())];
                            assert_eq!(r.0, start);
                            assert_eq!(&got[..], want);
                            Ok(())
                        }
                        Some(_) => {
                            let (_, _, got) =
                                n.read_blob(via as usize, k(blob), None, Default::default()).await.unwrap();
                            assert!(got.is_empty());
                            Ok(())
                        }
                        None => n.read_blob(via as usize, k(blob), None, Default::default()).await.map(|_| ()),
                    }
                });
                if !m.committed.contains_key(&blob) {
                    assert!(matches!(res, Err(EngineError::BlobNotFound)), "{res:?}");
                }
            }
            Op::Restart => {
                node.take().unwrap().stop();
                node = Some(open(&cfg));
            }
        }
    }
    // Final full comparison, including the staged lists.
    let n = node.as_ref().unwrap();
    rt.block_on(async {
        for b in 0..4u8 {
            let k = key("c", &format!("blob{b}"));
            match m.committed.get(&b) {
                Some((d, _)) => {
                    let (s, _, got) = n.read_blob(0, k.clone(), None, Default::default()).await.unwrap();
                    assert_eq!(s.size, d.len() as u64);
                    assert_eq!(&got[..], &d[..]);
                }
                None => assert!(n.head_blob(k.clone(), Default::default()).await.is_err()),
            }
            let staged: Vec<Vec<u8>> =
                m.staged.get(&b).map(|v| v.iter().map(|(i, _)| block_id(*i)).collect()).unwrap_or_default();
            match n.get_block_list(k).await {
                Ok(bl) => assert_eq!(bl.uncommitted.into_iter().map(|(i, _)| i).collect::<Vec<_>>(), staged),
                Err(EngineError::BlobNotFound) => assert!(staged.is_empty() && !m.committed.contains_key(&b)),
                Err(e) => panic!("{e}"),
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model_with_reduction(ops in proptest::collection::vec(op(), 1..40)) {
        run_case(ops, true);
    }

    #[test]
    fn engine_matches_model_without_reduction(ops in proptest::collection::vec(op(), 1..40)) {
        run_case(ops, false);
    }
}
