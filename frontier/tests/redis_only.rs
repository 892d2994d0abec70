//! Properties only the Redis frontier can show: politeness across concurrent clients, what a
//! purge leaves behind, and the encoding of dedupe buckets. They need the real Redis at
//! REDIS_URL and fail (never skip) without it.

#[path = "conformance/harness.rs"]
#[allow(
    dead_code,
    reason = "shared with the conformance suite, which uses all of it"
)]
mod harness;

use std::time::{Duration, SystemTime};

use kubecrawl_api::Politeness;
use kubecrawl_frontier::{CrawlRequest, Frontier, JobPolicy, JobRef, Outcome, RedisFrontier};

const SPIDER: &str = "link";

fn job(crawlid: &str) -> JobRef {
    JobRef {
        spiderid: SPIDER.to_owned(),
        appid: "testapp".to_owned(),
        crawlid: crawlid.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn politeness_holds_across_concurrent_clients() {
    let h = harness::redis("polite-many").await;
    let hits = 5u32;
    let window = Duration::from_secs(1);
    let policy = JobPolicy {
        politeness: Some(Politeness {
            hits: Some(hits),
            window_seconds: Some(1),
            delay_millis: None,
            obey_robots: true,
            per_ip: false,
        }),
        ..JobPolicy::unlimited()
    };
    let j = job("polite");
    let f = harness::Harness::frontier(&h);
    f.register(&j, &policy).await.expect("registers");
    let seeds: Vec<CrawlRequest> = (0..200)
        .map(|i| CrawlRequest::seed(format!("http://polite.test/{i}"), 1))
        .collect();
    f.seed(&j, &seeds).await.expect("seeds");
    let run_for = Duration::from_millis(2600);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let client = harness::Harness::client(&h).await;
        tasks.spawn(async move {
            let mut dispatched = Vec::new();
            let end = tokio::time::Instant::now() + run_for;
            while tokio::time::Instant::now() < end {
                for lease in client
                    .lease(SPIDER, 10, Duration::from_secs(30))
                    .await
                    .expect("leases")
                {
                    dispatched.push(lease.leased_at);
                    client
                        .complete(&lease, Outcome::status(200, 1))
                        .await
                        .expect("completes");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            dispatched
        });
    }
    let mut times: Vec<SystemTime> = Vec::new();
    let all = tokio::time::timeout(Duration::from_secs(30), tasks.join_all())
        .await
        .expect("polite clients deadlocked");
    for part in all {
        times.extend(part);
    }
    times.sort();
    eprintln!("{} dispatches in {run_for:?}", times.len());
    assert!(
        times.len() >= 10,
        "too few dispatches to judge: {}",
        times.len()
    );
    assert!(
        times.len() <= 15,
        "more dispatches than the rate allows: {}",
        times.len()
    );
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).expect("sorted");
        assert!(gap >= window / hits, "two dispatches only {gap:?} apart");
    }
    let hits = hits as usize;
    for (i, t) in times.iter().enumerate().skip(hits) {
        let span = t.duration_since(times[i - hits]).expect("sorted");
        assert!(span >= window, "{} dispatches within {span:?}", hits + 1);
    }
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_leaves_no_key_of_the_job_and_dedupe_stays_compact() {
    let h = harness::redis("purge-keys").await;
    let f: &RedisFrontier = harness::Harness::frontier(&h);
    let j = job("keys");
    f.register(&j, &JobPolicy::unlimited())
        .await
        .expect("registers");
    let seeds: Vec<CrawlRequest> = (0..20_000)
        .map(|i| CrawlRequest::seed(format!("http://h{}.test/{i}", i % 97), 1 + i % 3))
        .collect();
    f.seed(&j, &seeds).await.expect("seeds");
    let leases = f
        .lease(SPIDER, 10, Duration::from_secs(30))
        .await
        .expect("leases");
    let child = leases[0].request.child("http://child.test/x");
    f.complete(
        &leases[0],
        Outcome::status(200, 1).with_children(vec![child]),
    )
    .await
    .expect("completes");
    let f2 = harness::Harness::client(&h).await;
    f2.retry(&leases[1], Default::default())
        .await
        .expect("retries");

    let url = harness::redis_url();
    let keys = harness::keys_with_prefix(&url, f.prefix()).await;
    let buckets: Vec<&String> = keys.iter().filter(|k| k.contains(":s:1:")).collect();
    assert!(
        (20_000 / 40..=20_000 / 15).contains(&buckets.len()),
        "{} dedupe buckets for 20000 URLs",
        buckets.len()
    );
    let client = redis::Client::open(url.as_str()).expect("valid url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    for key in buckets {
        let encoding: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("reads encoding");
        assert_eq!(encoding, "listpack", "{key} lost the compact encoding");
    }

    assert!(f.purge(&j).await.expect("purges"));
    let left = harness::keys_with_prefix(&url, f.prefix()).await;
    let of_job: Vec<&String> = left
        .iter()
        .filter(|k| {
            [":q:1:", ":s:1:", ":job:1", ":jd:1", ":jq:1", ":dq:"]
                .iter()
                .any(|p| k.contains(p))
        })
        .collect();
    assert!(of_job.is_empty(), "purge left {of_job:?}");
    h.cleanup().await;
}

/// Regression guard for the roll-up of spider counts: a page counted in one 10 s bucket must
/// still count in every window after the next bucket started (rolled up into the coarser
/// buckets), and exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spider_counts_survive_the_roll_up_into_coarser_buckets() {
    use kubecrawl_frontier::Window;
    let h = harness::redis("rollup").await;
    let f: &RedisFrontier = harness::Harness::frontier(&h);
    let j = job("rollup");
    f.register(&j, &JobPolicy::unlimited())
        .await
        .expect("registers");
    let seeds: Vec<CrawlRequest> = (0..3)
        .map(|i| CrawlRequest::seed(format!("http://r{i}.test/"), 1))
        .collect();
    f.seed(&j, &seeds).await.expect("seeds");
    let leases = f
        .lease(SPIDER, 3, Duration::from_secs(60))
        .await
        .expect("leases");
    f.complete(&leases[0], Outcome::status(200, 1))
        .await
        .expect("completes");
    // Into the next 10 s bucket (Redis runs on this machine's clock).
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch");
    let to_next =
        Duration::from_secs(10) - Duration::from_micros((now.as_micros() % 10_000_000) as u64);
    tokio::time::sleep(to_next + Duration::from_millis(100)).await;
    f.complete(&leases[1], Outcome::status(200, 1))
        .await
        .expect("completes");
    f.complete(&leases[2], Outcome::status(500, 1))
        .await
        .expect("completes");
    let stats = f.spider_stats(SPIDER).await.expect("reads");
    for w in Window::ALL {
        assert_eq!(stats.count(w, "200"), 2, "{w:?}: {stats:?}");
        assert_eq!(stats.count(w, "500"), 1, "{w:?}: {stats:?}");
    }
    h.cleanup().await;
}

/// Regression: suspend, resume and re-registration walked every queue of the job in one Lua
/// script, so a job with a million host queues stalled Redis for every worker. Now the walk
/// runs in bounded chunks, and an interrupted walk shows as `settling` and is finished by the
/// next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_walk_a_large_job_in_chunks() {
    let h = harness::redis("suspend-chunks").await;
    let f: &RedisFrontier = harness::Harness::frontier(&h);
    let j = job("many-hosts");
    f.register(&j, &JobPolicy::unlimited())
        .await
        .expect("registers");
    let hosts = 2_500;
    let seeds: Vec<CrawlRequest> = (0..hosts)
        .map(|i| CrawlRequest::seed(format!("http://h{i}.test/"), 1))
        .collect();
    f.seed(&j, &seeds).await.expect("seeds");

    let before = f.round_trips();
    assert!(f.suspend(&j).await.expect("suspends"));
    let calls = f.round_trips() - before;
    assert!(
        calls >= 3,
        "2500 queues were walked in {calls} script call(s)"
    );
    let s = f.job_stats(&j).await.expect("stats").expect("registered");
    assert!(s.suspended && !s.settling, "{s:?}");
    let leased = f
        .lease(SPIDER, 100, Duration::from_secs(30))
        .await
        .expect("leases");
    assert!(leased.is_empty(), "a suspended job was leased");

    // An interrupted resume: one chunk only, as if the caller died after it.
    let url = harness::redis_url();
    let client = redis::Client::open(url.as_str()).expect("valid url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let base = format!("{}:{{{SPIDER}}}", f.prefix());
    let number: String = redis::cmd("HGET")
        .arg(format!("{base}:jobs"))
        .arg(r#"["testapp","many-hosts"]"#)
        .query_async(&mut conn)
        .await
        .expect("job number");
    let _: () = redis::cmd("HSET")
        .arg(format!("{base}:job:{number}"))
        .arg("st")
        .arg("run")
        .arg("cur")
        .arg("0")
        .query_async(&mut conn)
        .await
        .expect("marks an unfinished resume");
    let s = f.job_stats(&j).await.expect("stats").expect("registered");
    assert!(!s.suspended && s.settling, "{s:?}");
    assert!(f.resume(&j).await.expect("resumes"));
    let s = f.job_stats(&j).await.expect("stats").expect("registered");
    assert!(!s.settling, "{s:?}");
    let mut got = 0;
    for _ in 0..100 {
        let leases = f
            .lease(SPIDER, 500, Duration::from_secs(30))
            .await
            .expect("leases");
        if leases.is_empty() {
            break;
        }
        got += leases.len();
    }
    assert_eq!(got, hosts, "every host's queue was attached again");
    h.cleanup().await;
}

/// Losing Redis's data (a restart without persistence, a failover to an empty replica) must
/// be detectable: the epoch changes. Simulated by deleting exactly this test's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_epoch_changes_when_the_state_is_lost() {
    let h = harness::redis("epoch-loss").await;
    let f: &RedisFrontier = harness::Harness::frontier(&h);
    let before = f.epoch(SPIDER).await.expect("epoch");
    assert_eq!(f.epoch(SPIDER).await.expect("epoch"), before);
    let url = harness::redis_url();
    let client = redis::Client::open(url.as_str()).expect("valid url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    for key in harness::keys_with_prefix(&url, f.prefix()).await {
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("deletes");
    }
    let after = f.epoch(SPIDER).await.expect("epoch");
    assert_ne!(
        after, before,
        "the state was lost but the epoch did not change"
    );
    h.cleanup().await;
}
