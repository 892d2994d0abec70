//! The example spider's own worker binary crawls the synthetic site.

use std::collections::BTreeSet;
use std::time::Duration;

use kubecrawl_api::PageRecord;
use kubecrawl_e2e::records::take_json_lines;
use kubecrawl_e2e::site::{SiteConfig, TestSite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_titles_worker_crawls_the_site_with_its_own_spider() {
    let site = TestSite::start(SiteConfig::default())
        .await
        .expect("site starts");
    let truth = site
        .reachable(&site.reach().max_depth(2))
        .expect("ground truth");
    let out = std::env::temp_dir().join(format!("kubecrawl-titles-{}.jsonl", std::process::id()));
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_titles-worker"));
    cmd.args([
        "crawl",
        &site.root(),
        "--spider",
        "titles",
        "--maxdepth",
        "2",
        "--allowed-domain",
        "site.test",
    ])
    .args([
        "--delay",
        "0s",
        "--allow-private-networks",
        "--no-progress",
        "-o",
    ])
    .arg(&out)
    .env("KUBECRAWL_RESOLVE", site.resolve())
    .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the crawl hung")
        .expect("the worker runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "titles-worker failed:\n{stderr}");
    assert!(
        stderr.contains("finished titles/"),
        "summary names the spider:\n{stderr}"
    );

    let records: Vec<PageRecord> =
        take_json_lines(&out).expect("every line of the output is a page record");
    let urls: BTreeSet<String> = records.iter().map(|r| r.url.clone()).collect();
    assert_eq!(
        urls,
        truth.urls(),
        "the custom spider follows links like the link spider"
    );
    for r in &records {
        assert_eq!(r.spiderid, "titles");
        if r.status_code == 200 && r.content_type == "text/html" {
            let title = r.attrs.get("title").and_then(|t| t.as_str()).unwrap_or("");
            assert!(!title.is_empty(), "{} has a title in attrs", r.url);
        }
        if r.depth > 0 {
            assert!(
                r.attrs.contains_key("parent_title"),
                "meta passed through to {}",
                r.url
            );
        }
    }
}
