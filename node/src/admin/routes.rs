//! What the admin listener answers. JSON for the operations and `tier/status`, the text format
//! for `/metrics`, a short line for health.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeblob_engine::tier::stats::TierReport;
use edgeblob_engine::{EngineError, Node};
use edgeblob_meta::model::BlobKey;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::metrics;
use crate::config::Config;

/// How long a scrape may reuse the chunk tables' scan (the counters are always read fresh): a
/// scan pages through every shard's chunk table, too much for every scrape of a large node.
const SCAN_EVERY: Duration = Duration::from_secs(10);

/// The longest prefix an operation takes (a blob name's bound).
const MAX_PREFIX: usize = 1024;

pub struct State {
    node: Arc<Node>,
    entra: Option<Arc<crate::entra::Entra>>,
    token: Option<String>,
    /// The account operations name when they do not say (the only one configured).
    default_account: Option<String>,
    started: Instant,
    lifecycle: Arc<crate::lifecycle::Lifecycle>,
    requests: Arc<crate::http::stats::RequestStats>,
    links: Arc<crate::link::Links>,
    /// The last data-reduction figures (a walk of every blob: taken in the background, at most
    /// every [`REDUCTION_EVERY`]), and whether a walk is running.
    reduction: std::sync::Mutex<Option<(Instant, edgeblob_engine::stats::Reduction)>>,
    reducing: std::sync::atomic::AtomicBool,
    /// One operation at a time.
    busy: tokio::sync::Mutex<()>,
    /// The last scan of the chunk tables, and when it was taken.
    scanned: tokio::sync::Mutex<Option<(Instant, edgeblob_engine::tier::TierStatus)>>,
}

impl State {
    pub fn new(node: Arc<Node>, config: &Config, shared: crate::http::Shared) -> State {
        State {
            node,
            entra: shared.entra,
            token: config.admin.token.clone(),
            default_account: (config.accounts.len() == 1).then(|| config.accounts[0].name.clone()),
            started: Instant::now(),
            lifecycle: shared.lifecycle,
            requests: shared.requests,
            links: shared.links,
            reduction: std::sync::Mutex::new(None),
            reducing: std::sync::atomic::AtomicBool::new(false),
            busy: tokio::sync::Mutex::new(()),
            scanned: tokio::sync::Mutex::new(None),
        }
    }

    /// The tier's report; the scan part reused within [`SCAN_EVERY`] unless `fresh`.
    async fn report(&self, fresh: bool) -> Result<TierReport, EngineError> {
        let mut scanned = self.scanned.lock().await;
        let reuse = scanned.as_ref().filter(|(at, _)| !fresh && at.elapsed() < SCAN_EVERY).map(|(_, s)| s.clone());
        let scans_now = reuse.is_none();
        let report = self.node.tier_report_with(reuse).await?;
        if scans_now {
            *scanned = Some((Instant::now(), report.status.clone()));
        }
        Ok(report)
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn json_answer(status: StatusCode, v: serde_json::Value) -> Answer {
    answer(status, "application/json", format!("{v}\n"))
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Answer {
    json_answer(status, json!({ "error": code, "message": message.into() }))
}

/// Why a request is refused before anything runs.
struct Refusal(StatusCode, &'static str, String);

impl Refusal {
    fn answer(self) -> Answer {
        error(self.0, self.1, self.2)
    }
}

fn engine_error(e: EngineError) -> Answer {
    match e {
        EngineError::ContainerNotFound => error(StatusCode::NOT_FOUND, "ContainerNotFound", e.to_string()),
        EngineError::BlobNotFound => error(StatusCode::NOT_FOUND, "BlobNotFound", e.to_string()),
        EngineError::Tier(_) => error(StatusCode::SERVICE_UNAVAILABLE, "TierUnavailable", e.to_string()),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
    }
}

/// Equal in time whatever the first difference (a token is not guessed a byte at a time).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request may run an operation.
fn authorised(state: &State, req: &http::Request<hyper::body::Incoming>, peer: SocketAddr) -> Result<(), Refusal> {
    match &state.token {
        None if peer.ip().is_loopback() => Ok(()),
        None => Err(Refusal(
            StatusCode::FORBIDDEN,
            "AuthorizationFailure",
            "operations are taken from loopback only".into(),
        )),
        Some(token) => {
            let given = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            match given.and_then(|v| v.strip_prefix("Bearer ")) {
                Some(t) if same(t.as_bytes(), token.as_bytes()) => Ok(()),
                _ => Err(Refusal(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationInfo",
                    "a bearer token is required".into(),
                )),
            }
        }
    }
}

/// The query's parameters, percent-decoded; an error for a malformed one.
fn params(query: Option<&str>) -> Result<Vec<(String, String)>, Refusal> {
    let mut out = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode =
            |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8().map(|c| c.into_owned());
        match (decode(k), decode(v)) {
            (Ok(k), Ok(v)) => out.push((k, v)),
            _ => {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "InvalidQueryParameterValue",
                    "a parameter is not UTF-8".into(),
                ))
            }
        }
    }
    Ok(out)
}

/// The account, container and prefix an operation names, checked as the Blob API checks them.
fn target(state: &State, query: Option<&str>) -> Result<(String, String, String), Refusal> {
    target_with(state, &params(query)?)
}

/// The blob a query names (`container`, `name`, optional `account`).
fn blob_target(state: &State, query: Option<&str>) -> Result<BlobKey, Refusal> {
    let p = params(query)?;
    let (account, container, _) = target_with(state, &p)?;
    let name = p.iter().find(|(n, _)| n == "name").map(|(_, v)| v.clone()).unwrap_or_default();
    if name.is_empty() || name.len() > MAX_PREFIX || name.chars().any(char::is_control) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "InvalidQueryParameterValue",
            "name the blob: 1 to 1024 characters, none of them a control character".into(),
        ));
    }
    Ok(BlobKey::new(&account, &container, &name))
}

fn target_with(state: &State, p: &[(String, String)]) -> Result<(String, String, String), Refusal> {
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let bad = |m: &str| Refusal(StatusCode::BAD_REQUEST, "InvalidQueryParameterValue", m.into());
    let account = account_with(state, p)?;
    let container = get("container").ok_or_else(|| bad("name the container"))?;
    if !edgeblob_proto::addr::valid_container_name(&container) {
        return Err(bad("not a container name"));
    }
    let prefix = get("prefix").unwrap_or_default();
    if prefix.len() > MAX_PREFIX || prefix.chars().any(char::is_control) {
        return Err(bad("a prefix is at most 1024 characters, none of them a control character"));
    }
    Ok((account, container, prefix))
}

/// The account a query names (`account`, or the node's only one), checked as the Blob API
/// checks it.
fn account_with(state: &State, p: &[(String, String)]) -> Result<String, Refusal> {
    let bad = |m: &str| Refusal(StatusCode::BAD_REQUEST, "InvalidQueryParameterValue", m.into());
    let named = p.iter().find(|(n, _)| n == "account").map(|(_, v)| v.clone());
    let account = named.or_else(|| state.default_account.clone()).ok_or_else(|| bad("name the account"))?;
    match edgeblob_proto::addr::valid_account_name(&account) {
        true => Ok(account),
        false => Err(bad("not an account name")),
    }
}

fn report_json(r: &TierReport) -> serde_json::Value {
    let st = &r.status;
    let remote: Vec<serde_json::Value> =
        r.remote.attempts.iter().map(|(op, o, n)| json!({ "call": op, "outcome": o.label(), "count": n })).collect();
    json!({
        "ready": r.ready,
        "trouble": r.trouble,
        "fenced": r.fenced,
        "generation": st.generation,
        "pending_bytes": st.local_bytes,
        "pending_oldest_secs": st.pending_secs,
        "chunks": { "local": st.local_chunks, "both": st.both_chunks, "tiered": st.tiered_chunks },
        "stored_bytes": { "local": st.local_bytes, "both": st.both_bytes, "tiered": st.tiered_bytes },
        "packs": st.packs,
        "pack_bytes": st.pack_bytes,
        "packs_committed": r.packs_committed,
        "pack_bytes_committed": r.pack_bytes_committed,
        "promotions": r.promotions,
        "fetches": r.fetch.count,
        "fetch_errors": r.fetch_errors,
        "integrity_errors": r.integrity_errors,
        "restore_point_age_secs": r.restore_point_age_secs,
        "remote": { "attempts": remote, "bytes_sent": r.remote.bytes_sent, "bytes_received": r.remote.bytes_received },
    })
}

/// Query parameter `name` as a number within `range`: none when it is absent, a refusal saying
/// `range_said` when it is anything but such a number.
fn number_param<T>(
    params: &[(String, String)],
    name: &str,
    range: RangeInclusive<T>,
    range_said: &str,
) -> Result<Option<T>, Refusal>
where
    T: std::str::FromStr + PartialOrd,
{
    let Some((_, v)) = params.iter().find(|(k, _)| k == name) else { return Ok(None) };
    match v.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(Refusal(StatusCode::BAD_REQUEST, "InvalidQueryParameterValue", format!("{name}: {range_said}"))),
    }
}

/// A link operation's request (`POST /links/...`): the link it names, the prefix, and its
/// query's parameters.
struct LinkOperation {
    link: Arc<crate::link::Link>,
    prefix: String,
    params: Vec<(String, String)>,
}

/// A link operation authorised and parsed. Only a link that reads through: the others neither
/// fetch nor list the lake.
fn link_operation(
    state: &State,
    req: &http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    query: Option<&str>,
) -> Result<LinkOperation, Refusal> {
    authorised(state, req, peer)?;
    let params = params(query)?;
    let (account, container, prefix) = target_with(state, &params)?;
    let link = state.links.reading(&account, &container).cloned().ok_or_else(|| {
        Refusal(StatusCode::NOT_FOUND, "ContainerNotLinked", format!("{account}/{container} is not linked for reading"))
    })?;
    Ok(LinkOperation { link, prefix, params })
}

/// The answer to a link operation started in the background: 202 with the link's status, or
/// 409 while one of its kind runs.
fn started(state: &State, link: &crate::link::Link, res: Result<(), String>) -> Answer {
    match res {
        Ok(()) => json_answer(StatusCode::ACCEPTED, link_json(&state.node, link)),
        Err(why) => error(StatusCode::CONFLICT, "OperationInProgress", why),
    }
}

/// A link as `/links/status` shows it: where it reads from, what it did, the last prefetch and
/// sync, and the prefixes whose listing is kept here.
fn link_json(node: &edgeblob_engine::Node, l: &crate::link::Link) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &l.stats;
    let remote = l.remote.stats().snapshot();
    let prefetch = l.prefetch.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let sync = l.sync.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let kept = node.get_container(&l.cfg.account, &crate::link_sync::container_of(l)).ok();
    let synced: Vec<_> = crate::link_sync::synced(kept)
        .into_iter()
        .map(|(at, prefix)| json!({ "prefix": prefix, "at_unix_secs": at }))
        .collect();
    json!({
        "account": l.cfg.account,
        "container": l.cfg.container,
        // The URL carries no credential (a SAS is configured apart).
        "url": l.cfg.url,
        "revalidate": format!("{:?}", l.cfg.revalidate),
        "fetched": s.fetched.load(Relaxed),
        "fetched_bytes": s.fetched_bytes.load(Relaxed),
        "joined": s.joined.load(Relaxed),
        "revalidated": s.revalidated.load(Relaxed),
        "stale": s.stale.load(Relaxed),
        "served_unchecked": s.served_unchecked.load(Relaxed),
        "passed_through": s.passed_through.load(Relaxed),
        "remote": { "bytes_sent": remote.bytes_sent, "bytes_received": remote.bytes_received },
        "prefetch": prefetch,
        "sync": sync,
        "synced": synced,
        "write_back": l.cfg.write_back.then(|| l.upload.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        "evicted": l.evicted.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    })
}

/// How long the data-reduction figures serve before a scrape starts a new walk.
const REDUCTION_EVERY: Duration = Duration::from_secs(300);

/// Starts a walk for the data-reduction figures when the last is older than [`REDUCTION_EVERY`]
/// and none runs; the page shows the last figures meanwhile (none until the first walk ends).
fn refresh_reduction(state: &Arc<State>) {
    use std::sync::atomic::Ordering;
    let stale =
        state.reduction.lock().map(|r| r.as_ref().is_none_or(|(at, _)| at.elapsed() > REDUCTION_EVERY)).unwrap_or(true);
    if stale && !state.reducing.swap(true, Ordering::SeqCst) {
        let state = state.clone();
        tokio::task::spawn(async move {
            match state.node.reduction().await {
                Ok(r) => {
                    if let Ok(mut slot) = state.reduction.lock() {
                        *slot = Some((Instant::now(), r));
                    }
                }
                Err(e) => tracing::warn!(%e, "data-reduction figures could not be taken"),
            }
            state.reducing.store(false, Ordering::SeqCst);
        });
    }
}

async fn metrics_page(state: &Arc<State>) -> Answer {
    let mut p = metrics::Page::default();
    p.family(
        "edgeblob_build_info",
        "gauge",
        "The running build.",
        &[(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );
    p.one("edgeblob_shards", "gauge", "Shards (one pinned thread each).", state.node.shards() as f64);
    p.one(
        "edgeblob_uptime_seconds",
        "gauge",
        "Seconds since the node started serving.",
        state.started.elapsed().as_secs_f64(),
    );
    p.one(
        "edgeblob_ready",
        "gauge",
        "Whether the node takes writes and reports ready (0 while it drains).",
        f64::from(u8::from(state.lifecycle.not_ready().is_none())),
    );
    metrics::requests(&mut p, &state.requests.totals());
    if !state.links.is_empty() {
        metrics::links(&mut p, &state.links);
    }
    let shared = state.node.shared();
    match state.node.space().await {
        Ok(space) => {
            let devices: Vec<metrics::DeviceView> = (0..shared.layout.devices())
                .map(|d| {
                    let on = &space[shared.layout.shards_on(d)];
                    metrics::DeviceView {
                        path: shared.device_names[d].clone(),
                        capacity: shared.layout.device_len(d),
                        region_bytes: on.iter().map(|s| s.region_bytes).sum(),
                        free_bytes: on.iter().map(|s| s.free_bytes).sum(),
                    }
                })
                .collect();
            metrics::device(&mut p, &devices, &shared.io, shared.config.queue_depth)
        }
        Err(e) => tracing::warn!(%e, "the device's space could not be read"),
    }
    let panics = shared.background.by_task();
    let samples: Vec<(Vec<(&str, &str)>, f64)> =
        panics.iter().map(|(task, n)| (vec![("task", *task)], *n as f64)).collect();
    p.family(
        "edgeblob_background_panics_total",
        "counter",
        "Panics of the shards' background tasks (delivery of reference changes, tier uploads, purges...), by task: each one stopped a task.",
        &samples,
    );
    refresh_reduction(state);
    let last = state.reduction.lock().ok().and_then(|r| *r);
    if let Some((at, r)) = last {
        p.one(
            "edgeblob_data_logical_bytes",
            "gauge",
            "Bytes of every committed blob and staged block.",
            r.logical_bytes as f64,
        );
        p.one(
            "edgeblob_data_stored_bytes",
            "gauge",
            "Bytes the live chunks take on the device.",
            r.stored_bytes as f64,
        );
        p.one(
            "edgeblob_data_reduction_ratio",
            "gauge",
            "Logical over stored bytes (compression and dedup).",
            r.ratio(),
        );
        p.one(
            "edgeblob_data_reduction_age_seconds",
            "gauge",
            "Seconds since these figures were taken.",
            at.elapsed().as_secs_f64(),
        );
    }
    if let Some(e) = &state.entra {
        metrics::entra(&mut p, e);
    }
    let tiered = state.node.shared().tier.is_some();
    p.one("edgeblob_tier_configured", "gauge", "Whether a tier is configured.", f64::from(u8::from(tiered)));
    if tiered {
        match state.report(false).await {
            Ok(r) => metrics::tier(&mut p, &r),
            Err(e) => tracing::warn!(%e, "the tier's metrics could not be read"),
        }
    }
    answer(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", p.finish())
}

/// Runs an operation, one at a time.
async fn operation<F, Fut>(state: &State, f: F) -> Answer
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, EngineError>>,
{
    let Ok(_one) = state.busy.try_lock() else {
        return error(
            StatusCode::CONFLICT,
            "OperationInProgress",
            "another operation is running; try again when it ends",
        );
    };
    match f().await {
        Ok(v) => json_answer(StatusCode::OK, v),
        Err(e) => engine_error(e),
    }
}

pub async fn handle(state: &Arc<State>, req: http::Request<hyper::body::Incoming>, peer: SocketAddr) -> Answer {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/health/live") => answer(StatusCode::OK, "text/plain", "live\n"),
        (&Method::GET, "/health/ready") => match state.lifecycle.not_ready() {
            Some(why) => answer(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("not ready: {why}\n")),
            None => answer(StatusCode::OK, "text/plain", "ready\n"),
        },
        (&Method::GET, "/metrics") => metrics_page(state).await,
        (&Method::GET, "/tier/status") => match state.report(true).await {
            Ok(r) => json_answer(StatusCode::OK, report_json(&r)),
            Err(e) => engine_error(e),
        },
        // Where one blob's bytes are: it names a user's blob, so it is authorised as operations are.
        (&Method::GET, "/tier/blob") => {
            if let Err(denied) = authorised(state, &req, peer) {
                return denied.answer();
            }
            let key = match blob_target(state, query.as_deref()) {
                Ok(k) => k,
                Err(bad) => return bad.answer(),
            };
            let kept = state.node.shared().policy.keeps(&key);
            match state.node.tier_residency(key).await {
                Ok(r) => json_answer(
                    StatusCode::OK,
                    json!({ "local_bytes": r.local, "tiered_bytes": r.tiered, "kept_by_rule": kept }),
                ),
                Err(e) => engine_error(e),
            }
        }
        (&Method::POST, op @ ("/tier/drain" | "/tier/epoch" | "/tier/now" | "/tier/hydrate")) => {
            if let Err(denied) = authorised(state, &req, peer) {
                return denied.answer();
            }
            let node = state.node.clone();
            match op {
                "/tier/drain" => {
                    operation(state, || async {
                        state.lifecycle.begin("tier-drain", "draining to the tier".into());
                        let res = async {
                        node.tier_flush().await?;
                        let e = node.tier_epoch().await?;
                        let r = node.tier_report().await?;
                        Ok(json!({ "epoch": e.epoch, "manifest": e.manifest, "pending_bytes": r.status.local_bytes }))
                    }
                    .await;
                        state.lifecycle.end("tier-drain");
                        res
                    })
                    .await
                }
                "/tier/epoch" => {
                    operation(state, || async {
                        let e = node.tier_epoch().await?;
                        Ok(json!({ "epoch": e.epoch, "manifest": e.manifest, "blobs": e.counts.blobs }))
                    })
                    .await
                }
                // A hydrate naming no container fills the flash with the whole account: the
                // background prefetch after a restore.
                "/tier/hydrate" if !query.as_deref().unwrap_or("").split('&').any(|p| p.starts_with("container=")) => {
                    let account = match params(query.as_deref()).and_then(|p| account_with(state, &p)) {
                        Ok(a) => a,
                        Err(bad) => return bad.answer(),
                    };
                    operation(state, || async {
                        let r = node.tier_hydrate_account(&account).await?;
                        Ok(json!({ "blobs": r.blobs, "chunks": r.chunks, "promoted_chunks": r.done }))
                    })
                    .await
                }
                _ => {
                    let (account, container, prefix) = match target(state, query.as_deref()) {
                        Ok(t) => t,
                        Err(bad) => return bad.answer(),
                    };
                    let now = op == "/tier/now";
                    operation(state, || async {
                        let r = match now {
                            true => node.tier_now(&account, &container, &prefix).await?,
                            false => node.tier_hydrate(&account, &container, &prefix).await?,
                        };
                        Ok(match now {
                            true => json!({ "blobs": r.blobs, "chunks": r.chunks, "freed_bytes": r.done, "kept_chunks": r.kept }),
                            false => json!({ "blobs": r.blobs, "chunks": r.chunks, "promoted_chunks": r.done }),
                        })
                    })
                    .await
                }
            }
        }
        // A link's status names its lake and prefixes: authorised as operations are.
        (&Method::GET, "/links/status") => {
            if let Err(denied) = authorised(state, &req, peer) {
                return denied.answer();
            }
            json_answer(
                StatusCode::OK,
                json!({ "links": state.links.iter().map(|l| link_json(&state.node, l)).collect::<Vec<_>>() }),
            )
        }
        (&Method::POST, "/links/prefetch") => {
            let LinkOperation { link, prefix, params: p } = match link_operation(state, &req, peer, query.as_deref()) {
                Ok(op) => op,
                Err(refused) => return refused.answer(),
            };
            let parallel = match number_param(&p, "parallel", 1..=256, "1 to 256") {
                Ok(n) => n.unwrap_or(link.cfg.max_fetches),
                Err(refused) => return refused.answer(),
            };
            let cap = match number_param(&p, "bytes_per_sec", 1..=u64::MAX, "1 or more") {
                Ok(n) => n,
                Err(refused) => return refused.answer(),
            };
            let res = crate::link_prefetch::start(
                state.node.clone(),
                state.links.clone(),
                link.clone(),
                prefix,
                parallel,
                cap,
            );
            started(state, &link, res)
        }
        (&Method::POST, "/links/sync") => {
            let LinkOperation { link, prefix, .. } = match link_operation(state, &req, peer, query.as_deref()) {
                Ok(op) => op,
                Err(refused) => return refused.answer(),
            };
            let res = crate::link_sync::start(state.node.clone(), link.clone(), prefix);
            started(state, &link, res)
        }
        (_, "/links/status") => error(StatusCode::METHOD_NOT_ALLOWED, "UnsupportedHttpVerb", "use GET"),
        (_, "/links/prefetch" | "/links/sync") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "UnsupportedHttpVerb", "use POST")
        }
        (_, "/health/live" | "/health/ready" | "/metrics" | "/tier/status" | "/tier/blob") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "UnsupportedHttpVerb", "use GET")
        }
        (_, "/tier/drain" | "/tier/epoch" | "/tier/now" | "/tier/hydrate") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "UnsupportedHttpVerb", "use POST")
        }
        _ => error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such admin resource"),
    }
}
