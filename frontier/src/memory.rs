//! [`MemoryFrontier`]: the frontier of one process, for standalone crawls and tests.
//!
//! It implements [`Frontier`] with the same semantics as [`crate::RedisFrontier`] — the same
//! scheduling, politeness, dedupe, budgets, leases and accounting, step for step (its state
//! mirrors the Redis keys; see `memory/spider.rs`) — and passes the same conformance suite.
//! State lives behind one mutex, never held across an `.await`; time comes from a
//! [`Clock`], so tests can drive it. Nothing survives the process: "no loss" here means no
//! loss while the process lives (a lease not acknowledged in time is reclaimed).

mod known;
mod spider;
mod zset;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use kubecrawl_api::{CrawlRequest, JobRef};

use self::spider::{Job, JobState, Spider};
use crate::clock::{Clock, SystemClock, duration_micros, micros_system};
use crate::filter::{LinkFilter, Prepared};
use crate::known::{Known, KnownCursor};
use crate::lease::{Completion, Lease, LeaseId, Outcome, RetryOutcome, RetryRequest};
use crate::stats::{SpiderStats, Window, WorkerCounts, status_label, window_buckets};
use crate::{
    Admission, DomainHint, DomainRules, Error, Frontier, FrontierConfig, JobBacklog, JobPolicy,
    JobStats, Result, SpiderBacklog, check_name,
};

/// The in-memory frontier. Cheap to clone; clones share one state.
#[derive(Debug, Clone)]
pub struct MemoryFrontier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: FrontierConfig,
    clock: Arc<dyn Clock>,
    spiders: Mutex<HashMap<String, Spider>>,
    /// The state lives as long as this value: one epoch for every spider.
    epoch: String,
}

impl Default for MemoryFrontier {
    fn default() -> Self {
        Self::new(FrontierConfig::default())
    }
}

impl MemoryFrontier {
    /// A frontier on the system clock.
    pub fn new(config: FrontierConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A frontier on the given clock ([`crate::clock::ManualClock`],
    /// [`crate::clock::TokioClock`]).
    pub fn with_clock(config: FrontierConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                clock,
                spiders: Mutex::new(HashMap::new()),
                epoch: crate::new_epoch(),
            }),
        }
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_micros()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Spider>> {
        // A panic while holding the lock leaves the state as consistent as the step that
        // panicked; carrying on is better than poisoning every later call.
        self.inner
            .spiders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with_spider<T>(&self, spiderid: &str, f: impl FnOnce(&mut Spider, u64) -> T) -> Result<T> {
        check_name("spiderid", spiderid)?;
        let now = self.now();
        let mut spiders = self.lock();
        let spider = spiders.entry(spiderid.to_owned()).or_default();
        Ok(f(spider, now))
    }
}

fn policy_error(job: &JobRef) -> impl FnOnce(crate::filter::FilterError) -> Error + '_ {
    move |source| Error::Policy {
        job: job.clone(),
        source,
    }
}

#[async_trait]
impl Frontier for MemoryFrontier {
    async fn register(&self, job: &JobRef, policy: &JobPolicy) -> Result<()> {
        let filter = Arc::new(LinkFilter::new(policy).map_err(policy_error(job))?);
        let interval = duration_micros(policy.interval(&self.inner.config));
        self.with_spider(&job.spiderid, |s, now| {
            let (j, _) = s.job_number(&job.appid, &job.crawlid);
            let entry = s
                .job
                .entry(j)
                .or_insert_with(|| Job::new(&job.appid, &job.crawlid, filter.clone()));
            if entry.set_policy(policy, filter, interval, now) {
                s.reattach_all(j);
            }
        })
    }

    async fn seed(&self, job: &JobRef, seeds: &[CrawlRequest]) -> Result<Admission> {
        let prepared: Vec<Prepared> = seeds.iter().filter_map(Prepared::seed).collect();
        let filtered = (seeds.len() - prepared.len()) as u64;
        let count = prepared.len() as u64;
        self.with_spider(&job.spiderid, |s, now| {
            let Some(&j) = s.jobs.get(&(job.appid.clone(), job.crawlid.clone())) else {
                return Err(Error::UnknownJob { job: job.clone() });
            };
            let mut out = match s.job_state(j, now) {
                JobState::Run => s.enqueue_all(j, prepared),
                JobState::Gone => return Err(Error::UnknownJob { job: job.clone() }),
                _ => Admission {
                    refused: count,
                    ..Admission::default()
                },
            };
            if out.admitted > 0
                && let Some(entry) = s.job.get_mut(&j)
            {
                entry.stats.seeded = true;
            }
            out.filtered = filtered;
            Ok(out)
        })?
    }

    async fn lease(&self, spiderid: &str, max: usize, duration: Duration) -> Result<Vec<Lease>> {
        let batch = self.inner.config.housekeeping_batch;
        self.with_spider(spiderid, |s, now| {
            s.housekeeping(now, batch);
            let deadline = now + duration_micros(duration).max(1);
            let mut out = Vec::new();
            while out.len() < max {
                let Some((id, leased)) = s.next(now) else {
                    break;
                };
                let Some(job) = s.job.get(&leased.job) else {
                    continue;
                };
                out.push(Lease {
                    id: LeaseId {
                        spiderid: spiderid.to_owned(),
                        number: id,
                        job: leased.job,
                        generation: job.generation,
                        token: String::new(),
                    },
                    job: JobRef {
                        spiderid: spiderid.to_owned(),
                        appid: job.appid.clone(),
                        crawlid: job.crawlid.clone(),
                    },
                    request: leased.request.clone(),
                    domain: leased.domain.clone(),
                    leased_at: micros_system(now),
                    deadline: micros_system(deadline),
                });
                s.hold(id, leased, deadline);
            }
            out
        })
    }

    async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<Completion> {
        self.with_spider(&lease.id.spiderid, |s, now| {
            let Some(l) = s.take_lease(lease.id.number) else {
                return Completion::Stale;
            };
            let state = s.job_state(l.job, now);
            let filter = match (state, s.job.get(&l.job)) {
                (JobState::Gone, _) | (_, None) => return Completion::JobGone,
                (JobState::Susp, _) => {
                    s.park(l, now);
                    return Completion::Parked;
                }
                (_, Some(job)) => job.filter.clone(),
            };
            let mut admission = Admission::default();
            let mut children = Vec::new();
            for child in &outcome.children {
                match filter.check(child) {
                    Ok(p) => children.push(p),
                    Err(_) => admission.filtered += 1,
                }
            }
            if let Some(job) = s.job.get_mut(&l.job) {
                let st = &mut job.stats;
                st.in_flight = st.in_flight.saturating_sub(1);
                match outcome.status {
                    Some(code) => {
                        st.pages += 1;
                        *st.status_codes.entry(code).or_default() += 1;
                    }
                    None => st.errors += 1,
                }
                st.bytes += outcome.bytes;
                st.items += outcome.items;
                for (name, n) in &outcome.counters {
                    *st.counters.entry((*name).to_owned()).or_default() += n;
                }
                st.furthest_step = st
                    .furthest_step
                    .max(outcome.step.unwrap_or(l.request.depth));
            }
            s.count_status(&status_label(outcome.status), now);
            if state == JobState::Run {
                let a = s.enqueue_all(l.job, children);
                admission.admitted = a.admitted;
                admission.duplicates = a.duplicates;
                admission.over_budget = a.over_budget;
                admission.blacklisted = a.blacklisted;
            } else {
                admission.refused = children.len() as u64;
            }
            if let Some(request) = outcome.remember {
                s.known
                    .entry((lease.job.appid.clone(), lease.job.crawlid.clone()))
                    .or_default()
                    .remember(request);
            }
            Completion::Acked(admission)
        })
    }

    async fn retry(&self, lease: &Lease, retry: RetryRequest) -> Result<RetryOutcome> {
        let config = &self.inner.config;
        let attempt = lease.request.retries.saturating_add(1);
        let give_up = attempt > config.max_retries;
        let delay = config
            .backoff(attempt)
            .max(retry.not_before.unwrap_or_default());
        self.with_spider(&lease.id.spiderid, |s, now| {
            let Some(mut l) = s.take_lease(lease.id.number) else {
                return RetryOutcome::Stale;
            };
            if s.job_state(l.job, now) == JobState::Gone {
                return RetryOutcome::JobGone;
            }
            if give_up {
                if let Some(job) = s.job.get_mut(&l.job) {
                    let st = &mut job.stats;
                    st.in_flight = st.in_flight.saturating_sub(1);
                    st.errors += 1;
                    if let Some(code) = retry.status {
                        st.pages += 1;
                        *st.status_codes.entry(code).or_default() += 1;
                    }
                }
                s.count_status(&status_label(retry.status), now);
                return RetryOutcome::GaveUp;
            }
            l.request.retries = attempt;
            s.schedule_retry(l, now + duration_micros(delay));
            RetryOutcome::Scheduled { attempt, delay }
        })
    }

    async fn extend(&self, leases: &[Lease], duration: Duration) -> Result<usize> {
        let dur = duration_micros(duration).max(1);
        let mut held = 0;
        for lease in leases {
            if self.with_spider(&lease.id.spiderid, |s, now| {
                s.extend_lease(lease.id.number, now + dur)
            })? {
                held += 1;
            }
        }
        Ok(held)
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        self.with_spider(&lease.id.spiderid, |s, now| {
            match s.take_lease(lease.id.number) {
                Some(l) => {
                    s.park(l, now);
                    true
                }
                None => false,
            }
        })
    }

    async fn reclaim_expired(&self, spiderid: &str, max: usize) -> Result<usize> {
        self.with_spider(spiderid, |s, now| s.housekeeping(now, max))
    }

    async fn suspend(&self, job: &JobRef) -> Result<bool> {
        self.set_suspended(job, true)
    }

    async fn resume(&self, job: &JobRef) -> Result<bool> {
        self.set_suspended(job, false)
    }

    async fn purge(&self, job: &JobRef) -> Result<bool> {
        self.with_spider(&job.spiderid, |s, _| s.purge(&job.appid, &job.crawlid))
    }

    async fn rotate_known(&self, job: &JobRef) -> Result<bool> {
        self.with_spider(&job.spiderid, |s, _| {
            s.known
                .entry((job.appid.clone(), job.crawlid.clone()))
                .or_default()
                .rotate()
        })
    }

    async fn known_pages(
        &self,
        job: &JobRef,
        cursor: Option<KnownCursor>,
        count: usize,
    ) -> Result<(Vec<CrawlRequest>, Option<KnownCursor>)> {
        self.with_spider(&job.spiderid, |s, _| {
            match s.known.get(&(job.appid.clone(), job.crawlid.clone())) {
                Some(known) => known.page(cursor.unwrap_or_else(KnownCursor::start), count),
                None => (Vec::new(), None),
            }
        })
    }

    async fn drop_known(&self, job: &JobRef, which: Known) -> Result<()> {
        self.with_spider(&job.spiderid, |s, _| {
            let key = (job.appid.clone(), job.crawlid.clone());
            if let Some(known) = s.known.get_mut(&key) {
                known.drop(which);
                if known.is_empty() {
                    s.known.remove(&key);
                }
            }
        })
    }

    async fn epoch(&self, spiderid: &str) -> Result<String> {
        check_name("spiderid", spiderid)?;
        Ok(self.inner.epoch.clone())
    }

    async fn job_stats(&self, job: &JobRef) -> Result<Option<JobStats>> {
        self.with_spider(&job.spiderid, |s, _| {
            let j = s.jobs.get(&(job.appid.clone(), job.crawlid.clone()))?;
            let entry = s.job.get(j)?;
            let mut stats = entry.stats.clone();
            stats.suspended = entry.suspended;
            Some(stats)
        })
    }

    async fn policy(&self, job: &JobRef) -> Result<Option<JobPolicy>> {
        self.with_spider(&job.spiderid, |s, _| {
            let j = s.jobs.get(&(job.appid.clone(), job.crawlid.clone()))?;
            Some(s.job.get(j)?.policy.clone())
        })
    }

    async fn cut_off(&self, job: &JobRef, domain: &str, reason: &str) -> Result<bool> {
        let domain = domain.to_ascii_lowercase();
        self.with_spider(&job.spiderid, |s, _| {
            let Some(j) = s.jobs.get(&(job.appid.clone(), job.crawlid.clone())) else {
                return false;
            };
            let Some(entry) = s.job.get_mut(j) else {
                return false;
            };
            entry
                .stats
                .traps
                .entry(domain)
                .or_insert_with(|| reason.to_owned());
            true
        })
    }

    async fn report_domain(&self, spiderid: &str, domain: &str, hint: DomainHint) -> Result<()> {
        let ttl = duration_micros(
            self.inner
                .config
                .crawl_delay_ttl
                .max(Duration::from_secs(1)),
        );
        let domain = domain.to_ascii_lowercase();
        self.with_spider(spiderid, |s, now| match hint {
            DomainHint::CrawlDelay(d) => s.crawl_delay(&domain, duration_micros(d), now + ttl, now),
            DomainHint::RetryAfter(d) => s.retry_after(&domain, now + duration_micros(d)),
            DomainHint::Adaptive(d) => {
                s.adaptive_delay(&domain, duration_micros(d), now + ttl, now);
            }
        })
    }

    async fn spider_stats(&self, spiderid: &str) -> Result<SpiderStats> {
        self.with_spider(spiderid, |s, now| {
            let mut stats = SpiderStats::default();
            for window in Window::ALL {
                let counts = match window_buckets(window, now / 1_000_000) {
                    Some((g, from, to)) => s.window_counts(g, from, to),
                    None => s.lifetime.clone(),
                };
                if !counts.is_empty() {
                    stats.counts.insert(window, counts);
                }
            }
            stats
        })
    }

    async fn heartbeat(&self, spiderid: &str, worker: &str, ttl: Duration) -> Result<()> {
        check_name("worker", worker)?;
        let ttl = duration_micros(ttl).max(1);
        self.with_spider(spiderid, |s, now| {
            s.workers.retain(|_, expires| *expires > now);
            let expires = s.workers.entry(worker.to_owned()).or_default();
            *expires = (*expires).max(now + ttl);
        })
    }

    async fn workers(&self) -> Result<WorkerCounts> {
        let now = self.now();
        let mut spiders = self.lock();
        let mut counts = WorkerCounts::default();
        for (spiderid, spider) in spiders.iter_mut() {
            spider.workers.retain(|_, expires| *expires > now);
            if !spider.workers.is_empty() {
                counts
                    .per_spider
                    .insert(spiderid.clone(), spider.workers.len() as u64);
            }
        }
        counts.total = counts.per_spider.values().sum();
        counts.unique = counts.per_spider.len() as u64;
        Ok(counts)
    }

    async fn backlog(&self, spiderid: &str) -> Result<SpiderBacklog> {
        self.with_spider(spiderid, |s, now| s.backlog(now))
    }

    async fn job_backlog(&self, job: &JobRef) -> Result<JobBacklog> {
        self.with_spider(&job.spiderid, |s, _| {
            s.job_backlog(&job.appid, &job.crawlid)
        })
    }

    async fn set_domain_rules(&self, spiderid: &str, rules: &DomainRules) -> Result<()> {
        let rules = rules.normalized();
        self.with_spider(spiderid, |s, _| s.rules = rules)
    }

    async fn domain_rules(&self, spiderid: &str) -> Result<DomainRules> {
        self.with_spider(spiderid, |s, _| s.rules.clone())
    }
}

impl MemoryFrontier {
    fn set_suspended(&self, job: &JobRef, suspend: bool) -> Result<bool> {
        self.with_spider(&job.spiderid, |s, _| {
            match s.jobs.get(&(job.appid.clone(), job.crawlid.clone())) {
                Some(&j) => {
                    s.set_suspended(j, suspend);
                    true
                }
                None => false,
            }
        })
    }
}
