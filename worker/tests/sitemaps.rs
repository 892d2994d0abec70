//! Sitemaps, read by `kubecrawl-worker crawl` from the synthetic site: robots.txt names a
//! sitemap index of gzipped, namespaced, plain-text, nested, broken and missing sitemaps
//! (`kubecrawl_e2e::site::sitemaps`), whose ground truth is known.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use clap::Parser;
use kubecrawl_api::PageRecord;
use kubecrawl_e2e::site::{SiteConfig, TestSite};
use kubecrawl_worker::args::{Cli, Command};
use kubecrawl_worker::spider::Registry;
use kubecrawl_worker::standalone::{CrawlSummary, crawl};
use tokio_util::sync::CancellationToken;

#[path = "support/standalone.rs"]
mod support;

/// How long one crawl of the small site may take before the test counts it as hung.
const DEADLINE: Duration = Duration::from_secs(120);
const PAGES: usize = 120;
const BIG_PAGES: usize = 2600;

async fn crawl_site(
    site: &TestSite,
    extra: &[String],
    name: &str,
) -> (CrawlSummary, Vec<PageRecord>) {
    let out: PathBuf = std::env::temp_dir().join(format!(
        "kubecrawl-sitemaps-{name}-{}.jsonl",
        std::process::id()
    ));
    let mut argv = vec![site.root()];
    argv.extend(extra.iter().cloned());
    support::crawl_site(site, &argv, &out, &Registry::builtin(), DEADLINE).await
}

fn counter(summary: &CrawlSummary, name: &str) -> u64 {
    summary.stats.counters.get(name).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sitemaps_robots_txt_names_are_read_to_their_ground_truth() {
    // Enough pages that a page sitemap (about 180 KB) is read off the runtime's threads.
    let site = TestSite::start(
        SiteConfig::default()
            .with_pages(BIG_PAGES)
            .with_sitemaps(true),
    )
    .await
    .expect("site starts");
    let truth = site.sitemap_truth(None);
    // maxdepth 0: no link is followed, so every page but the seed comes from a sitemap.
    let (summary, records) = crawl_site(&site, &["--sitemaps-from-robots".to_owned()], "all").await;
    println!("{summary}");

    let published: BTreeSet<String> = records.iter().map(|r| r.url.clone()).collect();
    let mut expected = truth.pages.clone();
    expected.insert(site.root());
    let missing: Vec<_> = expected.difference(&published).collect();
    let extra: Vec<_> = published.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nunexpected {extra:#?}"
    );
    assert_eq!(records.len(), published.len(), "no page published twice");
    assert!(
        records.iter().all(|r| r.url == site.root() || r.depth == 0),
        "sitemap pages are queued at depth 0, like seeds"
    );

    // Counted: what was read, what failed and why, what was listed.
    assert_eq!(
        counter(&summary, "sitemaps_read"),
        truth.read,
        "{:?}",
        summary.stats.counters
    );
    assert_eq!(
        counter(&summary, "sitemaps_failed"),
        truth.failed,
        "{:?}",
        summary.stats.counters
    );
    assert_eq!(
        counter(&summary, "sitemap_urls"),
        truth.urls,
        "{:?}",
        summary.stats.counters
    );
    assert_eq!(counter(&summary, "sitemap_unmodified"), 0);
    // Every fetch is a page of the job: the published pages, robots.txt and the sitemaps.
    assert_eq!(
        summary.stats.pages,
        records.len() as u64 + truth.fetches,
        "{:?}",
        summary.stats
    );
    assert_eq!(
        site.hits("/sitemaps/deepest.xml"),
        0,
        "an index past the bound is not read"
    );
    assert_eq!(
        site.hits("/sitemaps/missing.xml"),
        1,
        "a missing sitemap is not retried"
    );
    assert_eq!(
        site.hits("/p/0"),
        1,
        "a page two sitemaps list is fetched once"
    );
    assert_eq!(summary.stats.queued + summary.stats.in_flight, 0);
    let text = summary.to_string();
    assert!(
        text.contains(&format!(
            "sitemaps: {} read, {} failed",
            truth.read, truth.failed
        )),
        "the summary reports the sitemaps: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_sitemap_with_modified_since_queues_only_newer_pages() {
    let site = TestSite::start(SiteConfig::default().with_pages(PAGES).with_sitemaps(true))
        .await
        .expect("site starts");
    // 2026-01-15: pages whose lastmod is 01-01 .. 01-14 are left out.
    let since = UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 14 * 86_400);
    let truth = site.sitemap_truth(Some(since));
    assert!(truth.unmodified > 0 && truth.pages.len() > 2, "{truth:?}");
    let extra = [
        "--sitemap".to_owned(),
        site.url("site.test", "/sitemap.xml"),
        "--sitemaps-modified-since".to_owned(),
        humantime::format_rfc3339(since).to_string(),
        // Pages are cut at 4 KiB; sitemaps (pages-1.xml is about 8 KiB) are still read whole.
        "--max-body-bytes".to_owned(),
        "4096".to_owned(),
    ];
    let (summary, records) = crawl_site(&site, &extra, "since").await;
    println!("{summary}");
    let published: BTreeSet<String> = records.iter().map(|r| r.url.clone()).collect();
    let mut expected = truth.pages.clone();
    expected.insert(site.root());
    assert_eq!(published, expected);
    assert_eq!(counter(&summary, "sitemap_unmodified"), truth.unmodified);
    assert_eq!(counter(&summary, "sitemaps_failed"), truth.failed);
    assert_eq!(counter(&summary, "sitemap_urls"), truth.urls);
    // Named directly, robots.txt is not read for sitemaps: one fetch fewer.
    assert_eq!(
        summary.stats.pages,
        records.len() as u64 + truth.fetches - 1
    );
}

#[test]
fn a_sitemap_that_is_no_http_url_is_refused_with_its_name() {
    let argv = [
        "kubecrawl-worker",
        "crawl",
        "http://a.test/",
        "--sitemap",
        "ftp://a.test/s.xml",
    ];
    let Command::Crawl(args) = Cli::try_parse_from(argv).expect("arguments parse").command else {
        panic!("a crawl command")
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let error = runtime
        .block_on(crawl(args, &Registry::builtin(), CancellationToken::new()))
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        "sitemap \"ftp://a.test/s.xml\" is not an absolute http or https URL"
    );
}
