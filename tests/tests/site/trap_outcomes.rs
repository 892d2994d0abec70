//! The traps over real HTTP, and what the ground truth says of each.

use std::time::{Duration, Instant};

use kubecrawl_e2e::site::{self, Outcome, SiteConfig, TestSite, traps};
use reqwest::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::redirect::Policy;
use url::Url;

use crate::crawler::{DEADLINE, client, client_with, extract, get};

#[tokio::test]
async fn traps_answer_as_documented() {
    tokio::time::timeout(DEADLINE, async {
        let config = SiteConfig::default()
            .with_traps(true)
            .with_slow_delay(Duration::from_millis(300))
            .with_stall_for(Duration::from_secs(1))
            .with_huge_bytes(5 << 20);
        let site = TestSite::start(config).await.unwrap();
        let raw = client(&site);
        let url = |path: &str| site.url(site::MAIN_HOST, path);

        let following = client_with(&site, |b| b.redirect(Policy::limited(10)));
        let err = following.get(url(traps::LOOP)).send().await.unwrap_err();
        assert!(err.is_redirect(), "{err}");
        let err = following.get(url(traps::CHAIN)).send().await.unwrap_err();
        assert!(err.is_redirect(), "{err}");
        let short = get(&following, &url(traps::SHORT_CHAIN)).await;
        assert_eq!(
            (short.status().as_u16(), short.url().path()),
            (200, "/trap/short/3")
        );
        let offsite = get(&raw, &url(traps::OFFSITE)).await;
        assert_eq!(
            offsite.headers()[LOCATION],
            site.url(site::OTHER_HOST, "/o/landing").as_str()
        );

        for (path, status) in [
            (traps::NOT_FOUND, 404),
            (traps::GONE, 410),
            (traps::SERVER_ERROR, 500),
        ] {
            assert_eq!(get(&raw, &url(path)).await.status().as_u16(), status);
        }
        let always = get(&raw, &url("/trap/status/429")).await;
        assert_eq!(
            (
                always.status().as_u16(),
                always.headers()[RETRY_AFTER].to_str().unwrap()
            ),
            (429, "1")
        );
        for (path, status) in [(traps::FLAKY_503, 503), (traps::FLAKY_429, 429)] {
            for attempt in 1..=3 {
                let response = get(&raw, &url(path)).await;
                let want = if attempt <= 2 { status } else { 200 };
                assert_eq!(response.status().as_u16(), want, "{path} attempt {attempt}");
                assert_eq!(response.headers().contains_key(RETRY_AFTER), want == 429);
            }
            assert_eq!(site.hits(path), 3);
        }

        let started = Instant::now();
        assert_eq!(get(&raw, &url(traps::SLOW)).await.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let impatient = client_with(&site, |b| b.timeout(Duration::from_millis(100)));
        assert!(
            impatient
                .get(url(traps::SLOW))
                .send()
                .await
                .unwrap_err()
                .is_timeout()
        );

        let started = Instant::now();
        let stalled = get(&raw, &url(traps::STALL)).await;
        assert_eq!(stalled.headers()[CONTENT_LENGTH], "1048576");
        assert!(
            stalled.bytes().await.is_err(),
            "the stalled body must not complete"
        );
        let held = started.elapsed();
        assert!(
            held >= Duration::from_millis(900) && held < Duration::from_secs(10),
            "{held:?}"
        );

        for (path, declared) in [(traps::HUGE, true), (traps::HUGE_CHUNKED, false)] {
            let mut response = get(&raw, &url(path)).await;
            assert_eq!(
                response.headers().contains_key(CONTENT_LENGTH),
                declared,
                "{path}"
            );
            let (mut total, mut largest) = (0usize, 0usize);
            while let Some(chunk) = response.chunk().await.unwrap() {
                total += chunk.len();
                largest = largest.max(chunk.len());
            }
            assert_eq!(total, 5 << 20, "{path}");
            assert!(
                largest <= 1 << 20,
                "{path} came in one piece of {largest} bytes"
            );
        }

        let compressed = get(&raw, &url(traps::GZIP)).await;
        assert_eq!(compressed.headers()[CONTENT_ENCODING], "gzip");
        assert_eq!(&compressed.bytes().await.unwrap()[..2], b"\x1f\x8b");
        let gunzipping = client_with(&site, |b| b.gzip(true));
        let page = get(&gunzipping, &url(traps::GZIP))
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains("href=\"gzip/child\""), "{page}");

        for case in &site::traps::CHARSET_CASES {
            let response = get(&raw, &url(&case.path())).await;
            assert_eq!(
                response.headers()[CONTENT_TYPE],
                case.content_type,
                "{}",
                case.slug
            );
            let bytes = response.bytes().await.unwrap();
            let encoding = encoding_rs::Encoding::for_label(case.encoding.as_bytes()).unwrap();
            let (text, _, errors) = encoding.decode(&bytes);
            assert!(!errors && text.contains(case.text), "{}: {text}", case.slug);
            assert!(
                !String::from_utf8_lossy(&bytes).contains(case.text)
                    || bytes.starts_with(b"\xEF\xBB\xBF")
            );
        }

        let binary = get(&raw, &url(traps::BINARY)).await;
        assert_eq!(binary.headers()[CONTENT_TYPE], "text/html");
        assert!(std::str::from_utf8(&binary.bytes().await.unwrap()).is_err());
        let plain = get(&raw, &url(traps::PLAIN)).await;
        assert!(
            plain.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert!(plain.text().await.unwrap().contains("/trap/never"));
        assert!(
            get(&raw, &url(traps::EMPTY))
                .await
                .bytes()
                .await
                .unwrap()
                .is_empty()
        );

        let malformed = get(&raw, &url(traps::MALFORMED))
            .await
            .bytes()
            .await
            .unwrap();
        let links: Vec<String> = extract(
            &String::from_utf8_lossy(&malformed),
            &Url::parse(&url(traps::MALFORMED)).unwrap(),
        )
        .into_iter()
        .map(|(u, _)| u)
        .collect();
        let want: Vec<String> = (1..=3)
            .map(|k| url(&format!("/trap/malformed/{k}")))
            .collect();
        assert_eq!(links, want);

        let mut long = url(traps::LONG);
        for min_len in [2_200, 4_400, 8_800] {
            let html = get(&raw, &long).await.text().await.unwrap();
            let links = extract(&html, &Url::parse(&long).unwrap());
            long = links[0].0.clone();
            assert!(long.len() > min_len, "{}", long.len());
            assert_eq!(get(&raw, &long).await.status(), 200);
        }
        let deep = url("/trap/repeat/a/a/a/a/a");
        let html = get(&raw, &deep).await.text().await.unwrap();
        assert_eq!(
            extract(&html, &Url::parse(&deep).unwrap())[0].0,
            url("/trap/repeat/a/a/a/a/a/a")
        );
    })
    .await
    .expect("a trap hung the test");
}

#[tokio::test]
async fn the_ground_truth_states_every_trap_outcome() {
    let site = TestSite::start(
        SiteConfig::default()
            .with_traps(true)
            .with_stall_for(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert!(matches!(
        site.reachable(&site.reach()),
        Err(site::Error::Unbounded)
    ));
    let truth = site.reachable(&site.reach().max_url_len(2_048)).unwrap();
    let at = |path: &str| {
        truth
            .get(&site.url(site::MAIN_HOST, path))
            .unwrap_or_else(|| panic!("{path} missing"))
            .clone()
    };
    assert_eq!(at(traps::LOOP).outcome, Outcome::TooManyRedirects);
    assert_eq!(at(traps::CHAIN).outcome, Outcome::TooManyRedirects);
    let short = at(traps::SHORT_CHAIN);
    assert_eq!(
        (
            short.outcome,
            short.redirects,
            short.final_url.ends_with("/trap/short/3")
        ),
        (Outcome::Ok, 3, true)
    );
    let offsite = at(traps::OFFSITE);
    assert_eq!(
        (offsite.outcome, offsite.status),
        (Outcome::Status, Some(302))
    );
    assert_eq!(at(traps::SERVER_ERROR).retries, 3);
    assert_eq!(
        (at(traps::FLAKY_503).outcome, at(traps::FLAKY_503).retries),
        (Outcome::Ok, 2)
    );
    assert_eq!(at(traps::SLOW).outcome, Outcome::Ok);
    assert_eq!(at(traps::STALL).outcome, Outcome::Timeout);
    assert_eq!(at(traps::HUGE).outcome, Outcome::Truncated);
    assert_eq!(at(traps::GZIP_CHILD).depth, 3);
    for case in &site::traps::CHARSET_CASES {
        assert_eq!(at(&format!("{}/child", case.path())).outcome, Outcome::Ok);
    }
    assert!(!truth.contains(&site.url(site::MAIN_HOST, traps::NEVER)));
    assert!(!truth.contains(&site.url(site::MAIN_HOST, "/trap/malformed/4")));
    // The repeating path stops at the URL length limit; the long URLs are cut there too.
    let repeats = truth
        .urls()
        .into_iter()
        .filter(|u| u.contains("/trap/repeat/"))
        .collect::<Vec<_>>();
    assert!(
        repeats.iter().all(|u| u.len() <= 2_048) && repeats.len() > 900,
        "{}",
        repeats.len()
    );
    assert!(truth.urls().iter().all(|u| !u.contains("/trap/long/")));

    let allowed = site
        .reachable(
            &site
                .reach()
                .max_depth(3)
                .allowed_hosts(&["site.test", "other.test"]),
        )
        .unwrap();
    // A redirect to another host is not followed inline: the 302 is the page, and its target
    // is a request of its own at the same depth.
    let offsite = allowed
        .get(&site.url(site::MAIN_HOST, traps::OFFSITE))
        .unwrap();
    assert_eq!(
        (offsite.outcome, offsite.status),
        (Outcome::Status, Some(302))
    );
    let landing = allowed
        .get(&site.url(site::OTHER_HOST, "/o/landing"))
        .unwrap();
    assert!(landing.depth <= offsite.depth, "{landing:?}");
    let strict = site
        .reachable(
            &site
                .reach()
                .max_depth(3)
                .max_retries(1)
                .timeout(Duration::from_secs(1)),
        )
        .unwrap();
    let flaky = strict
        .get(&site.url(site::MAIN_HOST, traps::FLAKY_429))
        .unwrap();
    assert_eq!((flaky.outcome, flaky.status), (Outcome::Status, Some(429)));
    assert_eq!(
        strict
            .get(&site.url(site::MAIN_HOST, traps::SLOW))
            .unwrap()
            .outcome,
        Outcome::Timeout
    );
    assert_eq!(site.traps().len(), 19 + 7 + 1);
}
