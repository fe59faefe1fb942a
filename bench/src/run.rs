//! Runs a job: prepares the data set it reads (not measured), then `numjobs × iodepth` tasks, each
//! with its own connection, issue the plan's operations until a bound is reached.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use crate::client::{self, Conn, Failure, Request};
use crate::job::Job;
use crate::stats::{Interval, Measured, Recorder, Shared};
use crate::target::Endpoint;
use crate::workload::{block_id, list_name, Item, Op, Plan, Rng, Upload};

/// Everything a job measured.
pub struct Outcome {
    pub job: Job,
    /// Measured time: from the first request to the last answer, less the ramp.
    pub elapsed: Duration,
    pub measured: Measured,
    pub timeline: Vec<Interval>,
    pub connections: usize,
}

pub async fn run_job(job: Job, progress: bool) -> Result<Outcome, String> {
    let plan = Arc::new(Plan::new(job.clone()));
    prepare(&plan, progress).await?;
    let start = Instant::now();
    let ramp = Duration::from_secs_f64(job.ramp_time);
    let deadline = start + Duration::from_secs_f64(job.runtime);
    let shared = Arc::new(Shared::new(start, ramp));
    let mut tasks = Vec::new();
    for j in 0..job.numjobs {
        for t in 0..job.iodepth {
            let (plan, shared) = (plan.clone(), shared.clone());
            tasks.push(tokio::spawn(async move { issue(plan, j, t, deadline, shared).await }));
        }
    }
    let ticker = progress.then(|| tokio::spawn(show_progress(shared.clone(), job.runtime)));
    let mut measured = Measured::default();
    for t in tasks {
        measured.merge(t.await.map_err(|e| format!("a request task failed: {e}"))?);
    }
    let elapsed = start.elapsed().saturating_sub(ramp);
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    let timeline = std::mem::take(&mut *shared.timeline.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Outcome { job, elapsed, measured, timeline, connections: plan.job.numjobs * plan.job.iodepth })
}

async fn show_progress(shared: Arc<Shared>, runtime: f64) {
    let mut last = (0u64, 0u64, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (ops, bytes) = (shared.ops.load(Ordering::Relaxed), shared.bytes.load(Ordering::Relaxed));
        let dt = last.2.elapsed().as_secs_f64().max(1e-3);
        let t = shared.start.elapsed().as_secs_f64();
        let width = 30usize;
        let done = ((t / runtime).min(1.0) * width as f64) as usize;
        eprint!(
            "\r[{}{}] {:>6.1}s  {:>9.0} ops/s  {:>9.1} MiB/s  errors {}   ",
            "#".repeat(done),
            "-".repeat(width - done),
            t,
            (ops - last.0) as f64 / dt,
            (bytes - last.1) as f64 / dt / 1048576.0,
            shared.errors.load(Ordering::Relaxed)
        );
        let _ = std::io::stderr().flush();
        last = (ops, bytes, Instant::now());
    }
}

/// One request-issuing task: one connection, one request at a time.
async fn issue(plan: Arc<Plan>, j: usize, t: usize, deadline: Instant, shared: Arc<Shared>) -> Measured {
    let job = &plan.job;
    let mut rec = Recorder::new(shared);
    let mut conn = Conn::new(Arc::new(job.endpoint.clone()));
    let mut rng = Rng::new(job.randseed, j, t);
    while Instant::now() < deadline {
        let Some(op) = plan.next(j, &mut rng) else { break };
        execute(&plan, &mut conn, &mut rec, op).await;
    }
    rec.finish()
}

fn verify_fn(item: &Item, start: u64) -> impl FnMut(u64, &[u8]) -> Option<u64> + Send + '_ {
    move |off, data| item.pattern.first_mismatch(item.key, start + off, data)
}

async fn execute(plan: &Plan, conn: &mut Conn, rec: &mut Recorder, op: Op) {
    let job = &plan.job;
    let c = &job.container;
    let began = Instant::now();
    match op {
        Op::PutBlock { upload, index } => {
            let (off, len) = upload.block(index);
            let body = Bytes::from(upload.item.pattern.generate(upload.item.key, off, len as usize));
            let req = put_block(c, &upload.item.name, index).body(body);
            stage(plan, conn, rec, &upload, req, "PutBlock", began, len).await;
        }
        Op::PutBlockFromUrl { upload, index } => {
            let (off, len) = upload.block(index);
            let src = &plan.items[upload.source.unwrap_or(0)];
            let url = source_url(&job.source, &job.source_container, &src.name);
            let req = put_block(c, &upload.item.name, index)
                .header("x-ms-copy-source", url)
                .header("x-ms-source-range", format!("bytes={off}-{}", off + len - 1));
            stage(plan, conn, rec, &upload, req, "PutBlockFromURL", began, len).await;
        }
        Op::GetRange { item, offset, len } => {
            let it = &plan.items[item];
            let req = Request::new(Method::GET, c, Some(&it.name), "")
                .header("x-ms-range", format!("bytes={offset}-{}", offset + len - 1));
            read(conn, rec, req, it, offset, len, job.verify, began).await;
        }
        Op::GetBlob { item } => {
            let it = &plan.items[item];
            let req = Request::new(Method::GET, c, Some(&it.name), "");
            read(conn, rec, req, it, 0, it.size, job.verify, began).await;
        }
        Op::Head { item } => {
            let it = &plan.items[item];
            match conn.send(Request::new(Method::HEAD, c, Some(&it.name), "")).await {
                Ok(r) => {
                    let len = client::header(&r, "content-length").and_then(|v| v.parse::<u64>().ok());
                    let _ = client::consume(r, None).await;
                    if job.verify && len != Some(it.size) {
                        rec.failed("GetBlobProperties", &Failure { status: 200, code: "WrongContentLength".into() });
                    } else {
                        rec.ok("GetBlobProperties", true, began, 0, 0);
                    }
                }
                Err(f) => rec.failed("GetBlobProperties", &f),
            }
        }
        Op::PutBlob { item } => {
            let body = Bytes::from(item.pattern.generate(item.key, 0, item.size as usize));
            match conn.send(put_blob(c, &item, body)).await {
                Ok(r) => {
                    let _ = client::consume(r, None).await;
                    rec.ok("PutBlob", true, began, item.size, 0);
                }
                Err(f) => rec.failed("PutBlob", &f),
            }
        }
        Op::List { delimiter } => {
            let expect = if delimiter { job.nrfiles.min(100) } else { job.nrfiles };
            let op = if delimiter { "ListBlobs(delimiter)" } else { "ListBlobs" };
            match list_all(conn, rec, job, c, delimiter, op).await {
                Ok(n) if job.verify && n != expect => {
                    rec.failed(op, &Failure { status: 200, code: format!("ListedCount({n}, expected {expect})") });
                }
                _ => {}
            }
        }
    }
}

/// Sends one block of an upload; the upload's last block to land commits it.
#[allow(clippy::too_many_arguments)]
async fn stage(
    plan: &Plan,
    conn: &mut Conn,
    rec: &mut Recorder,
    upload: &Upload,
    req: Request,
    op: &'static str,
    began: Instant,
    len: u64,
) {
    match conn.send(req).await {
        Ok(r) => {
            let _ = client::consume(r, None).await;
            rec.ok(op, true, began, len, 0);
            if upload.block_done() {
                commit(plan, conn, rec, upload).await;
            }
        }
        Err(f) => rec.failed(op, &f),
    }
}

/// Reads a blob or range, checking the bytes when asked.
#[allow(clippy::too_many_arguments)]
async fn read(
    conn: &mut Conn,
    rec: &mut Recorder,
    req: Request,
    it: &Item,
    offset: u64,
    len: u64,
    verify: bool,
    began: Instant,
) {
    let resp = match conn.send(req).await {
        Ok(r) => r,
        Err(f) => return rec.failed("GetBlob", &f),
    };
    let mut check = verify_fn(it, offset);
    let got = client::consume(resp, if verify { Some(&mut check) } else { None }).await;
    match got {
        Ok((n, None)) if n == len || !verify => rec.ok("GetBlob", true, began, n, 0),
        Ok((n, None)) => rec.failed("GetBlob", &Failure { status: 200, code: format!("ShortRead({n} of {len})") }),
        Ok((_, Some(at))) => rec.mismatch("GetBlob", &it.name, at),
        Err(f) => rec.failed("GetBlob", &f),
    }
}

/// Every page of a listing of `list/`; returns the entries seen.
async fn list_all(
    conn: &mut Conn,
    rec: &mut Recorder,
    job: &Job,
    c: &str,
    delimiter: bool,
    op: &'static str,
) -> Result<u64, Failure> {
    let mut marker: Option<String> = None;
    let mut total = 0u64;
    loop {
        let began = Instant::now();
        let q = list_query(job.list_page, delimiter, marker.as_deref());
        let body = match conn.send(Request::new(Method::GET, c, None, &q)).await {
            Ok(r) => client::collect(r).await,
            Err(f) => Err(f),
        };
        let body = match body {
            Ok(b) => b,
            Err(f) => {
                rec.failed(op, &f);
                return Err(f);
            }
        };
        let text = String::from_utf8_lossy(&body);
        let n = (text.matches("<Blob>").count() + text.matches("<BlobPrefix>").count()) as u64;
        total += n;
        rec.ok(op, true, began, 0, n);
        marker = client::xml_text(&body, "NextMarker").filter(|m| !m.is_empty());
        if marker.is_none() {
            return Ok(total);
        }
    }
}

/// A List Blobs query over the listing data set (`list/`), from `marker` on.
fn list_query(page: u32, delimiter: bool, marker: Option<&str>) -> String {
    let mut q = format!("restype=container&comp=list&prefix=list%2F&maxresults={page}");
    if delimiter {
        q.push_str("&delimiter=%2F");
    }
    if let Some(m) = marker {
        q.push_str("&marker=");
        q.extend(percent_encoding::utf8_percent_encode(m, percent_encoding::NON_ALPHANUMERIC));
    }
    q
}

fn put_block(container: &str, blob: &str, index: u32) -> Request {
    let id = percent_encoding::utf8_percent_encode(&block_id(index), percent_encoding::NON_ALPHANUMERIC).to_string();
    Request::new(Method::PUT, container, Some(blob), &format!("comp=block&blockid={id}"))
}

fn put_blob(container: &str, item: &Item, body: Bytes) -> Request {
    Request::new(Method::PUT, container, Some(&item.name), "")
        .header("x-ms-blob-type", "BlockBlob")
        .header("x-ms-meta-benchdata", item.signature())
        .body(body)
}

/// Put Block List committing blocks `0..blocks`, with the data set's signature.
fn put_block_list(container: &str, item: &Item, blocks: u32) -> Request {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for i in 0..blocks {
        xml.push_str(&format!("<Latest>{}</Latest>", block_id(i)));
    }
    xml.push_str("</BlockList>");
    Request::new(Method::PUT, container, Some(&item.name), "comp=blocklist")
        .header("x-ms-meta-benchdata", item.signature())
        .body(Bytes::from(xml))
}

fn source_url(source: &Endpoint, container: &str, blob: &str) -> String {
    let sas = source.account_sas(24).unwrap_or_default();
    let q = if sas.is_empty() { String::new() } else { format!("?{sas}") };
    source.url(&format!("{}{q}", source.path(container, Some(blob))))
}

/// Put Block List for a finished upload; with `verify`, reads the blob back (not counted).
async fn commit(plan: &Plan, conn: &mut Conn, rec: &mut Recorder, upload: &Upload) {
    let c = &plan.job.container;
    let began = Instant::now();
    match conn.send(put_block_list(c, &upload.item, upload.blocks)).await {
        Ok(r) => {
            let _ = client::consume(r, None).await;
            rec.ok("PutBlockList", true, began, 0, 0);
        }
        Err(f) => return rec.failed("PutBlockList", &f),
    }
    if plan.job.verify {
        let began = Instant::now();
        let it = &upload.item;
        let resp = match conn.send(Request::new(Method::GET, c, Some(&it.name), "")).await {
            Ok(r) => r,
            Err(f) => return rec.failed("GetBlob(verify)", &f),
        };
        let mut check = verify_fn(it, 0);
        match client::consume(resp, Some(&mut check)).await {
            Ok((n, None)) if n == it.size => rec.ok("GetBlob(verify)", false, began, n, 0),
            Ok((n, None)) => rec.failed("GetBlob(verify)", &Failure { status: 200, code: format!("ShortRead({n})") }),
            Ok((_, Some(at))) => rec.mismatch("GetBlob(verify)", &it.name, at),
            Err(f) => rec.failed("GetBlob(verify)", &f),
        }
    }
}

/// Creates the container (and the source's, for hydrate) and every blob of the data set that is
/// missing or holds other data. Not measured.
async fn prepare(plan: &Arc<Plan>, progress: bool) -> Result<(), String> {
    let job = &plan.job;
    let hydrate = job.workload == crate::job::Workload::Hydrate;
    // The data set lives where the job reads it: the source, for hydrate.
    let (target, container) =
        if hydrate { (&job.source, &job.source_container) } else { (&job.endpoint, &job.container) };
    create_container(&job.endpoint, &job.container).await?;
    if hydrate {
        create_container(target, container).await?;
    }
    if plan.items.is_empty() || !job.prepare {
        return Ok(());
    }
    let width = (job.numjobs * job.iodepth).clamp(4, 32);
    let missing: Vec<usize> = if job.workload == crate::job::Workload::List {
        listed_missing(target, container, job.nrfiles).await?
    } else {
        let idx = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let found = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..width {
            let (plan, idx, found, target, container) =
                (plan.clone(), idx.clone(), found.clone(), Arc::new(target.clone()), container.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::new(target);
                loop {
                    let i = idx.fetch_add(1, Ordering::Relaxed);
                    let Some(it) = plan.items.get(i) else { return Ok::<(), String>(()) };
                    if !holds(&mut conn, &container, it).await? {
                        found.lock().unwrap_or_else(|p| p.into_inner()).push(i);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        let mut v = std::mem::take(&mut *found.lock().unwrap_or_else(|p| p.into_inner()));
        v.sort_unstable();
        v
    };
    if missing.is_empty() {
        return Ok(());
    }
    let bytes: u64 = missing.iter().map(|&i| plan.items[i].size).sum();
    if progress {
        eprintln!(
            "{}: preparing {} blobs ({}) in {container}",
            job.name,
            missing.len(),
            crate::job::human_approx(bytes)
        );
    }
    // Work items: one per small blob, one per block of a large one; then the block lists.
    let mut work: Vec<(usize, Option<u32>)> = Vec::new();
    for &i in &missing {
        let it = &plan.items[i];
        if it.size <= job.block_size {
            work.push((i, None));
        } else {
            work.extend((0..it.size.div_ceil(job.block_size) as u32).map(|b| (i, Some(b))));
        }
    }
    let work = Arc::new(work);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..width {
        let (plan, work, next, target, container) =
            (plan.clone(), work.clone(), next.clone(), Arc::new(target.clone()), container.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(target);
            let bs = plan.job.block_size;
            loop {
                let Some(&(i, block)) = work.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return Ok::<(), String>(());
                };
                let it = &plan.items[i];
                let req = match block {
                    None => put_blob(&container, it, Bytes::from(it.pattern.generate(it.key, 0, it.size as usize))),
                    Some(b) => {
                        let off = u64::from(b) * bs;
                        let len = bs.min(it.size - off) as usize;
                        put_block(&container, &it.name, b).body(Bytes::from(it.pattern.generate(it.key, off, len)))
                    }
                };
                send_ok(&mut conn, req, &it.name).await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let mut conn = Conn::new(Arc::new(target.clone()));
    for &i in &missing {
        let it = &plan.items[i];
        if it.size > job.block_size {
            let req = put_block_list(container, it, it.size.div_ceil(job.block_size) as u32);
            send_ok(&mut conn, req, &it.name).await?;
        }
    }
    Ok(())
}

async fn send_ok(conn: &mut Conn, req: Request, what: &str) -> Result<(), String> {
    let r = conn.send(req).await.map_err(|f| format!("preparing {what}: {} {}", f.status, f.code))?;
    client::consume(r, None).await.map_err(|f| format!("preparing {what}: {}", f.code))?;
    Ok(())
}

/// Whether the blob exists with the size and data this job would write.
async fn holds(conn: &mut Conn, container: &str, it: &Item) -> Result<bool, String> {
    match conn.send(Request::new(Method::HEAD, container, Some(&it.name), "")).await {
        Ok(r) => {
            let len = client::header(&r, "content-length").and_then(|v| v.parse::<u64>().ok());
            let sig = client::header(&r, "x-ms-meta-benchdata").map(str::to_owned);
            let _ = client::consume(r, None).await;
            Ok(len == Some(it.size) && sig.as_deref() == Some(it.signature().as_str()))
        }
        Err(f) if client::is_not_found(&f) => Ok(false),
        Err(f) => Err(format!("checking {}: {} {}", it.name, f.status, f.code)),
    }
}

/// Indexes of the listing data set not present (by name) in the container.
async fn listed_missing(ep: &Endpoint, container: &str, n: u64) -> Result<Vec<usize>, String> {
    let mut conn = Conn::new(Arc::new(ep.clone()));
    let mut present = std::collections::HashSet::new();
    let mut marker = String::new();
    loop {
        let q = list_query(5000, false, Some(marker.as_str()).filter(|m| !m.is_empty()));
        let r = conn
            .send(Request::new(Method::GET, container, None, &q))
            .await
            .map_err(|f| format!("listing: {}", f.code))?;
        let body = client::collect(r).await.map_err(|f| f.code)?;
        let text = String::from_utf8_lossy(&body);
        for part in text.split("<Name>").skip(1) {
            if let Some(end) = part.find("</Name>") {
                present.insert(part[..end].to_owned());
            }
        }
        marker = client::xml_text(&body, "NextMarker").unwrap_or_default();
        if marker.is_empty() {
            break;
        }
    }
    Ok((0..n).filter(|&i| !present.contains(&list_name(i))).map(|i| i as usize).collect())
}

async fn create_container(ep: &Endpoint, container: &str) -> Result<(), String> {
    let mut conn = Conn::new(Arc::new(ep.clone()));
    match conn.send(Request::new(Method::PUT, container, None, "restype=container")).await {
        Ok(r) => {
            let _ = client::consume(r, None).await;
            Ok(())
        }
        Err(f) if f.code == "ContainerAlreadyExists" => Ok(()),
        Err(f) => Err(format!("creating container {container} at {}: {} {}", ep.authority, f.status, f.code)),
    }
}
