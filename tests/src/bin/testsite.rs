//! `testsite`: serves the synthetic test site until SIGTERM or SIGINT, for tests whose crawler
//! runs in other processes.
//!
//! On start it prints one JSON line to stdout:
//! `{"addr":"127.0.0.1:PORT","root":"http://site.test:PORT/","hosts":["site.test","other.test","far.test"],"reachable":COUNT,"wander_root":"http://site.test:PORT/w/0","wander_steps":5}`
//! where COUNT is the size of the ground truth of a default crawl of the root (site.test only,
//! robots.txt obeyed, depth limited by `--maxdepth` if given), or `null` when it is infinite
//! (`--traps` without `--maxdepth`). Crawlers must resolve every host to `addr`.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use kubecrawl_e2e::site::{Error, SiteConfig, TestSite};

/// Serve kubecrawl's synthetic test site on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Number of main pages.
    #[arg(long, env = "KUBECRAWL_TESTSITE_PAGES", default_value_t = 300)]
    pages: usize,
    /// Seed of the generated graph.
    #[arg(long, env = "KUBECRAWL_TESTSITE_SEED", default_value_t = 1)]
    seed: u64,
    /// Port to listen on (0: any free port).
    #[arg(long, env = "KUBECRAWL_TESTSITE_PORT", default_value_t = 0)]
    port: u16,
    /// Link the traps from the root.
    #[arg(long, env = "KUBECRAWL_TESTSITE_TRAPS")]
    traps: bool,
    /// Depth limit of the crawl whose ground truth size is printed as `reachable`.
    #[arg(long, env = "KUBECRAWL_TESTSITE_MAXDEPTH")]
    maxdepth: Option<u32>,
    /// Most distinct main pages a main page links to.
    #[arg(long, env = "KUBECRAWL_TESTSITE_MAX_LINKS", default_value_t = 8)]
    max_links: usize,
    /// Bytes of filler text per main page.
    #[arg(long, env = "KUBECRAWL_TESTSITE_PADDING", default_value_t = 256)]
    padding: usize,
    /// Serve the main pages gzip-compressed (`Content-Encoding: gzip`).
    #[arg(long, env = "KUBECRAWL_TESTSITE_GZIP")]
    gzip: bool,
    /// robots.txt Crawl-delay for `User-agent: *`, in seconds (none when absent).
    #[arg(long, env = "KUBECRAWL_TESTSITE_CRAWL_DELAY")]
    crawl_delay: Option<f64>,
    /// Serve main pages with an ETag and a Last-Modified, and answer conditional requests
    /// for them with 304 Not Modified.
    #[arg(long, env = "KUBECRAWL_TESTSITE_VALIDATORS")]
    validators: bool,
    /// Serve the script area (`/js/`, pages that need JavaScript) with this many benchmark
    /// pages `/js/spa/{k}`, all reached from `/js/spa/0` once rendered.
    #[arg(long, env = "KUBECRAWL_TESTSITE_SCRIPT_PAGES")]
    script_pages: Option<usize>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut config = SiteConfig::default()
        .with_pages(args.pages)
        .with_seed(args.seed)
        .with_port(args.port)
        .with_traps(args.traps)
        .with_max_links(args.max_links)
        .with_padding(args.padding)
        .with_validators(args.validators)
        .with_gzip_pages(args.gzip);
    if let Some(pages) = args.script_pages {
        config = config.with_script_pages(pages);
    }
    if let Some(secs) = args.crawl_delay {
        let delay = Duration::try_from_secs_f64(secs).context("--crawl-delay")?;
        config = config.with_crawl_delay(delay);
    }
    let site = TestSite::start(config)
        .await
        .context("starting the test site")?;

    let mut reach = site.reach();
    if let Some(depth) = args.maxdepth {
        reach = reach.max_depth(depth);
    }
    let reachable = match site.reachable(&reach) {
        Ok(truth) => Some(truth.len()),
        Err(Error::Unbounded) => None,
        Err(e) => return Err(e).context("computing the ground truth"),
    };
    let line = serde_json::json!({
        "addr": site.addr().to_string(),
        "root": site.root(),
        "hosts": site.hosts().iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        "reachable": reachable,
        "wander_root": site.wander_root(),
        "wander_steps": site.wander_steps(),
    });
    println!("{line}");

    shutdown_signal().await?;
    site.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        _ = term.recv() => {}
        interrupted = tokio::signal::ctrl_c() => interrupted.context("listening for SIGINT")?,
    }
    Ok(())
}
