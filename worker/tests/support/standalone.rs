//! Running `kubecrawl-worker crawl` in this process against the synthetic site, the way the
//! standalone tests do. Each test binary that needs it includes it:
//! `#[path = "support/standalone.rs"] mod support;`.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use kubecrawl_api::PageRecord;
use kubecrawl_e2e::records::take_json_lines;
use kubecrawl_e2e::site::TestSite;
use kubecrawl_worker::args::{Cli, Command};
use kubecrawl_worker::spider::Registry;
use kubecrawl_worker::standalone::{CrawlSummary, crawl};
use tokio_util::sync::CancellationToken;

/// Runs `kubecrawl-worker crawl <args> --allow-private-networks --no-progress --delay 0s`,
/// every host of `site` resolved to it and the records written to `out`, with `registry`'s
/// spiders; `args` hold the seeds and the test's own flags. Returns the summary and the
/// records (the file is deleted). Panics when the crawl takes longer than `deadline`.
pub(crate) async fn crawl_site(
    site: &TestSite,
    args: &[String],
    out: &Path,
    registry: &Registry,
    deadline: Duration,
) -> (CrawlSummary, Vec<PageRecord>) {
    let mut argv: Vec<String> = ["kubecrawl-worker", "crawl"].map(str::to_owned).to_vec();
    argv.extend(args.iter().cloned());
    argv.extend(["--allow-private-networks", "--no-progress", "--delay", "0s"].map(str::to_owned));
    argv.extend(["--resolve".to_owned(), site.resolve()]);
    argv.extend(["-o".to_owned(), out.display().to_string()]);
    let Command::Crawl(args) = Cli::try_parse_from(&argv).expect("arguments parse").command else {
        panic!("a crawl command")
    };
    let summary = tokio::time::timeout(deadline, crawl(args, registry, CancellationToken::new()))
        .await
        .expect("the crawl hung")
        .expect("the crawl runs");
    let records = take_json_lines(out).expect("every line of the output is a page record");
    (summary, records)
}
