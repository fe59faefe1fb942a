//! Listing blobs: each shard lists its own blobs in name order; the node merges the shards'
//! sorted streams ([`merge`]) into one lexicographic page with a marker to resume from.

use crate::model::{Blob, BlobKey, BlobProps};
use crate::state::ShardMeta;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSummary {
    pub name: String,
    pub etag: u64,
    pub created_ns: i64,
    pub modified_ns: i64,
    pub size: u64,
    pub props: BlobProps,
}

impl BlobSummary {
    pub fn of(name: &str, b: &Blob) -> BlobSummary {
        BlobSummary {
            name: name.to_owned(),
            etag: b.etag,
            created_ns: b.created_ns,
            modified_ns: b.modified_ns,
            size: b.size,
            props: b.props.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry {
    Blob(Box<BlobSummary>),
    /// Names sharing this prefix up to and including the delimiter (Azure's BlobPrefix).
    Prefix(String),
}

impl ListEntry {
    /// The name the entry sorts by and that a marker resumes after.
    pub fn name(&self) -> &str {
        match self {
            ListEntry::Blob(b) => &b.name,
            ListEntry::Prefix(p) => p,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    /// None or empty: a flat listing.
    pub delimiter: Option<String>,
    /// Resume after this entry name.
    pub marker: Option<String>,
    pub max: usize,
}

/// One page of a listing; `next_marker` is set when more entries follow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    pub entries: Vec<ListEntry>,
    pub next_marker: Option<String>,
}

/// One shard's part of a listing page, fed the shard's blobs in name order from where the
/// listing starts ([`Lister::start`]).
pub struct Lister<'q> {
    q: &'q ListQuery,
    delim: Option<&'q str>,
    container_id: u64,
    out: Vec<ListEntry>,
}

impl<'q> Lister<'q> {
    pub fn new(q: &'q ListQuery, container_id: u64) -> Lister<'q> {
        Lister { q, delim: q.delimiter.as_deref().filter(|d| !d.is_empty()), container_id, out: Vec::new() }
    }

    /// The first name the listing can hold: the marker when it is past the prefix.
    pub fn start(&self) -> &'q str {
        match &self.q.marker {
            Some(m) if m.as_str() > self.q.prefix.as_str() => m,
            _ => &self.q.prefix,
        }
    }

    /// Offers the next blob, in name order, at or after [`Lister::start`], and says whether to go
    /// on.
    pub fn offer(&mut self, name: &str, b: &Blob) -> Flow {
        let q = self.q;
        if !name.starts_with(&q.prefix) {
            return Flow::Done;
        }
        if b.container_id != self.container_id || q.marker.as_deref().is_some_and(|m| name <= m) {
            return Flow::More;
        }
        let entry = match self.delim.and_then(|d| name[q.prefix.len()..].find(d).map(|i| q.prefix.len() + i + d.len()))
        {
            Some(end) => {
                let p = &name[..end];
                if q.marker.as_deref().is_some_and(|m| p <= m) || self.out.last().is_some_and(|e| e.name() == p) {
                    return Flow::More;
                }
                ListEntry::Prefix(p.to_owned())
            }
            None => ListEntry::Blob(Box::new(BlobSummary::of(name, b))),
        };
        if self.out.len() == q.max {
            return Flow::Full;
        }
        self.out.push(entry);
        Flow::More
    }

    /// The delimiter, when the listing collapses names into prefixes.
    pub fn delimiter(&self) -> Option<&'q str> {
        self.delim
    }

    /// The prefix the last entry collapsed names into, if it did: every name under it can be
    /// skipped.
    pub fn last_prefix(&self) -> Option<&str> {
        match self.out.last() {
            Some(ListEntry::Prefix(p)) => Some(p),
            _ => None,
        }
    }

    /// The entries, and whether the shard has more after them.
    pub fn finish(self, full: bool) -> (Vec<ListEntry>, bool) {
        (self.out, full)
    }
}

/// What a listing does after an offered blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Offer the next.
    More,
    /// Past the prefix: this shard is done.
    Done,
    /// The page is full and this blob would have been on the next one.
    Full,
}

impl ShardMeta {
    /// Up to `q.max` entries of this shard after the marker, in order; the flag says whether the
    /// shard has more.
    pub fn list_blobs(
        &self,
        account: &str,
        container: &str,
        container_id: u64,
        q: &ListQuery,
    ) -> (Vec<ListEntry>, bool) {
        let mut lister = Lister::new(q, container_id);
        let lo = BlobKey::new(account, container, lister.start());
        for (k, b) in self.blobs.range(lo..) {
            if k.account != account || k.container != container {
                break;
            }
            match lister.offer(&k.name, b) {
                Flow::More => {}
                Flow::Done => break,
                Flow::Full => return lister.finish(true),
            }
        }
        lister.finish(false)
    }
}

/// Merges the shards' pages (each sorted, each at most `max` long) into one page.
pub fn merge(pages: Vec<(Vec<ListEntry>, bool)>, max: usize) -> ListPage {
    let any_more = pages.iter().any(|(_, more)| *more);
    let mut all: Vec<ListEntry> = pages.into_iter().flat_map(|(e, _)| e).collect();
    all.sort_by(|a, b| a.name().cmp(b.name()));
    // The same prefix can come from several shards.
    all.dedup_by(|a, b| matches!((a, b), (ListEntry::Prefix(x), ListEntry::Prefix(y)) if x == y));
    let more = any_more || all.len() > max;
    all.truncate(max);
    let next_marker = if more { all.last().map(|e| e.name().to_owned()) } else { None };
    ListPage { entries: all, next_marker }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn shard_with(names: &[&str]) -> ShardMeta {
        let mut m = ShardMeta::default();
        for n in names {
            let blob = Blob {
                container_id: 1,
                etag: 1,
                created_ns: 0,
                modified_ns: 0,
                size: 0,
                props: Default::default(),
                blocks: vec![],
                single_put: true,
            };
            m.apply(&Record::BlobPut { key: BlobKey::new("a", "c", n), blob });
        }
        m
    }

    fn names(p: &ListPage) -> Vec<&str> {
        p.entries.iter().map(|e| e.name()).collect()
    }

    fn list(shards: &[ShardMeta], q: &ListQuery) -> ListPage {
        merge(shards.iter().map(|s| s.list_blobs("a", "c", 1, q)).collect(), q.max)
    }

    #[test]
    fn merged_pages_walk_every_name_once_in_order() {
        let all = ["a", "b/1", "b/2", "c", "d/x/y", "e", "f", "g"];
        let shards = [shard_with(&["a", "c", "f"]), shard_with(&["b/1", "d/x/y", "g"]), shard_with(&["b/2", "e"])];
        let mut seen = Vec::new();
        let mut q = ListQuery { max: 3, ..Default::default() };
        loop {
            let page = list(&shards, &q);
            seen.extend(names(&page).into_iter().map(str::to_owned));
            match page.next_marker {
                Some(m) => q.marker = Some(m),
                None => break,
            }
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn delimiter_collapses_prefixes_across_shards_and_pages() {
        let shards = [shard_with(&["a", "b/1", "d/x/y"]), shard_with(&["b/2", "b/3/z", "e"])];
        let q = ListQuery { delimiter: Some("/".into()), max: 2, ..Default::default() };
        let p1 = list(&shards, &q);
        assert_eq!(names(&p1), ["a", "b/"]);
        let p2 = list(&shards, &ListQuery { marker: p1.next_marker.clone(), ..q.clone() });
        assert_eq!(names(&p2), ["d/", "e"]);
        assert_eq!(p2.next_marker, None);
        let sub = list(&shards, &ListQuery { prefix: "b/".into(), delimiter: Some("/".into()), max: 10, marker: None });
        assert_eq!(names(&sub), ["b/1", "b/2", "b/3/"]);
        assert!(matches!(sub.entries[2], ListEntry::Prefix(_)));
    }

    #[test]
    fn empty_delimiter_is_flat_and_other_containers_are_invisible() {
        let mut s = shard_with(&["x/1", "x/2"]);
        let blob = s.blobs.values().next().unwrap().clone();
        s.apply(&Record::BlobPut { key: BlobKey::new("a", "d", "x/3"), blob });
        let q = ListQuery { delimiter: Some(String::new()), max: 10, ..Default::default() };
        assert_eq!(names(&list(&[s], &q)), ["x/1", "x/2"]);
    }
}
