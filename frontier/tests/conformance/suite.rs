//! The conformance tests, generic over the implementation.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use kubecrawl_api::Politeness;
use kubecrawl_frontier::{
    Admission, Completion, CrawlRequest, DomainHint, Error, Frontier, JobPolicy, JobRef, Lease,
    Outcome, RetryOutcome, RetryRequest, Window,
};

use crate::harness::Harness;

pub(crate) const SPIDER: &str = "link";
pub(crate) const LONG: Duration = Duration::from_secs(60);

pub(crate) fn job(crawlid: &str) -> JobRef {
    JobRef {
        spiderid: SPIDER.to_owned(),
        appid: "testapp".to_owned(),
        crawlid: crawlid.to_owned(),
    }
}

fn req(url: &str, priority: i32) -> CrawlRequest {
    CrawlRequest::seed(url, priority)
}

pub(crate) fn delay_policy(delay_millis: u32) -> JobPolicy {
    JobPolicy {
        politeness: Some(Politeness {
            hits: None,
            window_seconds: None,
            delay_millis: Some(delay_millis),
            obey_robots: true,
            per_ip: false,
        }),
        ..JobPolicy::unlimited()
    }
}

pub(crate) async fn registered<H: Harness>(h: &H, crawlid: &str, policy: &JobPolicy) -> JobRef {
    let j = job(crawlid);
    h.frontier().register(&j, policy).await.expect("registers");
    j
}

async fn lease_urls<H: Harness>(h: &H, max: usize) -> Vec<String> {
    h.frontier()
        .lease(SPIDER, max, LONG)
        .await
        .expect("leases")
        .into_iter()
        .map(|l| l.request.url)
        .collect()
}

async fn stats<H: Harness>(h: &H, j: &JobRef) -> kubecrawl_frontier::JobStats {
    h.frontier()
        .job_stats(j)
        .await
        .expect("reads stats")
        .expect("job is registered")
}

async fn ack<H: Harness>(h: &H, lease: &Lease, outcome: Outcome) -> Admission {
    match h
        .frontier()
        .complete(lease, outcome)
        .await
        .expect("completes")
    {
        Completion::Acked(a) => a,
        other => panic!("expected an ack, got {other:?}"),
    }
}

pub(crate) async fn seeding_is_idempotent<H: Harness>(h: &H) {
    let j = registered(h, "seeds", &JobPolicy::unlimited()).await;
    let a = h
        .frontier()
        .seed(
            &j,
            &[
                req("http://a.test/1", 1),
                req("http://a.test/2", 1),
                req("http://A.test/1#again", 1),
                req("mailto:someone@a.test", 1),
            ],
        )
        .await
        .expect("seeds");
    assert_eq!((a.admitted, a.duplicates, a.filtered), (2, 1, 1), "{a:?}");
    let again = h
        .frontier()
        .seed(
            &j,
            &[
                req("http://a.test/1", 1),
                req("http://a.test/2", 1),
                req("http://a.test/3", 1),
            ],
        )
        .await
        .expect("seeds again");
    assert_eq!((again.admitted, again.duplicates), (1, 2), "{again:?}");
    let s = stats(h, &j).await;
    assert_eq!((s.queued, s.admitted, s.seeded), (3, 3, true), "{s:?}");
    assert!(!s.finished());
    let unknown = h
        .frontier()
        .seed(&job("nobody"), &[req("http://a.test/", 1)])
        .await;
    assert!(
        matches!(unknown, Err(Error::UnknownJob { .. })),
        "{unknown:?}"
    );
}

pub(crate) async fn priority_across_domains_then_fifo<H: Harness>(h: &H) {
    let one = registered(h, "one", &JobPolicy::unlimited()).await;
    let two = registered(h, "two", &JobPolicy::unlimited()).await;
    let seeds: [(&JobRef, &str, i32); 7] = [
        (&one, "http://a.test/low", 1),
        (&one, "http://b.test/mid", 3),
        (&one, "http://a.test/high-1", 5),
        (&two, "http://c.test/high-2", 5),
        (&one, "http://b.test/high-3", 5),
        (&two, "http://a.test/high-4", 5),
        (&two, "http://d.test/top", 9),
    ];
    for (j, url, p) in seeds {
        h.frontier().seed(j, &[req(url, p)]).await.expect("seeds");
    }
    let expected = [
        "http://d.test/top",
        "http://a.test/high-1",
        "http://c.test/high-2",
        "http://b.test/high-3",
        "http://a.test/high-4",
        "http://b.test/mid",
        "http://a.test/low",
    ];
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend(lease_urls(h, 1).await);
    }
    // The rest in one batch: a batch takes the same order as single leases.
    got.extend(lease_urls(h, 10).await);
    // Priority is exact within a shard; a sharded frontier takes from every shard at once.
    let per_shard = |urls: &[&str]| {
        let mut shards: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
        for url in urls {
            let host = url::Url::parse(url)
                .expect("url")
                .host_str()
                .expect("host")
                .to_owned();
            shards
                .entry(h.shard_of(&host))
                .or_default()
                .push((*url).to_owned());
        }
        shards
    };
    let got: Vec<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(per_shard(&got), per_shard(&expected), "{got:?}");
    assert!(lease_urls(h, 10).await.is_empty());
}

pub(crate) async fn politeness_spaces_dispatches_per_domain<H: Harness>(h: &H) {
    let j = registered(h, "polite", &delay_policy(300)).await;
    let seeds: Vec<CrawlRequest> = [
        "d1.test/1",
        "d1.test/2",
        "d1.test/3",
        "d2.test/1",
        "d2.test/2",
    ]
    .iter()
    .map(|u| req(&format!("http://{u}"), 1))
    .collect();
    h.frontier().seed(&j, &seeds).await.expect("seeds");
    let first = h.frontier().lease(SPIDER, 10, LONG).await.expect("leases");
    let urls: HashSet<&str> = first.iter().map(|l| l.request.url.as_str()).collect();
    assert_eq!(
        urls,
        HashSet::from(["http://d1.test/1", "http://d2.test/1"])
    );
    assert!(
        lease_urls(h, 10).await.is_empty(),
        "a domain was dispatched twice at once"
    );
    // A Retry-After on d2 holds it back beyond its normal interval.
    h.frontier()
        .report_domain(
            SPIDER,
            "d2.test",
            DomainHint::RetryAfter(Duration::from_secs(3)),
        )
        .await
        .expect("reports");
    h.advance(Duration::from_millis(400)).await;
    let second = h.frontier().lease(SPIDER, 10, LONG).await.expect("leases");
    let urls: Vec<&str> = second.iter().map(|l| l.request.url.as_str()).collect();
    assert_eq!(urls, vec!["http://d1.test/2"]);
    let gap = second[0]
        .leased_at
        .duration_since(first[0].leased_at)
        .expect("dispatch times are ordered");
    assert!(
        gap >= Duration::from_millis(300),
        "only {gap:?} between dispatches"
    );
    // robots.txt asks for 2 s: the next charge of d1 uses it.
    h.frontier()
        .report_domain(
            SPIDER,
            "D1.test",
            DomainHint::CrawlDelay(Duration::from_secs(2)),
        )
        .await
        .expect("reports");
    h.advance(Duration::from_millis(400)).await;
    assert_eq!(lease_urls(h, 10).await, vec!["http://d1.test/3"]);
    h.frontier()
        .seed(&j, &[req("http://d1.test/4", 1)])
        .await
        .expect("seeds");
    h.advance(Duration::from_millis(400)).await;
    assert!(
        lease_urls(h, 10).await.is_empty(),
        "crawl delay and retry-after ignored"
    );
    h.advance(Duration::from_millis(2300)).await;
    let mut rest = lease_urls(h, 10).await;
    rest.sort();
    assert_eq!(rest, vec!["http://d1.test/4", "http://d2.test/2"]);
}

/// A worker's adaptive delay spaces its domain like any interval until it is cleared.
pub(crate) async fn an_adaptive_delay_spaces_a_domain_until_cleared<H: Harness>(h: &H) {
    let j = registered(h, "adaptive", &delay_policy(0)).await;
    let seeds: Vec<CrawlRequest> = (1..=4)
        .map(|i| req(&format!("http://a.test/{i}"), 1))
        .collect();
    h.frontier().seed(&j, &seeds).await.expect("seeds");
    h.frontier()
        .report_domain(
            SPIDER,
            "a.test",
            DomainHint::Adaptive(Duration::from_secs(1)),
        )
        .await
        .expect("reports");
    assert_eq!(lease_urls(h, 10).await, vec!["http://a.test/1"]);
    assert!(
        lease_urls(h, 10).await.is_empty(),
        "the adaptive delay did not space the domain"
    );
    h.advance(Duration::from_millis(1100)).await;
    assert_eq!(lease_urls(h, 10).await, vec!["http://a.test/2"]);
    // Cleared: the next charge uses the job's interval (none) again.
    h.frontier()
        .report_domain(SPIDER, "a.test", DomainHint::Adaptive(Duration::ZERO))
        .await
        .expect("reports");
    h.advance(Duration::from_millis(1100)).await;
    let mut rest = lease_urls(h, 10).await;
    rest.sort();
    assert_eq!(rest, vec!["http://a.test/3", "http://a.test/4"]);
}

pub(crate) async fn complete_filters_children_and_accounts<H: Harness>(h: &H) {
    let policy = JobPolicy {
        maxdepth: 2,
        allowed_domains: vec!["site.test".into()],
        deny_regex: vec!["/private".into()],
        ..delay_policy(0)
    };
    let policy = JobPolicy {
        deny_extensions: None,
        ..policy
    };
    let j = registered(h, "children", &policy).await;
    h.frontier()
        .seed(&j, &[req("http://site.test/", 4)])
        .await
        .expect("seeds");
    let leases = h.frontier().lease(SPIDER, 5, LONG).await.expect("leases");
    assert_eq!(leases.len(), 1);
    let root = &leases[0];
    assert_eq!(root.job, j);
    assert_eq!(root.domain, "site.test");
    let children: Vec<CrawlRequest> = [
        "http://site.test/a",
        "http://sub.site.test/b",
        "http://other.test/c",
        "http://site.test/private/x",
        "http://site.test/img.PNG",
        "http://site.test/a#dup",
        "not a url",
    ]
    .iter()
    .map(|u| root.request.child(*u))
    .collect();
    let a = ack(
        h,
        root,
        Outcome::status(200, 1000)
            .with_items(1)
            .with_children(children),
    )
    .await;
    assert_eq!((a.admitted, a.duplicates, a.filtered), (2, 1, 4), "{a:?}");
    let s = stats(h, &j).await;
    assert_eq!(
        (s.pages, s.items, s.bytes, s.queued, s.in_flight),
        (1, 1, 1000, 2, 0)
    );
    assert_eq!(s.status_codes.get(&200), Some(&1));
    let level1 = h.frontier().lease(SPIDER, 5, LONG).await.expect("leases");
    assert_eq!(level1.len(), 2);
    assert!(
        level1
            .iter()
            .all(|l| l.request.depth == 1 && l.request.priority == 4)
    );
    assert_eq!(
        level1[0].request.referer.as_deref(),
        Some("http://site.test/")
    );
    let deep = level1[0].request.child("http://site.test/deep");
    let deeper = deep.child("http://site.test/deeper");
    let a = ack(
        h,
        &level1[0],
        Outcome::status(404, 10).with_children(vec![deep, deeper]),
    )
    .await;
    assert_eq!((a.admitted, a.filtered), (1, 1), "maxdepth: {a:?}");
    let stale = h
        .frontier()
        .complete(&level1[0], Outcome::status(200, 1))
        .await;
    assert_eq!(stale.expect("completes"), Completion::Stale, "acked twice");
    ack(h, &level1[1], Outcome::failed()).await;
    let level2 = h.frontier().lease(SPIDER, 5, LONG).await.expect("leases");
    assert_eq!(level2.len(), 1);
    let mut outcome = Outcome::status(200, 5);
    outcome.step = Some(7);
    ack(h, &level2[0], outcome).await;
    let s = stats(h, &j).await;
    assert_eq!(
        (s.pages, s.errors, s.bytes, s.admitted),
        (3, 1, 1015, 4),
        "{s:?}"
    );
    assert_eq!(s.status_codes.get(&404), Some(&1));
    assert_eq!(s.status_codes.get(&200), Some(&2));
    assert_eq!(s.furthest_step, 7);
    assert!(s.finished(), "{s:?}");
}

/// A batch of acknowledgements answers each lease as separate calls would, in order: a child
/// two pages of the batch share is admitted once, a lease already acknowledged (before or
/// earlier in the batch) is stale, a suspended job's lease is parked, and the counters add up.
pub(crate) async fn a_batch_of_acknowledgements_is_the_same_as_one_by_one<H: Harness>(h: &H) {
    let j = registered(h, "batch", &delay_policy(0)).await;
    let parked = registered(h, "batch-parked", &delay_policy(0)).await;
    let seeds = [
        req("http://b1.test/", 5),
        req("http://b2.test/", 4),
        req("http://b3.test/", 3),
    ];
    h.frontier().seed(&j, &seeds).await.expect("seeds");
    h.frontier()
        .seed(&parked, &[req("http://p.test/", 1)])
        .await
        .expect("seeds");
    let leases = h.frontier().lease(SPIDER, 4, LONG).await.expect("leases");
    let by_url = |url: &str| {
        leases
            .iter()
            .find(|l| l.request.url == url)
            .unwrap_or_else(|| panic!("{url} leased: {leases:?}"))
            .clone()
    };
    let (b1, b2, b3, p) = (
        by_url("http://b1.test/"),
        by_url("http://b2.test/"),
        by_url("http://b3.test/"),
        by_url("http://p.test/"),
    );
    ack(h, &b3, Outcome::status(200, 10)).await;
    assert!(h.frontier().suspend(&parked).await.expect("suspends"));
    let children = |lease: &Lease, urls: &[&str]| -> Vec<CrawlRequest> {
        urls.iter().map(|u| lease.request.child(*u)).collect()
    };
    let batch = vec![
        (
            b1.clone(),
            Outcome::status(200, 100)
                .with_items(1)
                .with_counter("sitemap_urls", 3)
                .with_children(children(
                    &b1,
                    &[
                        "http://x.test/shared",
                        "http://x.test/one",
                        "mailto:a@b.test",
                    ],
                )),
        ),
        (
            b2.clone(),
            Outcome::status(404, 20)
                .with_counter("sitemap_urls", 2)
                .with_counter("sitemaps_malformed", 1)
                .with_children(children(
                    &b2,
                    &["http://x.test/shared", "http://x.test/two"],
                )),
        ),
        (b3.clone(), Outcome::status(200, 10)),
        (
            p.clone(),
            Outcome::status(200, 30).with_counter("sitemap_urls", 10),
        ),
        // The same lease twice in one batch: held for the first acknowledgement only.
        (
            b1.clone(),
            Outcome::status(200, 100).with_counter("sitemap_urls", 100),
        ),
    ];
    let done = h.frontier().complete_many(&batch).await.expect("completes");
    let admissions: Vec<_> = done
        .iter()
        .map(|c| match c {
            Completion::Acked(a) => Some((a.admitted, a.duplicates, a.filtered)),
            _ => None,
        })
        .collect();
    assert_eq!(
        admissions,
        [Some((2, 0, 1)), Some((1, 1, 0)), None, None, None],
        "{done:?}"
    );
    assert_eq!(done[2], Completion::Stale, "{done:?}");
    assert_eq!(done[3], Completion::Parked, "{done:?}");
    assert_eq!(done[4], Completion::Stale, "{done:?}");
    let s = stats(h, &j).await;
    assert_eq!(
        (s.pages, s.items, s.bytes, s.queued, s.in_flight, s.admitted),
        (3, 1, 130, 3, 0, 6),
        "{s:?}"
    );
    assert_eq!(
        (s.status_codes.get(&200), s.status_codes.get(&404)),
        (Some(&2), Some(&1)),
        "{s:?}"
    );
    // Named counters add up over the acknowledged leases only (not the stale or parked ones).
    assert_eq!(
        s.counters,
        [
            ("sitemap_urls".to_owned(), 5),
            ("sitemaps_malformed".to_owned(), 1)
        ]
        .into(),
        "{s:?}"
    );
    let p_stats = stats(h, &parked).await;
    assert_eq!(
        (p_stats.queued, p_stats.in_flight, p_stats.pages),
        (1, 0, 0)
    );
    assert!(p_stats.counters.is_empty(), "{p_stats:?}");
    assert_eq!(
        h.frontier().complete_many(&[]).await.expect("completes"),
        Vec::<Completion>::new()
    );
}

pub(crate) async fn budgets_cap_admissions<H: Harness>(h: &H) {
    let policy = JobPolicy {
        max_pages: Some(5),
        domain_max_pages: Some(2),
        ..delay_policy(0)
    };
    let j = registered(h, "budget", &policy).await;
    let seeds: Vec<CrawlRequest> = (0..3)
        .flat_map(|i| [format!("http://a.test/{i}"), format!("http://b.test/{i}")])
        .map(|u| req(&u, 1))
        .collect();
    let a = h.frontier().seed(&j, &seeds).await.expect("seeds");
    assert_eq!((a.admitted, a.over_budget), (4, 2), "{a:?}");
    let leases = h.frontier().lease(SPIDER, 1, LONG).await.expect("leases");
    let children = (0..3)
        .map(|i| leases[0].request.child(format!("http://c.test/{i}")))
        .collect();
    let a = ack(
        h,
        &leases[0],
        Outcome::status(200, 1).with_children(children),
    )
    .await;
    assert_eq!((a.admitted, a.over_budget), (1, 2), "maxPages: {a:?}");
    assert_eq!(stats(h, &j).await.admitted, 5);
}

pub(crate) async fn expired_leases_come_back_once<H: Harness>(h: &H) {
    let j = registered(h, "noloss", &JobPolicy::unlimited()).await;
    let seeds: Vec<CrawlRequest> = (0..20)
        .map(|i| req(&format!("http://d{}.test/{i}", i % 4), 1))
        .collect();
    h.frontier().seed(&j, &seeds).await.expect("seeds");
    let lost = {
        let other = h.client().await;
        let leases = other
            .lease(SPIDER, 50, Duration::from_millis(500))
            .await
            .expect("leases");
        assert_eq!(leases.len(), 20);
        leases
        // `other` is dropped here without acknowledging anything.
    };
    assert!(
        lease_urls(h, 50).await.is_empty(),
        "leased requests were handed out again"
    );
    assert_eq!(stats(h, &j).await.in_flight, 20);
    h.advance(Duration::from_millis(800)).await;
    let again = h.frontier().lease(SPIDER, 50, LONG).await.expect("leases");
    let mut urls: Vec<&str> = again.iter().map(|l| l.request.url.as_str()).collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 20, "every expired lease came back, none twice");
    assert_eq!(again.len(), 20);
    assert!(lease_urls(h, 50).await.is_empty());
    let s = stats(h, &j).await;
    assert_eq!((s.queued, s.in_flight), (0, 20), "{s:?}");
    // The first holder's late acknowledgement changes nothing.
    let late = h
        .frontier()
        .complete(&lost[0], Outcome::status(200, 1))
        .await
        .expect("completes");
    assert_eq!(late, Completion::Stale);
    assert_eq!(stats(h, &j).await.pages, 0);
    // Reclaiming without leasing.
    let short = h
        .frontier()
        .lease(SPIDER, 0, Duration::from_millis(200))
        .await
        .expect("leases nothing");
    assert!(short.is_empty());
    h.frontier()
        .seed(&j, &[req("http://e.test/1", 1), req("http://e.test/2", 1)])
        .await
        .expect("seeds");
    let two = h
        .frontier()
        .lease(SPIDER, 5, Duration::from_millis(200))
        .await
        .expect("leases");
    assert_eq!(two.len(), 2);
    h.advance(Duration::from_millis(400)).await;
    let reclaimed = h
        .frontier()
        .reclaim_expired(SPIDER, 100)
        .await
        .expect("reclaims");
    assert_eq!(reclaimed, 2);
    assert_eq!(
        h.frontier()
            .reclaim_expired(SPIDER, 100)
            .await
            .expect("reclaims"),
        0
    );
    assert_eq!(stats(h, &j).await.queued, 2);
}

/// Regression: leases were never extended, so a page slower than the lease (robots.txt,
/// redirects, a slow publish) was fetched twice.
pub(crate) async fn extended_leases_outlive_their_first_deadline<H: Harness>(h: &H) {
    let j = registered(h, "extend", &JobPolicy::unlimited()).await;
    let seeds: Vec<CrawlRequest> = (0..4)
        .map(|i| req(&format!("http://x{i}.test/"), 1))
        .collect();
    h.frontier().seed(&j, &seeds).await.expect("seeds");
    let leases = h
        .frontier()
        .lease(SPIDER, 4, Duration::from_millis(400))
        .await
        .expect("leases");
    assert_eq!(leases.len(), 4);
    let (kept, dropped) = leases.split_at(2);
    for _ in 0..3 {
        h.advance(Duration::from_millis(250)).await;
        let held = h
            .frontier()
            .extend(kept, Duration::from_millis(400))
            .await
            .expect("extends");
        assert_eq!(held, 2, "an extended lease was lost");
    }
    // 750 ms after leasing: the two leases not extended came back, the extended ones did not.
    let again = h.frontier().lease(SPIDER, 10, LONG).await.expect("leases");
    let mut urls: Vec<&str> = again.iter().map(|l| l.request.url.as_str()).collect();
    urls.sort();
    let mut expected: Vec<&str> = dropped.iter().map(|l| l.request.url.as_str()).collect();
    expected.sort();
    assert_eq!(urls, expected);
    // Extending a reclaimed lease does not revive it.
    assert_eq!(
        h.frontier().extend(dropped, LONG).await.expect("extends"),
        0
    );
    for lease in kept {
        assert!(matches!(
            h.frontier()
                .complete(lease, Outcome::status(200, 1))
                .await
                .expect("completes"),
            Completion::Acked(_)
        ));
    }
}

pub(crate) async fn the_epoch_is_stable_while_the_state_lives<H: Harness>(h: &H) {
    let first = h.frontier().epoch(SPIDER).await.expect("epoch");
    // One part per shard, each 16 hex digits.
    for part in first.split('.') {
        assert_eq!(part.len(), 16, "{first}");
        assert!(part.chars().all(|c| c.is_ascii_hexdigit()), "{first}");
    }
    let other = h.client().await;
    assert_eq!(other.epoch(SPIDER).await.expect("epoch"), first);
    assert_eq!(h.frontier().epoch(SPIDER).await.expect("epoch"), first);
    assert!(h.frontier().epoch("bad{name}").await.is_err());
}

pub(crate) async fn retry_backs_off_then_gives_up<H: Harness>(h: &H) {
    let j = registered(h, "retry", &delay_policy(0)).await;
    h.frontier()
        .seed(&j, &[req("http://r.test/", 1)])
        .await
        .expect("seeds");
    let l = h.frontier().lease(SPIDER, 1, LONG).await.expect("leases");
    let r = h
        .frontier()
        .retry(&l[0], RetryRequest::default())
        .await
        .expect("retries");
    assert_eq!(
        r,
        RetryOutcome::Scheduled {
            attempt: 1,
            delay: Duration::from_millis(200)
        }
    );
    assert!(
        lease_urls(h, 1).await.is_empty(),
        "retried before its backoff"
    );
    assert_eq!(stats(h, &j).await.queued, 1);
    h.advance(Duration::from_millis(350)).await;
    let l = h.frontier().lease(SPIDER, 1, LONG).await.expect("leases");
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].request.retries, 1);
    let r = h
        .frontier()
        .retry(
            &l[0],
            RetryRequest {
                not_before: Some(Duration::from_millis(700)),
                status: Some(503),
            },
        )
        .await
        .expect("retries");
    assert_eq!(
        r,
        RetryOutcome::Scheduled {
            attempt: 2,
            delay: Duration::from_millis(700)
        },
        "Retry-After longer than the backoff wins"
    );
    h.advance(Duration::from_millis(450)).await;
    assert!(lease_urls(h, 1).await.is_empty());
    h.advance(Duration::from_millis(450)).await;
    let l = h.frontier().lease(SPIDER, 1, LONG).await.expect("leases");
    assert_eq!(l[0].request.retries, 2);
    let r = h
        .frontier()
        .retry(
            &l[0],
            RetryRequest {
                not_before: None,
                status: Some(503),
            },
        )
        .await
        .expect("retries");
    assert_eq!(r, RetryOutcome::GaveUp);
    let s = stats(h, &j).await;
    assert_eq!(
        (s.retries, s.errors, s.pages, s.queued, s.in_flight),
        (2, 1, 1, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.status_codes.get(&503), Some(&1));
    let again = h
        .frontier()
        .retry(&l[0], RetryRequest::default())
        .await
        .expect("retries");
    assert_eq!(again, RetryOutcome::Stale);
}

pub(crate) async fn release_puts_the_request_back_first<H: Harness>(h: &H) {
    let j = registered(h, "release", &delay_policy(0)).await;
    h.frontier()
        .seed(&j, &[req("http://x.test/a", 1), req("http://x.test/b", 1)])
        .await
        .expect("seeds");
    let l = h.frontier().lease(SPIDER, 1, LONG).await.expect("leases");
    assert_eq!(l[0].request.url, "http://x.test/a");
    assert!(h.frontier().release(&l[0]).await.expect("releases"));
    assert!(
        !h.frontier().release(&l[0]).await.expect("releases"),
        "released twice"
    );
    let s = stats(h, &j).await;
    assert_eq!((s.queued, s.in_flight, s.pages), (2, 0, 0));
    assert_eq!(lease_urls(h, 1).await, vec!["http://x.test/a"]);
}

pub(crate) async fn suspend_parks_and_resume_restores<H: Harness>(h: &H) {
    let j = registered(h, "suspend", &delay_policy(0)).await;
    let other = registered(h, "other", &delay_policy(0)).await;
    let seeds: Vec<CrawlRequest> = (0..4)
        .map(|i| req(&format!("http://s{i}.test/"), 1))
        .collect();
    h.frontier().seed(&j, &seeds).await.expect("seeds");
    h.frontier()
        .seed(&other, &[req("http://o.test/", 1)])
        .await
        .expect("seeds");
    let held = h.frontier().lease(SPIDER, 1, LONG).await.expect("leases");
    assert_eq!(held[0].job, j);
    assert!(h.frontier().suspend(&j).await.expect("suspends"));
    assert!(stats(h, &j).await.suspended);
    assert_eq!(
        lease_urls(h, 10).await,
        vec!["http://o.test/"],
        "a suspended job was leased"
    );
    let refused = h
        .frontier()
        .seed(&j, &[req("http://new.test/", 1)])
        .await
        .expect("seeds");
    assert_eq!((refused.admitted, refused.refused), (0, 1));
    let parked = h
        .frontier()
        .complete(&held[0], Outcome::status(200, 1))
        .await
        .expect("completes");
    assert_eq!(parked, Completion::Parked);
    let s = stats(h, &j).await;
    assert_eq!((s.queued, s.in_flight, s.pages), (4, 0, 0), "{s:?}");
    assert!(h.frontier().resume(&j).await.expect("resumes"));
    let mut urls = lease_urls(h, 10).await;
    urls.sort();
    assert_eq!(urls.len(), 4, "{urls:?}");
    assert!(
        urls.contains(&held[0].request.url),
        "the parked request came back"
    );
    assert!(
        !h.frontier()
            .suspend(&job("nobody"))
            .await
            .expect("suspends")
    );
}

pub(crate) async fn purge_forgets_one_job_only<H: Harness>(h: &H) {
    let gone = registered(h, "gone", &delay_policy(0)).await;
    let kept = registered(h, "kept", &delay_policy(0)).await;
    let urls = ["http://p.test/1", "http://p.test/2", "http://q.test/1"];
    for j in [&gone, &kept] {
        let seeds: Vec<CrawlRequest> = urls.iter().map(|u| req(u, 1)).collect();
        h.frontier().seed(j, &seeds).await.expect("seeds");
    }
    let held = h.frontier().lease(SPIDER, 1, LONG).await.expect("leases");
    assert_eq!(held[0].job, gone);
    assert!(h.frontier().purge(&gone).await.expect("purges"));
    assert!(
        h.frontier()
            .job_stats(&gone)
            .await
            .expect("reads")
            .is_none()
    );
    assert!(
        !h.frontier().purge(&gone).await.expect("purges"),
        "purged twice"
    );
    let rest = h.frontier().lease(SPIDER, 10, LONG).await.expect("leases");
    assert_eq!(rest.len(), 3);
    assert!(
        rest.iter().all(|l| l.job == kept),
        "a purged job's request was leased"
    );
    let late = h
        .frontier()
        .complete(&held[0], Outcome::status(200, 1))
        .await;
    assert_eq!(late.expect("completes"), Completion::JobGone);
    let seeded = h.frontier().seed(&gone, &[req(urls[0], 1)]).await;
    assert!(
        matches!(seeded, Err(Error::UnknownJob { .. })),
        "{seeded:?}"
    );
    // Registered again, the job starts afresh: its old dedupe is gone too.
    h.frontier()
        .register(&gone, &delay_policy(0))
        .await
        .expect("registers");
    let a = h
        .frontier()
        .seed(&gone, &[req(urls[0], 1)])
        .await
        .expect("seeds");
    assert_eq!(a.admitted, 1);
    let s = stats(h, &kept).await;
    assert_eq!((s.queued, s.in_flight, s.admitted), (0, 3, 3));
}

pub(crate) async fn purge_of_a_large_job_leaves_another_untouched<H: Harness>(h: &H) {
    const BIG: usize = 100_000;
    let big = registered(h, "big", &delay_policy(0)).await;
    let small = registered(h, "small", &delay_policy(0)).await;
    let chunk: Vec<CrawlRequest> = (0..BIG)
        .map(|i| {
            req(
                &format!("http://host{}.test/page/{i}", i % 500),
                1 + (i % 3) as i32,
            )
        })
        .collect();
    for part in chunk.chunks(5000) {
        let a = h.frontier().seed(&big, part).await.expect("seeds");
        assert_eq!(a.admitted, part.len() as u64);
    }
    let small_seeds: Vec<CrawlRequest> = (0..100)
        .map(|i| req(&format!("http://host{}.test/small/{i}", i % 50), 2))
        .collect();
    h.frontier()
        .seed(&small, &small_seeds)
        .await
        .expect("seeds");
    assert_eq!(stats(h, &big).await.queued, BIG as u64);
    let before = stats(h, &small).await;
    let started = std::time::Instant::now();
    assert!(h.frontier().purge(&big).await.expect("purges"));
    eprintln!("purged {BIG} queued requests in {:?}", started.elapsed());
    assert!(h.frontier().job_stats(&big).await.expect("reads").is_none());
    assert_eq!(stats(h, &small).await, before);
    let leased = h
        .frontier()
        .lease(SPIDER, 1000, LONG)
        .await
        .expect("leases");
    assert_eq!(leased.len(), 100);
    assert!(leased.iter().all(|l| l.job == small));
}

pub(crate) async fn expired_job_accepts_nothing<H: Harness>(h: &H) {
    let policy = JobPolicy {
        expires: Some(SystemTime::now() + Duration::from_millis(500)),
        ..delay_policy(0)
    };
    let j = registered(h, "expiring", &policy).await;
    h.frontier()
        .seed(&j, &[req("http://e.test/1", 1), req("http://e.test/2", 1)])
        .await
        .expect("seeds");
    let held = h.frontier().lease(SPIDER, 1, LONG).await.expect("leases");
    assert_eq!(held.len(), 1);
    h.advance(Duration::from_millis(800)).await;
    let child = held[0].request.child("http://e.test/child");
    let a = ack(
        h,
        &held[0],
        Outcome::status(200, 1).with_children(vec![child]),
    )
    .await;
    assert_eq!((a.admitted, a.refused), (0, 1));
    assert!(
        lease_urls(h, 10).await.is_empty(),
        "an expired job was leased"
    );
    let seeded = h
        .frontier()
        .seed(&j, &[req("http://e.test/3", 1)])
        .await
        .expect("seeds");
    assert_eq!(seeded.refused, 1);
    assert_eq!(stats(h, &j).await.pages, 1);
    // Extending the job brings its queue back.
    h.frontier()
        .register(&j, &delay_policy(0))
        .await
        .expect("registers");
    assert_eq!(lease_urls(h, 10).await, vec!["http://e.test/2"]);
}

pub(crate) async fn spider_stats_and_heartbeats<H: Harness>(h: &H) {
    let j = registered(h, "stats", &delay_policy(0)).await;
    let seeds: Vec<CrawlRequest> = (0..4)
        .map(|i| req(&format!("http://st.test/{i}"), 1))
        .collect();
    h.frontier().seed(&j, &seeds).await.expect("seeds");
    let leases = h.frontier().lease(SPIDER, 4, LONG).await.expect("leases");
    let outcomes = [
        Outcome::status(200, 1),
        Outcome::status(200, 1),
        Outcome::status(404, 1),
        Outcome::failed(),
    ];
    for (l, o) in leases.iter().zip(outcomes) {
        ack(h, l, o).await;
    }
    let s = h.frontier().spider_stats(SPIDER).await.expect("reads");
    for w in Window::ALL {
        assert_eq!(s.count(w, "200"), 2, "{w:?}: {s:?}");
        assert_eq!(s.count(w, "404"), 1, "{w:?}");
        assert_eq!(s.count(w, "error"), 1, "{w:?}");
    }
    let ttl = Duration::from_millis(600);
    for (spider, worker) in [(SPIDER, "pod-a"), (SPIDER, "pod-b"), ("wandering", "pod-c")] {
        h.frontier()
            .heartbeat(spider, worker, ttl)
            .await
            .expect("beats");
    }
    h.frontier()
        .heartbeat(SPIDER, "pod-a", ttl)
        .await
        .expect("beats");
    let w = h.frontier().workers().await.expect("counts");
    assert_eq!((w.total, w.unique), (3, 2), "{w:?}");
    assert_eq!(w.per_spider.get(SPIDER), Some(&2));
    let dump = h.frontier().stats_dump(&[]).await.expect("dumps");
    assert_eq!(dump.get("total_spider_count"), Some(&3));
    assert_eq!(dump.get("link_spider_count"), Some(&2));
    assert_eq!(dump.get("link_200_900"), Some(&2));
    assert_eq!(dump.get("link_404_lifetime"), Some(&1));
    h.advance(Duration::from_millis(400)).await;
    h.frontier()
        .heartbeat(SPIDER, "pod-b", ttl)
        .await
        .expect("beats");
    h.advance(Duration::from_millis(400)).await;
    let w = h.frontier().workers().await.expect("counts");
    assert_eq!(
        (w.total, w.unique),
        (1, 1),
        "dead pods still counted: {w:?}"
    );
    assert_eq!(w.per_spider.get(SPIDER), Some(&1));
}

pub(crate) async fn bad_input_is_refused<H: Harness>(h: &H) {
    let bad = JobPolicy {
        allow_regex: vec!["([".into()],
        ..JobPolicy::unlimited()
    };
    let r = h.frontier().register(&job("bad"), &bad).await;
    assert!(matches!(r, Err(Error::Policy { .. })), "{r:?}");
    assert!(
        h.frontier()
            .job_stats(&job("bad"))
            .await
            .expect("reads")
            .is_none()
    );
    let r = h.frontier().lease("evil}{", 1, LONG).await;
    assert!(matches!(r, Err(Error::InvalidName { .. })), "{r:?}");
}

pub(crate) async fn policy_reads_back_what_was_registered<H: Harness>(h: &H) {
    assert_eq!(
        h.frontier().policy(&job("never")).await.expect("reads"),
        None
    );
    let policy = JobPolicy {
        maxdepth: 3,
        allowed_domains: vec!["site.test".to_owned()],
        deny_regex: vec!["/private/".to_owned()],
        useragent: Some("kubecrawl-test/1".to_owned()),
        cookie: Some("session=abc".to_owned()),
        attrs: Some(serde_json::json!({"team": "crawl", "n": [1, 2]})),
        follow_nofollow: true,
        ..delay_policy(250)
    };
    let j = registered(h, "policy", &policy).await;
    let back = h
        .frontier()
        .policy(&j)
        .await
        .expect("reads")
        .expect("registered");
    assert_eq!(back, policy);
    let updated = JobPolicy {
        useragent: None,
        ..policy
    };
    h.frontier()
        .register(&j, &updated)
        .await
        .expect("re-registers");
    assert_eq!(h.frontier().policy(&j).await.expect("reads"), Some(updated));
    h.frontier().purge(&j).await.expect("purges");
    assert_eq!(
        h.frontier().policy(&j).await.expect("reads"),
        None,
        "a purged job has no policy"
    );
}
