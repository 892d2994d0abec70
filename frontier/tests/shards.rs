//! Properties of a frontier spread over shards that the conformance suite (which runs on three
//! shards and a Redis Cluster too) cannot show: where each domain's keys live, that the shard
//! count is pinned, that `maxPages` holds across shards under concurrent clients, and that a
//! crawl over shards never looks finished before it is. They need REDIS_SHARD_URLS and
//! REDIS_CLUSTER_URLS and fail (never skip) without them.

#[path = "conformance/harness.rs"]
#[allow(
    dead_code,
    reason = "shared with the conformance suite, which uses all of it"
)]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::{Harness, Target};
use kubecrawl_frontier::{
    CrawlRequest, Error, Frontier, JobPolicy, JobRef, Outcome, RedisFrontier,
};

const SPIDER: &str = "link";
const LONG: Duration = Duration::from_secs(60);

fn job(crawlid: &str) -> JobRef {
    JobRef {
        spiderid: SPIDER.to_owned(),
        appid: "testapp".to_owned(),
        crawlid: crawlid.to_owned(),
    }
}

/// The domain queue keys (`P:{tag}:dq:D`) on one server: tag → domains.
async fn domain_queues(url: &str, prefix: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for key in harness::keys_with_prefix(url, prefix).await {
        let Some((tag, rest)) = key.split_once('{').and_then(|(_, r)| r.split_once('}')) else {
            continue;
        };
        if let Some(domain) = rest.strip_prefix(":dq:") {
            out.entry(tag.to_owned())
                .or_default()
                .insert(domain.to_owned());
        }
    }
    out
}

async fn each_server_holds_one_shard_with_its_own_domains(h: &harness::Redis) {
    let f = h.frontier();
    assert_eq!(f.shards(), 3);
    let j = job("spread");
    f.register(&j, &JobPolicy::unlimited())
        .await
        .expect("registers");
    let seeds: Vec<CrawlRequest> = (0..60)
        .map(|i| CrawlRequest::seed(format!("http://host{i}.test/"), 1))
        .collect();
    let a = f.seed(&j, &seeds).await.expect("seeds");
    assert_eq!(a.admitted, 60);
    let bases = f.shard_bases(SPIDER).expect("bases");
    let mut seen = BTreeSet::new();
    for server in h.target().servers() {
        let queues = domain_queues(&server, f.prefix()).await;
        assert_eq!(queues.len(), 1, "{server} holds one shard: {queues:?}");
        let (tag, domains) = queues.into_iter().next().expect("one");
        let shard = bases
            .iter()
            .position(|b| b.ends_with(&format!("{{{tag}}}")))
            .expect("a shard's tag");
        assert!(seen.insert(shard), "shard {shard} on two servers");
        for domain in &domains {
            assert_eq!(f.shard_of(domain), shard, "{domain} on {server}");
        }
        assert!(
            (10..=30).contains(&domains.len()),
            "{} of 60 domains on {server}",
            domains.len()
        );
    }
    assert_eq!(seen.len(), 3);
    let stats = f.job_stats(&j).await.expect("stats").expect("registered");
    assert_eq!((stats.queued, stats.admitted), (60, 60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_independent_server_holds_one_shard_with_its_own_domains() {
    let h = harness::shards("spread").await;
    each_server_holds_one_shard_with_its_own_domains(&h).await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_primary_of_the_cluster_holds_one_shard_with_its_own_domains() {
    let h = harness::cluster("spread-cluster").await;
    each_server_holds_one_shard_with_its_own_domains(&h).await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_number_of_shards_is_refused() {
    let h = harness::shards("pinned").await;
    let Target::Shards(urls) = h.target().clone() else {
        panic!("sharded target")
    };
    let prefix = h.frontier().prefix().to_owned();
    let two = urls[..2]
        .iter()
        .map(|u| redis::Client::open(u.as_str()).expect("url"))
        .collect();
    match RedisFrontier::connect_shards(two, &prefix, harness::config()).await {
        Err(Error::Shards {
            stored, configured, ..
        }) => assert_eq!((stored, configured), (3, 2)),
        other => panic!("two shards accepted: {other:?}"),
    }
    let err = RedisFrontier::connect(&urls[0], &prefix, harness::config())
        .await
        .expect_err("one shard refused");
    assert!(err.to_string().contains("spreads over 3 shard(s)"), "{err}");
    // The same list works, from any number of clients.
    h.client().await;
    h.cleanup().await;
}

/// Registers job `crawlid` without limits and seeds it with page 0 of host h0.test.
async fn seeded_from_h0(f: &RedisFrontier, crawlid: &str) -> JobRef {
    let j = job(crawlid);
    f.register(&j, &JobPolicy::unlimited())
        .await
        .expect("registers");
    f.seed(&j, &[CrawlRequest::seed("http://h0.test/0", 1)])
        .await
        .expect("seeds");
    j
}

/// Leases and completes until nothing is left, yielding `links(url)` as children; returns the
/// URLs it fetched.
async fn crawl(client: RedisFrontier, links: fn(&str) -> Vec<String>) -> Vec<String> {
    let mut fetched = Vec::new();
    let mut idle = 0;
    while idle < 20 {
        let leases = client.lease(SPIDER, 8, LONG).await.expect("leases");
        if leases.is_empty() {
            idle += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        idle = 0;
        let acks: Vec<_> = leases
            .into_iter()
            .map(|lease| {
                let children = links(&lease.request.url)
                    .into_iter()
                    .map(|u| lease.request.child(u))
                    .collect();
                fetched.push(lease.request.url.clone());
                (lease, Outcome::status(200, 100).with_children(children))
            })
            .collect();
        client.complete_many(&acks).await.expect("completes");
    }
    fetched
}

/// Page `n` of a site of 600 pages on 40 hosts links to pages 2n+1 and 2n+2 (a binary tree),
/// so every page is found through a chain of pages on other hosts.
fn tree_links(url: &str) -> Vec<String> {
    let n: u64 = url
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (2 * n + 1..=2 * n + 2)
        .filter(|c| *c < 600)
        .map(|c| format!("http://h{}.test/{c}", c % 40))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_over_shards_fetches_every_page_once() {
    let h = harness::shards("tree").await;
    let f = h.frontier().clone();
    let j = seeded_from_h0(&f, "tree").await;
    let mut crawlers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        crawlers.spawn(crawl(h.client().await, tree_links));
    }
    let mut fetched: Vec<String> = Vec::new();
    for part in crawlers.join_all().await {
        fetched.extend(part);
    }
    let unique: BTreeSet<&String> = fetched.iter().collect();
    assert_eq!(unique.len(), 600, "every page fetched");
    assert_eq!(fetched.len(), 600, "no page fetched twice");
    let stats = f.job_stats(&j).await.expect("stats").expect("registered");
    assert!(stats.finished(), "{stats:?}");
    assert_eq!((stats.pages, stats.admitted), (600, 600));
    h.cleanup().await;
}

/// A TCP proxy to `upstream` that holds every chunk a client sends for `delay` before passing
/// it on; returns its `redis://` URL.
async fn slow_proxy(upstream: &str, delay: Duration) -> String {
    let upstream = upstream.trim_start_matches("redis://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream)
                .await
                .expect("upstream");
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = server.into_split();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = client_rx.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    if server_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
            });
        }
    });
    format!("redis://{addr}")
}

/// A page's children go to their own shards before its lease is acknowledged on its shard, so
/// a reader can see the lease gone and miss the children. Here the reader reaches one shard
/// 40 ms late, over a chain of pages on hosts of every shard (one page in flight at a time,
/// its one child on the next host): without reading again, the job looked finished after a
/// few pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_over_shards_never_looks_finished_early() {
    let h = harness::shards("chain").await;
    let Target::Shards(urls) = h.target().clone() else {
        panic!("sharded target")
    };
    let f = h.frontier().clone();
    let j = seeded_from_h0(&f, "chain").await;
    let slow = f.shard_of("h0.test");
    let mut watched = urls.clone();
    watched[slow] = slow_proxy(&urls[slow], Duration::from_millis(40)).await;
    let clients = watched
        .iter()
        .map(|u| redis::Client::open(u.as_str()).expect("url"))
        .collect();
    let watcher_frontier = RedisFrontier::connect_shards(clients, f.prefix(), harness::config())
        .await
        .expect("connects through the proxy");
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (j, done) = (j.clone(), done.clone());
        tokio::spawn(async move {
            let (mut reads, mut early) = (0, Vec::new());
            while !done.load(Ordering::Relaxed) {
                let stats = watcher_frontier
                    .job_stats(&j)
                    .await
                    .expect("stats")
                    .expect("registered");
                reads += 1;
                if stats.finished() && stats.pages < 120 {
                    early.push(stats);
                }
            }
            (reads, early)
        })
    };
    fn chain(url: &str) -> Vec<String> {
        let n: u64 = url
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if n + 1 < 120 {
            vec![format!("http://h{}.test/{}", (n + 1) % 40, n + 1)]
        } else {
            Vec::new()
        }
    }
    let client = h.client().await;
    let mut fetched = 0;
    while fetched < 120 {
        for lease in client.lease(SPIDER, 1, LONG).await.expect("leases") {
            let children = chain(&lease.request.url)
                .into_iter()
                .map(|u| lease.request.child(u))
                .collect();
            client
                .complete(&lease, Outcome::status(200, 1).with_children(children))
                .await
                .expect("completes");
            fetched += 1;
            // Long enough for the reader to look in the middle of a page.
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    done.store(true, Ordering::Relaxed);
    let (reads, early) = watcher.await.expect("watcher");
    assert!(reads > 10, "only {reads} reads");
    assert!(
        early.is_empty(),
        "looked finished early {} times: {:?}",
        early.len(),
        early.first()
    );
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pages_holds_across_shards_with_concurrent_clients() {
    let h = harness::cluster("budget").await;
    let j = job("budget");
    let policy = JobPolicy {
        max_pages: Some(150),
        ..JobPolicy::unlimited()
    };
    h.frontier().register(&j, &policy).await.expect("registers");
    let seeds: Vec<CrawlRequest> = (0..4)
        .map(|i| CrawlRequest::seed(format!("http://h{i}.test/{i}"), 1))
        .collect();
    let a = h.frontier().seed(&j, &seeds).await.expect("seeds");
    assert_eq!(a.admitted, 4);
    let mut crawlers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        crawlers.spawn(crawl(h.client().await, tree_links));
    }
    let fetched: usize = crawlers.join_all().await.iter().map(Vec::len).sum();
    let stats = h
        .frontier()
        .job_stats(&j)
        .await
        .expect("stats")
        .expect("registered");
    assert_eq!(stats.admitted, 150, "{stats:?}");
    assert_eq!((fetched, stats.pages), (150, 150));
    h.cleanup().await;
}
