//! Who may write the node's part of the tier: the holder of its highest generation.
//!
//! Every start claims generation `G` (one above the highest any shard logged) by creating
//! `<node>/gen/<G>` create-only; a restore or takeover claims one above every claim it lists.
//! A writer whose generation is not the highest claimed is fenced: it commits no pack, writes no
//! manifest and deletes nothing, checked by a listing of `gen/` before each of them. Names are
//! create-only and carry the generation, so two writers never write one name; the check keeps a
//! fenced node from deleting what the new one needs. Its window (a listing, then the write) is
//! documented in architecture.md ("Restore and fencing").

use bytes::Bytes;
use edgeblob_remote::{Remote, RemoteError};

/// The claims' names: `<node>/gen/<generation as 16 hex digits>`.
fn claim_name(prefix: &str, generation: u64) -> String {
    format!("{prefix}/gen/{generation:016x}")
}

/// The highest generation claimed in the tier (0 when none); a failed listing is an error.
pub async fn highest_claim(remote: &Remote, prefix: &str) -> Result<u64, String> {
    let base = format!("{prefix}/gen/");
    let names = super::remote::list_all(remote, &base).await?;
    let claims = names.iter().filter_map(|n| u64::from_str_radix(n.strip_prefix(&base)?, 16).ok());
    Ok(claims.max().unwrap_or(0))
}

/// How a claim ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Claimed(u64),
    /// Another writer claimed this generation or a higher one.
    Fenced {
        by: u64,
    },
}

/// A start's claim of `generation`: made only if no claim at or above it exists.
pub async fn claim(remote: &Remote, prefix: &str, generation: u64) -> Result<Claim, String> {
    let highest = highest_claim(remote, prefix).await?;
    if highest >= generation {
        return Ok(Claim::Fenced { by: highest });
    }
    put_claim(remote, prefix, generation).await
}

/// A restore's (or takeover's) claim: the first generation above every claim and above
/// `floor`, so that the writer it replaces is fenced from then on.
pub async fn take_over(remote: &Remote, prefix: &str, floor: u64) -> Result<u64, String> {
    let mut generation = highest_claim(remote, prefix).await?.max(floor) + 1;
    loop {
        match put_claim(remote, prefix, generation).await? {
            Claim::Claimed(g) => return Ok(g),
            Claim::Fenced { .. } => generation += 1,
        }
    }
}

async fn put_claim(remote: &Remote, prefix: &str, generation: u64) -> Result<Claim, String> {
    // A body of its own: a retry whose first answer was lost knows its claim from another's.
    let mut nonce = [0u8; 16];
    getrandom::getrandom(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
    match remote.put_blob(&claim_name(prefix, generation), Bytes::copy_from_slice(&nonce), true).await {
        Ok(_) => Ok(Claim::Claimed(generation)),
        Err(RemoteError::AlreadyExists { .. }) => Ok(Claim::Fenced { by: generation }),
        Err(e) => Err(e.to_string()),
    }
}

/// Fails when a generation above `own` has been claimed (the node was taken over).
pub async fn check(remote: &Remote, prefix: &str, own: u64) -> Result<(), String> {
    let highest = highest_claim(remote, prefix).await?;
    match highest > own {
        true => Err(fenced_message(own, highest)),
        false => Ok(()),
    }
}

pub fn fenced_message(own: u64, by: u64) -> String {
    format!(
        "fenced: generation {by} has taken over this node's tier (a restore or takeover); this node's generation {own} writes nothing more to it"
    )
}
