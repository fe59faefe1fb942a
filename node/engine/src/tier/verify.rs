//! `tier verify`: every pack a shard recorded is read whole and checked (its checksum, its
//! header against the one kept locally, its footer, every chunk's seal), and every chunk the
//! shard says is in it must be at the entry and place recorded, as the same chunk.

use std::collections::BTreeMap;
use std::rc::Rc;

use edgeblob_meta::model::{ChunkRef, Packed};

use super::place::info;
use super::remote::node_prefix;
use crate::error::{EngineError, Result};
use crate::shard::Shard;

/// What a verification found on one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub packs: u64,
    /// Each damaged pack's name in the tier, and why.
    pub damaged: Vec<String>,
}

pub async fn verify(s: &Rc<Shard>) -> Result<VerifyReport> {
    let tier = s.node.tier.clone().ok_or_else(|| EngineError::Tier("no tier is configured".into()))?;
    // What the chunk table says each pack holds.
    let mut held: BTreeMap<u64, Vec<(ChunkRef, Packed)>> = BTreeMap::new();
    super::each_chunk(s, |e| {
        if let Some(p) = e.location.packed() {
            held.entry(p.pack).or_default().push((e.chunk, p));
        }
    })
    .await?;
    let packs: Vec<_> = s.meta.borrow().state().packs.values().cloned().collect();
    let mut report = VerifyReport { packs: packs.len() as u64, damaged: Vec::new() };
    for p in packs {
        let id = edgeblob_tier::PackId { node: tier.node, generation: p.generation, shard: p.shard, seq: p.number };
        let name = format!("{}/{}", node_prefix(&tier.node), id.name());
        let why = match tier.verify(p.header.clone(), p.len).await {
            Err(e) => Some(e),
            Ok(entries) => held.get(&p.number).into_iter().flatten().find_map(|(c, at)| {
                let e = entries.get(at.entry as usize)?;
                (e.at != at.at || e.chunk != info(c))
                    .then(|| format!("entry {} is not the chunk recorded there", at.entry))
            }),
        };
        if let Some(why) = why {
            tracing::error!(pack = %name, %why, "a pack in the tier is damaged");
            super::stats::TierStats::bump(&tier.stats.integrity_errors, 1);
            report.damaged.push(format!("{name}: {why}"));
        }
    }
    Ok(report)
}
