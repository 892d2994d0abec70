//! `kubecrawl-worker crawl --extract FILE` against the synthetic site: a declarative spider.
//! Every record carries the fields the site is known to hold (each page's `<title>` and
//! `<h1 id="top">` are its title, `<html lang="en">`, the stylesheet link of `site.test`), and
//! the pages fetched are exactly the site's ground truth for the equivalent link filters.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use kubecrawl_api::PageRecord;
use kubecrawl_e2e::site::{SiteConfig, TestSite};
use kubecrawl_worker::spider::Registry;
use kubecrawl_worker::standalone::CrawlSummary;
use regex::Regex;
use serde_json::{Value, json};

#[path = "support/standalone.rs"]
mod support;

/// How long one crawl of the small site may take before the test counts it as hung.
const DEADLINE: Duration = Duration::from_secs(120);

fn temp_path(name: &str, ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "kubecrawl-decl-{name}-{}.{ext}",
        std::process::id()
    ))
}

/// Runs `kubecrawl-worker crawl <root> --extract <rules> <args>` in-process against `site`;
/// returns the summary and the records written.
async fn run(
    site: &TestSite,
    name: &str,
    rules: &str,
    args: &[&str],
) -> (CrawlSummary, Vec<PageRecord>) {
    let rules_file = temp_path(name, "yaml");
    std::fs::write(&rules_file, rules).expect("the rules file is written");
    let mut argv: Vec<String> = [
        &site.root(),
        "--maxdepth",
        "1000",
        "--allowed-domain",
        "site.test",
        "--extract",
        &rules_file.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let out = temp_path(name, "jsonl");
    let crawled = support::crawl_site(site, &argv, &out, &Registry::builtin(), DEADLINE).await;
    std::fs::remove_file(&rules_file).ok();
    crawled
}

fn urls(records: &[PageRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.url.clone()).collect()
}

fn assert_same(got: &BTreeSet<String>, want: &BTreeSet<String>) {
    let missing: Vec<_> = want.difference(got).collect();
    let extra: Vec<_> = got.difference(want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nunexpected {extra:#?}"
    );
}

/// The title the site gives the page at `url` (its root or a main page `/p/{i}`).
fn title(site: &TestSite, url: &str) -> String {
    if url == site.root() {
        return "Home of site.test".to_owned();
    }
    let page = url
        .strip_prefix(&site.url("site.test", "/p/"))
        .unwrap_or_else(|| panic!("{url} is neither the root nor a main page"));
    format!("Page {page}")
}

const FIELDS: &str = r#"
fields:
  - {name: title, selector: title}
  - {name: heading, selector: "h1#top"}
  - {name: anchor, selector: h1, attribute: id}
  - {name: lang, selector: html, attribute: LANG}
  - {name: stylesheet, selector: "link[rel=stylesheet]", attribute: href}
  - {name: names, selector: "title, h1", all: true}
  - {name: sku, selector: ".sku"}
  - {name: tags, selector: ".tag", all: true}
"#;

/// Two follow rules, each admitting its own pages: even main pages among every link of the
/// body, odd ones that do not start with 1 among every link. Together they are the
/// ground truth of a crawl whose allowRegex is both rules' patterns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_are_extracted_and_follow_rules_choose_the_links() {
    let site = TestSite::start(SiteConfig::default())
        .await
        .expect("site starts");
    let even = r"/p/\d*[02468]$";
    let odd_not_1 = r"/p/[3579]$|/p/[2-9]\d*[13579]$";
    let truth = site
        .reachable(
            &site
                .reach()
                .allow(Regex::new(even).expect("a regex"))
                .allow(Regex::new(odd_not_1).expect("a regex")),
        )
        .expect("ground truth");
    let rules = format!(
        "{FIELDS}follow:\n  - selector: body\n    allow: ['{even}']\n  - allow: ['/p/\\d+$']\n    deny: ['/p/1\\d*$', '{even}']\n"
    );
    let (summary, records) = run(&site, "rules", &rules, &[]).await;
    assert_same(&urls(&records), &truth.urls());
    assert_eq!(records.len(), truth.len(), "every page published once");
    assert_eq!(summary.stats.pages, truth.len() as u64);
    assert!(
        truth.len() > 20 && truth.len() < 300,
        "the rules chose a real subset of the site's 301 pages: {}",
        truth.len()
    );
    let odd = Regex::new(odd_not_1).expect("a regex");
    assert!(
        truth.urls().iter().any(|u| odd.is_match(u)),
        "the second rule has pages of its own to follow"
    );
    for r in &records {
        let title = title(&site, &r.url);
        let want = json!({
            "title": title,
            "heading": title,
            "anchor": "top",
            "lang": "en",
            "stylesheet": "/static/site.css",
            "names": [title, title],
            "sku": null,
            "tags": [],
        });
        assert_eq!(Value::Object(r.fields.clone()), want, "{}", r.url);
        assert_eq!(r.depth, truth.get(&r.url).expect("in the truth").depth);
    }
}

/// `follow: []` follows nothing but the pagination links; those are followed whatever the
/// rules say, and the job's own filters (here allowRegex) still apply to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_is_followed_and_the_jobs_filters_still_apply() {
    let site = TestSite::start(SiteConfig::default())
        .await
        .expect("site starts");
    let even = r"/p/\d*[02468]$";
    let truth = site
        .reachable(&site.reach().allow(Regex::new(even).expect("a regex")))
        .expect("ground truth");
    let (_, records) = run(
        &site,
        "pagination",
        "follow: []\npagination: 'ul, map'\n",
        &["--allow-regex", even],
    )
    .await;
    assert_same(&urls(&records), &truth.urls());
    assert!(truth.len() > 10, "{}", truth.len());
    assert!(
        records.iter().all(|r| r.fields.is_empty()),
        "no fields, no fields key"
    );

    let (summary, records) = run(&site, "nothing", "follow: []\n", &[]).await;
    assert_eq!(
        urls(&records),
        BTreeSet::from([site.root()]),
        "an empty follow list and no pagination follow nothing"
    );
    assert_eq!(summary.stats.pages, 1);
}
