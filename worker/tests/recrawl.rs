//! Recrawl rounds of a standalone crawl (`crawl --recrawl` on the real Redis): each run with
//! the same crawlid is the next round of the one before, asks for every page it reached with
//! its validators, and writes only the pages that changed.
//!
//! Needs `REDIS_URL` (`make test`, or `. .testenv/env`); fails without it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use kubecrawl_api::PageRecord;
use kubecrawl_e2e::site::{SiteConfig, TestSite};
use kubecrawl_worker::recrawl::{CHANGED, UNCHANGED};
use kubecrawl_worker::spider::Registry;
use kubecrawl_worker::standalone::CrawlSummary;

#[path = "support/standalone.rs"]
mod support;

const DEADLINE: Duration = Duration::from_secs(120);

/// One round: the same command every time.
async fn round(
    site: &TestSite,
    redis: &str,
    prefix: &str,
    n: u32,
) -> (CrawlSummary, Vec<PageRecord>) {
    let out: PathBuf = std::env::temp_dir().join(format!(
        "kubecrawl-recrawl-{}-{n}.jsonl",
        std::process::id()
    ));
    let args: Vec<String> = [
        site.root().as_str(),
        "--maxdepth",
        "1000",
        "--allowed-domain",
        "site.test",
        "--redis",
        redis,
        "--redis-prefix",
        prefix,
        "--crawlid",
        "fresh",
        "--recrawl",
    ]
    .map(str::to_owned)
    .to_vec();
    support::crawl_site(site, &args, &out, &Registry::builtin(), DEADLINE).await
}

fn counter(summary: &CrawlSummary, name: &str) -> u64 {
    summary.stats.counters.get(name).copied().unwrap_or(0)
}

fn code(summary: &CrawlSummary, status: u16) -> u64 {
    summary
        .stats
        .status_codes
        .get(&status)
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_is_a_round_that_refetches_everything_and_writes_only_what_changed() {
    let redis = kubecrawl_e2e::TestEnv::get().redis_url;
    let prefix = format!("kc-recrawl-{}", std::process::id());
    let site = TestSite::start(SiteConfig::default().with_pages(60).with_validators(true))
        .await
        .expect("site");

    // Round 1 crawls the site and writes every page.
    let (one, first) = round(&site, &redis, &prefix, 1).await;
    let pages = one.stats.pages;
    assert!(pages > 20, "{one}");
    assert_eq!(first.len() as u64, pages, "every page written: {one}");
    assert_eq!((counter(&one, CHANGED), counter(&one, UNCHANGED)), (0, 0));
    assert!(
        !one.to_string().contains("recrawl:"),
        "nothing to compare in round 1: {one}"
    );

    // Two main pages change.
    let main = regex::Regex::new(r"/p/(\d+)$").expect("regex");
    let edited: Vec<(usize, String)> = first
        .iter()
        .filter(|r| r.status_code == 200 && r.url == r.response_url)
        .filter_map(|r| Some((main.captures(&r.url)?[1].parse().ok()?, r.url.clone())))
        .take(2)
        .collect();
    assert_eq!(edited.len(), 2);
    for (i, _) in &edited {
        site.edit_page(*i);
    }
    let changed_urls: BTreeSet<&String> = first
        .iter()
        .filter(|r| edited.iter().any(|(_, url)| *url == r.response_url))
        .map(|r| &r.url)
        .collect();

    // Round 2 asks for every page again: the main pages answer 304 unless edited, the others
    // are compared by their bodies; only the changed pages are written.
    let before = site.not_modified();
    let (two, second) = round(&site, &redis, &prefix, 2).await;
    assert_eq!(two.stats.pages, pages, "every page of round 1 again: {two}");
    assert_eq!(counter(&two, CHANGED), changed_urls.len() as u64, "{two}");
    assert_eq!(
        counter(&two, UNCHANGED),
        pages - changed_urls.len() as u64,
        "{two}"
    );
    assert_eq!(code(&two, 304), site.not_modified() - before, "{two}");
    assert!(code(&two, 304) > 0, "{two}");
    let written: BTreeSet<&String> = second.iter().map(|r| &r.url).collect();
    assert_eq!(written, changed_urls, "only the changed pages are written");
    for record in &second {
        assert!(
            edited
                .iter()
                .any(|(i, _)| record.body.contains(&TestSite::edit_marker(*i, 1))),
            "{} has its new body",
            record.url
        );
    }
    assert!(
        two.to_string()
            .contains(&format!("recrawl: {} changed", changed_urls.len())),
        "{two}"
    );

    // Round 3, nothing changed: nothing written, every page unchanged; the pages that were
    // missing (404) in rounds 1 and 2 are forgotten and not asked for again.
    let missing = code(&two, 404);
    assert!(missing > 0, "the site links to missing pages: {two}");
    let (three, third) = round(&site, &redis, &prefix, 3).await;
    assert_eq!(three.stats.pages, pages - missing, "{three}");
    assert_eq!(code(&three, 404), 0, "{three}");
    assert!(third.is_empty(), "{third:?}");
    assert_eq!(
        (counter(&three, CHANGED), counter(&three, UNCHANGED)),
        (0, pages - missing),
        "{three}"
    );

    // Each page was requested once per round.
    for (_, url) in &edited {
        let path = url::Url::parse(url).expect("url").path().to_owned();
        assert_eq!(site.hits(&path), 3, "{url}");
    }
    let client = redis::Client::open(redis.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .expect("cleanup");
    }
}
