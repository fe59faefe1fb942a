//! Listing blobs: each shard lists its own blobs in name order; the node merges the shards'
//! sorted streams ([`merge`]) into one lexicographic page with a marker to resume from.

use std::collections::VecDeque;

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
    /// List blobs that have uncommitted blocks and no committed version too (Azure's
    /// `include=uncommittedblobs`), as blobs of no bytes.
    pub uncommitted: bool,
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
    /// Blobs of uncommitted blocks only, in name order, offered among the committed ones.
    uncommitted: VecDeque<BlobSummary>,
    /// The last name up to which `uncommitted` is complete; None when it holds all of them.
    uncommitted_to: Option<String>,
}

impl<'q> Lister<'q> {
    pub fn new(q: &'q ListQuery, container_id: u64) -> Lister<'q> {
        Lister {
            q,
            delim: q.delimiter.as_deref().filter(|d| !d.is_empty()),
            container_id,
            out: Vec::new(),
            uncommitted: VecDeque::new(),
            uncommitted_to: None,
        }
    }

    /// Adds the blobs of this container with uncommitted blocks, from [`Lister::start`] on in
    /// name order, complete up to name `to` (None: all of them). A name that also has a
    /// committed blob is listed once, as the committed one; none past `to` is listed, and the
    /// listing then says it has more.
    pub fn with_uncommitted(mut self, blobs: Vec<BlobSummary>, to: Option<String>) -> Lister<'q> {
        debug_assert!(blobs.windows(2).all(|w| w[0].name < w[1].name), "uncommitted blobs in name order, once each");
        debug_assert!(to.as_ref().is_none_or(|t| blobs.iter().all(|b| b.name <= *t)), "none past where they end");
        self.uncommitted = blobs.into();
        self.uncommitted_to = to;
        self
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
        if !name.starts_with(&self.q.prefix) {
            return Flow::Done;
        }
        // The uncommitted blobs before this name come first; one of this name is shadowed by a
        // committed version (of this container: an older incarnation's is not listed).
        while self.uncommitted.front().is_some_and(|u| u.name.as_str() < name) {
            if let Some(u) = self.uncommitted.pop_front() {
                match self.add(&u.name.clone(), || u) {
                    Flow::More => {}
                    stop => return stop,
                }
            }
        }
        let current = b.container_id == self.container_id;
        if current && self.uncommitted.front().is_some_and(|u| u.name == name) {
            self.uncommitted.pop_front();
        }
        if self.uncommitted_to.as_deref().is_some_and(|to| name > to) {
            // Whether an uncommitted blob comes before this one is not known here.
            return Flow::Full;
        }
        if !current {
            return Flow::More;
        }
        self.add(name, || BlobSummary::of(name, b))
    }

    /// Lists `name` (after the marker), collapsed under the delimiter if it has one.
    fn add(&mut self, name: &str, summary: impl FnOnce() -> BlobSummary) -> Flow {
        let q = self.q;
        if q.marker.as_deref().is_some_and(|m| name <= m) {
            return Flow::More;
        }
        let entry = match collapsed(q, name) {
            Some(p) => {
                if q.marker.as_deref().is_some_and(|m| p <= m) || self.out.last().is_some_and(|e| e.name() == p) {
                    return Flow::More;
                }
                ListEntry::Prefix(p.to_owned())
            }
            None => ListEntry::Blob(Box::new(summary())),
        };
        if self.out.len() == q.max {
            return Flow::Full;
        }
        self.out.push(entry);
        Flow::More
    }

    /// The delimiter, when the listing collapses names into prefixes.
    /// Entries listed so far.
    pub fn listed(&self) -> usize {
        self.out.len()
    }

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

    /// The entries, and whether the shard has more after them. `full`: the committed blobs
    /// stopped at a full page; else every one was offered, and the uncommitted ones left follow.
    pub fn finish(mut self, full: bool) -> (Vec<ListEntry>, bool) {
        if full {
            return (self.out, true);
        }
        while let Some(u) = self.uncommitted.pop_front() {
            if self.add(&u.name.clone(), || u) == Flow::Full {
                return (self.out, true);
            }
        }
        let more = self.uncommitted_to.is_some();
        (self.out, more)
    }
}

/// The prefix `name` collapses into under the listing's delimiter (Azure's BlobPrefix), if any.
fn collapsed<'a>(q: &ListQuery, name: &'a str) -> Option<&'a str> {
    let d = q.delimiter.as_deref().filter(|d| !d.is_empty())?;
    let rest = name.get(q.prefix.len()..)?;
    rest.find(d).map(|i| &name[..q.prefix.len() + i + d.len()])
}

/// The name of the listing entry `name` appears as: its collapsed prefix, or itself.
pub fn entry_name<'a>(q: &ListQuery, name: &'a str) -> &'a str {
    collapsed(q, name).unwrap_or(name)
}

/// An uncommitted blob as a listing shows it: no bytes, no properties, and the time its first
/// block (in id order) was staged as its creation, its last change and its ETag (what both the
/// memory and the index of a shard tell without reading every block).
pub fn uncommitted_summary(name: &str, staged_ns: i64) -> BlobSummary {
    BlobSummary {
        name: name.to_owned(),
        etag: staged_ns as u64,
        created_ns: staged_ns,
        modified_ns: staged_ns,
        size: 0,
        props: BlobProps::default(),
    }
}

/// The uncommitted blobs a listing page can show from `found` (in name order, from the
/// listing's start; complete up to `found_to`, None: all): one a listing entry (the rest of a
/// collapsed prefix add nothing), none the marker covers, at most a page of them. Returns them
/// and the name they are complete to (None: all that follow).
pub fn pick_uncommitted(
    q: &ListQuery,
    found: impl IntoIterator<Item = BlobSummary>,
    found_to: Option<String>,
) -> (Vec<BlobSummary>, Option<String>) {
    let mut out: Vec<BlobSummary> = Vec::new();
    for b in found {
        debug_assert!(out.last().is_none_or(|l| l.name < b.name), "found in name order");
        if found_to.as_ref().is_some_and(|to| b.name > *to) || !b.name.starts_with(&q.prefix) {
            break;
        }
        let entry = entry_name(q, &b.name);
        if q.marker.as_deref().is_some_and(|m| entry <= m)
            || out.last().is_some_and(|l| entry_name(q, &l.name) == entry)
        {
            continue;
        }
        if out.len() == q.max.max(1) {
            let to = out.last().map(|l| l.name.clone());
            return (out, to);
        }
        out.push(b);
    }
    (out, found_to)
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
        if q.uncommitted {
            let (blobs, to) =
                pick_uncommitted(q, self.uncommitted_from(account, container, container_id, lister.start()), None);
            lister = lister.with_uncommitted(blobs, to);
        }
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

    /// The blobs of container incarnation `container_id` with uncommitted blocks held here, in
    /// name order from `start`.
    pub fn uncommitted_from<'a>(
        &'a self,
        account: &'a str,
        container: &'a str,
        container_id: u64,
        start: &str,
    ) -> impl Iterator<Item = BlobSummary> + 'a {
        self.staged
            .range(BlobKey::new(account, container, start)..)
            .take_while(move |(k, _)| k.account == account && k.container == container)
            .filter(move |(_, st)| st.container_id == container_id)
            .filter_map(|(k, st)| Some(uncommitted_summary(&k.name, st.first_id_staged_ns()?)))
    }
}

/// A listing page merged from the shards' parts, each read a share at a time: a shard holds
/// about `1/n` of any range of names, so asking each for the whole page (as [`merge`] takes it)
/// reads `n` times what the page returns, and the rest is read again for the next page. Each
/// shard is first asked for its share and a margin; an entry is *certain* once every shard that
/// has more to give has given a name past it. When fewer than the page's entries are certain,
/// the shards that bound the certain part are asked for their next share, resuming after their
/// last entry, until the page fills or every shard is done.
pub struct Merge {
    q: ListQuery,
    parts: Vec<Part>,
}

#[derive(Default)]
struct Part {
    entries: Vec<ListEntry>,
    /// Whether the shard has entries after those given.
    more: bool,
    /// Whether it has been read at all.
    read: bool,
}

impl Part {
    /// The name the shard's next read resumes after (None: the query's own marker).
    fn last<'a>(&'a self, q: &'a ListQuery) -> Option<&'a str> {
        self.entries.last().map(ListEntry::name).or(q.marker.as_deref())
    }
}

impl Merge {
    pub fn new(shards: usize, q: &ListQuery) -> Merge {
        Merge { q: q.clone(), parts: (0..shards).map(|_| Part::default()).collect() }
    }

    /// Entries to ask a shard for at a time: its share of the page and a margin (a shard's share
    /// of a page varies by about its square root).
    fn share(&self) -> usize {
        let (max, n) = (self.q.max, self.parts.len().max(1));
        (max.div_ceil(n) + max.div_ceil(4 * n) + 16).min(max).max(1)
    }

    /// The name up to which every entry is known, when some shard has more to give: the smallest
    /// name a shard with more resumes after ("" for one that resumes from the start).
    fn bound(&self) -> Option<&str> {
        self.parts.iter().filter(|p| p.more).map(|p| p.last(&self.q).unwrap_or("")).min()
    }

    /// The known entries, in name order, each prefix once.
    fn known(&self) -> Vec<&ListEntry> {
        let bound = self.bound();
        let mut all: Vec<&ListEntry> =
            self.parts.iter().flat_map(|p| &p.entries).filter(|e| bound.is_none_or(|b| e.name() <= b)).collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all.dedup_by(|a, b| matches!((a, b), (ListEntry::Prefix(x), ListEntry::Prefix(y)) if x == y));
        all
    }

    /// The reads to make next, a query per shard; none when the page is complete.
    pub fn wanted(&self) -> Vec<(usize, ListQuery)> {
        let share = self.share();
        let query = |p: &Part| ListQuery { marker: p.last(&self.q).map(str::to_owned), max: share, ..self.q.clone() };
        if self.parts.iter().any(|p| !p.read) {
            return self.parts.iter().enumerate().filter(|(_, p)| !p.read).map(|(i, p)| (i, query(p))).collect();
        }
        let Some(bound) = self.bound() else { return Vec::new() };
        if self.known().len() >= self.q.max {
            return Vec::new();
        }
        self.parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.more && p.last(&self.q).unwrap_or("") == bound)
            .map(|(i, p)| (i, query(p)))
            .collect()
    }

    /// Takes in shard `i`'s answer to the query [`Merge::wanted`] gave for it.
    pub fn add(&mut self, i: usize, entries: Vec<ListEntry>, more: bool) {
        let part = &mut self.parts[i];
        debug_assert!(
            part.entries.last().zip(entries.first()).is_none_or(|(a, b)| a.name() < b.name()),
            "a shard's next part follows its last"
        );
        debug_assert!(!more || !entries.is_empty(), "a shard with more gives some");
        part.entries.extend(entries);
        part.more = more;
        part.read = true;
    }

    /// The page: the known entries, at most `max`.
    pub fn page(self) -> ListPage {
        debug_assert!(self.parts.iter().all(|p| p.read), "every shard read before the page is cut");
        let known = self.known();
        let more = self.bound().is_some() || known.len() > self.q.max;
        let entries: Vec<ListEntry> = known.into_iter().take(self.q.max).cloned().collect();
        let next_marker = if more { entries.last().map(|e| e.name().to_owned()) } else { None };
        ListPage { entries, next_marker }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
        list_merged(shards, q).0
    }

    /// The page of one shard that holds every name.
    fn page_of(whole: &ShardMeta, q: &ListQuery) -> ListPage {
        let (entries, more) = whole.list_blobs("a", "c", 1, q);
        let next_marker = if more { entries.last().map(|e| e.name().to_owned()) } else { None };
        ListPage { entries, next_marker }
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

    fn names_of(p: &ListPage) -> (Vec<&str>, Option<&str>) {
        (p.entries.iter().map(|e| e.name()).collect(), p.next_marker.as_deref())
    }

    /// A page through [`Merge`], as the engine drives it; and the entries the shards gave.
    fn list_merged(shards: &[ShardMeta], q: &ListQuery) -> (ListPage, usize) {
        let mut m = Merge::new(shards.len(), q);
        let mut read = 0;
        loop {
            let wanted = m.wanted();
            if wanted.is_empty() {
                return (m.page(), read);
            }
            for (i, sq) in wanted {
                let (entries, more) = shards[i].list_blobs("a", "c", 1, &sq);
                read += entries.len();
                m.add(i, entries, more);
            }
        }
    }

    #[test]
    fn merging_shares_lists_as_one_shard_holding_everything_and_reads_little_more() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..300 {
            let n = rng.gen_range(1..5);
            let mut names: Vec<String> = (0..rng.gen_range(0..1500))
                .map(|_| {
                    let depth = rng.gen_range(1..4);
                    (0..depth)
                        .map(|_| {
                            ["a", "b", "c", "d"][rng.gen_range(0..4)].to_string() + &rng.gen_range(0..9).to_string()
                        })
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect();
            // A name lives on one shard.
            names.sort();
            names.dedup();
            // Spread as keys hash, or skewed (a shard holding a whole run of names, as a
            // shard's share of a page may be far from its share of all).
            let skewed = rng.gen_bool(0.5);
            let mut by_shard = vec![Vec::new(); n];
            for name in &names {
                let i = if skewed { (name.as_bytes()[1] - b'0') as usize * n / 10 } else { rng.gen_range(0..n) };
                by_shard[i].push(name.as_str());
            }
            let shards: Vec<ShardMeta> = by_shard.iter().map(|s| shard_with(s)).collect();
            let whole = shard_with(&names.iter().map(String::as_str).collect::<Vec<_>>());
            let delimiter = [None, Some("/".to_string())][rng.gen_range(0..2)].clone();
            let prefix = ["", "a", "b1/", "c2/d"][rng.gen_range(0..4)].to_string();
            let mut q = ListQuery { prefix, delimiter, marker: None, max: rng.gen_range(1..300), uncommitted: false };
            let (mut pages, mut read, mut listed) = (0, 0, 0);
            loop {
                let (page, r) = list_merged(&shards, &q);
                let want = page_of(&whole, &q);
                assert!(
                    page == want,
                    "round {round}, {n} shards, {q:?}: {:?} != {:?}",
                    names_of(&page),
                    names_of(&want)
                );
                pages += 1;
                read += r;
                listed += page.entries.len();
                match page.next_marker {
                    Some(m) => q.marker = Some(m),
                    None => break,
                }
            }
            // Each shard reads about its share, not the whole page (the margin and the one
            // entry a shard gives past the page's end aside).
            if q.delimiter.is_none() && n > 1 && !skewed {
                assert!(read <= listed + pages * n * (q.max / 4 + 17), "round {round}: read {read} for {listed}");
            }
        }
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
        let sub = list(
            &shards,
            &ListQuery { prefix: "b/".into(), delimiter: Some("/".into()), max: 10, ..Default::default() },
        );
        assert_eq!(names(&sub), ["b/1", "b/2", "b/3/"]);
        assert!(matches!(sub.entries[2], ListEntry::Prefix(_)));
    }

    /// Stages block `id` of blob `name` in container incarnation `cid` at time `ns`.
    fn stage(m: &mut ShardMeta, name: &str, cid: u64, id: &str, ns: i64) {
        let block = crate::model::StagedBlock {
            block: crate::model::Block { id: id.as_bytes().to_vec(), size: 5, chunks: Vec::new().into() },
            staged_ns: ns,
        };
        m.apply(&Record::BlockStaged { key: BlobKey::new("a", "c", name), container_id: cid, block });
    }

    #[test]
    fn uncommitted_blobs_are_listed_once_among_the_committed_across_shards_and_pages() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for round in 0..300 {
            let n = rng.gen_range(1..4);
            let mut shards: Vec<ShardMeta> = (0..n).map(|_| ShardMeta::default()).collect();
            // What Azure lists: a committed blob as itself (staged blocks or not), a blob with
            // blocks staged in this container incarnation only as one of no bytes.
            let mut want: BTreeMap<String, u64> = BTreeMap::new();
            for i in 0..rng.gen_range(0..400) {
                let name = (0..rng.gen_range(1..4))
                    .map(|_| ["a", "b", "c"][rng.gen_range(0..3)].to_string() + &rng.gen_range(0..6).to_string())
                    .collect::<Vec<_>>()
                    .join("/");
                if want.contains_key(&name)
                    || shards.iter().any(|s| s.staged.contains_key(&BlobKey::new("a", "c", &name)))
                {
                    continue;
                }
                let s = &mut shards[rng.gen_range(0..n)];
                let (committed, staged, old) = (rng.gen_bool(0.5), rng.gen_bool(0.5), rng.gen_bool(0.2));
                if committed {
                    let size = rng.gen_range(1..100);
                    let blob = Blob {
                        container_id: 1,
                        etag: 1,
                        created_ns: 0,
                        modified_ns: 0,
                        size,
                        props: Default::default(),
                        blocks: vec![],
                        single_put: true,
                    };
                    s.apply(&Record::BlobPut { key: BlobKey::new("a", "c", &name), blob });
                    want.insert(name.clone(), size);
                }
                if staged {
                    for b in 0..rng.gen_range(1..4) {
                        stage(s, &name, if old { 0 } else { 1 }, &format!("b{b}"), i);
                    }
                    if !old {
                        want.entry(name).or_insert(0);
                    }
                }
            }
            let delimiter = [None, Some("/".to_string())][rng.gen_range(0..2)].clone();
            let prefix = ["", "a", "b1/", "c2/a"][rng.gen_range(0..4)].to_string();
            let mut q = ListQuery { prefix, delimiter, marker: None, max: rng.gen_range(1..50), uncommitted: true };
            let mut expected: Vec<(String, Option<u64>)> = Vec::new();
            for (name, size) in want.iter().filter(|(k, _)| k.starts_with(&q.prefix)) {
                match collapsed(&q, name) {
                    Some(p) if expected.last().is_some_and(|(l, _)| l == p) => {}
                    Some(p) => expected.push((p.to_owned(), None)),
                    None => expected.push((name.clone(), Some(*size))),
                }
            }
            let mut got: Vec<(String, Option<u64>)> = Vec::new();
            loop {
                let page = list(&shards, &q);
                assert!(page.entries.len() <= q.max);
                got.extend(page.entries.iter().map(|e| match e {
                    ListEntry::Blob(b) => (b.name.clone(), Some(b.size)),
                    ListEntry::Prefix(p) => (p.clone(), None),
                }));
                match page.next_marker {
                    Some(m) => q.marker = Some(m),
                    None => break,
                }
            }
            assert_eq!(got, expected, "round {round}, {n} shards, {q:?}");
        }
    }

    #[test]
    fn an_uncommitted_blob_shows_when_its_first_block_was_staged_and_no_bytes() {
        let mut s = ShardMeta::default();
        stage(&mut s, "x", 1, "b2", 30);
        stage(&mut s, "x", 1, "b1", 40);
        let q = ListQuery { max: 10, ..Default::default() };
        assert!(list(std::slice::from_ref(&s), &q).entries.is_empty(), "not without include=uncommittedblobs");
        let page = list(&[s], &ListQuery { uncommitted: true, ..q });
        let want = BlobSummary {
            name: "x".into(),
            etag: 40,
            created_ns: 40,
            modified_ns: 40,
            size: 0,
            props: BlobProps::default(),
        };
        assert_eq!(page.entries, [ListEntry::Blob(Box::new(want))]);
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
