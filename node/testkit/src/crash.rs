//! What a crash test expects of each blob its load wrote: the last change acknowledged, or the
//! one in flight at the kill (wholly there or wholly absent), and the bytes of each version.

/// A blob's content as a crash test names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Deleted,
    V(u64),
}

/// What a blob may hold after a kill.
#[derive(Debug, Default)]
pub struct Expect {
    /// The state the blob must be in, unless an unacknowledged change in flight took effect.
    pub durable: Option<Version>,
    pub in_flight: Option<Version>,
}

impl Expect {
    /// Takes in what the blob holds after a kill (`found`: its bytes, None when absent), given
    /// the bytes of each version: the acknowledged change or the one in flight, which is the
    /// acknowledged state from now on (the next cycle builds on it). False if it holds neither.
    pub fn settle(&mut self, found: Option<&[u8]>, bytes_of: impl Fn(u64) -> Vec<u8>) -> bool {
        let holds = |v: Option<Version>| match (found, v) {
            (Some(bytes), Some(Version::V(n))) => bytes == bytes_of(n),
            // Never written, or deleted.
            (None, None | Some(Version::Deleted)) => true,
            _ => false,
        };
        let now = if holds(self.durable) {
            self.durable
        } else if self.in_flight.is_some() && holds(self.in_flight) {
            self.in_flight
        } else {
            return false;
        };
        (self.durable, self.in_flight) = (now, None);
        true
    }
}

/// The bytes of version `v` of blob `name`, for a crash test to write and regenerate: one of
/// `lens` long, chosen by the pair; every third version the same repeated pattern, so that
/// blobs share chunks where dedup is on.
pub fn version_bytes(name: &str, v: u64, lens: &[usize]) -> Vec<u8> {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{name}/{v}").as_bytes());
    let len = lens[(h % lens.len() as u64) as usize];
    let mut out = Vec::with_capacity(len + 21);
    let mut x = h | 1;
    while out.len() < len {
        if v.is_multiple_of(3) {
            out.extend_from_slice(b"shared chunk pattern ");
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}
