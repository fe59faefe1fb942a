//! `edgeblob-crashload DATA_FILE SEED FIRST_VERSION [MAX_SECS]`: the crash-test write load
//! (see `edgeblob::crashload`).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(4..=5).contains(&args.len()) {
        eprintln!("usage: edgeblob-crashload DATA_FILE SEED FIRST_VERSION [MAX_SECS]");
        std::process::exit(2);
    }
    let seed: u64 = args[2].parse().expect("SEED is a number");
    let first: u64 = args[3].parse().expect("FIRST_VERSION is a number");
    let max_secs: u64 = args.get(4).map_or(60, |s| s.parse().expect("MAX_SECS is a number"));
    edgeblob::crashload::run(std::path::Path::new(&args[1]), seed, first, max_secs);
}
