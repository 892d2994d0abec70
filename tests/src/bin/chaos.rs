//! `chaos`: the chaos suite (`make chaos`). Crawls the synthetic site with three worker
//! processes on a Redis and a Kafka of its own while it kills and cuts things at points drawn
//! from a seed, then checks every page reached Kafka. See `kubecrawl_e2e::chaos`.
//!
//! Needs the environment of `make env-up` (`. .testenv/env`: the shared etcd, API server and
//! kubectl for the operator's side) and the workspace's debug binaries. Prints its progress
//! on stderr and, as the last line on stdout, the figures as one JSON object; exits 1 when a
//! pass criterion failed (they are listed on stderr, with their evidence).

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use kubecrawl_e2e::chaos::{self, ChaosConfig};

/// Run kubecrawl's chaos suite.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The seed of the fault plan; a fresh one (printed) when absent. Pass a printed seed to
    /// replay a run.
    #[arg(long, env = "KUBECRAWL_CHAOS_SEED")]
    seed: Option<u64>,
    /// Faults to inject, `kind=count,…` (kinds: worker_kill, redis_restart, kafka_kill,
    /// apiserver_restart, operator_kill, operator_stall, redis_drop, redis_stall,
    /// redis_reset, kafka_drop, kafka_stall, kafka_reset). Default: 20 worker kills and one
    /// of every other kind.
    #[arg(long, env = "KUBECRAWL_CHAOS_FAULTS")]
    faults: Option<String>,
    /// Main pages of the site (other.test and far.test add 1,000 each).
    #[arg(long, env = "KUBECRAWL_CHAOS_PAGES", default_value_t = 19_000)]
    pages: usize,
    /// Politeness delay per host: paces the crawl so that it outlasts the faults.
    #[arg(long, env = "KUBECRAWL_CHAOS_DELAY", default_value = "10ms", value_parser = humantime::parse_duration)]
    delay: Duration,
    /// Run without the operator (and its API server): the suite seeds the frontier itself,
    /// and the control-plane faults are left out.
    #[arg(long, env = "KUBECRAWL_CHAOS_NO_OPERATOR")]
    no_operator: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(chaos::fresh_seed);
    let mut config = ChaosConfig::full(seed, chaos::default_bin_dir()?);
    config.pages = args.pages;
    config.delay = args.delay;
    if args.no_operator {
        config.operator = false;
        config.faults.retain(|k, _| !k.needs_operator());
    }
    if let Some(faults) = &args.faults {
        config.faults = chaos::parse_counts(faults)?;
    }
    let report = chaos::run(config)
        .await
        .context("the chaos suite could not run")?;
    for failure in &report.failures {
        eprintln!("[chaos] FAILED: {failure}");
    }
    if !report.passed() {
        eprintln!(
            "[chaos] replay with --seed {seed}; logs and data kept in {}",
            report.run_dir.display()
        );
    }
    println!("{}", report.figures);
    std::process::exit(i32::from(!report.passed()));
}
