//! Read-through of a linked container (`[[links]]`): before a blob of it is read, the blob is
//! made current on flash. A blob not here is fetched from the lake whole (ranges of 4 MiB, each
//! of the version first seen: never a mix of two; checked against the whole's MD5, or each
//! against its own) and stored as a Put Blob would store it, with
//! the lake's ETag, content headers, metadata, MD5 and Last-Modified; readers who ask for it meanwhile,
//! on any shard, wait on that one fetch, and a whole Get Blob follows its bytes as they come
//! (`link_flight`). A blob fetched earlier is checked against the lake's
//! ETag as the link's `revalidate` says: changed, it is fetched again; gone, it is deleted here.
//! A blob written here (not fetched) is the client's and is never touched. When the lake does
//! not answer, what is cached is served as it is, and what is not gets 503 with Retry-After.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use edgeblob_engine::blob::Stamps;
use edgeblob_engine::error::EngineError;
use edgeblob_engine::{ops, BlockListItem, Shard};
use edgeblob_meta::listing::BlobSummary;
use edgeblob_meta::model::{limits, BlobKey, BlobProps, PublicAccess};
use edgeblob_proto::conditions::{ConditionOutcome, Conditions, ETagMatch};
use edgeblob_proto::{headers as hdr, ErrorCode};
use futures::stream::LocalBoxStream;
use futures::{StreamExt, TryStreamExt};

use super::body;
use super::error::{ApiError, Result};
use crate::link::{Flight, Link};
use crate::link_flight::{self, Feed, Refreshed};

pub use edgeblob_engine::reserved_metadata::LAKE_ETAG;

/// The ranges a blob is fetched in: the largest Azure gives a range's MD5 for, so each is
/// checked on its own as it arrives.
const RANGE: u64 = 4 << 20;

/// Ranges in flight for one fetch: the next is on its way while one is stored.
const RANGES_AHEAD: usize = 2;

/// Readers that find a fetch of theirs refused by a write here, or the lake's blob replaced
/// mid-fetch, try again this many times.
const ATTEMPTS: usize = 3;

/// The lake's ETag of the version a blob is (fetched, or uploaded); `None` for a blob written
/// here since.
pub fn lake_etag(props: &BlobProps) -> Option<&str> {
    edgeblob_engine::reserved_metadata::lake_etag(&props.metadata)
}

/// Makes `key` current on flash when its container is linked; nothing otherwise.
pub async fn before_read(shard: &Rc<Shard>, links: &crate::link::Links, key: &BlobKey) -> Result<()> {
    let Some(link) = links.reading(&key.account, &key.container) else { return Ok(()) };
    make_current(shard, link, key, Want::Here).await.map(|_| ())
}

/// What a Get Blob of a blob not here yet is answered with: a range read straight from the
/// lake ([`range_from_lake`]), or the whole as its fetch brings it ([`link_flight::follow`]).
pub struct FromLake {
    /// The blob as it will be here.
    pub blob: BlobSummary,
    /// The bytes `[start, end)` sent, and whether they are a range (206) or the whole (200).
    pub span: (u64, u64),
    pub partial: bool,
    /// The bytes, as they come.
    pub body: LocalBoxStream<'static, std::io::Result<bytes::Bytes>>,
}

/// What a read asks of a linked blob before it is served from flash.
#[derive(Clone, Copy)]
enum Want<'a> {
    /// That it be here and current.
    Here,
    /// A range with the request's conditions: one of a blob not here yet may come straight from
    /// the lake.
    Range((u64, Option<u64>), &'a Conditions),
    /// The whole, with the request's conditions: a blob being fetched may be followed.
    Whole(&'a Conditions),
}

/// [`before_read`] for a Get Blob: a `range` (with the request's conditions) of a blob not here
/// yet is answered straight from the lake where [`range_from_lake`] takes it, and a whole one
/// as its fetch brings it.
pub async fn before_get(
    shard: &Rc<Shard>,
    links: &crate::link::Links,
    key: &BlobKey,
    range: Option<(u64, Option<u64>)>,
    cond: &Conditions,
) -> Result<Option<FromLake>> {
    let Some(link) = links.reading(&key.account, &key.container) else { return Ok(None) };
    let want = match range {
        Some(r) => Want::Range(r, cond),
        None => Want::Whole(cond),
    };
    make_current(shard, link, key, want).await
}

async fn make_current(shard: &Rc<Shard>, link: &Arc<Link>, key: &BlobKey, want: Want<'_>) -> Result<Option<FromLake>> {
    link.was_read(&key.name);
    ensure_container(shard, link).await?;
    for attempt in 0..ATTEMPTS {
        let local = match ops::head_blob(shard, key.clone(), Conditions::default()).await {
            Ok(b) => Some(b),
            Err(EngineError::BlobNotFound) => None,
            Err(e) => return Err(e.into()),
        };
        if local.as_ref().is_some_and(|b| lake_etag(&b.props).is_none() || !link.due(&key.name)) {
            return Ok(None);
        }
        if let (None, Want::Range(range, cond), 0) = (&local, want, attempt) {
            if let Some(passed) = range_from_lake(shard, link, key, range, cond).await {
                return Ok(Some(passed));
            }
        }
        // A whole read of a blob being fetched follows the fetch where it may.
        let follows = |blob: BlobSummary, rx| {
            let body = link_flight::follow(shard.clone(), key.clone(), &blob, rx).boxed_local();
            Ok(Some(FromLake { span: (0, blob.size), partial: false, blob, body }))
        };
        let outcome = match link.flight(&key.name) {
            Flight::Lead(guard) => {
                // Only a whole read follows the fetch (and only then are its ranges kept).
                let rx = matches!(want, Want::Whole(_)).then(|| guard.subscribe());
                // The fetch runs to its end whether or not this reader waits for it: the others
                // joined it, and a reader that hung up must not waste what was fetched.
                let (s, l, k) = (shard.clone(), link.clone(), key.clone());
                let task = tokio::task::spawn_local(async move {
                    let res = refresh(&s, &l, &k, local, guard.feed()).await;
                    guard.finish(res.as_ref().map(|r| *r).map_err(|e| e.message.clone()));
                    res
                });
                if let (Want::Whole(cond), Some(mut rx)) = (want, rx) {
                    if let Some(b) = link_flight::shown(&mut rx, cond).await {
                        return follows(b, rx);
                    }
                }
                // Not followed: the fetch's own answer, its error code included.
                match task.await {
                    Ok(res) => res,
                    Err(e) => Err(ApiError::with_message(ErrorCode::InternalError, format!("the fetch failed: {e}"))),
                }
            }
            Flight::Join(mut rx) => {
                if let Want::Whole(cond) = want {
                    if let Some(b) = link_flight::shown(&mut rx, cond).await {
                        return follows(b, rx);
                    }
                }
                link_flight::outcome(&mut rx).await.map_err(|why| lake_unavailable(&why))
            }
        };
        match outcome? {
            Refreshed::Current => return Ok(None),
            Refreshed::Raced => continue,
        }
    }
    Ok(None)
}

/// The longest range of a blob not here yet read from the lake in one request; a longer one is
/// read in 4 MiB pieces (each checked against its MD5) as it is sent.
pub const ONE_REQUEST_MAX: u64 = 8 << 20;

/// A ranged read of a blob of a linked container that is not here: the range straight from
/// the lake (its version pinned by If-Match), while the whole blob is fetched in the background
/// as a first read fetches it (where the link's `fetch_behind_ranges` says so), so a reader of a
/// part of a large blob waits for that part, not for the whole. `None` where the ordinary read
/// decides instead: the lake has no such blob or does not answer, or the request's conditions
/// do not pass against the lake's blob (the ordinary read gives their answer).
async fn range_from_lake(
    shard: &Rc<Shard>,
    link: &Arc<Link>,
    key: &BlobKey,
    range: (u64, Option<u64>),
    cond: &Conditions,
) -> Option<FromLake> {
    let Ok(Some(lake)) = link.remote.properties(&key.name).await else { return None };
    let (start, end) = match range {
        (a, _) if a >= lake.len => return None,
        (a, b) => (a, b.map_or(lake.len, |b| b.saturating_add(1).min(lake.len))),
    };
    // The ETag shown must be the one the blob will have here once fetched.
    let seen = as_it_will_be(&key.name, &lake)?;
    let passes = cond.check(Some((seen.etag, seen.modified_ns)), false) == ConditionOutcome::Pass;
    if end <= start || !passes {
        return None;
    }
    let len = end - start;
    let piece = if len <= ONE_REQUEST_MAX { len } else { RANGE };
    // A piece or two ahead of what is sent; a failure after the first (the lake's blob replaced,
    // or out of reach) cuts the answer short.
    let mut pieces = lake_pieces(link, &key.name, &lake.etag, start, len, piece, true);
    let first = match pieces.next().await? {
        Ok((_, data)) => data,
        // Replaced in the lake meanwhile, or out of reach: the ordinary read decides.
        Err(_) => return None,
    };
    let rest = pieces.map(|p| p.map(|(_, data)| data).map_err(std::io::Error::other));
    let body = futures::stream::once(std::future::ready(Ok(first))).chain(rest).boxed_local();
    // Started once the range's first bytes are in hand: it must not take the shard's time
    // from them.
    fetch_behind(shard, link, key);
    link.stats.passed_through.fetch_add(1, Ordering::Relaxed);
    Some(FromLake { blob: seen, span: (start, end), partial: true, body })
}

/// The whole of a blob not here, fetched in the background for the reads that follow a range or
/// a Get Blob Properties answered from the lake (one fetch however many ask), where the link's
/// `fetch_behind_ranges` says so and only while a fetch slot is free: reads of many blobs must
/// not queue a fetch each (a later read fetches what was skipped). Not when one is in flight:
/// a task per read of a blob being fetched would only wait on it, as many as a client asks.
fn fetch_behind(shard: &Rc<Shard>, link: &Arc<Link>, key: &BlobKey) {
    if !link.cfg.fetch_behind_ranges || link.fetches.available_permits() == 0 || link.fetching(&key.name) {
        return;
    }
    let (s, l, k) = (shard.clone(), link.clone(), key.clone());
    tokio::task::spawn_local(async move {
        if let Err(e) = Box::pin(make_current(&s, &l, &k, Want::Here)).await {
            tracing::info!(container = %k.container, error = %e.message, "a linked blob's fetch behind a read failed");
        }
    });
}

/// Get Blob Properties of a blob of a linked container, where it needs no fetch: a blob here and
/// current is answered from flash in one look (not two, as a read's check and then its head); a
/// blob not here yet, from the lake's properties as it will show here (its ETag, times, size,
/// headers and metadata), at once, with the whole fetched behind it as behind a range. A HEAD
/// used to wait for the whole fetch: minutes for a blob of a hundred gigabytes, past what a
/// client's request timeout allows, before a download that then reads it in ranges anyway.
/// `None` where the ordinary read decides: not linked for reading, due a check against the lake,
/// not in the lake or out of reach, an ETag this node would not keep, or conditions that do not
/// pass (their 304 or 412 is the engine's to give).
pub async fn properties_linked(
    shard: &Rc<Shard>,
    links: &crate::link::Links,
    key: &BlobKey,
    cond: &Conditions,
) -> Option<BlobSummary> {
    let link = links.reading(&key.account, &key.container)?;
    ensure_container(shard, link).await.ok()?;
    let passes = |b: &BlobSummary| cond.check(Some((b.etag, b.modified_ns)), false) == ConditionOutcome::Pass;
    let seen = match ops::head_blob(shard, key.clone(), Conditions::default()).await {
        Ok(b) if lake_etag(&b.props).is_none() || !link.due(&key.name) => b,
        Err(EngineError::BlobNotFound) => {
            let lake = link.remote.properties(&key.name).await.ok()??;
            let seen = as_it_will_be(&key.name, &lake)?;
            if passes(&seen) {
                fetch_behind(shard, link, key);
            }
            seen
        }
        _ => return None,
    };
    link.was_read(&key.name);
    passes(&seen).then_some(seen)
}

/// `len` bytes of the lake's version `etag` of `name` from `at`, in pieces of `piece` bytes
/// (each checked against its MD5 where `md5` asks, up to Azure's 4 MiB), `RANGES_AHEAD` at
/// once; each with its offset from `at`. Never a mix of versions: each piece is `If-Match`.
fn lake_pieces(
    link: &Arc<Link>,
    name: &str,
    etag: &str,
    at: u64,
    len: u64,
    piece: u64,
    md5: bool,
) -> impl futures::Stream<Item = std::result::Result<(u64, bytes::Bytes), edgeblob_remote::RemoteError>> + Unpin + 'static
{
    let (l, name, etag) = (link.clone(), name.to_owned(), etag.to_owned());
    futures::stream::iter(ranges(len, piece))
        .map(move |(off, n)| {
            let (l, name, etag) = (l.clone(), name.clone(), etag.clone());
            async move { l.remote.get_range_of(&name, &etag, at + off, n, md5).await.map(|b| (off, b)) }
        })
        .buffered(RANGES_AHEAD)
}

/// Get Block List of a blob of a linked container that is not here (nothing committed here):
/// the lake's committed blocks, and the blob as it will be here (its ETag, times, size), without
/// fetching it; `None` where the ordinary answer stands (not linked for reading, committed here,
/// not in the lake, an ETag this node would not keep, or a lake that does not answer: the
/// ordinary answer is then the engine's).
pub async fn block_list_from_lake(
    links: &crate::link::Links,
    key: &BlobKey,
    here: Option<&edgeblob_engine::BlockList>,
) -> Option<(BlobSummary, Vec<(Vec<u8>, u64)>)> {
    let link = links.reading(&key.account, &key.container)?;
    if here.is_some_and(|bl| bl.committed.is_some()) {
        return None;
    }
    let lake = link.remote.properties(&key.name).await.ok()??;
    let seen = as_it_will_be(&key.name, &lake)?;
    let blocks = link.remote.committed_blocks(&key.name).await.ok()?;
    // A list that does not add up to the blob is of a version replaced meanwhile; one of a Put
    // Blob is empty, as Azure gives it.
    (blocks.is_empty() || blocks.iter().map(|(_, n)| n).sum::<u64>() == lake.len).then_some((seen, blocks))
}

/// The lake's blob as a read of it here shows it before it is here (a range passed through, a
/// whole followed): `None` where it will not keep the lake's ETag here, as the ETag shown must
/// be the one a later read finds.
fn as_it_will_be(name: &str, lake: &edgeblob_remote::Props) -> Option<BlobSummary> {
    lake_etag_value(&lake.etag, edgeblob_engine::shard::now_ns())?;
    let mut seen = lake_summary(name, &lake.etag, lake.len, &lake.headers);
    seen.props.content_md5 = lake.content_md5;
    Some(seen)
}

/// The container of a link, made at the first request that needs it.
pub async fn ensure_container(shard: &Rc<Shard>, link: &Link) -> Result<()> {
    let (account, container) = (&link.cfg.account, &link.cfg.container);
    if shard.node.container(account, container).is_some() {
        return Ok(());
    }
    match ops::create_container(shard, account.clone(), container.clone(), Vec::new(), PublicAccess::None).await {
        Ok(_) | Err(EngineError::ContainerAlreadyExists) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 503 with Retry-After: the lake could not be read now, and nothing of it is here.
pub fn lake_unavailable(why: &str) -> ApiError {
    let mut e = ApiError::with_message(
        ErrorCode::ServerBusy,
        format!("The linked container's remote could not be read: {why}."),
    );
    e.headers.push(("retry-after", "5".into()));
    e
}

/// Checks `local` (the lake's blob as fetched earlier, or none) against the lake, and fetches
/// the lake's blob when it is not here or has changed.
async fn refresh(
    s: &Rc<Shard>,
    link: &Arc<Link>,
    key: &BlobKey,
    local: Option<BlobSummary>,
    feed: &Feed,
) -> Result<Refreshed> {
    let lake = match link.remote.properties(&key.name).await {
        Ok(p) => p,
        Err(e) if local.is_some() => {
            // Served as cached: a lake out of reach must not take the node's reads with it.
            link.stats.served_unchecked.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(container = %key.container, error = %e, "a linked blob served unchecked: the lake did not answer");
            return Ok(Refreshed::Current);
        }
        Err(e) => return Err(lake_unavailable(&e.to_string())),
    };
    if let Some(b) = &local {
        link.stats.revalidated.fetch_add(1, Ordering::Relaxed);
        if lake.as_ref().is_some_and(|p| lake_etag(&b.props) == Some(p.etag.as_str())) {
            link.checked(&key.name);
            return Ok(Refreshed::Current);
        }
        link.stats.stale.fetch_add(1, Ordering::Relaxed);
    }
    // Only the version this node fetched is replaced or deleted: a write here since is kept.
    let cond = match &local {
        Some(b) => Conditions {
            if_match: Some(ETagMatch::Tags(vec![edgeblob_proto::etag_string(b.etag)])),
            ..Conditions::default()
        },
        None => Conditions { if_none_match: Some(ETagMatch::Any), ..Conditions::default() },
    };
    let Some(lake) = lake else {
        if local.is_some() {
            return match ops::delete_blob(s, key.clone(), cond).await {
                Ok(()) | Err(EngineError::BlobNotFound) => Ok(Refreshed::Current),
                Err(EngineError::ConditionNotMet) => Ok(Refreshed::Raced),
                Err(e) => Err(e.into()),
            };
        }
        return Ok(Refreshed::Current);
    };
    let _slot = link.fetches.acquire().await.map_err(|_| lake_unavailable("the node is stopping"))?;
    // A blob with an MD5 is checked whole; one whose whole does not match (a damaged range, or
    // an MD5 its writer got wrong: Put Block List does not check it) is read again range by
    // range, each checked, and kept as the lake has it.
    if let Some(b) = as_it_will_be(&key.name, &lake) {
        feed.show(b);
    }
    let fetched = match fetch(s, link, key, &lake, cond.clone(), lake.content_md5.is_none(), feed).await {
        Err(Fetch::Mismatch) => {
            // Bytes sent from the first try were not checked: their readers must not finish.
            feed.void();
            fetch(s, link, key, &lake, cond, true, feed).await
        }
        other => other,
    };
    match fetched {
        Ok(b) => {
            link.stats.fetched.fetch_add(1, Ordering::Relaxed);
            link.stats.fetched_bytes.fetch_add(b.size, Ordering::Relaxed);
            link.checked(&key.name);
            Ok(Refreshed::Current)
        }
        Err(Fetch::Raced) => Ok(Refreshed::Raced),
        Err(Fetch::Mismatch) => Err(lake_unavailable("the lake's blob did not match its length")),
        Err(Fetch::Failed(e)) => Err(e),
    }
}

enum Fetch {
    Raced,
    /// The bytes did not match the lake's MD5 for the whole.
    Mismatch,
    Failed(ApiError),
}

impl From<EngineError> for Fetch {
    fn from(e: EngineError) -> Fetch {
        match e {
            EngineError::ConditionNotMet | EngineError::BlobAlreadyExists => Fetch::Raced,
            e => Fetch::Failed(e.into()),
        }
    }
}

/// Stores the lake's blob `lake` as `key`, on the condition `cond` of what is here; each range
/// checked against its MD5 (`checked_ranges`), or the whole against the blob's. A blob larger
/// than the link's `fetch_by_block_above` is stored block by block, with the lake's block ids.
async fn fetch(
    s: &Rc<Shard>,
    link: &Arc<Link>,
    key: &BlobKey,
    lake: &edgeblob_remote::Props,
    cond: Conditions,
    checked_ranges: bool,
    feed: &Feed,
) -> std::result::Result<BlobSummary, Fetch> {
    let etag = &lake.etag;
    if etag.is_empty() || etag.len() > 256 || !etag.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Fetch::Failed(lake_unavailable("the lake's blob has no usable ETag")));
    }
    if lake.len > link.cfg.fetch_by_block_above.min(limits::MAX_PUT_BLOB_SIZE) {
        return fetch_blocks(s, link, key, lake, cond, feed).await;
    }
    let whole = lake.content_md5.filter(|_| !checked_ranges);
    let tap = body::tap(whole.is_some(), false);
    let stored = store_range(s, link, key, etag, (0, lake.len), checked_ranges, Some(tap.clone()), feed).await?;
    if stored.len != lake.len || body::check_digests(&tap, whole, None).is_err() {
        stored.give_back(s);
        // Never stored: a damaged answer, or a lake blob changed in a way its ETag did not show.
        return Err(Fetch::Mismatch);
    }

    let (props, stamps) = lake_props(s, lake);
    Ok(ops::commit_single(s, key.clone(), stored, props, cond, Some(stamps)).await?)
}

/// Stores `len` bytes of the lake's version `etag` of `key` from `at`, in ranges, a few ahead,
/// each shown to the readers following the fetch.
#[allow(clippy::too_many_arguments)]
async fn store_range(
    s: &Rc<Shard>,
    link: &Arc<Link>,
    key: &BlobKey,
    etag: &str,
    (at, len): (u64, u64),
    checked_ranges: bool,
    tap: Option<body::Tap>,
    feed: &Feed,
) -> std::result::Result<edgeblob_engine::write::Stored, Fetch> {
    let feed = feed.clone();
    let stream = lake_pieces(link, &key.name, etag, at, len, RANGE, checked_ranges)
        .map_ok(move |(off, b)| {
            feed.range(at + off, &b);
            b
        })
        .map_err(|e| match &e {
            // The lake's blob was replaced mid-fetch.
            edgeblob_remote::RemoteError::Status { status: 412, .. } => std::io::Error::other(RACED),
            _ => std::io::Error::other(e.to_string()),
        });
    let stored = match tap {
        Some(tap) => ops::store(s, key, body::hashed(stream, tap).boxed_local(), len).await,
        None => ops::store(s, key, stream.boxed_local(), len).await,
    };
    match stored {
        Ok(stored) => Ok(stored),
        Err(EngineError::Body(why)) if why.contains(RACED) => Err(Fetch::Raced),
        Err(EngineError::Body(why)) => Err(Fetch::Failed(lake_unavailable(&why))),
        Err(e) => Err(e.into()),
    }
}

/// A blob larger than one Put Blob takes (or the link's `fetch_by_block_above`): each of the
/// lake's committed blocks staged here under its own id (each range checked against its MD5),
/// then committed as the lake's block list, so Get Block List here is the lake's.
async fn fetch_blocks(
    s: &Rc<Shard>,
    link: &Arc<Link>,
    key: &BlobKey,
    lake: &edgeblob_remote::Props,
    cond: Conditions,
    feed: &Feed,
) -> std::result::Result<BlobSummary, Fetch> {
    let blocks =
        link.remote.committed_blocks(&key.name).await.map_err(|e| Fetch::Failed(lake_unavailable(&e.to_string())))?;
    if blocks.is_empty() || blocks.iter().map(|(_, n)| n).sum::<u64>() != lake.len {
        // Its block list is not the version its properties showed: replaced meanwhile.
        return Err(Fetch::Raced);
    }
    let mut at = 0;
    for (id, len) in &blocks {
        let stored = store_range(s, link, key, &lake.etag, (at, *len), true, None, feed).await?;
        if stored.len != *len {
            stored.give_back(s);
            return Err(Fetch::Mismatch);
        }
        ops::stage(s, key.clone(), id.clone(), stored).await?;
        at += len;
    }
    let list = blocks.into_iter().map(|(id, _)| BlockListItem::Uncommitted(id)).collect();
    let (props, stamps) = lake_props(s, lake);
    Ok(ops::commit_block_list(s, key.clone(), list, props, cond, Some(stamps)).await?)
}

const RACED: &str = "the lake's blob changed while it was fetched";

/// The lake blob's properties as a blob here keeps them, and its ETag and times.
pub fn lake_props(s: &Shard, lake: &edgeblob_remote::Props) -> (BlobProps, Stamps) {
    let mut seen = lake_summary("", &lake.etag, lake.len, &lake.headers);
    seen.props.content_md5 = lake.content_md5.or(seen.props.content_md5);
    seen.props.metadata.push((LAKE_ETAG.to_owned(), lake.etag.clone()));
    let etag = lake_etag_value(&lake.etag, edgeblob_engine::shard::now_ns()).unwrap_or_else(|| s.node.stamp());
    (seen.props, Stamps { etag, created_ns: seen.created_ns, modified_ns: seen.modified_ns })
}

/// A lake blob as a listing here shows it (and as it is stored once fetched): its name, the
/// lake's ETag where it is one this node can carry, its size, times, content headers, MD5 and
/// metadata, from the headers Get Blob Properties answers with (or a listing's, as those).
pub fn lake_summary(name: &str, etag: &str, len: u64, h: &http::HeaderMap) -> BlobSummary {
    let headers = hdr::blob_headers(h, true).unwrap_or_default();
    // Names that are no identifier, or more than 8 KiB of them, are not a client's to keep.
    let mut metadata = hdr::metadata(h, &[]).unwrap_or_else(|code| {
        tracing::warn!(code = code.as_str(), "a linked blob's metadata not kept: not valid here");
        Vec::new()
    });
    metadata.retain(|(k, _)| !hdr::is_reserved_metadata_name(k));
    let props = BlobProps {
        content_type: headers.content_type,
        content_encoding: headers.content_encoding,
        content_language: headers.content_language,
        content_disposition: headers.content_disposition,
        cache_control: headers.cache_control,
        content_md5: hdr::md5(h, "content-md5").ok().flatten(),
        metadata,
        copy: None,
    };
    let date = |name: &str| {
        let v = h.get(name)?.to_str().ok()?;
        let t = httpdate::parse_http_date(v).ok()?;
        let ns = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        i64::try_from(ns).ok()
    };
    let now = edgeblob_engine::shard::now_ns();
    let modified_ns = date("last-modified").unwrap_or(now);
    let created_ns = date("x-ms-creation-time").unwrap_or(modified_ns);
    let etag = lake_etag_value(etag, now).unwrap_or_else(|| xxhash_rust::xxh3::xxh3_64(etag.as_bytes()));
    BlobSummary { name: name.to_owned(), etag, created_ns, modified_ns, size: len, props }
}

/// The lake's ETag as this node's, where it is one: Azure's, Azurite's and edgeblob's are
/// `0x` and at most 16 hex digits, so a blob fetched keeps the ETag a listing showed (a client
/// that lists, then reads with If-Match, reads). Not one past tomorrow on this node's clock:
/// the node's stamps (ETags, container incarnations) must stay unique and ordered, and it moves
/// its clock past every ETag it holds.
pub fn lake_etag_value(etag: &str, now_ns: i64) -> Option<u64> {
    let hex = etag.trim_matches('"').strip_prefix("0x")?;
    let v = u64::from_str_radix(hex, 16).ok().filter(|v| *v > 0)?;
    let horizon = u64::try_from(now_ns).ok()?.saturating_add(86_400 * 1_000_000_000);
    (v <= horizon).then_some(v)
}

/// The pieces `len` bytes are read in, `piece` bytes each but the last: offset and length.
fn ranges(len: u64, piece: u64) -> impl Iterator<Item = (u64, u64)> {
    debug_assert!(piece > 0, "a piece holds bytes");
    (0..len.div_ceil(piece)).map(move |i| (i * piece, piece.min(len - i * piece)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_fetched_in_ranges_that_cover_it_once() {
        let of = |len| ranges(len, RANGE).collect::<Vec<_>>();
        assert!(of(0).is_empty());
        assert_eq!(of(1), [(0, 1)]);
        assert_eq!(of(RANGE), [(0, RANGE)]);
        assert_eq!(of(3 * RANGE + 1), [(0, RANGE), (RANGE, RANGE), (2 * RANGE, RANGE), (3 * RANGE, 1)]);
    }

    #[test]
    fn a_lake_etag_is_kept_where_it_can_be_this_nodes() {
        let now = 1_800_000_000_000_000_000;
        assert_eq!(lake_etag_value("\"0x8DC2B1E4F2A7D3C\"", now), Some(0x8DC2B1E4F2A7D3C), "Azure's");
        assert_eq!(lake_etag_value("0x1", now), Some(1));
        for odd in ["", "\"\"", "0x", "0x0", "W/\"0x1\"", "abc", "0xFFFFFFFFFFFFFFFF", "0x10000000000000000"] {
            assert_eq!(lake_etag_value(odd, now), None, "{odd:?}");
        }
        // Not past tomorrow: the clock would move there.
        assert_eq!(lake_etag_value(&format!("0x{:X}", now + 86_400 * 1_000_000_000 + 1), now), None);
    }
}
