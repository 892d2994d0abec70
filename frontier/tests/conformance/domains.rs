//! Conformance of domain rules (throttles, blacklist) and the spider backlog, generic over the
//! implementation.

use std::collections::BTreeMap;
use std::time::Duration;

use kubecrawl_frontier::{
    Completion, CrawlRequest, DomainQueue, DomainRules, Frontier, JobBacklog, JobRef, Outcome,
    RetryOutcome, RetryRequest, SpiderBacklog,
};

use crate::harness::Harness;
use crate::suite::{LONG, SPIDER, delay_policy, registered};

const OTHER_SPIDER: &str = "wandering";

async fn seed<H: Harness>(h: &H, j: &JobRef, urls: &[&str], priority: i32) {
    let seeds: Vec<CrawlRequest> = urls
        .iter()
        .map(|u| CrawlRequest::seed(format!("http://{u}"), priority))
        .collect();
    h.frontier().seed(j, &seeds).await.expect("seeds");
}

async fn lease_urls<H: Harness>(h: &H, max: usize) -> Vec<String> {
    let mut urls: Vec<String> = h
        .frontier()
        .lease(SPIDER, max, LONG)
        .await
        .expect("leases")
        .into_iter()
        .map(|l| l.request.url)
        .collect();
    urls.sort();
    urls
}

fn urls(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|u| format!("http://{u}")).collect();
    v.sort();
    v
}

async fn stats<H: Harness>(h: &H, j: &JobRef) -> kubecrawl_frontier::JobStats {
    h.frontier()
        .job_stats(j)
        .await
        .expect("reads stats")
        .expect("job is registered")
}

fn throttle(domain: &str, interval: Duration) -> DomainRules {
    DomainRules {
        throttles: BTreeMap::from([(domain.to_owned(), interval)]),
        ..DomainRules::default()
    }
}

pub(crate) async fn a_throttle_spaces_a_domain_and_its_subdomains<H: Harness>(h: &H) {
    let j = registered(h, "throttled", &delay_policy(0)).await;
    seed(
        h,
        &j,
        &[
            "a.test/1",
            "a.test/2",
            "www.a.test/1",
            "www.a.test/2",
            "b.test/1",
            "b.test/2",
        ],
        1,
    )
    .await;
    h.frontier()
        .set_domain_rules(SPIDER, &throttle("A.test", Duration::from_millis(500)))
        .await
        .expect("sets rules");
    assert_eq!(
        h.frontier().domain_rules(SPIDER).await.expect("reads"),
        throttle("a.test", Duration::from_millis(500)),
        "rules read back normalized"
    );
    assert_eq!(
        h.frontier()
            .domain_rules(OTHER_SPIDER)
            .await
            .expect("reads"),
        DomainRules::default(),
        "rules are per spider"
    );
    let first = h.frontier().lease(SPIDER, 10, LONG).await.expect("leases");
    let mut got: Vec<String> = first.iter().map(|l| l.request.url.clone()).collect();
    got.sort();
    assert_eq!(
        got,
        urls(&["a.test/1", "www.a.test/1", "b.test/1", "b.test/2"]),
        "the unthrottled domain is drained, each throttled host gives one"
    );
    assert!(
        lease_urls(h, 10).await.is_empty(),
        "a throttled host was dispatched twice at once"
    );
    h.advance(Duration::from_millis(600)).await;
    let second = h.frontier().lease(SPIDER, 10, LONG).await.expect("leases");
    let mut got: Vec<String> = second.iter().map(|l| l.request.url.clone()).collect();
    got.sort();
    assert_eq!(got, urls(&["a.test/2", "www.a.test/2"]));
    let at = |leases: &[kubecrawl_frontier::Lease], url: &str| {
        leases
            .iter()
            .find(|l| l.request.url == format!("http://{url}"))
            .map(|l| l.leased_at)
            .expect("leased")
    };
    let gap = at(&second, "a.test/2")
        .duration_since(at(&first, "a.test/1"))
        .expect("ordered");
    assert!(gap >= Duration::from_millis(500), "only {gap:?} apart");

    // Cleared: the host's next charge is the job's own interval (none).
    h.frontier()
        .set_domain_rules(SPIDER, &DomainRules::default())
        .await
        .expect("clears rules");
    assert!(
        h.frontier()
            .domain_rules(SPIDER)
            .await
            .expect("reads")
            .is_empty()
    );
    seed(h, &j, &["a.test/3", "a.test/4"], 1).await;
    h.advance(Duration::from_millis(600)).await;
    assert_eq!(
        lease_urls(h, 10).await,
        urls(&["a.test/3", "a.test/4"]),
        "a cleared throttle still spaced dispatches"
    );
}

pub(crate) async fn a_throttle_below_the_jobs_interval_changes_nothing<H: Harness>(h: &H) {
    let j = registered(h, "floor", &delay_policy(700)).await;
    seed(h, &j, &["f.test/1", "f.test/2"], 1).await;
    h.frontier()
        .set_domain_rules(SPIDER, &throttle("f.test", Duration::from_millis(100)))
        .await
        .expect("sets rules");
    assert_eq!(lease_urls(h, 10).await, urls(&["f.test/1"]));
    h.advance(Duration::from_millis(300)).await;
    assert!(
        lease_urls(h, 10).await.is_empty(),
        "a throttle sped a domain up"
    );
    h.advance(Duration::from_millis(500)).await;
    assert_eq!(lease_urls(h, 10).await, urls(&["f.test/2"]));
}

pub(crate) async fn the_blacklist_refuses_and_drops_and_counts<H: Harness>(h: &H) {
    let j = registered(h, "black", &delay_policy(0)).await;
    seed(h, &j, &["bad.test/1", "x.bad.test/1", "good.test/1"], 1).await;
    let rules = DomainRules {
        blacklist: ["bad.test".to_owned()].into(),
        ..DomainRules::default()
    };
    h.frontier()
        .set_domain_rules(SPIDER, &rules)
        .await
        .expect("sets rules");
    let refused = h
        .frontier()
        .seed(&j, &[CrawlRequest::seed("http://bad.test/2", 1)])
        .await
        .expect("seeds");
    assert_eq!(
        (refused.admitted, refused.blacklisted),
        (0, 1),
        "{refused:?}"
    );
    let s = stats(h, &j).await;
    assert_eq!((s.queued, s.blacklisted), (3, 1), "{s:?}");

    let leased = h.frontier().lease(SPIDER, 10, LONG).await.expect("leases");
    let got: Vec<&str> = leased.iter().map(|l| l.request.url.as_str()).collect();
    assert_eq!(
        got,
        ["http://good.test/1"],
        "a blacklisted request was leased"
    );
    let s = stats(h, &j).await;
    assert_eq!(
        (s.queued, s.in_flight, s.blacklisted),
        (0, 1, 3),
        "queued blacklisted requests must be dropped and counted: {s:?}"
    );

    let children = [
        "http://bad.test/3",
        "http://good.test/2",
        "http://sub.bad.test/x",
    ]
    .iter()
    .map(|u| leased[0].request.child(*u))
    .collect();
    let done = h
        .frontier()
        .complete(&leased[0], Outcome::status(200, 10).with_children(children))
        .await
        .expect("completes");
    let Completion::Acked(a) = done else {
        panic!("expected an ack, got {done:?}")
    };
    assert_eq!((a.admitted, a.blacklisted), (1, 2), "{a:?}");
    let s = stats(h, &j).await;
    assert_eq!((s.queued, s.blacklisted, s.pages), (1, 5, 1), "{s:?}");

    // Off the blacklist: a refused URL is admitted, a dropped one stays seen.
    h.frontier()
        .set_domain_rules(SPIDER, &DomainRules::default())
        .await
        .expect("clears rules");
    let again = h
        .frontier()
        .seed(
            &j,
            &[
                CrawlRequest::seed("http://bad.test/2", 1),
                CrawlRequest::seed("http://bad.test/1", 1),
            ],
        )
        .await
        .expect("seeds");
    assert_eq!(
        (again.admitted, again.duplicates, again.blacklisted),
        (1, 1, 0),
        "{again:?}"
    );
}

pub(crate) async fn the_backlog_counts_queues_per_domain<H: Harness>(h: &H) {
    assert_eq!(
        h.frontier().backlog(SPIDER).await.expect("reads"),
        SpiderBacklog::default()
    );
    let one = registered(h, "one", &delay_policy(1000)).await;
    let two = registered(h, "two", &delay_policy(1000)).await;
    seed(
        h,
        &one,
        &["a.test/1", "a.test/2", "a.test/3", "b.test/1"],
        1,
    )
    .await;
    seed(h, &two, &["a.test/9", "c.test/1"], 5).await;
    let b = h.frontier().backlog(SPIDER).await.expect("reads");
    let expect = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(d, n)| ((*d).to_owned(), *n)).collect()
    };
    assert_eq!(
        b.domains,
        expect(&[("a.test", 4), ("b.test", 1), ("c.test", 1)])
    );
    assert_eq!((b.queued(), b.retrying, b.in_flight), (6, 0, 0));
    let names = |v: &[&str]| -> std::collections::BTreeSet<String> {
        v.iter().map(|d| (*d).to_owned()).collect()
    };
    assert_eq!(
        b.ready,
        names(&["a.test", "b.test", "c.test"]),
        "all may be fetched"
    );

    // One lease per domain (the interval is a second): c, a, b's heads.
    let leased = h.frontier().lease(SPIDER, 10, LONG).await.expect("leases");
    assert_eq!(leased.len(), 3, "{leased:?}");
    let b = h.frontier().backlog(SPIDER).await.expect("reads");
    assert_eq!(
        b.domains,
        expect(&[("a.test", 3)]),
        "domains waiting for their clock count too"
    );
    assert_eq!((b.queued(), b.in_flight), (3, 3));
    assert!(b.ready.is_empty(), "a.test waits for its clock: {b:?}");
    h.advance(Duration::from_millis(1100)).await;
    let b = h.frontier().backlog(SPIDER).await.expect("reads");
    assert_eq!(b.ready, names(&["a.test"]), "a.test's clock has passed");

    let retried = h
        .frontier()
        .retry(&leased[0], RetryRequest::default())
        .await
        .expect("retries");
    assert!(
        matches!(retried, RetryOutcome::Scheduled { .. }),
        "{retried:?}"
    );
    let b = h.frontier().backlog(SPIDER).await.expect("reads");
    assert_eq!((b.retrying, b.in_flight), (1, 2), "{b:?}");

    // A suspended job's queues cannot be leased: not in the spider's backlog (job one holds
    // every queued request; job two's one left waits in the retry set).
    assert_eq!(leased[0].job, two, "the best head was job two's a.test/9");
    assert_eq!(stats(h, &one).await.queued, 3);
    h.frontier().suspend(&one).await.expect("suspends");
    let b = h.frontier().backlog(SPIDER).await.expect("reads");
    assert_eq!((b.queued(), b.retrying), (0, 1), "{b:?}");
    h.frontier().resume(&one).await.expect("resumes");
    let b = h.frontier().backlog(SPIDER).await.expect("reads");
    assert_eq!(b.domains, expect(&[("a.test", 3)]), "{b:?}");
    assert_eq!(
        h.frontier().backlog(OTHER_SPIDER).await.expect("reads"),
        SpiderBacklog::default(),
        "the backlog is per spider"
    );
}

pub(crate) async fn the_backlog_reads_every_domain_of_a_large_spider<H: Harness>(h: &H) {
    let j = registered(h, "wide", &delay_policy(60_000)).await;
    // More domains than one backlog page holds, some waiting for their clock.
    let domains = 2 * kubecrawl_frontier::backlog::PAGE + 17;
    let seeds: Vec<CrawlRequest> = (0..domains)
        .flat_map(|i| {
            [
                CrawlRequest::seed(format!("http://d{i}.test/1"), 1),
                CrawlRequest::seed(format!("http://d{i}.test/2"), 1),
            ]
        })
        .collect();
    h.frontier().seed(&j, &seeds).await.expect("seeds");
    let leased = h.frontier().lease(SPIDER, 300, LONG).await.expect("leases");
    assert_eq!(leased.len(), 300);
    let b = h.frontier().backlog(SPIDER).await.expect("reads");
    assert_eq!(b.domains.len(), domains, "a page of domains was skipped");
    assert_eq!(b.queued(), 2 * domains as u64 - 300);
    assert_eq!(b.in_flight, 300);
    assert_eq!(b.queued(), stats(h, &j).await.queued);
}

pub(crate) async fn a_jobs_backlog_counts_its_own_queues_per_domain_and_priority<H: Harness>(
    h: &H,
) {
    let one = registered(h, "one", &delay_policy(1000)).await;
    let two = registered(h, "two", &delay_policy(1000)).await;
    assert_eq!(
        h.frontier().job_backlog(&one).await.expect("reads"),
        JobBacklog::default()
    );
    seed(h, &one, &["a.test/1", "a.test/2", "b.test/1"], 3).await;
    seed(h, &one, &["a.test/3"], 7).await;
    seed(h, &two, &["a.test/9", "c.test/1"], 5).await;
    let b = h.frontier().job_backlog(&one).await.expect("reads");
    let queue = |total, high_priority, low_priority| DomainQueue {
        total,
        high_priority,
        low_priority,
    };
    assert_eq!(
        b.domains,
        BTreeMap::from([
            ("a.test".to_owned(), queue(3, 7, 3)),
            ("b.test".to_owned(), queue(1, 3, 3)),
        ]),
        "job two's queues are not job one's"
    );
    assert_eq!(b.queued(), stats(h, &one).await.queued);

    // A leased request is no longer queued.
    let leased = h.frontier().lease(SPIDER, 10, LONG).await.expect("leases");
    let of_one = leased.iter().filter(|l| l.job == one).count() as u64;
    let b = h.frontier().job_backlog(&one).await.expect("reads");
    assert_eq!(b.queued(), 4 - of_one, "{b:?}");

    // A suspended job's queues still count; a purged job has none.
    h.frontier().suspend(&one).await.expect("suspends");
    assert_eq!(
        h.frontier()
            .job_backlog(&one)
            .await
            .expect("reads")
            .queued(),
        4 - of_one
    );
    h.frontier().purge(&one).await.expect("purges");
    assert_eq!(
        h.frontier().job_backlog(&one).await.expect("reads"),
        JobBacklog::default()
    );
}

pub(crate) async fn a_jobs_backlog_reads_every_queue_of_a_large_job<H: Harness>(h: &H) {
    let j = registered(h, "wide", &delay_policy(60_000)).await;
    let domains = 2 * kubecrawl_frontier::backlog::PAGE + 17;
    let seeds: Vec<CrawlRequest> = (0..domains)
        .map(|i| CrawlRequest::seed(format!("http://d{i}.test/1"), 1))
        .collect();
    h.frontier().seed(&j, &seeds).await.expect("seeds");
    let b = h.frontier().job_backlog(&j).await.expect("reads");
    assert_eq!(b.domains.len(), domains, "a page of queues was skipped");
    assert_eq!(b.queued(), stats(h, &j).await.queued);
}

pub(crate) async fn a_cut_off_domain_is_dropped_and_refused_for_its_job_only<H: Harness>(h: &H) {
    let one = registered(h, "one", &delay_policy(0)).await;
    let two = registered(h, "two", &delay_policy(0)).await;
    seed(h, &one, &["trap.test/1", "trap.test/2", "ok.test/1"], 1).await;
    seed(h, &two, &["trap.test/3"], 1).await;
    let f = h.frontier();
    assert!(f.cut_off(&one, "Trap.test", "errors").await.expect("cuts"));
    assert!(
        f.cut_off(&one, "trap.test", "duplicates")
            .await
            .expect("again"),
        "cutting again is fine"
    );
    assert!(
        !f.cut_off(&crate::suite::job("nope"), "trap.test", "errors")
            .await
            .expect("unknown job"),
        "an unknown job is reported"
    );
    // Job one's queued trap.test requests are dropped when they come up; job two's are not.
    assert_eq!(lease_urls(h, 10).await, urls(&["ok.test/1", "trap.test/3"]));
    let s = stats(h, &one).await;
    assert_eq!(
        s.traps,
        BTreeMap::from([("trap.test".to_owned(), "errors".to_owned())]),
        "the first reason stays"
    );
    assert_eq!((s.queued, s.in_flight, s.blacklisted), (0, 1, 2), "{s:?}");
    assert!(stats(h, &two).await.traps.is_empty());

    // Its links to the domain are refused, counted as blacklisted.
    seed(h, &one, &["ok.test/2"], 1).await;
    let leases = f.lease(SPIDER, 1, LONG).await.expect("leases");
    assert_eq!(leases.len(), 1);
    let children = ["http://trap.test/9", "http://ok.test/3"]
        .iter()
        .map(|u| leases[0].request.child(*u))
        .collect();
    let done = f
        .complete(&leases[0], Outcome::status(200, 1).with_children(children))
        .await
        .expect("completes");
    let Completion::Acked(a) = done else {
        panic!("{done:?}")
    };
    assert_eq!((a.admitted, a.blacklisted), (1, 1), "{a:?}");
    assert_eq!(stats(h, &one).await.blacklisted, 3);
}
