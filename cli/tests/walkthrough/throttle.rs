//! A throttle change for a domain takes effect within seconds, measured on the site's request
//! log; an invalid change is refused with an event and changes nothing; a blacklisted domain
//! stops being fetched and its queue is dropped, counted.

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use kubecrawl_api::Phase;
use kubecrawl_e2e::cluster::{Cluster, take_turn};
use kubecrawl_e2e::crawljob::phase;
use kubecrawl_e2e::site::{Hit, MAIN_HOST};
use kubecrawl_frontier::{Frontier, JobRef};

use crate::support::{install, kubecrawl_json, teardown};

/// The throttle the test sets: 1 hit per 1 s window, scale 1.
const THROTTLED: Duration = Duration::from_secs(1);
/// The job's own interval.
const JOB_DELAY_MS: u32 = 100;
/// A gap counts as respecting the throttle from this on (the site logs arrival times, which
/// jitter around the dispatch times the frontier spaces).
const RESPECTS: Duration = Duration::from_millis(800);
/// A gap below this is the job's own pace (100 ms), not the throttle's.
const FAST: Duration = Duration::from_millis(500);

/// Writes the throttle ConfigMap's document (server-side apply: creates or replaces it).
async fn set_rules(cluster: &Cluster, document: &str) {
    cluster
        .set_throttle_rules(document)
        .await
        .expect("the ConfigMap is written");
}

/// Page requests to site.test (robots.txt left out), oldest first.
fn page_hits(cluster: &Cluster) -> Vec<Hit> {
    cluster
        .site
        .request_log()
        .into_iter()
        .filter(|h| h.host == MAIN_HOST && h.target != "/robots.txt")
        .collect()
}

fn gaps(hits: &[Hit]) -> Vec<Duration> {
    hits.windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttle_change_takes_effect_within_seconds() {
    let _turn = take_turn().await;
    let cluster = install("kcw-throttle").await;
    let crawlid = "throttled";
    cluster
        .create_link_job(crawlid, 1, JOB_DELAY_MS)
        .await
        .expect("the job is created");

    // The crawl at its own pace first.
    cluster
        .eventually(
            "30 page requests at the job's pace",
            Duration::from_secs(120),
            async || (page_hits(&cluster).len() >= 30).then_some(()),
        )
        .await;
    let edit = Instant::now();
    set_rules(
        &cluster,
        "domains:\n  site.test:\n    window: 1\n    hits: 1\n    scale: 1.0\n",
    )
    .await;
    let written = edit.elapsed();
    tokio::time::sleep(Duration::from_secs(8)).await;

    let hits = page_hits(&cluster);
    let before: Vec<Hit> = hits.iter().filter(|h| h.at < edit).cloned().collect();
    let after: Vec<Hit> = hits.iter().filter(|h| h.at >= edit).cloned().collect();
    let before_gap = median(gaps(&before[before.len().saturating_sub(20)..]));
    // The last request still at the old pace: every later gap respects the throttle.
    let all_gaps = gaps(&hits);
    let first_after = hits.len() - after.len();
    let last_fast = (first_after.max(1)..hits.len())
        .rev()
        .find(|&i| all_gaps[i - 1] < FAST);
    let in_force_from = last_fast.unwrap_or(first_after.saturating_sub(1));
    let effect = hits[in_force_from].at.saturating_duration_since(edit);
    let first_respecting = hits
        .get(in_force_from + 1)
        .map(|h| h.at.saturating_duration_since(edit));
    let after_gaps = gaps(&hits[in_force_from..]);
    println!(
        "throttle: median gap {before_gap:?} before the edit ({} requests), {:?} after ({} requests); \
         the ConfigMap write took {written:?}; the last request at the old pace came {effect:?} after \
         the edit, the first one spaced by the throttle {first_respecting:?} after it",
        before.len(),
        median(after_gaps.clone()),
        after.len(),
    );
    assert!(
        before_gap < Duration::from_millis(500),
        "the job's own pace ({before_gap:?}) is not faster than the throttle: nothing to measure"
    );
    assert!(
        effect < Duration::from_secs(3),
        "the throttle took {effect:?} to take effect\n{}",
        cluster.all_logs()
    );
    assert!(
        after_gaps.len() >= 3,
        "too few requests after the edit to judge: {after_gaps:?}"
    );
    assert!(
        after_gaps.iter().all(|g| *g >= RESPECTS),
        "requests closer than the throttle after it took effect: {after_gaps:?}"
    );
    assert!(
        median(after_gaps) < THROTTLED * 2,
        "the crawl nearly stopped instead"
    );

    // The backlog of the throttled domain, from `kubecrawl stats`.
    let stats = kubecrawl_json(&cluster, &["stats"]).await;
    let link = &stats["queue"]["link"];
    assert_eq!(link["domains"][0]["domain"], "site.test", "{stats:#}");
    assert!(
        link["domains"][0]["backlog"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{stats:#}"
    );

    // An invalid document is refused with a Warning event naming the field; the throttle stays.
    let bad_at = Instant::now();
    set_rules(
        &cluster,
        "domains:\n  site.test:\n    window: 1\n    hits: 0\n",
    )
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(cluster.client.clone(), &cluster.ns.name);
    let note = cluster
        .eventually(
            "a Warning event on the ConfigMap",
            Duration::from_secs(30),
            async || {
                events
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|e| {
                        e.reason.as_deref() == Some("Invalid")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                                == Some("kubecrawl-throttle")
                    })
                    .and_then(|e| e.note)
            },
        )
        .await;
    assert!(note.contains("domains.\"site.test\".hits"), "{note}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = gaps(
        &page_hits(&cluster)
            .into_iter()
            .filter(|h| h.at >= bad_at)
            .collect::<Vec<_>>(),
    );
    assert!(
        kept.iter().all(|g| *g >= RESPECTS),
        "an invalid document lifted the throttle: {kept:?}"
    );

    // Blacklisted: no more requests to site.test, its queue dropped and counted, the job done.
    let black_at = Instant::now();
    set_rules(&cluster, "blacklist:\n  - site.test\n").await;
    let frontier = cluster.frontier().await.expect("the frontier");
    let job = JobRef {
        spiderid: "link".into(),
        appid: "testapp".into(),
        crawlid: crawlid.into(),
    };
    let dropped = cluster
        .eventually(
            "the blacklisted queue to be dropped",
            Duration::from_secs(30),
            async || {
                let s = frontier.job_stats(&job).await.ok()??;
                (s.queued == 0 && s.in_flight == 0 && s.blacklisted > 0).then_some(s)
            },
        )
        .await;
    let dropped_after = black_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late: Vec<Hit> = page_hits(&cluster)
        .into_iter()
        .filter(|h| h.at > black_at + dropped_after)
        .collect();
    assert!(
        late.is_empty(),
        "site.test fetched after it was blacklisted: {late:?}"
    );
    println!(
        "blacklist: {} queued requests dropped and counted {dropped_after:?} after the edit ({} pages fetched)",
        dropped.blacklisted, dropped.pages
    );
    cluster
        .eventually(
            "the job out of work to succeed",
            Duration::from_secs(60),
            async || {
                cluster
                    .jobs()
                    .get_opt(crawlid)
                    .await
                    .ok()?
                    .filter(|j| phase(j) == Phase::Succeeded)
            },
        )
        .await;
    teardown(cluster).await;
}
