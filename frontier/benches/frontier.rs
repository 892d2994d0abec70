//! `make bench-frontier`: the Redis frontier's throughput and memory against the real Redis
//! at REDIS_URL, and its throughput on three shards (REDIS_SHARD_URLS). Prints what it does,
//! then, as its last line, one JSON object:
//!
//! - `pages_per_s`: leases plus acknowledgements per second, each page acknowledged with 10
//!   children (new URLs on 1000 domains, so every child goes through filters, dedupe, budgets
//!   and the enqueue), from 32 concurrent tasks over 4 connections (as several worker pods
//!   would) in one client process. Each task leases 16 pages and acknowledges them in one
//!   `complete_many` call, as the worker's acknowledger does under load. Each child leads to a
//!   random one of the 1000 domains, so each needs a queue push of its own: the worst case.
//! - `round_trips_per_page`: requests Redis received per page, from the `INFO commandstats`
//!   delta of the commands a client sends (scripts; commands run *inside* scripts are not
//!   round trips), cross-checked against the client's own count.
//! - `one_by_one_pages_per_s`, `one_by_one_round_trips_per_page`: the same with one
//!   `complete` call per page.
//! - `same_host_pages_per_s`: batched, with every child on its page's own domain, as on a site
//!   crawl where most links stay on the host.
//! - `redis_cpu_ms_per_page`: the CPU Redis used per page in the batched run (`INFO cpu`).
//! - `sharded_pages_per_s`, `sharded_redis_cpu_ms_per_page_per_shard`: the batched run on a
//!   frontier spread over the three Redis servers of REDIS_SHARD_URLS, with each server's CPU
//!   per page; `busiest_shard_cpu_vs_one_shard` divides the busiest shard's by the one-server
//!   figure (how well the work divides: 1/3 would be perfect).
//!
//! Each throughput run also prints the commands Redis ran per page (inside scripts included).
//! - `bytes_per_queued_request`: the `INFO memory` `used_memory` that 100,000 queued requests
//!   (children with a referer, URLs of about 60 characters) hold and give back when drained.
//! - `bytes_per_seen_url`: what stays after draining: the exact-dedupe fingerprints of the
//!   100,000 URLs (plus the job's small fixed state), per URL.
//!
//! Everything lives under its own key prefix, deleted at the end; nothing else is touched.

#[path = "../tests/conformance/harness.rs"]
#[allow(
    dead_code,
    reason = "shared with the conformance suite; the bench uses its key cleanup"
)]
mod harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kubecrawl_frontier::{
    CrawlRequest, Frontier, FrontierConfig, JobPolicy, JobRef, Outcome, RedisFrontier,
};

const SPIDER: &str = "bench";
const DOMAINS: usize = 1000;
const MEMORY_ENTRIES: usize = 100_000;
const PAGES: usize = 40_000;
const CHILDREN: usize = 10;
const TASKS: usize = 32;
/// Client connections the tasks share, as several worker pods would.
const CONNECTIONS: usize = 4;
const LEASE_BATCH: usize = 16;
/// Commands a frontier client sends itself; everything else in commandstats ran inside them.
const CLIENT_COMMANDS: &[&str] = &["evalsha", "eval", "evalsha_ro", "eval_ro", "script"];

fn job(crawlid: &str) -> JobRef {
    JobRef {
        spiderid: SPIDER.to_owned(),
        appid: "bench".to_owned(),
        crawlid: crawlid.to_owned(),
    }
}

/// A URL of about 60 characters on one of the bench's domains.
fn url(domain: usize, n: usize) -> String {
    format!("http://www.domain{domain:04}.example.com/articles/2026/page-{n:08}.html")
}

fn main() {
    let url = std::env::var("REDIS_URL").expect(
        "REDIS_URL is not set: the frontier bench needs the real Redis (`make env-up`, then \
         `. .testenv/env`)",
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let shard_urls: Vec<String> = std::env::var("REDIS_SHARD_URLS")
        .expect(
            "REDIS_SHARD_URLS is not set: the frontier bench also runs on three Redis shards \
             (`make env-up` starts them, then `. .testenv/env`)",
        )
        .split(',')
        .map(str::to_owned)
        .collect();
    let result = runtime.block_on(run(&url, &shard_urls));
    println!("{result}");
}

async fn run(url: &str, shard_urls: &[String]) -> serde_json::Value {
    let prefix = format!(
        "kcbench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let one = [url.to_owned()];
    let mut admin = admins(&one).await.remove(0);
    let frontier = connect(&one, &prefix).await;
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("machine load before: {}", loadavg.trim());

    let (queued, seen) = memory(&frontier, &mut admin).await;
    let batched = throughput(&one, &prefix, Acks::Batched, Children::Scattered).await;
    let one_by_one = throughput(&one, &prefix, Acks::OneByOne, Children::Scattered).await;
    let same_host = throughput(&one, &prefix, Acks::Batched, Children::SameHost).await;
    let sharded_prefix = format!("{prefix}-sharded");
    let sharded = throughput(
        shard_urls,
        &sharded_prefix,
        Acks::Batched,
        Children::Scattered,
    )
    .await;

    cleanup(&one, &prefix).await;
    cleanup(shard_urls, &sharded_prefix).await;
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("machine load after: {}", loadavg.trim());
    let single_cpu = batched.cpu_ms_per_page[0];
    let busiest = sharded.cpu_ms_per_page.iter().copied().fold(0.0, f64::max);
    let ms = |v: f64| (v * 10_000.0).round() / 10_000.0;
    serde_json::json!({
        "pages_per_s": batched.pages_per_s.round(),
        "round_trips_per_page": (batched.round_trips * 1000.0).round() / 1000.0,
        "client_round_trips_per_page": (batched.client_trips * 1000.0).round() / 1000.0,
        "redis_cpu_ms_per_page": ms(single_cpu),
        "one_by_one_pages_per_s": one_by_one.pages_per_s.round(),
        "one_by_one_round_trips_per_page": (one_by_one.round_trips * 1000.0).round() / 1000.0,
        "same_host_pages_per_s": same_host.pages_per_s.round(),
        "shards": sharded.cpu_ms_per_page.len(),
        "sharded_pages_per_s": sharded.pages_per_s.round(),
        "sharded_round_trips_per_page": (sharded.round_trips * 1000.0).round() / 1000.0,
        "sharded_redis_cpu_ms_per_page_per_shard": sharded.cpu_ms_per_page.iter().map(|v| ms(*v)).collect::<Vec<_>>(),
        "busiest_shard_cpu_vs_one_shard": (busiest / single_cpu * 1000.0).round() / 1000.0,
        "bytes_per_queued_request": queued.round(),
        "bytes_per_seen_url": seen.round(),
    })
}

/// A frontier client on `servers`: one server, or one shard per server.
async fn connect(servers: &[String], prefix: &str) -> RedisFrontier {
    let clients = servers
        .iter()
        .map(|u| redis::Client::open(u.as_str()).expect("valid redis url"))
        .collect();
    RedisFrontier::connect_shards(clients, prefix, FrontierConfig::default())
        .await
        .expect("connects to the bench's redis")
}

/// An admin connection to each server, for INFO.
async fn admins(servers: &[String]) -> Vec<redis::aio::MultiplexedConnection> {
    let mut out = Vec::with_capacity(servers.len());
    for url in servers {
        let client = redis::Client::open(url.as_str()).expect("valid redis url");
        out.push(
            client
                .get_multiplexed_async_connection()
                .await
                .expect("connects to the bench's redis"),
        );
    }
    out
}

async fn used_memory(admin: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(admin)
        .await
        .expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

/// Seconds of CPU the Redis server has used (user + system, main thread and others).
async fn redis_cpu(admin: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(admin)
        .await
        .expect("INFO cpu");
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k, "used_cpu_sys" | "used_cpu_user").then(|| v.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// [`redis_cpu`] of each server.
async fn cpu_each(admins: &mut [redis::aio::MultiplexedConnection]) -> Vec<f64> {
    let mut out = Vec::with_capacity(admins.len());
    for admin in admins {
        out.push(redis_cpu(admin).await);
    }
    out
}

/// [`client_calls`] over every server.
async fn client_calls_all(admins: &mut [redis::aio::MultiplexedConnection]) -> u64 {
    let mut total = 0;
    for admin in admins {
        total += client_calls(admin).await;
    }
    total
}

/// [`command_calls`] added up over every server.
async fn command_calls_all(
    admins: &mut [redis::aio::MultiplexedConnection],
) -> HashMap<String, u64> {
    let mut total: HashMap<String, u64> = HashMap::new();
    for admin in admins {
        for (name, n) in command_calls(admin).await {
            *total.entry(name).or_default() += n;
        }
    }
    total
}

async fn client_calls(admin: &mut redis::aio::MultiplexedConnection) -> u64 {
    let calls = command_calls(admin).await;
    CLIENT_COMMANDS
        .iter()
        .map(|c| calls.get(*c).copied().unwrap_or(0))
        .sum()
}

/// Calls per command so far (`INFO commandstats`), commands run inside scripts included.
async fn command_calls(admin: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .expect("INFO commandstats");
    let mut calls: HashMap<String, u64> = HashMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let n = rest
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        calls.insert(name.to_owned(), n);
    }
    calls
}

/// The commands Redis ran per page between two `command_calls`, most first: where its time
/// goes, since each command a script runs costs about a microsecond.
fn per_page(before: &HashMap<String, u64>, after: &HashMap<String, u64>, pages: usize) -> String {
    let mut delta: Vec<(&String, u64)> = after
        .iter()
        .map(|(name, n)| (name, n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    delta.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total: u64 = delta.iter().map(|(_, n)| n).sum();
    let top: Vec<String> = delta
        .iter()
        .take(10)
        .map(|(name, n)| format!("{name} {:.2}", *n as f64 / pages as f64))
        .collect();
    format!(
        "{:.1} commands per page ({})",
        total as f64 / pages as f64,
        top.join(", ")
    )
}

/// Queues 100,000 requests, drains them, and reads what each phase holds.
async fn memory(
    frontier: &RedisFrontier,
    admin: &mut redis::aio::MultiplexedConnection,
) -> (f64, f64) {
    let j = job("memory");
    frontier
        .register(&j, &JobPolicy::unlimited())
        .await
        .expect("registers");
    let parents: Vec<CrawlRequest> = (0..DOMAINS)
        .map(|d| CrawlRequest::seed(url(d, 0), 1))
        .collect();
    let requests: Vec<CrawlRequest> = (0..MEMORY_ENTRIES)
        .map(|i| parents[i % DOMAINS].child(url(i % DOMAINS, i + 1)))
        .collect();
    let sample = serde_json::to_string(&requests[0]).expect("serializes");
    println!(
        "memory: {MEMORY_ENTRIES} requests like {sample} ({} bytes of JSON, URL {} chars)",
        sample.len(),
        requests[0].url.len()
    );
    let m0 = used_memory(admin).await;
    for chunk in requests.chunks(1000) {
        frontier.seed(&j, chunk).await.expect("seeds");
    }
    let m1 = used_memory(admin).await;
    let started = Instant::now();
    let mut drained = 0;
    loop {
        let leases = frontier
            .lease(SPIDER, 256, Duration::from_secs(300))
            .await
            .expect("leases");
        if leases.is_empty() {
            break;
        }
        let acks = leases
            .iter()
            .map(|l| frontier.complete(l, Outcome::status(200, 0)));
        for done in futures::future::join_all(acks).await {
            done.expect("completes");
        }
        drained += leases.len();
    }
    assert_eq!(drained, MEMORY_ENTRIES, "drained everything");
    println!(
        "memory: drained {drained} (lease + complete, no children) in {:?}",
        started.elapsed()
    );
    let m2 = used_memory(admin).await;
    let n = MEMORY_ENTRIES as f64;
    let queued = (m1 - m2) as f64 / n;
    let seen = (m2 - m0) as f64 / n;
    println!(
        "memory: used_memory {m0} -> {m1} queued -> {m2} drained: {queued:.1} bytes per queued \
         request, {seen:.1} bytes per seen URL"
    );
    (queued, seen)
}

/// How the bench's tasks acknowledge what they leased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acks {
    /// A lease batch in one `complete_many` call, as the worker's acknowledger sends them.
    Batched,
    /// One `complete` call per page.
    OneByOne,
}

/// Where a page's children lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Children {
    /// Each to a random one of the 1000 domains: every child its own queue (the worst case).
    Scattered,
    /// All to the page's own domain, as on a site crawl, where most links stay on the host.
    SameHost,
}

/// What one throughput run measured.
struct Run {
    pages_per_s: f64,
    /// Script calls Redis received per page (all servers).
    round_trips: f64,
    /// Requests the clients sent per page.
    client_trips: f64,
    /// CPU milliseconds each server used per page.
    cpu_ms_per_page: Vec<f64>,
}

/// Lease + complete with 10 children per page, from concurrent tasks, on `servers` (one
/// server, or one shard per server).
async fn throughput(servers: &[String], prefix: &str, acks: Acks, shape: Children) -> Run {
    let mut admins = admins(servers).await;
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        clients.push(connect(servers, prefix).await);
    }
    let frontier = clients[0].clone();
    let j = job(&format!("throughput-{acks:?}-{shape:?}"));
    frontier
        .register(&j, &JobPolicy::unlimited())
        .await
        .expect("registers");
    let seeds: Vec<CrawlRequest> = (0..DOMAINS)
        .map(|d| CrawlRequest::seed(url(d, 0), 1))
        .collect();
    frontier.seed(&j, &seeds).await.expect("seeds");
    let cpu0 = cpu_each(&mut admins).await;
    let calls0 = client_calls_all(&mut admins).await;
    let commands0 = command_calls_all(&mut admins).await;
    let client0: u64 = clients.iter().map(RedisFrontier::round_trips).sum();
    let started = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let frontier = clients[t % CONNECTIONS].clone();
        let done = done.clone();
        tasks.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(t as u64);
            let mut n = 0usize;
            while done.load(std::sync::atomic::Ordering::Relaxed) < PAGES {
                let leases = frontier
                    .lease(SPIDER, LEASE_BATCH, Duration::from_secs(300))
                    .await
                    .expect("leases");
                if leases.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                let mut batch = Vec::with_capacity(leases.len());
                for lease in leases {
                    let own = lease
                        .domain
                        .strip_prefix("www.domain")
                        .and_then(|d| d.get(..4))
                        .and_then(|d| d.parse().ok())
                        .expect("a bench domain");
                    let children = (0..CHILDREN)
                        .map(|c| {
                            let domain = match shape {
                                Children::Scattered => rng.usize(0..DOMAINS),
                                Children::SameHost => own,
                            };
                            lease
                                .request
                                .child(url(domain, (t * 10_000_000) + n * CHILDREN + c + 1))
                        })
                        .collect();
                    n += 1;
                    batch.push((lease, Outcome::status(200, 1000).with_children(children)));
                }
                let pages = batch.len();
                match acks {
                    Acks::Batched => {
                        frontier.complete_many(&batch).await.expect("completes");
                    }
                    Acks::OneByOne => {
                        for (lease, outcome) in batch {
                            frontier.complete(&lease, outcome).await.expect("completes");
                        }
                    }
                }
                done.fetch_add(pages, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    tasks.join_all().await;
    let elapsed = started.elapsed();
    let pages = done.load(std::sync::atomic::Ordering::Relaxed);
    let calls = client_calls_all(&mut admins).await - calls0;
    let commands = per_page(&commands0, &command_calls_all(&mut admins).await, pages);
    let client_trips = clients.iter().map(RedisFrontier::round_trips).sum::<u64>() - client0;
    let cpu: Vec<f64> = cpu_each(&mut admins)
        .await
        .iter()
        .zip(&cpu0)
        .map(|(after, before)| after - before)
        .collect();
    let pages_per_s = pages as f64 / elapsed.as_secs_f64();
    let shards = servers.len();
    let busy: Vec<String> = cpu
        .iter()
        .map(|c| format!("{:.0}%", 100.0 * c / elapsed.as_secs_f64()))
        .collect();
    println!(
        "throughput ({shards} shard(s), {acks:?} acknowledgements, {shape:?} children): {pages} pages with {CHILDREN} children each in {elapsed:?} = \
         {pages_per_s:.0} pages/s; {calls} script calls seen by Redis, {client_trips} sent by \
         the client; Redis used {:.1} s of CPU ({} of one core per server)",
        cpu.iter().sum::<f64>(),
        busy.join(", ")
    );
    println!("throughput ({shards} shard(s), {acks:?}, {shape:?}): Redis ran {commands}");
    let stats = frontier
        .job_stats(&j)
        .await
        .expect("reads")
        .expect("registered");
    assert_eq!(stats.pages, pages as u64, "every page counted once");
    // The next run leases from the same spider: nothing of this job may be left in it.
    assert!(
        frontier.purge(&j).await.expect("purges"),
        "the job is registered"
    );
    Run {
        pages_per_s,
        round_trips: calls as f64 / pages as f64,
        client_trips: client_trips as f64 / pages as f64,
        cpu_ms_per_page: cpu.iter().map(|c| 1000.0 * c / pages as f64).collect(),
    }
}

async fn cleanup(servers: &[String], prefix: &str) {
    let mut deleted = 0usize;
    for url in servers {
        deleted += harness::delete_prefix(url, prefix).await;
    }
    println!("cleanup: deleted {deleted} keys under {prefix}");
}
