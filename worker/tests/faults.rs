//! Faults between a worker and its frontier, injected in-process: a frontier that fails the
//! way Redis does under a network blip, wrapped around the in-memory twin. The real services'
//! version of these faults is the chaos suite (`make chaos`); these run in a second.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kubecrawl_api::{CrawlRequest, JobRef, PageRecord};
use kubecrawl_e2e::site::{SiteConfig, TestSite};
use kubecrawl_frontier::{
    Admission, Completion, DomainHint, DomainRules, Frontier, FrontierConfig, JobBacklog,
    JobPolicy, JobStats, Known, KnownCursor, Lease, MemoryFrontier, Outcome, RetryOutcome,
    RetryRequest, SpiderBacklog, SpiderStats, WorkerCounts,
};
use kubecrawl_worker::fetch::{FetchConfig, Fetcher};
use kubecrawl_worker::metrics::Metrics;
use kubecrawl_worker::robots::RobotsCache;
use kubecrawl_worker::runtime::{Worker, WorkerConfig};
use kubecrawl_worker::sink::{Error as SinkError, Sink};
use kubecrawl_worker::spider::Registry;
use tokio_util::sync::CancellationToken;

/// How long the small crawl may take before the test counts it as hung.
const DEADLINE: Duration = Duration::from_secs(120);

/// The in-memory frontier, except that reading a job's policy fails the first `failures`
/// times the way a Redis connection reset does.
struct Blipping {
    inner: MemoryFrontier,
    failures: AtomicU32,
}

fn blip() -> kubecrawl_frontier::Error {
    kubecrawl_frontier::Error::Redis {
        op: "policy",
        source: redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )),
    }
}

#[async_trait]
impl Frontier for Blipping {
    async fn register(&self, job: &JobRef, policy: &JobPolicy) -> kubecrawl_frontier::Result<()> {
        self.inner.register(job, policy).await
    }
    async fn seed(
        &self,
        job: &JobRef,
        seeds: &[CrawlRequest],
    ) -> kubecrawl_frontier::Result<Admission> {
        self.inner.seed(job, seeds).await
    }
    async fn lease(
        &self,
        spiderid: &str,
        max: usize,
        duration: Duration,
    ) -> kubecrawl_frontier::Result<Vec<Lease>> {
        self.inner.lease(spiderid, max, duration).await
    }
    async fn complete(
        &self,
        lease: &Lease,
        outcome: Outcome,
    ) -> kubecrawl_frontier::Result<Completion> {
        self.inner.complete(lease, outcome).await
    }
    async fn retry(
        &self,
        lease: &Lease,
        retry: RetryRequest,
    ) -> kubecrawl_frontier::Result<RetryOutcome> {
        self.inner.retry(lease, retry).await
    }
    async fn extend(
        &self,
        leases: &[Lease],
        duration: Duration,
    ) -> kubecrawl_frontier::Result<usize> {
        self.inner.extend(leases, duration).await
    }
    async fn release(&self, lease: &Lease) -> kubecrawl_frontier::Result<bool> {
        self.inner.release(lease).await
    }
    async fn reclaim_expired(
        &self,
        spiderid: &str,
        max: usize,
    ) -> kubecrawl_frontier::Result<usize> {
        self.inner.reclaim_expired(spiderid, max).await
    }
    async fn suspend(&self, job: &JobRef) -> kubecrawl_frontier::Result<bool> {
        self.inner.suspend(job).await
    }
    async fn resume(&self, job: &JobRef) -> kubecrawl_frontier::Result<bool> {
        self.inner.resume(job).await
    }
    async fn purge(&self, job: &JobRef) -> kubecrawl_frontier::Result<bool> {
        self.inner.purge(job).await
    }
    async fn rotate_known(&self, job: &JobRef) -> kubecrawl_frontier::Result<bool> {
        self.inner.rotate_known(job).await
    }
    async fn known_pages(
        &self,
        job: &JobRef,
        cursor: Option<KnownCursor>,
        count: usize,
    ) -> kubecrawl_frontier::Result<(Vec<CrawlRequest>, Option<KnownCursor>)> {
        self.inner.known_pages(job, cursor, count).await
    }
    async fn drop_known(&self, job: &JobRef, which: Known) -> kubecrawl_frontier::Result<()> {
        self.inner.drop_known(job, which).await
    }
    async fn epoch(&self, spiderid: &str) -> kubecrawl_frontier::Result<String> {
        self.inner.epoch(spiderid).await
    }
    async fn job_stats(&self, job: &JobRef) -> kubecrawl_frontier::Result<Option<JobStats>> {
        self.inner.job_stats(job).await
    }
    async fn policy(&self, job: &JobRef) -> kubecrawl_frontier::Result<Option<JobPolicy>> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(blip());
        }
        self.inner.policy(job).await
    }
    async fn report_domain(
        &self,
        spiderid: &str,
        domain: &str,
        hint: DomainHint,
    ) -> kubecrawl_frontier::Result<()> {
        self.inner.report_domain(spiderid, domain, hint).await
    }
    async fn cut_off(
        &self,
        job: &JobRef,
        domain: &str,
        reason: &str,
    ) -> kubecrawl_frontier::Result<bool> {
        self.inner.cut_off(job, domain, reason).await
    }
    async fn spider_stats(&self, spiderid: &str) -> kubecrawl_frontier::Result<SpiderStats> {
        self.inner.spider_stats(spiderid).await
    }
    async fn heartbeat(
        &self,
        spiderid: &str,
        worker: &str,
        ttl: Duration,
    ) -> kubecrawl_frontier::Result<()> {
        self.inner.heartbeat(spiderid, worker, ttl).await
    }
    async fn workers(&self) -> kubecrawl_frontier::Result<WorkerCounts> {
        self.inner.workers().await
    }
    async fn backlog(&self, spiderid: &str) -> kubecrawl_frontier::Result<SpiderBacklog> {
        self.inner.backlog(spiderid).await
    }
    async fn job_backlog(&self, job: &JobRef) -> kubecrawl_frontier::Result<JobBacklog> {
        self.inner.job_backlog(job).await
    }
    async fn set_domain_rules(
        &self,
        spiderid: &str,
        rules: &DomainRules,
    ) -> kubecrawl_frontier::Result<()> {
        self.inner.set_domain_rules(spiderid, rules).await
    }
    async fn domain_rules(&self, spiderid: &str) -> kubecrawl_frontier::Result<DomainRules> {
        self.inner.domain_rules(spiderid).await
    }
}

/// Records kept in memory.
#[derive(Default)]
struct Collect(Mutex<Vec<PageRecord>>);

#[async_trait]
impl Sink for Collect {
    async fn publish(&self, record: &PageRecord) -> Result<(), SinkError> {
        self.0.lock().expect("lock").push(record.clone());
        Ok(())
    }
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Registers job `crawlid` of the link spider with `policy` and seeds it with `seed`.
async fn seeded_job(
    frontier: &dyn Frontier,
    crawlid: &str,
    policy: &JobPolicy,
    seed: &str,
) -> JobRef {
    let job = JobRef {
        spiderid: "link".to_owned(),
        appid: "faults".to_owned(),
        crawlid: crawlid.to_owned(),
    };
    frontier.register(&job, policy).await.expect("registers");
    frontier
        .seed(&job, &[CrawlRequest::seed(seed, 1)])
        .await
        .expect("seeds");
    job
}

/// A worker of the in-memory frontier for `site`, stopping when `job` is finished.
fn worker_for(
    site: &TestSite,
    frontier: Arc<dyn Frontier>,
    sink: Arc<Collect>,
    job: &JobRef,
    lease_duration: Duration,
) -> Arc<Worker> {
    let fetcher = Fetcher::new(FetchConfig {
        allow_private_networks: true,
        resolve: site
            .hosts()
            .iter()
            .map(|(host, addr)| ((*host).to_owned(), *addr))
            .collect(),
        ..FetchConfig::default()
    })
    .expect("client");
    Arc::new(Worker::new(
        frontier,
        fetcher,
        RobotsCache::new("kubecrawl", 100),
        Registry::builtin().get("link").expect("the link spider"),
        sink,
        Metrics::new(),
        WorkerConfig {
            idle_poll: Duration::from_millis(50),
            lease_duration,
            stop_when_finished: Some(job.clone()),
            ..WorkerConfig::default()
        },
    ))
}

/// Regression: leases were never extended, so a page slower than the lease was reclaimed
/// while its worker still fetched it, and fetched (and published) twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_slower_than_its_lease_is_fetched_once() {
    let site = TestSite::start(
        SiteConfig::default()
            .with_traps(true)
            .with_slow_delay(Duration::from_secs(3)),
    )
    .await
    .expect("site starts");
    let frontier = Arc::new(MemoryFrontier::new(FrontierConfig::default()));
    let policy = JobPolicy {
        maxdepth: 0,
        ..JobPolicy::unlimited()
    };
    let slow = site.url("site.test", kubecrawl_e2e::site::traps::SLOW);
    let job = seeded_job(frontier.as_ref(), "slow", &policy, &slow).await;
    let sink = Arc::new(Collect::default());
    // A lease of 900 ms, extended every 300 ms, against a page that takes 3 s.
    let worker = worker_for(
        &site,
        frontier.clone(),
        sink.clone(),
        &job,
        Duration::from_millis(900),
    );
    tokio::time::timeout(DEADLINE, worker.run(CancellationToken::new()))
        .await
        .expect("the crawl hung");
    assert_eq!(
        site.hits(kubecrawl_e2e::site::traps::SLOW),
        1,
        "the slow page was fetched again while its first fetch was running"
    );
    let records = sink.0.lock().expect("lock").clone();
    assert_eq!(records.len(), 1, "published once");
    assert_eq!(records[0].url, slow);
}

/// Regression: an error while reading the job's policy (a Redis blip) completed the lease as
/// `job_gone`, so the page was lost — here, the seed, and with it the whole crawl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontier_blip_while_reading_the_policy_loses_no_page() {
    let site = TestSite::start(SiteConfig::default().with_pages(40))
        .await
        .expect("site starts");
    let truth = site.reachable(&site.reach()).expect("ground truth");
    let frontier = Arc::new(Blipping {
        inner: MemoryFrontier::new(FrontierConfig::default()),
        failures: AtomicU32::new(3),
    });
    let policy = JobPolicy {
        maxdepth: 1000,
        allowed_domains: vec!["site.test".to_owned()],
        deny_extensions: None,
        ..JobPolicy::unlimited()
    };
    let job = seeded_job(frontier.as_ref(), "blip", &policy, &site.root()).await;
    let sink = Arc::new(Collect::default());
    let worker = worker_for(
        &site,
        frontier.clone(),
        sink.clone(),
        &job,
        WorkerConfig::default().lease_duration,
    );
    tokio::time::timeout(DEADLINE, worker.clone().run(CancellationToken::new()))
        .await
        .expect("the crawl hung");
    assert_eq!(
        frontier.failures.load(Ordering::SeqCst),
        0,
        "every blip happened"
    );
    let records = sink.0.lock().expect("lock").clone();
    let got: BTreeSet<String> = records.iter().map(|r| r.url.clone()).collect();
    assert_eq!(got, truth.urls(), "pages lost to a frontier blip");
    let stats = frontier
        .job_stats(&job)
        .await
        .expect("stats")
        .expect("registered");
    assert_eq!(stats.pages, truth.len() as u64, "{stats:?}");
    let outcomes: BTreeMap<&str, u64> = worker.metrics().outcomes();
    assert_eq!(outcomes.get("policy_unavailable"), Some(&3), "{outcomes:?}");
}
