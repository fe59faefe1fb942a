//! List Blobs of a linked container: the lake's listing merged with what is here, in name order,
//! a page at a time. A name in both shows the blob here (fetched, or written here); a blob
//! fetched earlier that the lake no longer lists is left out (unless the link never
//! revalidates: it is then served as cached, and listed so). A page ends where either side's
//! page ended, so nothing of the other is skipped; its marker carries where the lake's listing
//! resumes.

use std::collections::HashSet;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use edgeblob_engine::ops;
use edgeblob_meta::listing::{ListEntry, ListPage, ListQuery};
use edgeblob_remote::ListPage as LakePage;

use super::dispatch::Call;
use super::error::Result;
use super::read_through::{lake_etag, lake_summary, lake_unavailable};
use crate::link::Link;
use crate::link_config::Revalidate;

/// Lake pages read for one page here at most: a marker far into a listing the lake pages
/// slowly through (a plain name as marker) ends the page early, with a marker to go on from.
const LAKE_PAGES: usize = 8;

/// Where the lake's listing resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LakeAt {
    Start,
    Marker(String),
    Done,
}

/// A marker of this listing: the last name shown, and where the lake's listing resumes. A
/// marker a client made up (or one of a listing before the link) is a name, from the lake's
/// start.
fn decode(marker: Option<&str>) -> (Option<String>, LakeAt) {
    let Some(m) = marker else { return (None, LakeAt::Start) };
    let parts = m.strip_prefix("link!").and_then(|rest| {
        let (after, lake) = rest.split_once('!')?;
        let after = String::from_utf8(B64URL.decode(after).ok()?).ok()?;
        let lake = match lake {
            "x" => LakeAt::Done,
            "" => LakeAt::Start,
            m => LakeAt::Marker(String::from_utf8(B64URL.decode(m.strip_prefix('m')?).ok()?).ok()?),
        };
        Some((after, lake))
    });
    match parts {
        Some((after, lake)) => (Some(after), lake),
        None => (Some(m.to_owned()), LakeAt::Start),
    }
}

fn encode(after: &str, lake: &LakeAt) -> String {
    let lake = match lake {
        LakeAt::Start => String::new(),
        LakeAt::Marker(m) => format!("m{}", B64URL.encode(m)),
        LakeAt::Done => "x".into(),
    };
    format!("link!{}!{lake}", B64URL.encode(after))
}

/// One page of the merged listing.
pub async fn page(c: &Call<'_>, link: &Arc<Link>, q: ListQuery, metadata: bool) -> Result<ListPage> {
    let max = q.max.max(1);
    let (after, lake_at) = decode(q.marker.as_deref());
    let here = ops::list_blobs(
        c.shard,
        &link.cfg.account,
        &link.cfg.container,
        ListQuery { marker: after.clone(), ..q.clone() },
    )
    .await?;
    let lake = if crate::link_sync::covers(c.shard, link, &q.prefix) {
        synced_side(c, link, &q, after.clone(), &lake_at, max).await?
    } else {
        lake_side(link, &q, after.as_deref(), lake_at, max, metadata).await?
    };
    let hide_gone = link.cfg.revalidate != Revalidate::Never;
    Ok(merge(here, lake, after, max, hide_gone))
}

/// The lake's side of a page: its entries past `after`, read from the lake.
async fn lake_side(
    link: &Link,
    q: &ListQuery,
    after: Option<&str>,
    mut lake_at: LakeAt,
    max: usize,
    metadata: bool,
) -> Result<Lake> {
    // The lake's entries past `after`, each with where the page that holds it is listed from.
    let mut lake: Vec<(ListEntry, LakeAt)> = Vec::new();
    let mut last_listed: Option<String> = None;
    for _ in 0..LAKE_PAGES {
        let from = match &lake_at {
            LakeAt::Done => break,
            LakeAt::Start => None,
            LakeAt::Marker(m) => Some(m.as_str()),
        };
        let got: LakePage = link
            .remote
            .list_in(&q.prefix, q.delimiter.as_deref(), from, max.min(5000) as u32, metadata)
            .await
            .map_err(|e| lake_unavailable(&e.to_string()))?;
        let mut entries: Vec<ListEntry> = got
            .blobs
            .iter()
            .map(|b| ListEntry::Blob(Box::new(lake_summary(&b.name, &b.etag, b.len, &b.headers))))
            .chain(got.prefixes.iter().map(|p| ListEntry::Prefix(p.clone())))
            .collect();
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        if let Some(e) = entries.last() {
            last_listed = Some(e.name().to_owned());
        }
        let this_page = lake_at.clone();
        lake.extend(entries.into_iter().filter(|e| after.is_none_or(|a| e.name() > a)).map(|e| (e, this_page.clone())));
        lake_at = match got.next {
            Some(m) => LakeAt::Marker(m),
            None => LakeAt::Done,
        };
        if lake.len() >= max {
            break;
        }
    }
    Ok(Lake { entries: lake, at: lake_at, last_listed })
}

/// The lake's side of a page from what `edgeblob-admin link sync` kept (`link_sync`): its
/// entries past `after`, listed here as the lake's would be. It resumes from the page's last
/// name, so its place is `Start` (after the name the marker carries) until it is done.
async fn synced_side(
    c: &Call<'_>,
    link: &Link,
    q: &ListQuery,
    after: Option<String>,
    lake_at: &LakeAt,
    max: usize,
) -> Result<Lake> {
    if *lake_at == LakeAt::Done {
        return Ok(Lake { entries: Vec::new(), at: LakeAt::Done, last_listed: None });
    }
    let kept = crate::link_sync::container_of(link);
    let page =
        ops::list_blobs(c.shard, &link.cfg.account, &kept, ListQuery { marker: after, max, ..q.clone() }).await?;
    let at = if page.next_marker.is_some() { LakeAt::Start } else { LakeAt::Done };
    let last_listed = page.entries.last().map(|e| e.name().to_owned());
    let entries = page.entries.into_iter().map(|e| (crate::link_sync::as_listed(e), LakeAt::Start)).collect();
    Ok(Lake { entries, at, last_listed })
}

/// What was read of the lake's listing for one page here.
struct Lake {
    /// Its entries past the marker, each with where the lake page that holds it is listed from.
    entries: Vec<(ListEntry, LakeAt)>,
    /// Where it resumes after the last page read.
    at: LakeAt,
    /// The last name it listed, past the marker or not.
    last_listed: Option<String>,
}

/// One page here: the entries of both sides past `after`, in name order, at most `max`, up to
/// where either side's listing stopped short (an entry of that side may come before the other
/// side's next); `hide_gone` leaves out blobs fetched earlier that the lake no longer lists.
fn merge(here: ListPage, lake: Lake, after: Option<String>, max: usize, hide_gone: bool) -> ListPage {
    let here_bound = here.next_marker.as_ref().and_then(|_| here.entries.last().map(|e| e.name().to_owned()));
    let lake_bound = match lake.at {
        LakeAt::Done => None,
        _ => Some(lake.last_listed.clone().unwrap_or_else(|| after.clone().unwrap_or_default())),
    };
    let bound = match (here_bound, lake_bound) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let within = |name: &str| bound.as_deref().is_none_or(|b| name <= b);
    let lake_names: HashSet<&str> = lake.entries.iter().map(|(e, _)| e.name()).collect();
    let gone = |e: &ListEntry| match e {
        ListEntry::Blob(b) => hide_gone && lake_etag(&b.props).is_some() && !lake_names.contains(b.name.as_str()),
        ListEntry::Prefix(_) => false,
    };
    let mut merged: Vec<ListEntry> = here.entries.into_iter().filter(|e| within(e.name()) && !gone(e)).collect();
    let here_names: HashSet<String> = merged.iter().map(|e| e.name().to_owned()).collect();
    merged.extend(
        lake.entries.iter().filter(|(e, _)| within(e.name()) && !here_names.contains(e.name())).map(|(e, _)| e.clone()),
    );
    merged.sort_by(|a, b| a.name().cmp(b.name()));
    let more = merged.len() > max || bound.is_some();
    merged.truncate(max);
    let shown = merged.last().map(|e| e.name().to_owned()).or(after).unwrap_or_default();
    // The lake resumes at the page holding its first entry past what is shown.
    let resume = lake.entries.iter().find(|(e, _)| e.name() > shown.as_str()).map_or(lake.at, |(_, at)| at.clone());
    let next_marker = more.then(|| encode(&shown, &resume));
    ListPage { entries: merged, next_marker }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_carries_the_name_and_the_lakes_place_and_a_plain_one_is_a_name() {
        for lake in [LakeAt::Start, LakeAt::Done, LakeAt::Marker("2!88!MDAwMDI0!".into())] {
            let m = encode("dir/name ü!", &lake);
            assert!(m.bytes().all(|b| b.is_ascii_graphic()), "{m}");
            assert_eq!(decode(Some(&m)), (Some("dir/name ü!".to_owned()), lake));
        }
        assert_eq!(decode(None), (None, LakeAt::Start));
        assert_eq!(decode(Some("photos/0042")), (Some("photos/0042".to_owned()), LakeAt::Start));
        assert_eq!(decode(Some("link!%%!x")), (Some("link!%%!x".to_owned()), LakeAt::Start), "not ours: a name");
    }

    fn blob(name: &str, lake_etag: Option<&str>) -> ListEntry {
        let mut b = lake_summary(name, "0x1", 0, &http::HeaderMap::new());
        if let Some(e) = lake_etag {
            b.props.metadata.push((super::super::read_through::LAKE_ETAG.to_owned(), e.to_owned()));
        }
        ListEntry::Blob(Box::new(b))
    }

    fn names(p: &ListPage) -> Vec<&str> {
        p.entries.iter().map(ListEntry::name).collect()
    }

    #[test]
    fn a_page_stops_where_a_side_stopped_short() {
        let here = || ListPage {
            entries: vec![blob("a", None), blob("c", None), blob("e", None)],
            next_marker: Some("e".into()),
        };
        // The lake gave a short page (Azure may): "bb" may be on its next, so nothing past "b".
        let at = LakeAt::Marker("m2".into());
        let lake =
            Lake { entries: vec![(blob("b", None), LakeAt::Start)], at: at.clone(), last_listed: Some("b".into()) };
        let p = merge(here(), lake, None, 5, true);
        assert_eq!(names(&p), ["a", "b"]);
        assert_eq!(decode(p.next_marker.as_deref()), (Some("b".into()), at), "the lake resumes at its next page");
        // The lake done: everything here, up to where here stopped.
        let lake =
            Lake { entries: vec![(blob("b", None), LakeAt::Start)], at: LakeAt::Done, last_listed: Some("b".into()) };
        let p = merge(here(), lake, None, 5, true);
        assert_eq!(names(&p), ["a", "b", "c", "e"]);
        assert_eq!(decode(p.next_marker.as_deref()), (Some("e".into()), LakeAt::Done));
        // Both done, and more than a page: cut at max, the lake resuming where its entry is.
        let here = ListPage { entries: vec![blob("a", None), blob("c", None)], next_marker: None };
        let lake = Lake {
            entries: vec![(blob("b", None), LakeAt::Start), (blob("d", None), LakeAt::Marker("m1".into()))],
            at: LakeAt::Done,
            last_listed: Some("d".into()),
        };
        let p = merge(here, lake, None, 2, true);
        assert_eq!(names(&p), ["a", "b"]);
        assert_eq!(decode(p.next_marker.as_deref()), (Some("b".into()), LakeAt::Marker("m1".into())), "d's page next");
    }

    #[test]
    fn a_fetched_blob_the_lake_no_longer_lists_is_left_out_unless_never_revalidated() {
        let here = || ListPage {
            entries: vec![blob("fetched", Some("0x1")), blob("gone", Some("0x2")), blob("mine", None)],
            next_marker: None,
        };
        let lake =
            || Lake { entries: vec![(blob("fetched", None), LakeAt::Start)], at: LakeAt::Done, last_listed: None };
        assert_eq!(names(&merge(here(), lake(), None, 10, true)), ["fetched", "mine"]);
        assert_eq!(names(&merge(here(), lake(), None, 10, false)), ["fetched", "gone", "mine"]);
        assert_eq!(merge(here(), lake(), None, 10, true).next_marker, None, "the last page");
    }
}
