//! The worker loop: lease, fetch, parse, publish, acknowledge — and never lose a lease.
//!
//! # Expected flow
//! 1. Lease up to `lease_batch` requests of the worker's spider, no more than there are free
//!    fetch slots (`concurrency`).
//! 2. For each lease, in its own task and tracing span (appid, crawlid, spiderid, url):
//!    check robots.txt (reporting a Crawl-delay to the frontier), fetch with every redirect
//!    hop checked against the job's link filter, decode, extract links, run the spider's
//!    `parse`, publish every item to the sink and wait for it to be durable, then acknowledge
//!    the lease with its outcome (status, bytes, items, step, children).
//! 3. When the frontier has nothing, wait (with a growing pause, up to `idle_poll`) and ask
//!    again: a cluster worker never exits because it is idle. A standalone crawl stops once
//!    its job is finished.
//!
//! # Guarantees
//! - A lease is acknowledged only after its items were published (at-least-once). If Kafka
//!   is unreachable the lease is given back and leasing pauses; if it refuses the record for
//!   good (too large even without its body, a topic it may not write) the request is retried
//!   with backoff a bounded number of times, then a dead-letter record with the reason (no
//!   body) is published and the lease acknowledged as an error: a poison page never loops.
//! - A lease outlives a slow page: while a page is in work its lease is extended every third
//!   of `lease_duration`, so only a dead (or stuck past `page_timeout`) worker loses it.
//! - robots.txt that cannot be fetched (5xx, timeout) pauses its host for `robots_retry` and
//!   the request is retried (bounded, counted), never completed as denied.
//! - A frontier error while reading a job's policy gives the lease back; it never counts the
//!   request as done.
//! - Redirects are followed inline only on the same host, hop by hop, each hop checked
//!   against the job's filter and the host's robots.txt. A redirect to another host ends the
//!   fetch: the 3xx is the page, and its target is handed to the frontier as a request at the
//!   same depth, so that host's robots.txt, politeness and dedupe apply to it like to any
//!   other request. The job's Cookie goes only to its own domains (see
//!   `JobPolicy::cookie_for`), never with robots.txt.
//! - One bad URL never stops the worker: every failure is classified (retry, error,
//!   robots-denied, job gone), counted, logged with fields, and acknowledged or given back.
//! - On shutdown the worker stops leasing, lets in-flight fetches finish within
//!   `drain_timeout`, gives back the leases of those that did not, flushes the sink and
//!   returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kubecrawl_api::{CrawlRequest, JobRef, PageRecord};
use kubecrawl_frontier::filter::LinkFilter;
use kubecrawl_frontier::{
    Completion, DomainHint, Frontier, JobPolicy, Lease, Outcome, RetryOutcome, RetryRequest,
};
use kubecrawl_process::format_chain;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;

use crate::charset::{self, Decoded};
use crate::extract;
use crate::fetch::{Fetched, Fetcher, RequestOptions};
use crate::metrics::Metrics;
use crate::robots::RobotsCache;
use crate::sink::Sink;
use crate::spider::{Output, Response, Spider};

/// How long a job's policy is cached before it is read from the frontier again, so that a
/// changed CrawlJob reaches every worker within this time.
const POLICY_TTL: Duration = Duration::from_secs(10);
/// The first pause after an empty lease; it doubles up to [`WorkerConfig::idle_poll`].
const IDLE_START: Duration = Duration::from_millis(20);
/// How long leasing pauses after the sink could not publish (Kafka unreachable): long
/// enough not to refetch pages in a tight loop, short enough to resume soon after.
const SINK_PAUSE: Duration = Duration::from_secs(2);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The spider fleet this worker serves.
    pub spiderid: String,
    /// This worker's name in heartbeats (pod name, or host and pid).
    pub worker_name: String,
    /// The most fetches in flight at once.
    pub concurrency: usize,
    /// The most fetches in flight to one host at once.
    pub per_host_concurrency: usize,
    /// The most requests asked for in one lease call.
    pub lease_batch: usize,
    /// How long a lease holds its request.
    pub lease_duration: Duration,
    /// Retries of a transient failure before the last answer is taken as final. Must match
    /// the frontier's `max_retries`.
    pub max_retries: u32,
    /// The longest pause between two lease calls while the frontier is empty.
    pub idle_poll: Duration,
    /// How long in-flight fetches may finish at shutdown.
    pub drain_timeout: Duration,
    /// How often the worker reports itself alive.
    pub heartbeat_interval: Duration,
    /// How long a host waits after its robots.txt could not be fetched (5xx, network)
    /// before its requests are tried again.
    pub robots_retry: Duration,
    /// The longest one page may take from lease to acknowledgement (robots.txt, redirects,
    /// parse, publish); past it the attempt counts as a transient failure and is retried.
    pub page_timeout: Duration,
    /// Stop when this job is finished (a standalone crawl). `None`: run until shut down.
    pub stop_when_finished: Option<JobRef>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            spiderid: "link".to_owned(),
            worker_name: default_worker_name(),
            concurrency: 64,
            per_host_concurrency: 16,
            lease_batch: 32,
            lease_duration: Duration::from_secs(120),
            max_retries: 3,
            idle_poll: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(20),
            heartbeat_interval: Duration::from_secs(10),
            robots_retry: crate::robots::UNREACHABLE_RETRY,
            page_timeout: Duration::from_secs(600),
            stop_when_finished: None,
        }
    }
}

/// `<hostname>-<pid>`: unique per process; a pod's hostname is its name.
pub fn default_worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// What a run did, for the summary at the end of a standalone crawl.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Leases handled (any outcome).
    pub handled: u64,
    /// Leases given back at shutdown.
    pub released: u64,
}

/// A job's policy as a worker uses it.
struct JobContext {
    policy: JobPolicy,
    filter: Option<LinkFilter>,
    attrs: serde_json::Map<String, serde_json::Value>,
    read_at: Instant,
}

/// One worker: a spider, a fetcher, a sink and the frontier they share.
pub struct Worker {
    frontier: Arc<dyn Frontier>,
    fetcher: Fetcher,
    robots: RobotsCache,
    spider: Arc<dyn Spider>,
    sink: Arc<dyn Sink>,
    metrics: Metrics,
    config: WorkerConfig,
    jobs: Mutex<HashMap<JobRef, Arc<JobContext>>>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    leased: Mutex<HashMap<String, Lease>>,
    /// No leasing before this instant: the sink could not publish (Kafka unreachable).
    sink_pause: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Assembles a worker.
    pub fn new(
        frontier: Arc<dyn Frontier>,
        fetcher: Fetcher,
        robots: RobotsCache,
        spider: Arc<dyn Spider>,
        sink: Arc<dyn Sink>,
        metrics: Metrics,
        config: WorkerConfig,
    ) -> Self {
        Self {
            frontier,
            fetcher,
            robots,
            spider,
            sink,
            metrics,
            config,
            jobs: Mutex::new(HashMap::new()),
            hosts: Mutex::new(HashMap::new()),
            leased: Mutex::new(HashMap::new()),
            sink_pause: Mutex::new(None),
        }
    }

    /// The worker's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs until `shutdown` is cancelled (or, for a standalone crawl, the job is finished).
    /// See the module docs for the flow and its guarantees.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Summary {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut summary = Summary::default();
        let mut idle = IDLE_START;
        let heartbeat = tokio::spawn(self.clone().heartbeat(shutdown.clone()));
        let keeper = tokio::spawn(self.clone().keep_leases(shutdown.clone()));

        while !shutdown.is_cancelled() {
            while let Some(done) = tasks.try_join_next() {
                summary.handled += 1;
                if let Err(e) = done {
                    tracing::error!(error = %e, "lease task panicked");
                }
            }
            if let Some(wait) = self.sink_paused() {
                pause(wait, &shutdown).await;
                continue;
            }
            let free = slots.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = tasks.join_next() => summary.handled += 1,
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            let want = free.min(self.config.lease_batch.max(1));
            let leases = match self
                .frontier
                .lease(&self.config.spiderid, want, self.config.lease_duration)
                .await
            {
                Ok(leases) => {
                    self.metrics.set_ready(true);
                    leases
                }
                Err(e) => {
                    self.metrics.set_ready(false);
                    tracing::warn!(error = %format_chain(&e), "lease failed");
                    pause(Duration::from_secs(1), &shutdown).await;
                    continue;
                }
            };
            if leases.is_empty() {
                if tasks.is_empty() && self.job_finished().await {
                    break;
                }
                // Wake early when a task ends: its children may be ready now.
                tokio::select! {
                    () = tokio::time::sleep(idle) => {},
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => summary.handled += 1,
                    () = shutdown.cancelled() => break,
                }
                idle = (idle * 2).min(self.config.idle_poll);
                continue;
            }
            idle = IDLE_START;
            for lease in leases {
                let permit = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let span = tracing::info_span!(
                    "request",
                    appid = %lease.job.appid,
                    crawlid = %lease.job.crawlid,
                    spiderid = %lease.job.spiderid,
                    url = %lease.request.url,
                );
                self.lock_leased()
                    .insert(lease.id.to_string(), lease.clone());
                let worker = self.clone();
                tasks.spawn(
                    async move {
                        worker.handle(lease).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }

        summary.released = self.drain(tasks).await;
        if let Err(e) = self.sink.flush().await {
            tracing::error!(error = %format_chain(&e), "flushing the sink failed");
        }
        heartbeat.abort();
        keeper.abort();
        summary
    }

    /// Lets in-flight tasks finish within the drain timeout, then gives back what is left.
    async fn drain(&self, mut tasks: JoinSet<()>) -> u64 {
        let drained = tokio::time::timeout(self.config.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(left = tasks.len(), "drain timed out, giving leases back");
            tasks.shutdown().await;
        }
        let left: Vec<Lease> = self.lock_leased().drain().map(|(_, l)| l).collect();
        let mut released = 0;
        for lease in left {
            match self.frontier.release(&lease).await {
                Ok(_) => released += 1,
                Err(e) => {
                    tracing::warn!(error = %format_chain(&e), "giving a lease back failed; it will expire")
                }
            }
        }
        released
    }

    async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let ttl = self.config.heartbeat_interval * 3;
        loop {
            if let Err(e) = self
                .frontier
                .heartbeat(&self.config.spiderid, &self.config.worker_name, ttl)
                .await
            {
                tracing::warn!(error = %format_chain(&e), "heartbeat failed");
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.heartbeat_interval) => {},
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Extends the leases of the pages in work, every third of the lease duration, until
    /// shutdown. A failed extension is logged; the next round tries again.
    async fn keep_leases(self: Arc<Self>, shutdown: CancellationToken) {
        let every = (self.config.lease_duration / 3).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {},
                () = shutdown.cancelled() => return,
            }
            let leases: Vec<Lease> = self.lock_leased().values().cloned().collect();
            if leases.is_empty() {
                continue;
            }
            if let Err(e) = self
                .frontier
                .extend(&leases, self.config.lease_duration)
                .await
            {
                tracing::warn!(error = %format_chain(&e), leases = leases.len(), "extending leases failed");
            }
        }
    }

    /// How long leasing still pauses because the sink could not publish.
    fn sink_paused(&self) -> Option<Duration> {
        let mut until = self
            .sink_pause
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let left = until.and_then(|u| u.checked_duration_since(Instant::now()));
        if left.is_none() {
            *until = None;
        }
        left
    }

    async fn job_finished(&self) -> bool {
        let Some(job) = &self.config.stop_when_finished else {
            return false;
        };
        match self.frontier.job_stats(job).await {
            Ok(Some(stats)) => stats.finished(),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    fn lock_leased(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.leased
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Handles one lease to its acknowledgement. Never fails: every outcome is counted.
    async fn handle(&self, lease: Lease) {
        let key = lease.id.to_string();
        let outcome = match tokio::time::timeout(self.config.page_timeout, self.process(&lease))
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(timeout = ?self.config.page_timeout, "page took too long, retrying");
                self.retry(&lease, RetryRequest::default(), "page_timeout")
                    .await
            }
        };
        self.metrics.page(&self.config.spiderid, outcome);
        self.lock_leased().remove(&key);
    }

    async fn process(&self, lease: &Lease) -> &'static str {
        let job = match self.job(&lease.job).await {
            Ok(Some(job)) => job,
            Ok(None) => return self.ack(lease, Outcome::failed(), "job_gone").await,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %format_chain(&e), "reading the job's policy failed, giving the lease back");
                self.give_back(lease).await;
                return "policy_unavailable";
            }
            Err(e) => {
                tracing::warn!(error = %format_chain(&e), "the job's policy cannot be read, retrying");
                return self
                    .retry(lease, RetryRequest::default(), "policy_unreadable")
                    .await;
            }
        };
        let Ok(url) = Url::parse(&lease.request.url) else {
            tracing::warn!("unparsable url in the frontier");
            return self.ack(lease, Outcome::failed(), "invalid_url").await;
        };
        let options = RequestOptions {
            user_agent: job.policy.useragent.as_deref(),
            cookie: url.host_str().and_then(|h| job.policy.cookie_for(h)),
            referer: lease.request.referer.as_deref(),
        };

        let obey_robots = job.policy.politeness.as_ref().is_none_or(|p| p.obey_robots);
        if obey_robots {
            let verdict = self.robots.check(&self.fetcher, &url, &options).await;
            if verdict.unreachable {
                return self.robots_unreachable(lease).await;
            }
            if verdict.fresh
                && let Some(delay) = verdict.crawl_delay
                && let Err(e) = self
                    .frontier
                    .report_domain(
                        &self.config.spiderid,
                        &lease.domain,
                        DomainHint::CrawlDelay(delay),
                    )
                    .await
            {
                tracing::warn!(error = %format_chain(&e), "reporting crawl-delay failed");
            }
            if !verdict.allowed {
                tracing::debug!("disallowed by robots.txt");
                return self.ack(lease, Outcome::failed(), "robots_denied").await;
            }
        }

        // The host slot bounds concurrent fetches to one host; parsing and publishing do not
        // touch the host, so the slot is given back as soon as the body is read.
        let host_slot = self.host_slot(&lease.domain).await;
        let follow = |next: &Url| {
            next.host_str() == url.host_str()
                && (!obey_robots || self.robots.cached_allows(next) == Some(true))
                && job.filter.as_ref().is_none_or(|f| {
                    let mut hop = lease.request.clone();
                    hop.url = next.to_string();
                    hop.depth = 0;
                    f.check(&hop).is_ok()
                })
        };
        let fetched = self.fetcher.fetch(&url, &options, follow).await;
        drop(host_slot);
        let last_try = lease.request.retries >= self.config.max_retries;
        let page = match fetched {
            Ok(page) => page,
            Err(e) if e.is_transient() && !last_try => {
                tracing::info!(error = %format_chain(&e), retries = lease.request.retries, "fetch failed, retrying");
                return self.retry(lease, RetryRequest::default(), "retry").await;
            }
            Err(e) => {
                tracing::warn!(error = %format_chain(&e), kind = e.kind(), "fetch failed");
                return self.ack(lease, Outcome::failed(), e.kind()).await;
            }
        };
        self.metrics
            .fetched(&self.config.spiderid, page.elapsed, page.body.len());

        if is_retryable_status(page.status) && !last_try {
            let retry_after = page.retry_after();
            if let Some(after) = retry_after
                && let Err(e) = self
                    .frontier
                    .report_domain(
                        &self.config.spiderid,
                        &lease.domain,
                        DomainHint::RetryAfter(after),
                    )
                    .await
            {
                tracing::warn!(error = %format_chain(&e), "reporting retry-after failed");
            }
            tracing::info!(
                status = page.status,
                retries = lease.request.retries,
                "server asked to retry"
            );
            return self
                .retry(
                    lease,
                    RetryRequest {
                        not_before: retry_after,
                        status: Some(page.status),
                    },
                    "retry",
                )
                .await;
        }

        let status = page.status;
        let bytes = page.body.len() as u64;
        let handed_over = redirect_elsewhere(&page, lease);
        let spider = self.spider.clone();
        let response_job = job.clone();
        let lease_for_parse = lease.clone();
        // The request's span follows the work onto the blocking thread, so whatever the
        // spider logs carries appid, crawlid, spiderid and url.
        let span = tracing::Span::current();
        let parsed = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let response = build_response(&lease_for_parse, page, &response_job);
            spider.parse(&response)
        })
        .await;
        let outputs = match parsed {
            Ok(outputs) => outputs,
            Err(e) => {
                tracing::error!(error = %e, "spider panicked");
                return self
                    .ack(lease, Outcome::status(status, bytes), "spider_panicked")
                    .await;
            }
        };

        let mut children: Vec<CrawlRequest> = handed_over.into_iter().collect();
        let mut items: Vec<PageRecord> = Vec::new();
        for output in outputs {
            match output {
                Output::Request(request) => children.push(request),
                Output::Item(item) => items.push(*item),
            }
        }
        let step = items
            .iter()
            .filter_map(|i| i.attrs.get("step").and_then(serde_json::Value::as_u64))
            .max()
            .and_then(|s| u32::try_from(s).ok());
        for item in &items {
            if let Err(e) = self.sink.publish(item).await {
                return self
                    .publish_failed(
                        lease,
                        item,
                        &e,
                        Outcome {
                            status: None,
                            bytes,
                            items: 0,
                            step,
                            children,
                        },
                    )
                    .await;
            }
        }
        let outcome = Outcome {
            status: Some(status),
            bytes,
            items: items.len() as u64,
            step,
            children,
        };
        self.ack(lease, outcome, "ok").await
    }

    /// A record could not be published. Kafka unreachable or slow: the lease is given back
    /// and leasing pauses. Refused for good: retried with backoff while retries are left,
    /// then a dead-letter record names the reason and the lease is acknowledged as an error
    /// (its children still enqueued, so the crawl goes on).
    async fn publish_failed(
        &self,
        lease: &Lease,
        item: &PageRecord,
        error: &crate::sink::Error,
        failed: Outcome,
    ) -> &'static str {
        if !error.is_permanent() {
            tracing::error!(error = %format_chain(error), "publishing failed, giving the lease back");
            *self
                .sink_pause
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Instant::now() + SINK_PAUSE);
            self.give_back(lease).await;
            return "publish_failed";
        }
        let reason = error.reason();
        if lease.request.retries < self.config.max_retries {
            tracing::warn!(error = %format_chain(error), reason, retries = lease.request.retries, "record refused by the sink, retrying");
            return self
                .retry(lease, RetryRequest::default(), "publish_retry")
                .await;
        }
        tracing::error!(error = %format_chain(error), reason, "record refused by the sink after every retry, dead-lettered");
        if let Err(e) = self.sink.dead_letter(item, &reason).await {
            tracing::error!(error = %format_chain(&e), reason, "publishing the dead-letter record failed");
        }
        self.ack(lease, failed, "dead_lettered").await
    }

    /// robots.txt could not be fetched: its host pauses for `robots_retry` (fleet-wide) and
    /// this request is retried after it, a bounded number of times.
    async fn robots_unreachable(&self, lease: &Lease) -> &'static str {
        let wait = self.config.robots_retry;
        tracing::info!(retries = lease.request.retries, wait = ?wait, "robots.txt unreachable, retrying later");
        if let Err(e) = self
            .frontier
            .report_domain(
                &self.config.spiderid,
                &lease.domain,
                DomainHint::RetryAfter(wait),
            )
            .await
        {
            tracing::warn!(error = %format_chain(&e), "reporting the robots.txt outage failed");
        }
        self.retry(
            lease,
            RetryRequest {
                not_before: Some(wait),
                status: None,
            },
            "robots_unreachable",
        )
        .await
    }

    /// Gives a lease back to the head of its queue; when even that fails, it expires.
    async fn give_back(&self, lease: &Lease) {
        if let Err(e) = self.frontier.release(lease).await {
            tracing::warn!(error = %format_chain(&e), "giving a lease back failed; it will expire");
        }
    }

    async fn ack(&self, lease: &Lease, outcome: Outcome, label: &'static str) -> &'static str {
        match self.frontier.complete(lease, outcome).await {
            Ok(Completion::Acked(_)) => label,
            Ok(Completion::Parked) => "parked",
            Ok(Completion::JobGone) => "job_gone",
            Ok(Completion::Stale) => "stale",
            Err(e) => {
                tracing::warn!(error = %format_chain(&e), "acknowledging failed; the lease will expire");
                "ack_failed"
            }
        }
    }

    /// Schedules a retry; `label` names the outcome when it was scheduled.
    async fn retry(&self, lease: &Lease, retry: RetryRequest, label: &'static str) -> &'static str {
        match self.frontier.retry(lease, retry).await {
            Ok(RetryOutcome::Scheduled { .. }) => label,
            Ok(RetryOutcome::GaveUp) => "gave_up",
            Ok(RetryOutcome::JobGone) => "job_gone",
            Ok(RetryOutcome::Stale) => "stale",
            Err(e) => {
                tracing::warn!(error = %format_chain(&e), "scheduling a retry failed; the lease will expire");
                "ack_failed"
            }
        }
    }

    /// The job's policy, cached for [`POLICY_TTL`]. `None` when the job is gone.
    async fn job(&self, job: &JobRef) -> kubecrawl_frontier::Result<Option<Arc<JobContext>>> {
        let cached = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(job)
            .filter(|c| c.read_at.elapsed() < POLICY_TTL)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let Some(policy) = self.frontier.policy(job).await? else {
            return Ok(None);
        };
        let filter = LinkFilter::new(&policy)
            .inspect_err(
                |e| tracing::warn!(error = %format_chain(e), "job policy does not compile"),
            )
            .ok();
        let attrs = match &policy.attrs {
            Some(serde_json::Value::Object(map)) => map.clone(),
            _ => serde_json::Map::new(),
        };
        let context = Arc::new(JobContext {
            policy,
            filter,
            attrs,
            read_at: Instant::now(),
        });
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget stale entries so the map follows the set of live jobs.
        jobs.retain(|_, c| c.read_at.elapsed() < POLICY_TTL * 6);
        jobs.insert(job.clone(), context.clone());
        Ok(Some(context))
    }

    /// Waits for a fetch slot of `host`; the slot is freed when the guard drops.
    async fn host_slot(&self, host: &str) -> tokio::sync::OwnedSemaphorePermit {
        let semaphore = {
            let mut hosts = self
                .hosts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Drop hosts nobody is fetching from, so the map stays as small as the work.
            if hosts.len() > 4 * self.config.concurrency {
                hosts.retain(|_, s| Arc::strong_count(s) > 1);
            }
            hosts
                .entry(host.to_owned())
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(self.config.per_host_concurrency.max(1)))
                })
                .clone()
        };
        semaphore
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

/// The request a redirect not followed inline becomes (another host, or an origin whose
/// robots.txt is not known yet): its target at the same depth, referred by this page. The
/// frontier's filter, dedupe, robots.txt check and politeness then treat it like any request.
fn redirect_elsewhere(page: &Fetched, lease: &Lease) -> Option<CrawlRequest> {
    if !(300..400).contains(&page.status) {
        return None;
    }
    let target = page.final_url.join(page.header("location")?).ok()?;
    let same = target.host_str() == page.final_url.host_str()
        && target.port_or_known_default() == page.final_url.port_or_known_default()
        && target.scheme() == page.final_url.scheme();
    if same || !matches!(target.scheme(), "http" | "https") {
        return None;
    }
    let mut request = lease.request.child(target.to_string());
    request.depth = lease.request.depth;
    request.referer = Some(page.final_url.to_string());
    Some(request)
}

fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Turns a fetched page into what the spider sees: decoded text, extracted links, the
/// job's attrs. CPU work; runs on a blocking thread.
fn build_response(lease: &Lease, page: Fetched, job: &JobContext) -> Response {
    let content_type_header = page.header("content-type").map(str::to_owned);
    let content_type = charset::media_type(content_type_header.as_deref());
    let (text, encoding) = match charset::decode(&page.body, content_type_header.as_deref()) {
        Decoded::Text { text, encoding } => (Some(text), Some(encoding)),
        Decoded::Binary => (None, None),
    };
    let links = match &text {
        Some(html) if charset::is_html(&content_type) => extract::links(html, &page.final_url),
        _ => Vec::new(),
    };
    Response {
        job: lease.job.clone(),
        request: lease.request.clone(),
        url: page.final_url,
        status: page.status,
        status_msg: page.status_msg,
        headers: page.headers,
        request_headers: page.request_headers,
        body: page.body,
        truncated: page.truncated,
        text,
        encoding,
        content_type,
        links,
        follow_nofollow: job.policy.follow_nofollow,
        attrs: job.attrs.clone(),
        redirect_chain: page.redirect_chain,
        fetch_time: page.elapsed,
        timestamp: SystemTime::now(),
    }
}

async fn pause(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {},
        () = shutdown.cancelled() => {},
    }
}
