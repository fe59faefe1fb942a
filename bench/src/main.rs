//! `edgeblob-bench`: benchmarks. `engine` measures the storage engine directly (no HTTP) and runs
//! fio on the same file system in the same run, so the figures can be set side by side.

mod engine;
mod fio;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "edgeblob benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sequential write and read and 4 KiB random reads through the engine, with data reduction
    /// off and on, next to fio (io_uring, O_DIRECT) on the same file system.
    Engine(engine::Args),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let res = match Cli::parse().cmd {
        Cmd::Engine(a) => engine::run(a),
    };
    if let Err(e) = res {
        eprintln!("edgeblob-bench: {e}");
        std::process::exit(1);
    }
}
