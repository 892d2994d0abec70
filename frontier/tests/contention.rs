//! Exactly once under contention: several OS processes lease and complete 100,000 requests
//! concurrently against the real Redis (REDIS_URL; fails without it, never skips).
//!
//! The test binary runs twice over: as the coordinator (what `cargo test` starts), which
//! seeds the job, starts worker processes (this same binary with `--worker`), and checks
//! their reports; and as those workers. A worker now and then "crashes" on a lease (forgets
//! it, so that it expires and is reclaimed) and later tries to acknowledge it anyway. The
//! coordinator checks that every request was completed exactly once and that no request was
//! ever held by two leases at the same time.
//!
//! No libtest harness (a worker must run as a plain process), so it prints the plain closing
//! line `contention: 1 passed, 0 failed` and exits non-zero on failure.

#[path = "conformance/harness.rs"]
#[allow(
    dead_code,
    reason = "shared with the conformance suite; this test uses its key cleanup"
)]
mod harness;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kubecrawl_frontier::{
    Completion, CrawlRequest, Frontier, FrontierConfig, JobPolicy, JobRef, Lease, Outcome,
    RedisFrontier,
};

const REQUESTS: usize = 100_000;
const PROCESSES: usize = 3;
const TASKS_PER_PROCESS: usize = 4;
const LEASE: Duration = Duration::from_millis(1500);
const SPIDER: &str = "contend";
/// One lease in this many is forgotten (a simulated crash).
const FORGET_ONE_IN: u64 = 500;
const DEADLINE: Duration = Duration::from_secs(240);

fn job() -> JobRef {
    JobRef {
        spiderid: SPIDER.to_owned(),
        appid: "testapp".to_owned(),
        crawlid: "contention".to_owned(),
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("contention: test");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        let prefix = args.get(i + 1).expect("--worker PREFIX SEED").clone();
        let seed: u64 = args
            .get(i + 2)
            .and_then(|s| s.parse().ok())
            .expect("--worker PREFIX SEED");
        runtime.block_on(worker(prefix, seed));
        return;
    }
    let started = Instant::now();
    runtime.block_on(coordinator());
    println!(
        "contention: exactly once under contention ({:?})",
        started.elapsed()
    );
    println!("contention: 1 passed, 0 failed");
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").expect(
        "REDIS_URL is not set: the contention test needs the real Redis (`make env-up`, then \
         `. .testenv/env`)",
    )
}

async fn connect(prefix: &str) -> RedisFrontier {
    RedisFrontier::connect(&redis_url(), prefix, FrontierConfig::default())
        .await
        .expect("connects to REDIS_URL")
}

/// One worker process: leases and completes until the job is finished, printing one line
/// per lease: `<url> <leased_at µs> <deadline µs> <end µs> <acked|late-acked|stale>`, where
/// a late ack is one of a forgotten lease, sent after its deadline, and `end` is when the
/// lease stopped being held (its acknowledgement, or its deadline when it was reclaimed).
async fn worker(prefix: String, seed: u64) {
    let frontier = connect(&prefix).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS_PER_PROCESS {
        let frontier = frontier.clone();
        let mut rng = fastrand::Rng::with_seed(seed * 100 + t as u64);
        tasks.spawn(async move {
            let mut lines = Vec::new();
            let mut forgotten: Vec<Lease> = Vec::new();
            let mut idle = 0u32;
            loop {
                let leases = frontier.lease(SPIDER, 20, LEASE).await.expect("leases");
                if leases.is_empty() {
                    // Late acknowledgements of forgotten leases, well after their deadline.
                    for lease in forgotten.drain(..) {
                        tokio::time::sleep_until(
                            tokio::time::Instant::now()
                                + lease
                                    .deadline
                                    .duration_since(SystemTime::now())
                                    .unwrap_or_default(),
                        )
                        .await;
                        let done = frontier
                            .complete(&lease, Outcome::status(200, 1))
                            .await
                            .expect("completes");
                        let end = micros(SystemTime::now());
                        let (end, tag) = match done {
                            Completion::Acked(_) => (end, "late-acked"),
                            Completion::Stale => (micros(lease.deadline), "stale"),
                            other => panic!("unexpected {other:?}"),
                        };
                        lines.push(line(&lease, end, tag));
                    }
                    let stats = frontier.job_stats(&job()).await.expect("reads");
                    if stats.is_some_and(|s| s.finished()) {
                        break;
                    }
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(20.min(2 * u64::from(idle)))).await;
                    continue;
                }
                idle = 0;
                for lease in leases {
                    if rng.u64(0..FORGET_ONE_IN) == 0 {
                        forgotten.push(lease);
                        continue;
                    }
                    match frontier
                        .complete(&lease, Outcome::status(200, 1))
                        .await
                        .expect("completes")
                    {
                        Completion::Acked(_) => {
                            lines.push(line(&lease, micros(SystemTime::now()), "acked"))
                        }
                        Completion::Stale => {
                            lines.push(line(&lease, micros(lease.deadline), "stale"))
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            lines
        });
    }
    for lines in tasks.join_all().await {
        for l in lines {
            println!("{l}");
        }
    }
}

fn line(lease: &Lease, end: u64, tag: &str) -> String {
    format!(
        "{} {} {} {} {}",
        lease.request.url,
        micros(lease.leased_at),
        micros(lease.deadline),
        end,
        tag
    )
}

async fn coordinator() {
    let prefix = format!(
        "kctest-contention-{}-{}",
        std::process::id(),
        micros(SystemTime::now())
    );
    let frontier = connect(&prefix).await;
    frontier
        .register(&job(), &JobPolicy::unlimited())
        .await
        .expect("registers");
    let seeds: Vec<CrawlRequest> = (0..REQUESTS)
        .map(|i| CrawlRequest::seed(format!("http://site{}.test/p/{i}", i % 1000), 1))
        .collect();
    for chunk in seeds.chunks(5000) {
        frontier.seed(&job(), chunk).await.expect("seeds");
    }
    let exe = std::env::current_exe().expect("knows its own path");
    let mut children = Vec::new();
    for p in 0..PROCESSES {
        let child = Command::new(&exe)
            .arg("--worker")
            .arg(&prefix)
            .arg(p.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starts a worker process");
        children.push(child);
    }
    let readers: Vec<_> = children
        .iter_mut()
        .map(|c| {
            let out = c.stdout.take().expect("piped stdout");
            std::thread::spawn(move || {
                BufReader::new(out)
                    .lines()
                    .map(|l| l.expect("reads a worker's report"))
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    for child in &mut children {
        loop {
            if let Some(status) = child.try_wait().expect("waits") {
                assert!(status.success(), "a worker process failed: {status}");
                break;
            }
            if Instant::now() > deadline {
                for c in &mut children {
                    let _ = c.kill();
                }
                panic!("worker processes deadlocked (still running after {DEADLINE:?})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut per_url: HashMap<String, Vec<(u64, u64, String)>> = HashMap::new();
    for reader in readers {
        for l in reader.join().expect("reader thread") {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 5, "bad report line {l:?}");
            let start: u64 = f[1].parse().expect("number");
            let end: u64 = f[3].parse().expect("number");
            per_url
                .entry(f[0].to_owned())
                .or_default()
                .push((start, end, f[4].to_owned()));
        }
    }
    assert_eq!(per_url.len(), REQUESTS, "not every request was leased");
    let (mut forgot, mut stale, mut releases) = (0, 0, 0);
    for (url, mut leases) in per_url {
        let acked = leases.iter().filter(|l| l.2.ends_with("acked")).count();
        assert_eq!(acked, 1, "{url} completed {acked} times: {leases:?}");
        forgot += leases.iter().filter(|l| l.2 != "acked").count();
        stale += leases.iter().filter(|l| l.2 == "stale").count();
        releases += leases.len() - 1;
        leases.sort();
        for pair in leases.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "{url} held by two leases at once: {leases:?}"
            );
        }
    }
    let stats = frontier
        .job_stats(&job())
        .await
        .expect("reads")
        .expect("registered");
    assert_eq!(stats.pages, REQUESTS as u64, "{stats:?}");
    assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
    assert!(forgot > 0, "the test never exercised an expired lease");
    println!(
        "contention: {REQUESTS} requests, {PROCESSES} processes x {TASKS_PER_PROCESS} tasks, \
         {forgot} leases forgotten, {stale} late acks refused, {releases} re-leases"
    );
    assert!(frontier.purge(&job()).await.expect("purges"));
    harness::delete_prefix(&redis_url(), &prefix).await;
}
