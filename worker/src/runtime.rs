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
//!    The per-lease path is written as these stages in `runtime/stages.rs`; each ends the
//!    lease's handling or hands on, and how a lease ended is a [`LeaseOutcome`].
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
//! - With WARC output ([`crate::warc`]), a page's records are written before its items are
//!   published; if they cannot be written the lease is given back and leasing pauses, as when
//!   Kafka is unreachable: a page is never acknowledged without its records.
//! - On shutdown the worker stops leasing, lets in-flight fetches finish within
//!   `drain_timeout`, gives back the leases of those that did not, flushes the sink, closes
//!   the WARC file and returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kubecrawl_api::JobRef;
use kubecrawl_frontier::filter::LinkFilter;
use kubecrawl_frontier::{Frontier, JobPolicy, Lease};
use kubecrawl_process::format_chain;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::adaptive::AdaptiveDelays;
use crate::declarative::Rules;
use crate::fetch::Fetcher;
use crate::metrics::Metrics;
use crate::render::{Plan, Renderer};
use crate::robots::RobotsCache;
use crate::sink::Sink;
use crate::spider::Spider;
use crate::traps::TrapDetector;
use crate::warc::WarcWriter;

mod acks;
mod archive;
mod outcome;
mod render;
mod stages;

pub use outcome::LeaseOutcome;

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
    /// The most acknowledgements sent in one call (those ready at the same time; nothing
    /// waits to fill a batch). 0 or 1: each lease task acknowledges on its own, which suits
    /// the in-memory frontier, where a call costs no round trip.
    pub ack_batch: usize,
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
            ack_batch: 64,
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
    /// The policy's `extract` rules, compiled once per job (and again only when they change).
    rules: Option<Arc<Rules>>,
    /// The policy's `render`, compiled; `None` when the job renders nothing (or its patterns
    /// do not compile, which is logged).
    render: Option<Arc<Plan>>,
    attrs: serde_json::Map<String, serde_json::Value>,
    read_at: Instant,
}

impl JobContext {
    /// The job obeys robots.txt (the default), for its pages and for their own requests.
    fn obeys_robots(&self) -> bool {
        self.policy
            .politeness
            .as_ref()
            .is_none_or(|p| p.obey_robots)
    }
}

/// One worker: a spider, a fetcher, a sink and the frontier they share.
pub struct Worker {
    frontier: Arc<dyn Frontier>,
    fetcher: Fetcher,
    /// Shared with the renderer, which checks the requests of rendered pages against it.
    robots: Arc<RobotsCache>,
    spider: Arc<dyn Spider>,
    sink: Arc<dyn Sink>,
    metrics: Metrics,
    config: WorkerConfig,
    /// The batching acknowledger, when `config.ack_batch` > 1.
    acks: Option<acks::Acks>,
    /// Per host, the delay learnt from its answers ([`crate::adaptive`]).
    adaptive: AdaptiveDelays,
    /// Per job and host, what shows a crawler trap ([`crate::traps`]).
    traps: TrapDetector,
    jobs: Mutex<HashMap<JobRef, Arc<JobContext>>>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    leased: Mutex<HashMap<String, Lease>>,
    /// No leasing before this instant: the sink could not publish (Kafka unreachable), or
    /// the WARC writer could not write.
    sink_pause: Mutex<Option<Instant>>,
    /// Sitemaps being fetched and read ([`SITEMAP_READS`] at most).
    sitemap_slots: Semaphore,
    /// Where every page is also written as WARC records, when enabled ([`crate::warc`]).
    warc: Option<WarcWriter>,
    /// The browser that renders the pages of jobs with `render` ([`crate::render`]); `None`:
    /// this worker renders nothing, and such pages are published as fetched.
    renderer: Option<Arc<Renderer>>,
}

/// Sitemaps one worker fetches and reads at once: each may hold up to 50 MiB
/// ([`crate::sitemap::MAX_BYTES`]), and a job has few of them.
pub const SITEMAP_READS: usize = 2;

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
        // Batches need a task of their own; without a runtime (never, in the binaries) each
        // lease task acknowledges on its own.
        let acks = (config.ack_batch > 1 && tokio::runtime::Handle::try_current().is_ok())
            .then(|| acks::Acks::start(frontier.clone(), config.ack_batch));
        Self {
            acks,
            adaptive: AdaptiveDelays::new(),
            traps: TrapDetector::new(),
            frontier,
            fetcher,
            robots: Arc::new(robots),
            spider,
            sink,
            metrics,
            config,
            jobs: Mutex::new(HashMap::new()),
            hosts: Mutex::new(HashMap::new()),
            leased: Mutex::new(HashMap::new()),
            sink_pause: Mutex::new(None),
            sitemap_slots: Semaphore::new(SITEMAP_READS),
            warc: None,
            renderer: None,
        }
    }

    /// Also writes every page as WARC records with `warc` (none: no WARC output). A page is
    /// published only once its records are written; the writer is closed when the worker
    /// stops.
    #[must_use]
    pub fn with_warc(mut self, warc: Option<WarcWriter>) -> Self {
        self.warc = warc;
        self
    }

    /// Renders the pages of jobs with `render` with `renderer`.
    #[must_use]
    pub fn with_renderer(mut self, renderer: Option<Arc<Renderer>>) -> Self {
        self.renderer = renderer;
        self
    }

    /// The worker's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The hosts this worker slowed down, and their delays ([`crate::adaptive`]).
    pub fn adaptive_delays(&self) -> &AdaptiveDelays {
        &self.adaptive
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
            let Some(leases) = self.lease(free.min(self.config.lease_batch.max(1))).await else {
                pause(Duration::from_secs(1), &shutdown).await;
                continue;
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
                self.spawn_handler(&mut tasks, lease, permit);
            }
        }

        summary.released = self.drain(tasks).await;
        if let Err(e) = self.sink.flush().await {
            tracing::error!(error = %format_chain(&e), "flushing the sink failed");
        }
        // Closing counts and logs its own failure; the records stay in the `.open` file.
        if let Some(warc) = &self.warc {
            let _ = warc.close().await;
        }
        if let Some(renderer) = &self.renderer {
            renderer.stop().await;
        }
        heartbeat.abort();
        keeper.abort();
        summary
    }

    /// Leases up to `want` requests of the worker's spider. `None` when the frontier did
    /// not answer: the worker is then not ready.
    async fn lease(&self, want: usize) -> Option<Vec<Lease>> {
        match self
            .frontier
            .lease(&self.config.spiderid, want, self.config.lease_duration)
            .await
        {
            Ok(leases) => {
                self.metrics.readiness_state().set_ready(true);
                Some(leases)
            }
            Err(e) => {
                self.metrics.readiness_state().set_ready(false);
                tracing::warn!(error = %format_chain(&e), "lease failed");
                None
            }
        }
    }

    /// Handles a lease in a task of its own, in the request's span, holding `permit` (a
    /// fetch slot) until it is done. The lease is kept in work (extended, given back at
    /// shutdown) until then.
    fn spawn_handler(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        lease: Lease,
        permit: OwnedSemaphorePermit,
    ) {
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
            if self.give_back(&lease).await {
                released += 1;
            }
        }
        released
    }

    /// Gives a lease back to the head of its queue; when even that fails, it expires.
    /// Returns whether it was given back.
    async fn give_back(&self, lease: &Lease) -> bool {
        match self.frontier.release(lease).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %format_chain(&e), "giving a lease back failed; it will expire");
                false
            }
        }
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
        let mut until = lock(&self.sink_pause);
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

    fn lock_leased(&self) -> MutexGuard<'_, HashMap<String, Lease>> {
        lock(&self.leased)
    }

    /// The job's policy, cached for [`POLICY_TTL`]. `None` when the job is gone.
    async fn job(&self, job: &JobRef) -> kubecrawl_frontier::Result<Option<Arc<JobContext>>> {
        let previous = lock(&self.jobs).get(job).cloned();
        if let Some(cached) = previous
            .as_ref()
            .filter(|c| c.read_at.elapsed() < POLICY_TTL)
        {
            return Ok(Some(cached.clone()));
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
        let rules = match previous
            .as_ref()
            .filter(|p| p.policy.extract == policy.extract)
        {
            Some(unchanged) => unchanged.rules.clone(),
            None => self.compile_rules(&policy),
        };
        let render = match previous.filter(|p| p.policy.render == policy.render) {
            Some(unchanged) => unchanged.render.clone(),
            None => compile_render(&policy),
        };
        let context = Arc::new(JobContext {
            policy,
            filter,
            rules,
            render,
            attrs,
            read_at: Instant::now(),
        });
        let mut jobs = lock(&self.jobs);
        // Forget stale entries so the map follows the set of live jobs.
        jobs.retain(|_, c| c.read_at.elapsed() < POLICY_TTL * 6);
        jobs.insert(job.clone(), context.clone());
        Ok(Some(context))
    }

    /// The job's `extract` rules, compiled. Rules that do not compile (the operator refuses
    /// them, so they come from elsewhere) are logged and counted, and the job's pages are
    /// crawled as if it had none: never a panic, never a lost page.
    fn compile_rules(&self, policy: &JobPolicy) -> Option<Arc<Rules>> {
        let extract = policy.extract.as_ref()?;
        match Rules::compile(extract) {
            Ok(rules) => Some(Arc::new(rules)),
            Err(e) => {
                tracing::warn!(error = %format_chain(&e), "the job's extract rules do not compile, crawling without them");
                self.metrics.extract_rules_invalid(&self.config.spiderid);
                None
            }
        }
    }

    /// Waits for a fetch slot of `host`; the slot is freed when the guard drops.
    async fn host_slot(&self, host: &str) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut hosts = lock(&self.hosts);
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

/// Locks a mutex of the worker's bookkeeping. A panic while it was held left a map or an
/// instant that is still whole (every critical section is one insert, remove or
/// assignment), so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn pause(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {},
        () = shutdown.cancelled() => {},
    }
}

/// A job's `render`, compiled. Patterns that do not compile (the operator refuses them, so
/// they come from elsewhere) are logged, and the job's pages are not rendered.
fn compile_render(policy: &JobPolicy) -> Option<Arc<Plan>> {
    let render = policy.render.as_ref().filter(|r| r.is_on())?;
    match Plan::compile(render) {
        Ok(plan) => Some(Arc::new(plan)),
        Err(e) => {
            tracing::warn!(error = %e, "the job's render patterns do not compile, rendering nothing");
            None
        }
    }
}
