//! Self-tests of the synthetic test site: its ground truth against an independent crawler
//! (reqwest + scraper + url, written here from the rules, not from the site's code), its
//! traps over real HTTP, its counters, its binary, and a throughput sanity check.
//!
//! Needs no services: run with `cargo test -p kubecrawl-e2e --test site`.

// A test target's root is its own crate root, so its modules live beside it by path; a plain
// `tests/crawler.rs` would be compiled as a test target of its own.
#[path = "site/crawler.rs"]
mod crawler;
#[path = "site/trap_outcomes.rs"]
mod trap_outcomes;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kubecrawl_e2e::site::{self, Outcome, SiteConfig, TestSite, traps};
use regex::Regex;
use url::Url;

use crawler::{DEADLINE, assert_crawl_matches, client, client_with, extract, get, paths};

#[tokio::test]
async fn an_independent_crawler_finds_exactly_the_ground_truth() {
    tokio::time::timeout(DEADLINE, async {
        let site = TestSite::start(SiteConfig::default()).await.unwrap();
        let base = site.reach();
        let variants = [
            ("default", base.clone()),
            ("maxdepth 0", base.clone().max_depth(0)),
            ("maxdepth 2", base.clone().max_depth(2)),
            ("maxdepth 4", base.clone().max_depth(4)),
            ("robots ignored", base.clone().obey_robots(false)),
            ("badbot", base.clone().user_agent("BadBot/1.0")),
            ("nofollow followed", base.clone().follow_nofollow(true)),
            (
                "other.test allowed",
                base.clone().allowed_hosts(&["site.test", "other.test"]),
            ),
            ("any host", base.clone().allowed_hosts(&[])),
            (
                "deny regex",
                base.clone().deny(Regex::new(r"/p/\d*7$").unwrap()),
            ),
            (
                "allow regex",
                base.clone().allow(Regex::new(r"/p/\d+$").unwrap()),
            ),
            ("no extension filter", base.clone().deny_extensions(&[])),
            ("no redirects", base.clone().max_redirects(0)),
            (
                "everything",
                base.clone()
                    .allowed_hosts(&[])
                    .obey_robots(false)
                    .follow_nofollow(true)
                    .deny_extensions(&[]),
            ),
            ("wander", site.reach().seeds([site.wander_root()])),
        ];
        for (name, reach) in variants {
            let n = assert_crawl_matches(&site, &reach).await;
            println!("{name}: {n} urls");
        }
    })
    .await
    .expect("the crawl deadlocked");
}

#[tokio::test]
async fn every_main_page_is_reachable_and_depth_spreads_over_levels() {
    let site = TestSite::start(SiteConfig::default().with_pages(1_000))
        .await
        .unwrap();
    let truth = site.reachable(&site.reach()).unwrap();
    for i in 0..1_000 {
        assert!(truth.contains(&site.page_url(i)), "page {i} unreachable");
    }
    let per_depth = truth.per_depth();
    assert!(per_depth.len() >= 6, "{per_depth:?}");
    assert_eq!(per_depth[&0], 1);
    let root = truth.get(&site.root()).unwrap();
    assert_eq!(
        (root.depth, root.status, root.outcome),
        (0, Some(200), Outcome::Ok)
    );
    // Growing maxdepth grows the set, one level at a time, up to the whole.
    let mut previous = 0;
    for depth in 0..=truth.max_depth().unwrap() {
        let limited = site.reachable(&site.reach().max_depth(depth)).unwrap();
        assert!(limited.len() > previous, "depth {depth}");
        assert_eq!(limited.max_depth(), Some(depth));
        assert!(limited.urls().is_subset(&truth.urls()));
        previous = limited.len();
    }
    assert_eq!(previous, truth.len());
}

#[tokio::test]
async fn every_link_leads_one_level_deeper_or_to_the_top() {
    let site = TestSite::start(SiteConfig::default().with_pages(2_000).with_traps(true))
        .await
        .unwrap();
    let reach = site
        .reach()
        .allowed_hosts(&[])
        .obey_robots(false)
        .follow_nofollow(true)
        .deny_extensions(&[])
        .max_depth(12);
    let truth = site.reachable(&reach).unwrap();
    for (url, expected) in truth.pages() {
        for link in site.outlinks(&expected.final_url).unwrap() {
            let Some(target) = truth.get(&link.url) else {
                continue;
            };
            assert!(
                target.depth == expected.depth + 1 || target.depth <= 1 || link.url == *url,
                "{url} (depth {}) -> {} (depth {})",
                expected.depth,
                link.url,
                target.depth
            );
        }
    }
}

#[tokio::test]
async fn the_ground_truth_follows_robots_nofollow_hosts_patterns_and_extensions() {
    let site = TestSite::start(SiteConfig::default()).await.unwrap();
    let base = site.reachable(&site.reach()).unwrap();
    let contains =
        |truth: &site::GroundTruth, path: &str| truth.contains(&site.url(site::MAIN_HOST, path));

    assert!(!contains(&base, "/private/0") && contains(&base, "/private/press/0"));
    let ignoring = site.reachable(&site.reach().obey_robots(false)).unwrap();
    assert!((0..4).all(|k| contains(&ignoring, &format!("/private/{k}"))));
    assert!(ignoring.len() > base.len());
    assert!(
        site.reachable(&site.reach().user_agent("badbot"))
            .unwrap()
            .is_empty()
    );

    assert!(!contains(&base, "/nofollow/0") && !contains(&base, "/nofollow/4"));
    let following = site.reachable(&site.reach().follow_nofollow(true)).unwrap();
    assert!((0..=4).all(|k| contains(&following, &format!("/nofollow/{k}"))));

    let hosts = |truth: &site::GroundTruth| -> BTreeSet<String> {
        truth
            .urls()
            .iter()
            .map(|u| Url::parse(u).unwrap().host_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(hosts(&base), BTreeSet::from(["site.test".to_owned()]));
    let two = site
        .reachable(&site.reach().allowed_hosts(&["site.test", "other.test"]))
        .unwrap();
    assert_eq!(hosts(&two).len(), 2);
    assert!(contains(&two, "/back/0") && !contains(&base, "/back/0"));
    assert_eq!(
        hosts(&site.reachable(&site.reach().allowed_hosts(&[])).unwrap()).len(),
        3
    );

    let denied = site
        .reachable(&site.reach().deny(Regex::new("/p/1[0-9]*$").unwrap()))
        .unwrap();
    assert!(
        denied
            .urls()
            .iter()
            .all(|u| !Regex::new("/p/1[0-9]*$").unwrap().is_match(u))
    );
    assert!(denied.len() < base.len());

    assert!(!base.urls().iter().any(|u| u.contains("/files/")));
    let files = site.reachable(&site.reach().deny_extensions(&[])).unwrap();
    let got: BTreeSet<String> = files
        .urls()
        .into_iter()
        .filter(|u| u.contains("/files/"))
        .collect();
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(contains(&files, "/files/report-2.pdf?download=1"));

    // Dead links and redirects are part of the main graph, with their outcomes.
    let gone = base.get(&site.url(site::MAIN_HOST, "/gone/0")).unwrap();
    assert_eq!((gone.status, gone.outcome), (Some(404), Outcome::Status));
    let redirect = base.get(&site.url(site::MAIN_HOST, "/r/1")).unwrap();
    assert_eq!(redirect.final_url, site.url(site::MAIN_HOST, "/landing/1/"));
    assert_eq!(redirect.redirects, 1);
    assert!(!contains(&base, "/landing/1/") && contains(&base, "/landing/1/more"));
    assert!(contains(&base, "/u/na%C3%AFve-caf%C3%A9"));

    // Foreign seeds are refused, not silently ignored.
    assert!(
        site.reachable(&site.reach().seeds(["http://example.org/"]))
            .is_err()
    );
}

#[tokio::test]
async fn the_site_is_a_function_of_its_seed() {
    let config = SiteConfig::default().with_pages(400);
    let a = TestSite::start(config.clone()).await.unwrap();
    let b = TestSite::start(config.clone()).await.unwrap();
    let c = TestSite::start(config.with_seed(99)).await.unwrap();
    let truth = |s: &TestSite| paths(&s.reachable(&s.reach().allowed_hosts(&[])).unwrap().urls());
    assert_eq!(truth(&a), truth(&b));
    let (ca, cb) = (client(&a), client(&b));
    for path in [
        "/",
        "/p/0",
        "/p/17",
        "/p/399",
        "/robots.txt",
        "/traps",
        "/o/1",
    ] {
        let host = if path == "/o/1" {
            site::OTHER_HOST
        } else {
            site::MAIN_HOST
        };
        let body_a = get(&ca, &a.url(host, path)).await.text().await.unwrap();
        let body_b = get(&cb, &b.url(host, path)).await.text().await.unwrap();
        assert_eq!(
            body_a.replace(&a.port().to_string(), "PORT"),
            body_b.replace(&b.port().to_string(), "PORT"),
            "{path}"
        );
    }
    let links = |s: &TestSite| -> Vec<String> {
        (0..400)
            .flat_map(|i| s.outlinks(&s.page_url(i)).unwrap())
            .map(|l| l.url.replace(&s.port().to_string(), "PORT"))
            .collect()
    };
    assert_ne!(links(&a), links(&c));
}

#[tokio::test]
async fn hosts_are_told_apart_and_unknown_ones_get_404() {
    let site = TestSite::start(SiteConfig::default()).await.unwrap();
    let client = client(&site);
    assert_eq!(
        get(&client, &site.url("other.test", "/o/0")).await.status(),
        200
    );
    assert_eq!(
        get(&client, &site.url("site.test", "/o/0")).await.status(),
        404
    );
    assert_eq!(
        get(&client, &site.url("far.test", "/f/0")).await.status(),
        200
    );
    let unknown = format!("http://{}/p/0", site.addr());
    assert_eq!(get(&client, &unknown).await.status(), 404);
    let robots = get(&client, &site.url("site.test", "/robots.txt"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(robots, site.robots_txt());
    assert!(robots.contains("Disallow: /private/") && !robots.contains("Crawl-delay"));
    assert_eq!(
        get(&client, &site.url("other.test", "/robots.txt"))
            .await
            .status(),
        404
    );

    let slow = TestSite::start(SiteConfig::default().with_crawl_delay(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(slow.robots_txt().contains("Crawl-delay: 1\n"));
}

#[tokio::test]
async fn a_wandering_walk_takes_every_step_then_stops() {
    let site = TestSite::start(SiteConfig::default().with_wander(5, 3))
        .await
        .unwrap();
    let client = client(&site);
    let mut url = Url::parse(&site.wander_root()).unwrap();
    let mut steps = Vec::new();
    for step in 0.. {
        steps.push(step);
        let html = get(&client, url.as_str()).await.text().await.unwrap();
        let links = extract(&html, &url);
        let Some((next, _)) = links.get(step % 3) else {
            break;
        };
        url = Url::parse(next).unwrap();
        assert!(step < 10, "the walk does not end");
    }
    assert_eq!(
        steps,
        (0..=site.wander_steps() as usize).collect::<Vec<_>>()
    );
    let truth = site
        .reachable(&site.reach().seeds([site.wander_root()]))
        .unwrap();
    assert_eq!(truth.len(), 1 + 5 * 3);
    assert_eq!(truth.max_depth(), Some(5));
}

#[tokio::test]
async fn counters_and_the_request_log_record_every_request() {
    let site = TestSite::start(SiteConfig::default().with_log_capacity(3))
        .await
        .unwrap();
    let client = client_with(&site, |b| b.user_agent("counting/1.0"));
    for path in ["/p/1", "/p/1", "/search?q=0&page=2", "/nowhere"] {
        get(&client, &site.url(site::MAIN_HOST, path)).await;
    }
    get(&client, &site.url(site::OTHER_HOST, "/o/0")).await;
    assert_eq!(site.hits("/p/1"), 2);
    assert_eq!(site.hits("/search?q=0&page=2"), 1);
    assert_eq!(site.hits("/nowhere"), 1);
    assert_eq!(site.hits("/o/0"), 0);
    assert_eq!(site.hits_on("other.test", "/o/0"), 1);
    assert_eq!(site.total_hits(), 5);
    let log = site.request_log();
    let seen: Vec<(&str, &str)> = log.iter().map(|h| (h.host, h.target.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("site.test", "/search?q=0&page=2"),
            ("site.test", "/nowhere"),
            ("other.test", "/o/0")
        ]
    );
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(
        log.iter()
            .all(|h| h.user_agent.as_deref() == Some("counting/1.0"))
    );
    site.reset_counters();
    assert_eq!(
        (
            site.total_hits(),
            site.hits("/p/1"),
            site.request_log().len()
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_site_and_its_stalled_connections() {
    tokio::time::timeout(DEADLINE, async {
        let site = TestSite::start(SiteConfig::default().with_stall_for(Duration::from_secs(60)))
            .await
            .unwrap();
        let client = client(&site);
        let addr = site.addr();
        let stalled = get(&client, &site.url(site::MAIN_HOST, traps::STALL)).await;
        let started = Instant::now();
        site.shutdown().await;
        assert!(stalled.bytes().await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the stalled connection outlived shutdown"
        );
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );

        let site = TestSite::start(SiteConfig::default()).await.unwrap();
        let addr = site.addr();
        drop(site);
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still accepting after drop"
        );
    })
    .await
    .expect("shutdown hung");
}

/// With validators, a main page has an ETag and a Last-Modified; asking with them gets a 304
/// until the page is edited, which changes its body (links kept) and its validators.
#[tokio::test]
async fn main_pages_answer_conditional_requests_until_edited() {
    let site = TestSite::start(SiteConfig::default().with_pages(20).with_validators(true))
        .await
        .unwrap();
    let c = client(&site);
    let url = site.page_url(3);
    let first = get(&c, &url).await;
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let modified = first.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = first.text().await.unwrap();
    let ask = |header: &'static str, value: String| {
        let request = c.get(&url).header(header, value);
        async move { request.send().await.expect("the site answers") }
    };
    assert_eq!(ask("if-none-match", etag.clone()).await.status(), 304);
    assert_eq!(
        ask("if-modified-since", modified.clone()).await.status(),
        304
    );
    assert_eq!(
        ask("if-none-match", "\"other\"".to_owned()).await.status(),
        200
    );
    assert_eq!(site.not_modified(), 2);

    assert_eq!(site.edit_page(3), 1);
    let edited = ask("if-none-match", etag.clone()).await;
    assert_eq!(edited.status(), 200);
    assert_ne!(edited.headers()["etag"].to_str().unwrap(), etag);
    let text = edited.text().await.unwrap();
    assert!(text.contains(&TestSite::edit_marker(3, 1)), "{text}");
    let page = Url::parse(&url).unwrap();
    assert_eq!(
        extract(&text, &page),
        extract(&body, &page),
        "an edit keeps the page's links"
    );
    assert_eq!(ask("if-modified-since", modified).await.status(), 200);
    assert_eq!(site.not_modified(), 2);
    // Another page is untouched; without validators the site sends none.
    assert_eq!(get(&c, &site.page_url(4)).await.status(), 200);
    let plain = TestSite::start(SiteConfig::default().with_pages(20))
        .await
        .unwrap();
    let answer = get(&client(&plain), &plain.page_url(3)).await;
    assert!(answer.headers().get("etag").is_none());
}

#[tokio::test]
async fn invalid_configs_are_refused() {
    for config in [
        SiteConfig::default().with_pages(0),
        SiteConfig::default().with_wander(3, 0),
        SiteConfig::default().with_chain_len(0),
        SiteConfig::default().with_offsite(0, 2),
        SiteConfig::default().with_robots(&["private/"], &[]),
    ] {
        assert!(matches!(
            TestSite::start(config).await,
            Err(site::Error::InvalidConfig { .. })
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_twenty_thousand_pages_to_a_concurrent_client() {
    tokio::time::timeout(DEADLINE, async {
        const PAGES: usize = 20_000;
        let started = Instant::now();
        let site = TestSite::start(SiteConfig::default().with_pages(PAGES))
            .await
            .unwrap();
        let generated = started.elapsed();
        let started = Instant::now();
        let truth = site.reachable(&site.reach()).unwrap();
        let solved = started.elapsed();
        assert!((0..PAGES).all(|i| truth.contains(&site.page_url(i))));
        let client = client(&site);
        let started = Instant::now();
        let results: Vec<(u16, usize)> = futures::stream::iter(0..PAGES)
            .map(|i| {
                let (client, url) = (client.clone(), site.page_url(i));
                async move {
                    let response = get(&client, &url).await;
                    let status = response.status().as_u16();
                    (status, response.bytes().await.unwrap().len())
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let elapsed = started.elapsed();
        assert!(
            results
                .iter()
                .all(|&(status, len)| status == 200 && len > 300)
        );
        assert_eq!(site.total_hits(), PAGES as u64);
        assert!(
            (0..PAGES)
                .step_by(97)
                .all(|i| site.hits(&format!("/p/{i}")) == 1)
        );
        let bytes: usize = results.iter().map(|r| r.1).sum();
        println!(
            "generated {PAGES} pages in {:.2} s, their ground truth in {:.2} s; \
             served them in {:.2} s: {:.0} pages/s, {:.1} MB/s",
            generated.as_secs_f64(),
            solved.as_secs_f64(),
            elapsed.as_secs_f64(),
            PAGES as f64 / elapsed.as_secs_f64(),
            bytes as f64 / elapsed.as_secs_f64() / 1e6
        );
    })
    .await
    .expect("serving deadlocked");
}

#[tokio::test]
async fn the_binary_prints_its_addresses_and_serves_until_sigterm() {
    use tokio::io::AsyncBufReadExt as _;
    tokio::time::timeout(DEADLINE, async {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_testsite"))
            .args(["--pages", "50", "--seed", "3", "--maxdepth", "2"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .unwrap();
        let info: serde_json::Value = serde_json::from_str(&line).unwrap();
        let addr: std::net::SocketAddr = info["addr"].as_str().unwrap().parse().unwrap();
        assert_eq!(info["root"], format!("http://site.test:{}/", addr.port()));
        assert_eq!(
            info["hosts"],
            serde_json::json!(["site.test", "other.test", "far.test"])
        );
        assert_eq!(info["wander_steps"], 5);

        // The same config in-process has the same ground truth.
        let twin = TestSite::start(SiteConfig::default().with_pages(50).with_seed(3))
            .await
            .unwrap();
        let count = twin.reachable(&twin.reach().max_depth(2)).unwrap().len();
        assert_eq!(info["reachable"], count);

        kubecrawl_e2e::install_tls_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .resolve("site.test", addr)
            .build()
            .unwrap();
        let root = http
            .get(info["root"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(root.status(), 200);

        let pid = child.id().unwrap().to_string();
        let killed = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(killed.success());
        assert!(child.wait().await.unwrap().success());
    })
    .await
    .expect("the binary did not stop on SIGTERM");
}
