//! Job settings, from a job file in fio's spirit (INI: a `[global]` section and named jobs, `key=value`
//! lines, `;` or `#` comments) or from the command line with the same keys (`--key=value`;
//! `--name=NAME` starts a job, keys before the first name are global). Jobs run one after another.

use std::collections::BTreeMap;

use crate::target::{self, Endpoint};

/// What a job does; names follow the real patterns they stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    CheckpointWrite,
    CheckpointRead,
    ShardRead,
    RandomRange,
    SmallObjects,
    List,
    Hydrate,
    Mixed,
}

impl Workload {
    pub const ALL: [(&'static str, Workload); 8] = [
        ("checkpoint-write", Workload::CheckpointWrite),
        ("checkpoint-read", Workload::CheckpointRead),
        ("shard-read", Workload::ShardRead),
        ("random-range", Workload::RandomRange),
        ("small-objects", Workload::SmallObjects),
        ("list", Workload::List),
        ("hydrate", Workload::Hydrate),
        ("mixed", Workload::Mixed),
    ];

    pub fn name(self) -> &'static str {
        Workload::ALL.iter().find(|(_, w)| *w == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// An inclusive range of sizes (`4K-1M`), or one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    pub min: u64,
    pub max: u64,
}

impl SizeRange {
    #[cfg(test)]
    pub fn one(n: u64) -> SizeRange {
        SizeRange { min: n, max: n }
    }

    fn parse(s: &str) -> Result<SizeRange, String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let r = SizeRange { min: parse_size(a)?, max: parse_size(b)? };
        if r.min > r.max {
            return Err(format!("size range {s}: the first bound is larger"));
        }
        Ok(r)
    }

    pub fn fmt(&self) -> String {
        if self.min == self.max {
            human(self.min)
        } else {
            format!("{}-{}", human(self.min), human(self.max))
        }
    }
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches(['B', 'b']).trim_end_matches(['i', 'I']);
    edgeblob_engine::config::parse_size(t).map_err(|_| format!("`{s}` is not a size (like 4K, 1M, 2G)"))
}

/// `4KiB`, `1MiB`… for summaries.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut i = 0;
    while i + 1 < UNITS.len() && n >= 1 << (10 * (i + 1)) && n.is_multiple_of(1 << (10 * (i + 1))) {
        i += 1;
    }
    format!("{}{}", n >> (10 * i), UNITS[i])
}

/// `1.5 GiB`: a byte count rounded for people.
pub fn human_approx(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut i) = (n as f64, 0);
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Shares of operations by name (`get:80,put:10,head:10`).
pub type Mix = Vec<(String, u32)>;

fn parse_mix(s: &str, allowed: &[&str]) -> Result<Mix, String> {
    let mut mix = Mix::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (op, w) = part.split_once(':').ok_or_else(|| format!("mix `{part}`: expected op:weight"))?;
        if !allowed.contains(&op) {
            return Err(format!("mix: unknown operation `{op}` (one of {})", allowed.join(", ")));
        }
        mix.push((op.to_owned(), w.parse().map_err(|_| format!("mix `{part}`: weight is not a number"))?));
    }
    if mix.iter().map(|(_, w)| w).sum::<u32>() == 0 {
        return Err("mix: the weights add up to zero".into());
    }
    Ok(mix)
}

/// Every setting of one job, after defaults.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub workload: Workload,
    pub endpoint: Endpoint,
    pub source: Endpoint,
    pub container: String,
    pub source_container: String,
    /// Request payload: Put Block size for writes, range size for reads, Put Blob size in `mixed`.
    pub bs: SizeRange,
    /// Block size blobs of a prepared data set are written with (and the data pattern's unit).
    pub block_size: u64,
    /// Size of each blob or object (a range for `small-objects`).
    pub size: SizeRange,
    pub nrfiles: u64,
    pub numjobs: usize,
    pub iodepth: usize,
    /// Seconds; every job stops at this bound at the latest.
    pub runtime: f64,
    pub ramp_time: f64,
    /// Bytes per job (counted as issued); None: no byte bound.
    pub io_size: Option<u64>,
    pub number_ios: Option<u64>,
    /// Keep going until `runtime` whatever the byte bound.
    pub time_based: bool,
    pub rwmixread: u32,
    pub mix: Mix,
    pub compress_ratio: f64,
    pub dedupe_percentage: u32,
    pub verify: bool,
    pub randseed: u64,
    /// Create the data set a read workload needs when it is missing.
    pub prepare: bool,
    /// Entries per List Blobs page (`maxresults`).
    pub list_page: u32,
}

/// Keys only the command line or the `[global]` section carry.
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub threads: Option<usize>,
    pub output: Option<String>,
    pub output_format: Option<String>,
    pub plot: Option<String>,
    pub progress: Option<bool>,
}

const GLOBAL_ONLY: [&str; 5] = ["threads", "output", "output-format", "plot", "progress"];
const KEYS: [&str; 35] = [
    "workload",
    "connection_string",
    "endpoint",
    "account",
    "key",
    "sas",
    "token_file",
    "source_connection_string",
    "source_endpoint",
    "source_account",
    "source_key",
    "source_sas",
    "source_token_file",
    "container",
    "source_container",
    "bs",
    "block_size",
    "size",
    "nrfiles",
    "numjobs",
    "iodepth",
    "runtime",
    "ramp_time",
    "io_size",
    "number_ios",
    "time_based",
    "rwmixread",
    "mix",
    "compress_ratio",
    "dedupe_percentage",
    "verify",
    "randseed",
    "prepare",
    "list_page",
    "description",
];

/// Sections of settings, in order: `(name, key/values)`; the first is `global`.
pub type Sections = Vec<(String, BTreeMap<String, String>)>;

/// Reads an INI job file.
pub fn parse_file(text: &str) -> Result<Sections, String> {
    let mut sections: Sections = vec![("global".into(), BTreeMap::new())];
    // Keys before any section header are global, as in fio.
    let mut in_global = true;
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("line {}: a section needs a name", no + 1));
            }
            in_global = name == "global";
            if !in_global {
                sections.push((name.to_owned(), BTreeMap::new()));
            }
            continue;
        }
        let (k, v) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim())).unwrap_or((line, "1"));
        let k = normalise(k);
        let section = if in_global || GLOBAL_ONLY.contains(&k.as_str()) {
            &mut sections[0].1
        } else {
            &mut sections.last_mut().ok_or("no section")?.1
        };
        section.insert(k, v.trim_matches('"').to_owned());
    }
    Ok(sections)
}

fn normalise(k: &str) -> String {
    let k = k.trim().trim_start_matches("--");
    if GLOBAL_ONLY.contains(&k.replace('_', "-").as_str()) {
        k.replace('_', "-")
    } else {
        k.replace('-', "_")
    }
}

/// Reads command-line arguments: job files (plain arguments) and `--key=value` / `--key value`.
pub fn parse_args(args: &[String]) -> Result<Sections, String> {
    let mut sections: Sections = vec![("global".into(), BTreeMap::new())];
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let Some(opt) = a.strip_prefix("--") else {
            let text = std::fs::read_to_string(a).map_err(|e| format!("job file {a}: {e}"))?;
            let mut file = parse_file(&text).map_err(|e| format!("job file {a}: {e}"))?;
            let global = file.remove(0).1;
            sections[0].1.extend(global);
            sections.extend(file);
            continue;
        };
        let (k, v) = match opt.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => match it.peek() {
                Some(next) if !next.starts_with("--") => (opt.to_owned(), it.next().cloned().unwrap_or_default()),
                _ => (opt.to_owned(), "1".to_owned()),
            },
        };
        let k = normalise(&k);
        if k == "name" {
            sections.push((v, BTreeMap::new()));
        } else if GLOBAL_ONLY.contains(&k.as_str()) {
            // Output and process settings belong to the whole run wherever they are written.
            sections[0].1.insert(k, v);
        } else {
            sections.last_mut().ok_or("no section")?.1.insert(k, v);
        }
    }
    Ok(sections)
}

/// Turns sections into jobs: each job's keys over the global ones over the workload's defaults.
/// A command line with settings but no `--name` is one job named after its workload.
pub fn resolve(mut sections: Sections) -> Result<(Global, Vec<Job>), String> {
    let global_kv = sections.remove(0).1;
    let mut g = Global::default();
    for (k, v) in &global_kv {
        match k.as_str() {
            "threads" => g.threads = Some(v.parse().map_err(|_| format!("threads={v}: not a number"))?),
            "output" => g.output = Some(v.clone()),
            "output-format" => g.output_format = Some(v.clone()),
            "plot" => g.plot = Some(v.clone()),
            "progress" => g.progress = Some(parse_bool("progress", v)?),
            _ => {}
        }
    }
    if sections.is_empty() {
        let w = global_kv.get("workload").ok_or("no job: give a job file, or --workload=NAME")?;
        sections.push((w.clone(), BTreeMap::new()));
    }
    let mut jobs = Vec::new();
    for (name, kv) in sections {
        let mut all = global_kv.clone();
        all.extend(kv);
        jobs.push(build(&name, &all).map_err(|e| format!("job {name}: {e}"))?);
    }
    Ok((g, jobs))
}

fn parse_bool(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{k}={v}: expected 0 or 1")),
    }
}

fn endpoint(kv: &BTreeMap<String, String>, prefix: &str) -> Result<Option<Endpoint>, String> {
    let get = |k: &str| kv.get(&format!("{prefix}{k}")).map(String::as_str);
    if let Some(cs) = get("connection_string") {
        return Endpoint::from_connection_string(cs).map(Some);
    }
    let Some(url) = get("endpoint") else {
        if ["key", "sas", "token_file", "account"].iter().any(|k| get(k).is_some()) {
            return Err(format!("{prefix}account, key, sas or token_file given without {prefix}endpoint"));
        }
        return Ok(None);
    };
    let cred = target::credential(get("key"), get("sas"), get("token_file"))?;
    Endpoint::new(url, get("account"), cred).map(Some)
}

fn build(name: &str, kv: &BTreeMap<String, String>) -> Result<Job, String> {
    for k in kv.keys() {
        if !KEYS.contains(&k.as_str()) && !GLOBAL_ONLY.contains(&k.as_str()) && k != "name" {
            return Err(format!("unknown setting `{k}`"));
        }
    }
    let get = |k: &str| kv.get(k).map(String::as_str);
    let wname = get("workload").ok_or("no workload= given")?;
    let workload =
        Workload::ALL.iter().find(|(n, _)| *n == wname).map(|(_, w)| *w).ok_or_else(|| {
            format!("unknown workload `{wname}` (one of {})", Workload::ALL.map(|(n, _)| n).join(", "))
        })?;
    let default_endpoint = match std::env::var("AZURE_STORAGE_CONNECTION_STRING") {
        Ok(cs) => Endpoint::from_connection_string(&cs)?,
        Err(_) => Endpoint::from_connection_string("UseDevelopmentStorage=true")?,
    };
    let ep = endpoint(kv, "")?.unwrap_or(default_endpoint);
    let source = endpoint(kv, "source_")?.unwrap_or_else(|| ep.clone());
    use Workload::*;
    // Defaults sized for a first run on a small machine; every one can be set.
    let (bs, size, nrfiles, numjobs, iodepth) = match workload {
        CheckpointWrite | CheckpointRead => ("4M", "1G", 1, 2, 8),
        ShardRead => ("4M", "256M", 8, 2, 2),
        RandomRange => ("4K", "1G", 2, 2, 16),
        SmallObjects => ("4K", "4K-256K", 2000, 2, 16),
        List => ("4K", "0", 100_000, 1, 1),
        Hydrate => ("8M", "1G", 2, 2, 8),
        Mixed => ("64K", "1G", 2, 2, 16),
    };
    let num = |k: &str, d: u64| -> Result<u64, String> {
        get(k).map(|v| v.parse().map_err(|_| format!("{k}={v}: not a number"))).unwrap_or(Ok(d))
    };
    let float = |k: &str, d: f64| -> Result<f64, String> {
        get(k)
            .map(|v| {
                let v = v.trim_end_matches('s');
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("{k}={v}: not a number"))
            })
            .unwrap_or(Ok(d))
    };
    let size = SizeRange::parse(get("size").unwrap_or(size))?;
    let bs = SizeRange::parse(get("bs").unwrap_or(bs))?;
    let nrfiles = num("nrfiles", nrfiles)?;
    let numjobs = num("numjobs", numjobs)? as usize;
    let iodepth = num("iodepth", iodepth)? as usize;
    // Workloads with a natural amount of data stop after it; the others after `runtime`.
    let natural = match workload {
        CheckpointWrite | CheckpointRead | Hydrate => Some(size.max),
        ShardRead => Some((nrfiles * size.max).div_ceil(numjobs.max(1) as u64)),
        _ => None,
    };
    let io_size = match get("io_size") {
        Some(v) => Some(parse_size(v)?),
        None => natural,
    };
    let time_based = parse_bool("time_based", get("time_based").unwrap_or("0"))?;
    let bounded = io_size.is_some() || get("number_ios").is_some();
    let runtime = float("runtime", if bounded && !time_based { 600.0 } else { 30.0 })?;
    let job = Job {
        name: name.to_owned(),
        workload,
        container: get("container").unwrap_or("edgeblob-bench").to_owned(),
        source_container: get("source_container").or(get("container")).unwrap_or("edgeblob-bench").to_owned(),
        endpoint: ep,
        source,
        bs,
        block_size: parse_size(get("block_size").unwrap_or("4M"))?,
        size,
        nrfiles,
        numjobs,
        iodepth,
        runtime,
        ramp_time: float("ramp_time", 0.0)?,
        io_size: if time_based { None } else { io_size },
        number_ios: if time_based { None } else { get("number_ios").map(|_| num("number_ios", 0)).transpose()? },
        time_based,
        rwmixread: num("rwmixread", 70)? as u32,
        mix: match workload {
            SmallObjects => parse_mix(get("mix").unwrap_or("get:90,put:5,head:5"), &["get", "put", "head"])?,
            List => parse_mix(get("mix").unwrap_or("flat:50,delimiter:50"), &["flat", "delimiter"])?,
            _ => Mix::new(),
        },
        compress_ratio: float("compress_ratio", 1.0)?.max(1.0),
        dedupe_percentage: num("dedupe_percentage", 0)? as u32,
        verify: parse_bool("verify", get("verify").unwrap_or("0"))?,
        randseed: num("randseed", 0x5eed)?,
        prepare: parse_bool("prepare", get("prepare").unwrap_or("1"))?,
        list_page: num("list_page", 5000)? as u32,
    };
    validate(&job)?;
    Ok(job)
}

fn validate(j: &Job) -> Result<(), String> {
    let check = |ok: bool, why: &str| if ok { Ok(()) } else { Err(why.to_owned()) };
    check(j.numjobs >= 1 && j.iodepth >= 1, "numjobs and iodepth must be at least 1")?;
    check(j.numjobs * j.iodepth <= 4096, "numjobs × iodepth is at most 4096 (one connection each)")?;
    check(j.runtime > 0.0, "runtime must be above 0: every job is bounded")?;
    check(j.ramp_time < j.runtime, "ramp_time must be shorter than runtime")?;
    check(j.bs.min >= 1, "bs must be at least 1 byte")?;
    check(j.block_size >= 1 && j.block_size <= 4000 << 20, "block_size must be 1 byte to 4000 MiB")?;
    check(j.dedupe_percentage <= 100 && j.rwmixread <= 100, "percentages are 0 to 100")?;
    check((1..=5000).contains(&j.list_page), "list_page is 1 to 5000")?;
    let sized = !matches!(j.workload, Workload::List);
    check(!sized || j.size.min >= 1, "size must be at least 1 byte")?;
    check(j.nrfiles >= 1, "nrfiles must be at least 1")?;
    if matches!(j.workload, Workload::CheckpointWrite | Workload::Hydrate) {
        check(j.bs.min == j.bs.max, "bs is one size (the block size) for uploads")?;
        check(j.size.max.div_ceil(j.bs.max) <= 50_000, "a blob has at most 50,000 blocks: raise bs")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
; a checkpoint burst, then reading it back
[global]
endpoint=http://127.0.0.1:10000/devstoreaccount1
key=a2V5
iodepth=4
threads=3

[write]
workload=checkpoint-write
size=256M
bs=8M

[read]
workload=checkpoint-read
iodepth=16
verify=1
";

    #[test]
    fn job_file_sections_take_global_keys_and_override_them() {
        let (g, jobs) = resolve(parse_file(FILE).unwrap()).unwrap();
        assert_eq!(g.threads, Some(3));
        assert_eq!(jobs.len(), 2);
        let (w, r) = (&jobs[0], &jobs[1]);
        assert_eq!((w.name.as_str(), w.workload, w.iodepth), ("write", Workload::CheckpointWrite, 4));
        assert_eq!((w.size, w.bs), (SizeRange::one(256 << 20), SizeRange::one(8 << 20)));
        assert_eq!(w.io_size, Some(256 << 20));
        assert_eq!((r.workload, r.iodepth, r.verify, r.size.max), (Workload::CheckpointRead, 16, true, 1 << 30));
        assert_eq!(r.endpoint.authority, "127.0.0.1:10000");
    }

    #[test]
    fn command_line_uses_the_same_keys() {
        let args: Vec<String> = [
            "--endpoint=http://127.0.0.1:9/devstoreaccount1",
            "--plot",
            "out.svg",
            "--name=rr",
            "--workload",
            "random-range",
            "--bs=4K-1M",
            "--runtime=5",
            "--ramp-time=1",
            "--output-format=json",
        ]
        .map(String::from)
        .to_vec();
        let (g, jobs) = resolve(parse_args(&args).unwrap()).unwrap();
        assert_eq!(g.plot.as_deref(), Some("out.svg"));
        // Output settings are the run's, even when written after a job's name.
        assert_eq!(g.output_format.as_deref(), Some("json"));
        let j = &jobs[0];
        assert_eq!((j.name.as_str(), j.workload, j.runtime, j.ramp_time), ("rr", Workload::RandomRange, 5.0, 1.0));
        assert_eq!(j.bs, SizeRange { min: 4096, max: 1 << 20 });
        assert_eq!(j.io_size, None);
        // No --name: one job named after its workload.
        let args = ["--workload=list", "--nrfiles=10"].map(String::from).to_vec();
        let (_, jobs) = resolve(parse_args(&args).unwrap()).unwrap();
        assert_eq!((jobs[0].name.as_str(), jobs[0].nrfiles), ("list", 10));
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |extra: &str| {
            let text = format!("[j]\nworkload=small-objects\n{extra}\n");
            resolve(parse_file(&text).unwrap()).unwrap_err()
        };
        assert!(bad("bogus=1").contains("unknown setting `bogus`"), "{}", bad("bogus=1"));
        assert!(bad("runtime=0").contains("bounded"));
        assert!(bad("size=2M-1M").contains("larger"));
        assert!(bad("mix=get:1,delete:1").contains("unknown operation"));
        assert!(bad("bs=lots").contains("not a size"));
        let text = "[j]\nworkload=nope\n";
        assert!(resolve(parse_file(text).unwrap()).unwrap_err().contains("unknown workload"));
        let text = "[j]\nworkload=checkpoint-write\nsize=1T\nbs=1M\n";
        assert!(resolve(parse_file(text).unwrap()).unwrap_err().contains("50,000 blocks"));
    }

    #[test]
    fn time_based_drops_the_byte_bound() {
        let text = "[j]\nworkload=checkpoint-read\ntime_based=1\nruntime=3\n";
        let (_, jobs) = resolve(parse_file(text).unwrap()).unwrap();
        assert_eq!((jobs[0].io_size, jobs[0].runtime), (None, 3.0));
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human(4096), "4KiB");
        assert_eq!(human(3 << 30), "3GiB");
        assert_eq!(human(1000), "1000B");
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
    }
}
