//! Every trap of the synthetic site, crawled by `kubecrawl-worker crawl`: no crash, bounded
//! memory, and each outcome visible — as a page record or as a counted error.
//!
//! Its own test binary, so that the peak memory measured is this crawl's.

use std::collections::BTreeSet;
use std::time::Duration;

use kubecrawl_api::BodyEncoding;
use kubecrawl_e2e::site::traps::{BINARY, CHARSET_CASES, GZIP_CHILD, HUGE, HUGE_CHUNKED, NEVER};
use kubecrawl_e2e::site::{Outcome, SiteConfig, TestSite};
use kubecrawl_worker::spider::Registry;

#[path = "support/standalone.rs"]
mod support;

/// Peak resident memory of this process, from /proc.
fn peak_rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("linux /proc");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kb / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trap_is_survived_and_counted() {
    let mut config = SiteConfig::default().with_traps(true).with_pages(50);
    config.slow_delay = Duration::from_millis(500);
    config.stall_for = Duration::from_secs(8);
    let site = TestSite::start(config).await.expect("site starts");
    let timeout = Duration::from_secs(3);
    let mut reach = site.reach().max_depth(40);
    reach.timeout = timeout;
    reach.max_url_len = Some(kubecrawl_worker::extract::MAX_URL_LEN);
    let truth = site.reachable(&reach).expect("ground truth");

    let out = std::env::temp_dir().join(format!("kubecrawl-traps-{}.jsonl", std::process::id()));
    let argv: Vec<String> = [
        &site.root(),
        "--maxdepth",
        "40",
        "--allowed-domain",
        "site.test",
        "--timeout",
        "3s",
    ]
    .map(str::to_owned)
    .to_vec();
    let (summary, records) = support::crawl_site(
        &site,
        &argv,
        &out,
        &Registry::builtin(),
        Duration::from_secs(240),
    )
    .await;
    println!("{summary}");

    // Pages: everything that ends in a response is published, nothing else.
    let published: BTreeSet<String> = records.iter().map(|r| r.url.clone()).collect();
    let mut with_response = truth.with_outcome(Outcome::Ok);
    with_response.extend(truth.with_outcome(Outcome::Status));
    with_response.extend(truth.with_outcome(Outcome::Truncated));
    let missing: Vec<_> = with_response.difference(&published).collect();
    let extra: Vec<_> = published.difference(&with_response).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nunexpected {extra:#?}"
    );
    assert_eq!(records.len(), published.len(), "no page published twice");

    // Errors: every fetch that ends without a response is counted, by kind.
    let errors_expected = truth.with_outcome(Outcome::TooManyRedirects).len()
        + truth.with_outcome(Outcome::Timeout).len()
        + truth.with_outcome(Outcome::Incomplete).len();
    let counted = |k: &str| summary.outcomes.get(k).copied().unwrap_or(0);
    let errors = counted("too_many_redirects") + counted("timeout") + counted("transport");
    assert_eq!(
        errors, errors_expected as u64,
        "outcomes: {:?}",
        summary.outcomes
    );
    assert!(
        counted("too_many_redirects") >= 2,
        "the loop and the long chain"
    );
    assert!(counted("retry") > 0, "flaky pages were retried");
    assert_eq!(summary.stats.queued + summary.stats.in_flight, 0);

    let record = |path: &str| {
        let url = site.url("site.test", path);
        records
            .iter()
            .find(|r| r.url == url)
            .unwrap_or_else(|| panic!("no record for {path}"))
    };
    for huge in [HUGE, HUGE_CHUNKED] {
        let r = record(huge);
        assert!(r.body_truncated, "{huge} is flagged truncated");
        assert_eq!(r.body.len(), 1 << 20, "{huge} is cut at the cap");
    }
    assert_eq!(record(BINARY).body_encoding, BodyEncoding::Base64);
    assert!(
        published.contains(&site.url("site.test", GZIP_CHILD)),
        "the gzip page was decompressed"
    );
    assert!(
        !published.contains(&site.url("site.test", NEVER)),
        "text/plain links are not followed"
    );
    for case in CHARSET_CASES {
        let r = record(&case.path());
        assert_eq!(r.body_encoding, BodyEncoding::Text, "{}", case.slug);
        assert!(
            r.body.contains(case.text),
            "{}: decoded text missing",
            case.slug
        );
        assert!(
            published.contains(&site.url("site.test", &format!("{}/child", case.path()))),
            "{}",
            case.slug
        );
    }
    for flaky in ["/trap/flaky/429", "/trap/flaky/503"] {
        assert_eq!(
            record(flaky).status_code,
            200,
            "{flaky} succeeds after its retries"
        );
    }

    let peak = peak_rss_mb();
    println!("peak rss {peak} MiB");
    assert!(
        peak < 300,
        "peak memory {peak} MiB: the huge bodies were not bounded"
    );
}
