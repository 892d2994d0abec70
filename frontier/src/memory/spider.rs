//! One spider's frontier state in memory: the same structures and steps as the Redis
//! scripts (`src/redis/lua`), function for function, so that both behave alike.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use kubecrawl_api::CrawlRequest;

use super::known::KnownPages;
use super::zset::ZSet;
use crate::clock::duration_micros;
use crate::filter::{LinkFilter, Prepared};
use crate::fingerprint::Fingerprint;
use crate::schedule::score;
use crate::stats::{GRANULARITIES, bucket_ttl};
use crate::{Admission, DomainRules, JobBacklog, JobPolicy, JobStats, SpiderBacklog};

/// A (job, priority, domain) queue.
pub(crate) type QueueKey = (u64, i32, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobState {
    Run,
    Susp,
    /// Running, but `expires` passed.
    Expired,
    Gone,
}

#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) appid: String,
    pub(crate) crawlid: String,
    pub(crate) suspended: bool,
    pub(crate) generation: u64,
    pub(crate) filter: Arc<LinkFilter>,
    pub(crate) expires: u64,
    pub(crate) max_pages: Option<u64>,
    pub(crate) domain_max_pages: Option<u64>,
    pub(crate) interval: u64,
    pub(crate) stats: JobStats,
    pub(crate) policy: JobPolicy,
    seen: HashSet<Fingerprint>,
    per_domain: HashMap<String, u64>,
    queues: HashSet<(i32, String)>,
    detached_expired: bool,
}

impl Job {
    pub(crate) fn new(appid: &str, crawlid: &str, filter: Arc<LinkFilter>) -> Self {
        Self {
            appid: appid.to_owned(),
            crawlid: crawlid.to_owned(),
            suspended: false,
            generation: 0,
            filter,
            expires: 0,
            max_pages: None,
            domain_max_pages: None,
            interval: 0,
            stats: JobStats::default(),
            policy: JobPolicy::default(),
            seen: HashSet::new(),
            per_domain: HashMap::new(),
            queues: HashSet::new(),
            detached_expired: false,
        }
    }

    /// Sets the policy; returns true when queues detached on expiry must be attached again.
    pub(crate) fn set_policy(
        &mut self,
        policy: &JobPolicy,
        filter: Arc<LinkFilter>,
        interval: u64,
        now: u64,
    ) -> bool {
        self.generation += 1;
        self.policy = policy.clone();
        self.filter = filter;
        self.expires = policy.expires_micros();
        self.max_pages = policy.max_pages;
        self.domain_max_pages = policy.domain_max_pages;
        self.interval = interval;
        !self.suspended
            && (self.expires == 0 || self.expires > now)
            && std::mem::take(&mut self.detached_expired)
    }

    fn state(&self, now: u64) -> JobState {
        if self.suspended {
            JobState::Susp
        } else if self.expires > 0 && now >= self.expires {
            JobState::Expired
        } else {
            JobState::Run
        }
    }
}

/// A leased request.
#[derive(Debug, Clone)]
pub(crate) struct Leased {
    pub(crate) job: u64,
    pub(crate) priority: i32,
    pub(crate) domain: String,
    pub(crate) seq: u64,
    pub(crate) request: CrawlRequest,
}

/// Per-domain delays a worker reported, each until it expires: domain -> (delay µs, expiry µs).
#[derive(Debug, Default)]
struct Delays(HashMap<String, (u64, u64)>);

impl Delays {
    /// The domain's delay at `now` (0: none, or expired).
    fn get(&self, d: &str, now: u64) -> u64 {
        match self.0.get(d) {
            Some((delay, expires)) if *expires > now => *delay,
            _ => 0,
        }
    }

    /// Sets the domain's delay until `expires` (zero clears it), forgetting expired ones.
    fn set(&mut self, d: &str, delay: u64, expires: u64, now: u64) {
        self.0.retain(|_, (_, until)| *until > now);
        if delay == 0 {
            self.0.remove(d);
        } else {
            self.0.insert(d.to_owned(), (delay, expires));
        }
    }
}

/// One spider's state.
#[derive(Debug, Default)]
pub(crate) struct Spider {
    pub(crate) jobs: HashMap<(String, String), u64>,
    job_numbers: u64,
    pub(crate) job: HashMap<u64, Job>,
    queues: HashMap<QueueKey, VecDeque<(u64, CrawlRequest)>>,
    by_domain: HashMap<String, ZSet<(u64, i32)>>,
    ready: ZSet<String>,
    wait: ZSet<String>,
    /// robots.txt Crawl-delays reported by workers.
    crawl_delay: Delays,
    /// Adaptive delays reported by workers.
    adaptive: Delays,
    seq: u64,
    lease_numbers: u64,
    pub(crate) leases: HashMap<u64, Leased>,
    deadlines: ZSet<u64>,
    retry_numbers: u64,
    retries: ZSet<u64>,
    retry_entries: HashMap<u64, Leased>,
    buckets: BTreeMap<(u64, u64), (u64, BTreeMap<String, u64>)>,
    pub(crate) lifetime: BTreeMap<String, u64>,
    pub(crate) workers: HashMap<String, u64>,
    /// Throttles and blacklist (`P:{S}:th`, `P:{S}:bl`), normalized.
    pub(crate) rules: DomainRules,
    /// (appid, crawlid) → the job's known pages (`P:{S}:kn:<job>`, `P:{S}:knp:<job>`); kept
    /// by purge, and whether or not the job is registered.
    pub(crate) known: HashMap<(String, String), KnownPages>,
}

impl Spider {
    pub(crate) fn job_number(&mut self, appid: &str, crawlid: &str) -> (u64, bool) {
        let key = (appid.to_owned(), crawlid.to_owned());
        if let Some(j) = self.jobs.get(&key) {
            return (*j, false);
        }
        self.job_numbers += 1;
        self.jobs.insert(key, self.job_numbers);
        (self.job_numbers, true)
    }

    pub(crate) fn job_state(&self, j: u64, now: u64) -> JobState {
        self.job
            .get(&j)
            .map_or(JobState::Gone, |job| job.state(now))
    }

    fn refresh_domain(&mut self, d: &str) {
        let best = self
            .by_domain
            .get(d)
            .and_then(|z| z.first())
            .map(|(s, _)| s);
        match best {
            None => {
                self.ready.remove(&d.to_owned());
            }
            Some(_) if self.wait.contains(&d.to_owned()) => {}
            Some(s) => self.ready.add(d.to_owned(), s),
        }
    }

    fn attach(&mut self, j: u64, p: i32, d: &str) {
        let Some(head) = self
            .queues
            .get(&(j, p, d.to_owned()))
            .and_then(|q| q.front())
        else {
            return;
        };
        let sc = score(p, head.0);
        self.by_domain
            .entry(d.to_owned())
            .or_default()
            .add((j, p), sc);
        if !self.wait.contains(&d.to_owned()) {
            self.ready.add_lt(d.to_owned(), sc);
        }
    }

    fn detach(&mut self, j: u64, p: i32, d: &str) {
        if let Some(z) = self.by_domain.get_mut(d) {
            z.remove(&(j, p));
            if z.is_empty() {
                self.by_domain.remove(d);
            }
        }
        self.refresh_domain(d);
    }

    fn job_queues(&self, j: u64) -> Vec<(i32, String)> {
        self.job
            .get(&j)
            .map(|job| job.queues.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn set_suspended(&mut self, j: u64, suspend: bool) {
        let Some(job) = self.job.get_mut(&j) else {
            return;
        };
        if job.suspended == suspend {
            return;
        }
        job.suspended = suspend;
        if !suspend {
            job.detached_expired = false;
        }
        for (p, d) in self.job_queues(j) {
            if suspend {
                self.detach(j, p, &d);
            } else {
                self.attach(j, p, &d);
            }
        }
    }

    pub(crate) fn reattach_all(&mut self, j: u64) {
        for (p, d) in self.job_queues(j) {
            self.attach(j, p, &d);
        }
    }

    fn requeue_front(&mut self, l: Leased, now: u64) {
        let state = self.job_state(l.job, now);
        let Some(job) = self.job.get_mut(&l.job) else {
            return;
        };
        job.stats.in_flight = job.stats.in_flight.saturating_sub(1);
        job.stats.queued += 1;
        job.queues.insert((l.priority, l.domain.clone()));
        self.queues
            .entry((l.job, l.priority, l.domain.clone()))
            .or_default()
            .push_front((l.seq, l.request));
        if state == JobState::Run {
            self.attach(l.job, l.priority, &l.domain);
        }
    }

    pub(crate) fn enqueue_all(&mut self, j: u64, items: Vec<Prepared>) -> Admission {
        let mut out = Admission::default();
        let Some(job) = self.job.get_mut(&j) else {
            return out;
        };
        let mut fresh = Vec::new();
        for item in items {
            if self.rules.is_blacklisted(&item.domain) || job.stats.traps.contains_key(&item.domain)
            {
                // Refused before the dedupe, so the URL is admitted once the domain is allowed.
                out.blacklisted += 1;
                job.stats.blacklisted += 1;
                continue;
            }
            let over_job = job.max_pages.is_some_and(|max| job.stats.admitted >= max);
            let over_domain = job
                .domain_max_pages
                .is_some_and(|max| job.per_domain.get(&item.domain).copied().unwrap_or(0) >= max);
            if over_job || over_domain {
                out.over_budget += 1;
            } else if !job.seen.insert(item.fingerprint) {
                out.duplicates += 1;
            } else {
                out.admitted += 1;
                job.stats.admitted += 1;
                job.stats.queued += 1;
                *job.per_domain.entry(item.domain.clone()).or_default() += 1;
                self.seq += 1;
                let p = item.request.priority;
                if job.queues.insert((p, item.domain.clone())) {
                    fresh.push((p, item.domain.clone()));
                }
                self.queues
                    .entry((j, p, item.domain))
                    .or_default()
                    .push_back((self.seq, item.request));
            }
        }
        let run = !job.suspended;
        if run {
            for (p, d) in fresh {
                self.attach(j, p, &d);
            }
        }
        out
    }

    pub(crate) fn count_status(&mut self, label: &str, now: u64) {
        let s = now / 1_000_000;
        for (g, _) in GRANULARITIES {
            let entry = self
                .buckets
                .entry((g, s / g))
                .or_insert_with(|| (s + bucket_ttl(g), BTreeMap::new()));
            *entry.1.entry(label.to_owned()).or_default() += 1;
        }
        *self.lifetime.entry(label.to_owned()).or_default() += 1;
        self.buckets.retain(|_, (expires, _)| *expires > s);
    }

    /// The sum of buckets `(from, to]` of granularity `g`.
    pub(crate) fn window_counts(&self, g: u64, from: u64, to: u64) -> BTreeMap<String, u64> {
        let mut acc = BTreeMap::new();
        for (_, (_, counts)) in self.buckets.range((g, from + 1)..=(g, to)) {
            for (label, n) in counts {
                *acc.entry(label.clone()).or_default() += n;
            }
        }
        acc
    }

    pub(crate) fn housekeeping(&mut self, now: u64, batch: usize) -> usize {
        let expired = self.deadlines.up_to(now, batch);
        for id in &expired {
            self.deadlines.remove(id);
            if let Some(l) = self.leases.remove(id) {
                self.requeue_front(l, now);
            }
        }
        for id in self.retries.up_to(now, batch) {
            self.retries.remove(&id);
            let Some(l) = self.retry_entries.remove(&id) else {
                continue;
            };
            let state = self.job_state(l.job, now);
            let Some(job) = self.job.get_mut(&l.job) else {
                continue;
            };
            self.seq += 1;
            let fresh = job.queues.insert((l.priority, l.domain.clone()));
            self.queues
                .entry((l.job, l.priority, l.domain.clone()))
                .or_default()
                .push_back((self.seq, l.request));
            if fresh && state == JobState::Run {
                self.attach(l.job, l.priority, &l.domain);
            }
        }
        for d in self.wait.up_to(now, batch) {
            self.wait.remove(&d);
            self.refresh_domain(&d);
        }
        expired.len()
    }

    /// Takes the next request, or `None` when no domain is ready.
    pub(crate) fn next(&mut self, now: u64) -> Option<(u64, Leased)> {
        loop {
            let d = self.ready.first()?.1.clone();
            let Some(&(j, p)) = self
                .by_domain
                .get(&d)
                .and_then(|z| z.first())
                .map(|(_, m)| m)
            else {
                self.ready.remove(&d);
                continue;
            };
            let state = self.job_state(j, now);
            if state != JobState::Run {
                if let Some(job) = self.job.get_mut(&j)
                    && state == JobState::Expired
                {
                    job.detached_expired = true;
                }
                self.detach(j, p, &d);
                continue;
            }
            let cut = self
                .job
                .get(&j)
                .is_some_and(|job| job.stats.traps.contains_key(&d));
            if cut || self.rules.is_blacklisted(&d) {
                self.drop_blacklisted(j, p, &d);
                continue;
            }
            let Some((seq, request)) = self.pop_head(j, p, &d) else {
                self.refresh_domain(&d);
                continue;
            };
            self.charge(j, &d, now)?;
            self.lease_numbers += 1;
            let leased = Leased {
                job: j,
                priority: p,
                domain: d,
                seq,
                request,
            };
            return Some((self.lease_numbers, leased));
        }
    }

    /// Drops job `j`'s priority-`p` queue of blacklisted domain `d`, counted: queued before
    /// the domain was blacklisted.
    fn drop_blacklisted(&mut self, j: u64, p: i32, d: &str) {
        let dropped = self
            .queues
            .remove(&(j, p, d.to_owned()))
            .map_or(0, |q| q.len() as u64);
        if let Some(job) = self.job.get_mut(&j) {
            job.queues.remove(&(p, d.to_owned()));
            job.stats.queued = job.stats.queued.saturating_sub(dropped);
            job.stats.blacklisted += dropped;
        }
        self.detach(j, p, d);
    }

    /// Pops the head of job `j`'s priority-`p` queue of domain `d` and re-ranks the queue in
    /// the domain by its new head (or takes it out when empty).
    fn pop_head(&mut self, j: u64, p: i32, d: &str) -> Option<(u64, CrawlRequest)> {
        let key = (j, p, d.to_owned());
        let queue = self.queues.get_mut(&key);
        let popped = queue.as_ref().and_then(|q| q.front().cloned());
        let next_head = queue.and_then(|q| {
            q.pop_front();
            q.front().map(|(seq, _)| *seq)
        });
        match next_head {
            Some(seq) => self
                .by_domain
                .entry(d.to_owned())
                .or_default()
                .add((j, p), score(p, seq)),
            None => {
                self.queues.remove(&key);
                if let Some(job) = self.job.get_mut(&j) {
                    job.queues.remove(&(p, d.to_owned()));
                }
                if let Some(z) = self.by_domain.get_mut(d) {
                    z.remove(&(j, p));
                    if z.is_empty() {
                        self.by_domain.remove(d);
                    }
                }
            }
        }
        popped
    }

    /// Counts a dispatch of job `j` to domain `d` and starts the domain's politeness wait
    /// (the longest of the job's interval, the robots Crawl-delay, a throttle and the adaptive
    /// delay). `None` when the job is gone.
    fn charge(&mut self, j: u64, d: &str, now: u64) -> Option<()> {
        let throttle = self.rules.throttle_for(d).map_or(0, duration_micros);
        let job = self.job.get_mut(&j)?;
        let interval = job
            .interval
            .max(self.crawl_delay.get(d, now))
            .max(throttle)
            .max(self.adaptive.get(d, now));
        job.stats.queued = job.stats.queued.saturating_sub(1);
        job.stats.in_flight += 1;
        if interval > 0 {
            self.ready.remove(&d.to_owned());
            self.wait.add(d.to_owned(), now + interval);
        } else {
            self.refresh_domain(d);
        }
        Some(())
    }

    pub(crate) fn hold(&mut self, id: u64, leased: Leased, deadline: u64) {
        self.leases.insert(id, leased);
        self.deadlines.add(id, deadline);
    }

    /// Moves a held lease's deadline; false when the lease is not held.
    pub(crate) fn extend_lease(&mut self, id: u64, deadline: u64) -> bool {
        if !self.leases.contains_key(&id) {
            return false;
        }
        self.deadlines.add(id, deadline);
        true
    }

    pub(crate) fn take_lease(&mut self, id: u64) -> Option<Leased> {
        self.deadlines.remove(&id);
        self.leases.remove(&id)
    }

    pub(crate) fn park(&mut self, l: Leased, now: u64) {
        self.requeue_front(l, now);
    }

    pub(crate) fn schedule_retry(&mut self, l: Leased, due: u64) {
        if let Some(job) = self.job.get_mut(&l.job) {
            job.stats.in_flight = job.stats.in_flight.saturating_sub(1);
            job.stats.queued += 1;
            job.stats.retries += 1;
        }
        self.retry_numbers += 1;
        self.retries.add(self.retry_numbers, due);
        self.retry_entries.insert(self.retry_numbers, l);
    }

    pub(crate) fn crawl_delay(&mut self, d: &str, delay: u64, expires: u64, now: u64) {
        self.crawl_delay.set(d, delay, expires, now);
    }

    /// Sets (or, with a zero delay, clears) a domain's adaptive delay.
    pub(crate) fn adaptive_delay(&mut self, d: &str, delay: u64, expires: u64, now: u64) {
        self.adaptive.set(d, delay, expires, now);
    }

    pub(crate) fn retry_after(&mut self, d: &str, until: u64) {
        let current = self.wait.score(&d.to_owned()).unwrap_or(0);
        if until > current {
            self.ready.remove(&d.to_owned());
            self.wait.add(d.to_owned(), until);
        }
    }

    /// Queued requests per domain over the attached queues (the Redis backlog script reads
    /// the same through the ready and wait sets), retries, leases.
    pub(crate) fn backlog(&self, now: u64) -> SpiderBacklog {
        let mut domains = BTreeMap::new();
        let mut ready = BTreeSet::new();
        for (d, z) in &self.by_domain {
            let queued: u64 = z
                .members()
                .map(|&(j, p)| {
                    self.queues
                        .get(&(j, p, d.clone()))
                        .map_or(0, |q| q.len() as u64)
                })
                .sum();
            if queued > 0 {
                domains.insert(d.clone(), queued);
                if self.ready.contains(d) || self.wait.score(d).is_some_and(|at| at <= now) {
                    ready.insert(d.clone());
                }
            }
        }
        SpiderBacklog {
            domains,
            retrying: self.retry_entries.len() as u64,
            in_flight: self.leases.len() as u64,
            ready,
        }
    }

    pub(crate) fn job_backlog(&self, appid: &str, crawlid: &str) -> JobBacklog {
        let mut out = JobBacklog::default();
        let Some(&j) = self.jobs.get(&(appid.to_owned(), crawlid.to_owned())) else {
            return out;
        };
        for (p, d) in self.job_queues(j) {
            let queued = self
                .queues
                .get(&(j, p, d.clone()))
                .map_or(0, |q| q.len() as u64);
            out.add(&d, p, queued);
        }
        out
    }

    pub(crate) fn purge(&mut self, appid: &str, crawlid: &str) -> bool {
        let Some(j) = self.jobs.remove(&(appid.to_owned(), crawlid.to_owned())) else {
            return false;
        };
        for (p, d) in self.job_queues(j) {
            self.queues.remove(&(j, p, d.clone()));
            if let Some(z) = self.by_domain.get_mut(&d) {
                z.remove(&(j, p));
                if z.is_empty() {
                    self.by_domain.remove(&d);
                }
            }
            self.refresh_domain(&d);
        }
        self.job.remove(&j);
        true
    }
}
