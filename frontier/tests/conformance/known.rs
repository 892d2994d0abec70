//! Conformance of known pages (what a job's recrawl rounds acknowledged, kept across rounds),
//! generic over the implementation.

use std::collections::{BTreeMap, BTreeSet};

use kubecrawl_frontier::{
    Completion, CrawlRequest, Frontier, JobPolicy, JobRef, Known, Lease, Outcome,
};

use crate::harness::Harness;
use crate::suite::{LONG, SPIDER, registered};

/// Calls a walk of known pages may take before it counts as endless.
const MAX_CALLS: usize = 1000;

/// A request as a worker remembers it: with validators in its meta (a record of a realistic
/// size, which Redis keeps in a hash table rather than a listpack, so HSCAN takes its COUNT).
fn validated(url: &str, etag: &str) -> CrawlRequest {
    let mut request = CrawlRequest::seed(url, 1);
    for (name, value) in [
        ("etag", etag),
        ("last_modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
        (
            "digest",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ),
    ] {
        request
            .meta
            .insert(name.to_owned(), serde_json::Value::from(value));
    }
    request
}

fn etag(request: &CrawlRequest) -> &str {
    request
        .meta
        .get("etag")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("a known page lost its meta: {request:?}"))
}

/// Every known page of a job, walked `count` at a time, and how many calls that took.
async fn walk<H: Harness>(h: &H, j: &JobRef, count: usize) -> (Vec<CrawlRequest>, usize) {
    let mut cursor = None;
    let mut pages = Vec::new();
    for calls in 1..=MAX_CALLS {
        let (page, next) = h
            .frontier()
            .known_pages(j, cursor, count)
            .await
            .expect("reads known pages");
        pages.extend(page);
        if next.is_none() {
            return (pages, calls);
        }
        cursor = next;
    }
    panic!("a walk of {} known pages does not end", pages.len());
}

/// A job's known pages as (URL, etag), sorted: a URL in both sets appears twice.
async fn known<H: Harness>(h: &H, j: &JobRef) -> Vec<(String, String)> {
    let (pages, _) = walk(h, j, 100).await;
    let mut out: Vec<(String, String)> = pages
        .iter()
        .map(|r| (r.url.clone(), etag(r).to_owned()))
        .collect();
    out.sort();
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|(u, e)| ((*u).to_owned(), (*e).to_owned()))
        .collect();
    out.sort();
    out
}

async fn seed_urls<H: Harness>(h: &H, j: &JobRef, urls: &[&str]) {
    let seeds: Vec<CrawlRequest> = urls.iter().map(|u| CrawlRequest::seed(*u, 1)).collect();
    let a = h.frontier().seed(j, &seeds).await.expect("seeds");
    assert_eq!(a.admitted, urls.len() as u64, "{a:?}");
}

/// Leases exactly `n` requests (all of the spider's queued ones).
async fn lease_all<H: Harness>(h: &H, n: usize) -> BTreeMap<String, Lease> {
    let leases = h
        .frontier()
        .lease(SPIDER, n + 1, LONG)
        .await
        .expect("leases");
    assert_eq!(leases.len(), n, "{leases:?}");
    leases
        .into_iter()
        .map(|l| (l.request.url.clone(), l))
        .collect()
}

async fn complete<H: Harness>(h: &H, lease: &Lease, outcome: Outcome) -> Completion {
    h.frontier()
        .complete(lease, outcome)
        .await
        .expect("completes")
}

/// Only an applied acknowledgement remembers its request (not a stale, parked or purged
/// job's one), under its URL, and a later one replaces an earlier one.
pub(crate) async fn an_applied_acknowledgement_remembers_its_request<H: Harness>(h: &H) {
    let j = registered(h, "known", &JobPolicy::unlimited()).await;
    let gone = registered(h, "known-gone", &JobPolicy::unlimited()).await;
    let (kept, stale, parked) = (
        "http://a.test/kept",
        "http://b.test/stale",
        "http://c.test/p",
    );
    seed_urls(h, &j, &[kept, stale, parked]).await;
    seed_urls(h, &gone, &["http://d.test/gone"]).await;
    let leases = lease_all(h, 4).await;

    let acked = complete(
        h,
        &leases[kept],
        Outcome::status(200, 10).remembering(validated(kept, "v1")),
    )
    .await;
    assert!(matches!(acked, Completion::Acked(_)), "{acked:?}");
    // Acknowledged once without remembering, then late with: the late one changes nothing.
    complete(h, &leases[stale], Outcome::status(200, 10)).await;
    let late = complete(
        h,
        &leases[stale],
        Outcome::status(200, 10).remembering(validated(stale, "late")),
    )
    .await;
    assert_eq!(late, Completion::Stale);
    assert!(h.frontier().suspend(&j).await.expect("suspends"));
    let held = complete(
        h,
        &leases[parked],
        Outcome::status(200, 10).remembering(validated(parked, "parked")),
    )
    .await;
    assert_eq!(held, Completion::Parked);
    assert!(h.frontier().resume(&j).await.expect("resumes"));
    assert!(h.frontier().purge(&gone).await.expect("purges"));
    let dropped = complete(
        h,
        &leases["http://d.test/gone"],
        Outcome::status(200, 10).remembering(validated("http://d.test/gone", "gone")),
    )
    .await;
    assert_eq!(dropped, Completion::JobGone);
    assert_eq!(known(h, &j).await, pairs(&[(kept, "v1")]));
    assert!(known(h, &gone).await.is_empty(), "a purged job remembered");

    // The parked page comes back and is remembered when acknowledged.
    let again = lease_all(h, 1).await;
    complete(
        h,
        &again[parked],
        Outcome::status(200, 10).remembering(validated(parked, "v1")),
    )
    .await;
    // A later acknowledgement of a known URL replaces its record (the job purged and seeded
    // afresh, as a recrawl round does without rotating).
    assert!(h.frontier().purge(&j).await.expect("purges"));
    h.frontier()
        .register(&j, &JobPolicy::unlimited())
        .await
        .expect("registers");
    seed_urls(h, &j, &[kept]).await;
    let again = lease_all(h, 1).await;
    complete(
        h,
        &again[kept],
        Outcome::status(304, 0).remembering(validated(kept, "v2")),
    )
    .await;
    assert_eq!(known(h, &j).await, pairs(&[(kept, "v2"), (parked, "v1")]));
}

/// Acknowledges every queued request of the spider (`n` of them), each remembering itself
/// with `etag`.
async fn acknowledge_all<H: Harness>(h: &H, n: usize, etag: &str) {
    let batch: Vec<(Lease, Outcome)> = lease_all(h, n)
        .await
        .into_values()
        .map(|l| {
            let remember = validated(&l.request.url, etag);
            (l, Outcome::status(200, 10).remembering(remember))
        })
        .collect();
    let done = h.frontier().complete_many(&batch).await.expect("completes");
    assert!(
        done.iter().all(|c| matches!(c, Completion::Acked(_))),
        "{done:?}"
    );
}

/// Known pages outlive a purge; a rotation makes the current set the previous one once, and
/// the sets are dropped one or both.
pub(crate) async fn known_pages_outlive_a_purge_and_rotate_per_round<H: Harness>(h: &H) {
    let j = registered(h, "rounds", &JobPolicy::unlimited()).await;
    let first = ["http://r1.test/", "http://r2.test/", "http://r3.test/"];
    seed_urls(h, &j, &first).await;
    acknowledge_all(h, 3, "round1").await;
    let round1 = pairs(&first.map(|u| (u, "round1")));
    assert_eq!(known(h, &j).await, round1);

    // The next round: rotate, purge, register, seed the known pages.
    assert!(h.frontier().rotate_known(&j).await.expect("rotates"));
    assert!(h.frontier().purge(&j).await.expect("purges"));
    assert!(h.frontier().job_stats(&j).await.expect("reads").is_none());
    assert_eq!(known(h, &j).await, round1, "purge dropped known pages");
    assert!(
        !h.frontier().rotate_known(&j).await.expect("rotates"),
        "rotated with a previous set still there"
    );
    assert_eq!(known(h, &j).await, round1);
    h.frontier()
        .register(&j, &JobPolicy::unlimited())
        .await
        .expect("registers");
    let (pages, _) = walk(h, &j, 2).await;
    let mut seeds = pages;
    seeds.push(CrawlRequest::seed("http://r4.test/", 1));
    let a = h.frontier().seed(&j, &seeds).await.expect("seeds");
    assert_eq!(a.admitted, 4, "{a:?}");
    acknowledge_all(h, 4, "round2").await;
    let round2 = pairs(&[
        ("http://r1.test/", "round2"),
        ("http://r2.test/", "round2"),
        ("http://r3.test/", "round2"),
        ("http://r4.test/", "round2"),
    ]);
    let both: Vec<(String, String)> = {
        let mut v = [round1.clone(), round2.clone()].concat();
        v.sort();
        v
    };
    assert_eq!(
        known(h, &j).await,
        both,
        "the previous set, then the current"
    );
    // An interrupted start of a round rotates again: nothing changes.
    assert!(!h.frontier().rotate_known(&j).await.expect("rotates"));
    assert_eq!(known(h, &j).await, both);

    // The round finished: its previous set goes.
    for _ in 0..2 {
        h.frontier()
            .drop_known(&j, Known::Previous)
            .await
            .expect("drops");
        assert_eq!(known(h, &j).await, round2, "only the current set is left");
    }
    assert!(h.frontier().rotate_known(&j).await.expect("rotates"));
    assert_eq!(
        known(h, &j).await,
        round2,
        "the current set became the previous"
    );
    let drop_all = || h.frontier().drop_known(&j, Known::All);
    drop_all().await.expect("drops");
    drop_all().await.expect("drops");
    assert!(known(h, &j).await.is_empty());
    // A round that remembered nothing rotates too: its empty set is the previous one.
    assert!(h.frontier().rotate_known(&j).await.expect("rotates"));
    assert!(!h.frontier().rotate_known(&j).await.expect("rotates"));
    assert!(known(h, &j).await.is_empty());
    drop_all().await.expect("drops");
    assert!(h.frontier().rotate_known(&j).await.expect("rotates"));
    drop_all().await.expect("drops");
}

/// A walk a few pages at a time returns every known page of the job (fifty domains: on a
/// sharded frontier, on every shard) and no other job's, and ends.
pub(crate) async fn a_walk_of_known_pages_returns_every_page_and_ends<H: Harness>(h: &H) {
    const PAGES: usize = 50;
    let j = registered(h, "walk", &JobPolicy::unlimited()).await;
    let other = registered(h, "walk-other", &JobPolicy::unlimited()).await;
    let urls: Vec<String> = (0..PAGES).map(|i| format!("http://w{i}.test/p")).collect();
    let seeds: Vec<CrawlRequest> = urls.iter().map(|u| CrawlRequest::seed(u, 1)).collect();
    h.frontier().seed(&j, &seeds).await.expect("seeds");
    // Each acknowledgement of the batch also has a child, so that the children and the
    // remembered pages of a batch's leases are told apart.
    let batch: Vec<(Lease, Outcome)> = lease_all(h, PAGES)
        .await
        .into_values()
        .map(|l| {
            let outcome = Outcome::status(200, 10)
                .with_children(vec![l.request.child(format!("{}/child", l.request.url))])
                .remembering(validated(
                    &l.request.url,
                    &format!("etag-{}", l.request.url),
                ));
            (l, outcome)
        })
        .collect();
    let done = h.frontier().complete_many(&batch).await.expect("completes");
    for c in &done {
        match c {
            Completion::Acked(a) => assert_eq!(a.admitted, 1, "{done:?}"),
            other => panic!("not acknowledged: {other:?}"),
        }
    }
    seed_urls(h, &other, &["http://w0.test/other"]).await;
    let leases = lease_all(h, PAGES + 1).await;
    complete(
        h,
        &leases["http://w0.test/other"],
        Outcome::status(200, 1).remembering(validated("http://w0.test/other", "x")),
    )
    .await;

    let (pages, calls) = walk(h, &j, 3).await;
    assert!(calls > 1, "{PAGES} pages in one call of 3");
    let found: BTreeSet<&str> = pages.iter().map(|r| r.url.as_str()).collect();
    let wanted: BTreeSet<&str> = urls.iter().map(String::as_str).collect();
    assert_eq!(
        found, wanted,
        "a walk missed pages or returned another job's"
    );
    assert_eq!(pages.len(), PAGES, "a page returned twice");
    for page in &pages {
        assert_eq!(etag(page), format!("etag-{}", page.url), "{page:?}");
    }
}
