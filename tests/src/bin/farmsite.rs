//! `farmsite`: serves a latency-bound site of many hosts (see `kubecrawl_e2e::farm`) until
//! SIGTERM or SIGINT, for `make bench-scale`.
//!
//! On start it prints one JSON line to stdout:
//! `{"addr":"127.0.0.1:PORT","root":"http://h000.farm.test:PORT/p/0","hosts":[…],"pages":COUNT}`
//! where COUNT is every page, all reachable from the root. Crawlers must resolve every host to
//! `addr`.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use kubecrawl_e2e::farm::{Farm, FarmConfig};

/// Serve a latency-bound site of many hosts on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Number of hosts.
    #[arg(long, default_value_t = 256)]
    hosts: usize,
    /// Pages per host.
    #[arg(long, default_value_t = 100)]
    pages: usize,
    /// Links per page besides the two that make every page reachable.
    #[arg(long, default_value_t = 6)]
    links: usize,
    /// How long every answer waits, e.g. 50ms.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    latency: Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let farm = Farm::start(FarmConfig {
        hosts: args.hosts,
        pages: args.pages,
        links: args.links,
        latency: args.latency,
    })
    .await
    .context("starting the farm")?;
    let line = serde_json::json!({
        "addr": farm.addr().to_string(),
        "root": farm.root(),
        "hosts": farm.hosts(),
        "pages": farm.pages(),
    });
    println!("{line}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("farmsite: stopping after {} pages", farm.served());
    Ok(())
}
