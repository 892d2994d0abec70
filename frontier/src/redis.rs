//! [`RedisFrontier`]: the frontier shared by a fleet, on Redis.
//!
//! Every operation is one Lua script, so a lease (of a whole batch) or an acknowledgement
//! (with all its children) is one round trip and one atomic step. Scripts take "now" from
//! Redis (`TIME`), so the clocks of the workers never matter. No script uses KEYS or SCAN;
//! each touches a bounded number of keys, O(log n) in the size of the backlog (sorted-set
//! operations), except purge, which is proportional to the purged job and runs in chunks.
//!
//! # Key layout
//!
//! `P` is the prefix ([`RedisFrontier::connect`], `kubecrawl` in the binaries), `S` the spiderid, `J` a job's
//! number (assigned at registration, unique within its spider), `D` a domain (host), `p` a
//! priority. Every key of a spider starts with `P:{S}`, so all keys one script touches share
//! one Redis Cluster hash slot (`{S}` is the hash tag).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{S}:jobs` | hash | `["appid","crawlid"]` → `J` |
//! | `P:{S}:jobno` | string | last job number |
//! | `P:{S}:job:J` | hash | the job: `st` (run, susp, purge), `app`, `crawl`, `gen`, `pol` (policy JSON), `exp`, `mp`, `dmp`, `iv` (politeness interval µs), counters `q` queued, `f` in flight, `pg` pages, `it` items, `by` bytes, `er` errors, `rt` retries, `ad` admitted, `stp` furthest step, `c<code>` per status, `sd` seeded, dedupe state `dl`/`ds`/`dn` |
//! | `P:{S}:jd:J` | hash | `D` → requests admitted in that domain; kept only while the job has a `domainMaxPages` (set one later and counting starts then) |
//! | `P:{S}:jq:J` | set | `p:D` of each non-empty queue of the job (suspend, resume, purge) |
//! | `P:{S}:q:J:p:D` | list | the queue: `<seq> <request JSON>`, oldest first |
//! | `P:{S}:dq:D` | sorted set | `J:p` → score of that queue's head ([`crate::schedule`]) |
//! | `P:{S}:ready` | sorted set | domains that may be fetched now → best head score |
//! | `P:{S}:wait` | sorted set | domains whose clock has not passed → next allowed time (µs) |
//! | `P:{S}:cd:D` | string, TTL | a reported robots.txt Crawl-delay (µs) |
//! | `P:{S}:ad:D` | string, TTL | a worker's adaptive delay for the domain (µs) |
//! | `P:{S}:th` | hash | domain → throttle, the least interval between dispatches to each of its hosts (µs) ([`crate::rules`]) |
//! | `P:{S}:bl` | set | blacklisted domains ([`crate::rules`]) |
//! | `P:{S}:seq`, `P:{S}:lid` | string | enqueue sequence, lease numbers |
//! | `P:{S}:deadlines` | sorted set | leases: `<lease number>\|J\|p\|D\|seq\|request JSON` → deadline (µs); the client holds the same string, so an acknowledgement is one `ZREM` that also tells whether the lease was still held |
//! | `P:{S}:retry` | sorted set | `J\|p\|D\|request JSON` → when the retry is due (µs) |
//! | `P:{S}:s:J:b` | hash | dedupe bucket `b`: 12-byte fingerprint → empty |
//! | `P:{S}:st:g:n` | hash, TTL | spider counts per status label in bucket `n` of `g` seconds ([`crate::stats`]); a 10 s bucket gets its TTL when rolled up |
//! | `P:{S}:st:last` | string | the newest 10 s bucket, not yet rolled up into the coarser ones |
//! | `P:{S}:st:life` | hash | lifetime spider counts per status label (rolled up) |
//! | `P:{S}:epoch` | string | the identity of the spider's state ([`crate::Frontier::epoch`]) |
//! | `P:{S}:workers` | sorted set, TTL | worker name → heartbeat expiry (µs) |
//! | `P:spiders` | sorted set, TTL | spiderid → latest heartbeat expiry (µs); its own slot |
//!
//! # Memory
//!
//! A queued request is one list entry, its JSON plus a sequence number (lists of small
//! entries are packed by Redis, a few bytes of overhead each). Dedupe is *linear hashing* over
//! small hashes: a job's fingerprints live in `2^l + s` buckets that split one at a time as the
//! job grows, so each bucket stays a compact listpack of at most ~100 entries (16 bytes per
//! URL plus a share of the bucket's key) and looking up or adding is O(1). `make
//! bench-frontier` measures both.
//!
//! # Where policy is evaluated
//!
//! Link filters (regexes, allowed domains, extensions, depth) run in the client
//! ([`crate::filter`]), which also canonicalises URLs and computes fingerprints; the script
//! then decides atomically what needs shared state: whether the job accepts anything,
//! budgets, dedupe, and the enqueue itself. A client caches each job's compiled filter and
//! reloads it when the job's generation (bumped by every registration) changes.

mod reply;
mod scripts;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kubecrawl_api::{CrawlRequest, JobRef};
use redis::aio::ConnectionManager;

use self::reply::Reply;
use self::scripts::Scripts;
use crate::clock::duration_micros;
use crate::filter::{LinkFilter, Prepared};
use crate::lease::{Completion, Lease, LeaseId, Outcome, RetryOutcome, RetryRequest};
use crate::stats::{SpiderStats, Window, WorkerCounts};
use crate::{
    Admission, DomainHint, DomainRules, Error, Frontier, FrontierConfig, JobBacklog, JobPolicy,
    JobStats, Result, SpiderBacklog, check_name,
};

/// Queues and dedupe buckets one purge call deletes at most, bounding how long it blocks Redis.
const PURGE_CHUNK: u32 = 2000;
/// Queues one suspend or resume call attaches or detaches at most, bounding how long it
/// blocks Redis (a job may have a queue per (domain, priority): millions).
const STATE_CHUNK: u32 = 1000;
/// Requests one enqueue script call carries at most (seeds are sent in chunks of this).
const SEED_CHUNK: usize = 1000;

/// The frontier on Redis. Cheap to clone; clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisFrontier {
    inner: Arc<Inner>,
}

/// A job's compiled filter and the policy generation it was compiled from.
type CachedFilter = (u64, Arc<LinkFilter>);

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    config: FrontierConfig,
    scripts: Scripts,
    /// (spiderid, job number) → (generation, compiled filter).
    filters: Mutex<HashMap<(String, u64), CachedFilter>>,
    round_trips: AtomicU64,
}

impl std::fmt::Debug for RedisFrontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFrontier")
            .field("prefix", &self.inner.prefix)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisFrontier {
    /// Connects to Redis at `url` (`redis://host:port/db`) and uses keys under `prefix`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a prefix with braces, [`Error::Connect`] when Redis cannot
    /// be reached.
    pub async fn connect(url: &str, prefix: &str, config: FrontierConfig) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|source| Error::Connect { source })?;
        Self::connect_client(client, prefix, config).await
    }

    /// Connects with a client built elsewhere (with TLS and credentials, as the binaries'
    /// `kubecrawl_process::connect::redis` flags build it) and uses keys under `prefix`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a prefix with braces, [`Error::Connect`] when Redis cannot
    /// be reached.
    pub async fn connect_client(
        client: redis::Client,
        prefix: &str,
        config: FrontierConfig,
    ) -> Result<Self> {
        check_name("prefix", prefix)?;
        let conn = ConnectionManager::new(client)
            .await
            .map_err(|source| Error::Connect { source })?;
        Ok(Self::with_connection(conn, prefix, config))
    }

    /// Uses an existing connection manager.
    pub fn with_connection(conn: ConnectionManager, prefix: &str, config: FrontierConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                prefix: prefix.to_owned(),
                config,
                scripts: Scripts::new(),
                filters: Mutex::new(HashMap::new()),
                round_trips: AtomicU64::new(0),
            }),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Requests this client sent to Redis so far (scripts and commands; the benchmark
    /// cross-checks Redis's own count with it).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    fn base(&self, spiderid: &str) -> Result<String> {
        check_name("spiderid", spiderid)?;
        Ok(format!("{}:{{{spiderid}}}", self.inner.prefix))
    }

    async fn run(
        &self,
        op: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<redis::Value> {
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.inner.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|source| Error::Redis { op, source })
    }

    /// Acknowledges leases of one spider in one script call (`complete.lua`); answers each in
    /// order.
    async fn complete_batch(&self, acks: &[(&Lease, &Outcome)]) -> Result<Vec<Completion>> {
        let Some((first, _)) = acks.first() else {
            return Ok(Vec::new());
        };
        let base = self.base(&first.id.spiderid)?;
        let mut inv = self.inner.scripts.complete.prepare_invoke();
        inv.key(&base).arg(acks.len());
        let mut filtered = Vec::with_capacity(acks.len());
        for (lease, outcome) in acks {
            if lease.id.spiderid != first.id.spiderid {
                return Err(Error::Reply {
                    op: "complete",
                    detail: "one batch holds leases of two spiders".to_owned(),
                });
            }
            let mut children = Vec::with_capacity(outcome.children.len());
            let mut rejected = 0;
            if !outcome.children.is_empty() {
                let filter = self.filter(&lease.id, &lease.job).await?;
                for child in &outcome.children {
                    match filter.check(child) {
                        Ok(prepared) => children.push(prepared),
                        Err(_) => rejected += 1,
                    }
                }
            }
            filtered.push(rejected);
            inv.arg(&lease.id.token)
                .arg(outcome.status.map(|s| s.to_string()).unwrap_or_default())
                .arg(outcome.bytes)
                .arg(outcome.items)
                .arg(outcome.step.unwrap_or(lease.request.depth))
                .arg(children.len());
            push_requests(&mut inv, &children)?;
        }
        let reply = Reply::new("complete", self.run("complete", &inv).await?)?;
        reply.completions(&filtered)
    }

    /// The compiled filter of a job, from the cache or from Redis.
    async fn filter(&self, id: &LeaseId, job: &JobRef) -> Result<Arc<LinkFilter>> {
        let key = (id.spiderid.clone(), id.job);
        if let Some((generation, filter)) = self.cached_filter(&key)
            && generation >= id.generation
        {
            return Ok(filter);
        }
        let jk = format!("{}:job:{}", self.base(&id.spiderid)?, id.job);
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.inner.conn.clone();
        let (policy, generation): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(&jk)
            .arg("pol")
            .arg("gen")
            .query_async(&mut conn)
            .await
            .map_err(|source| Error::Redis {
                op: "load policy",
                source,
            })?;
        // A purged job has no policy; its children are refused by the script anyway.
        let policy: JobPolicy = match policy {
            Some(text) => serde_json::from_str(&text).map_err(|source| Error::Record { source })?,
            None => JobPolicy::default(),
        };
        let filter = Arc::new(LinkFilter::new(&policy).map_err(|source| Error::Policy {
            job: job.clone(),
            source,
        })?);
        if let Ok(mut cache) = self.inner.filters.lock() {
            cache.insert(key, (generation.unwrap_or(0), filter.clone()));
        }
        Ok(filter)
    }

    fn cached_filter(&self, key: &(String, u64)) -> Option<CachedFilter> {
        self.inner
            .filters
            .lock()
            .ok()
            .and_then(|cache| cache.get(key).cloned())
    }
}

/// The field naming a job in `P:{S}:jobs`.
fn job_field(job: &JobRef) -> Result<String> {
    serde_json::to_string(&(&job.appid, &job.crawlid)).map_err(|source| Error::Record { source })
}

/// Appends (domain, priority, fingerprint, record) for each request.
fn push_requests(invocation: &mut redis::ScriptInvocation<'_>, items: &[Prepared]) -> Result<()> {
    for item in items {
        let record =
            serde_json::to_string(&item.request).map_err(|source| Error::Record { source })?;
        invocation
            .arg(&item.domain)
            .arg(item.request.priority)
            .arg(&item.fingerprint[..])
            .arg(record);
    }
    Ok(())
}

#[async_trait]
impl Frontier for RedisFrontier {
    async fn register(&self, job: &JobRef, policy: &JobPolicy) -> Result<()> {
        LinkFilter::new(policy).map_err(|source| Error::Policy {
            job: job.clone(),
            source,
        })?;
        let base = self.base(&job.spiderid)?;
        let text = serde_json::to_string(policy).map_err(|source| Error::Record { source })?;
        let limit = |v: Option<u64>| v.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut inv = self.inner.scripts.register.prepare_invoke();
        inv.key(&base)
            .arg(job_field(job)?)
            .arg(&job.appid)
            .arg(&job.crawlid)
            .arg(text)
            .arg(policy.expires_micros())
            .arg(limit(policy.max_pages))
            .arg(limit(policy.domain_max_pages))
            .arg(duration_micros(policy.interval(&self.inner.config)));
        let reply = Reply::new("register", self.run("register", &inv).await?)?;
        if reply.tag() == Some("purging") {
            return Err(Error::Purging { job: job.clone() });
        }
        // An expired job registered again: attach its queues, in chunks.
        self.set_state(job, "run").await?;
        Ok(())
    }

    async fn seed(&self, job: &JobRef, seeds: &[CrawlRequest]) -> Result<Admission> {
        let base = self.base(&job.spiderid)?;
        let field = job_field(job)?;
        let mut total = Admission::default();
        let prepared: Vec<Prepared> = seeds.iter().filter_map(Prepared::seed).collect();
        total.filtered = (seeds.len() - prepared.len()) as u64;
        let mut chunks: Vec<&[Prepared]> = prepared.chunks(SEED_CHUNK).collect();
        if chunks.is_empty() {
            // Still ask, so that an unknown job is reported as such.
            chunks.push(&[]);
        }
        for chunk in chunks {
            let mut inv = self.inner.scripts.seed.prepare_invoke();
            inv.key(&base).arg(&field).arg(chunk.len());
            push_requests(&mut inv, chunk)?;
            let reply = Reply::new("seed", self.run("seed", &inv).await?)?;
            match reply.tag() {
                Some("ok") => {
                    total.admitted += reply.u64_at(1)?;
                    total.duplicates += reply.u64_at(2)?;
                    total.over_budget += reply.u64_at(3)?;
                    total.blacklisted += reply.u64_at(4)?;
                }
                Some("refused") => total.refused += chunk.len() as u64,
                Some("unknown") => return Err(Error::UnknownJob { job: job.clone() }),
                _ => return Err(reply.unexpected()),
            }
        }
        Ok(total)
    }

    async fn lease(&self, spiderid: &str, max: usize, duration: Duration) -> Result<Vec<Lease>> {
        let base = self.base(spiderid)?;
        let mut inv = self.inner.scripts.lease.prepare_invoke();
        inv.key(&base)
            .arg(max)
            .arg(duration_micros(duration).max(1))
            .arg(self.inner.config.housekeeping_batch);
        let reply = Reply::new("lease", self.run("lease", &inv).await?)?;
        reply.leases(spiderid)
    }

    async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<Completion> {
        let mut done = self.complete_batch(&[(lease, &outcome)]).await?;
        done.pop().ok_or_else(|| Error::Reply {
            op: "complete",
            detail: "no answer for the lease".to_owned(),
        })
    }

    async fn complete_many(&self, acks: &[(Lease, Outcome)]) -> Result<Vec<Completion>> {
        let mut done = Vec::with_capacity(acks.len());
        // One script call per run of leases of one spider (one hash slot).
        for group in acks.chunk_by(|a, b| a.0.id.spiderid == b.0.id.spiderid) {
            let group: Vec<(&Lease, &Outcome)> = group.iter().map(|(l, o)| (l, o)).collect();
            done.extend(self.complete_batch(&group).await?);
        }
        Ok(done)
    }

    async fn retry(&self, lease: &Lease, retry: RetryRequest) -> Result<RetryOutcome> {
        let base = self.base(&lease.id.spiderid)?;
        let config = &self.inner.config;
        let attempt = lease.request.retries.saturating_add(1);
        let give_up = attempt > config.max_retries;
        let delay = config
            .backoff(attempt)
            .max(retry.not_before.unwrap_or_default());
        let mut request = lease.request.clone();
        request.retries = attempt;
        let record = serde_json::to_string(&request).map_err(|source| Error::Record { source })?;
        let mut inv = self.inner.scripts.retry.prepare_invoke();
        inv.key(&base)
            .arg(&lease.id.token)
            .arg(if give_up { "1" } else { "0" })
            .arg(duration_micros(delay))
            .arg(record)
            .arg(retry.status.map(|s| s.to_string()).unwrap_or_default());
        let reply = Reply::new("retry", self.run("retry", &inv).await?)?;
        match reply.tag() {
            Some("scheduled") => Ok(RetryOutcome::Scheduled { attempt, delay }),
            Some("gaveup") => Ok(RetryOutcome::GaveUp),
            Some("gone") => Ok(RetryOutcome::JobGone),
            Some("stale") => Ok(RetryOutcome::Stale),
            _ => Err(reply.unexpected()),
        }
    }

    async fn extend(&self, leases: &[Lease], duration: Duration) -> Result<usize> {
        let mut by_spider: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        for lease in leases {
            by_spider.entry(&lease.id.spiderid).or_default().push(lease);
        }
        let mut held = 0;
        for (spiderid, leases) in by_spider {
            let base = self.base(spiderid)?;
            let mut inv = self.inner.scripts.extend.prepare_invoke();
            inv.key(&base).arg(duration_micros(duration).max(1));
            for lease in leases {
                inv.arg(&lease.id.token);
            }
            let reply = Reply::new("extend", self.run("extend", &inv).await?)?;
            held += usize::try_from(reply.int()?).unwrap_or(0);
        }
        Ok(held)
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let base = self.base(&lease.id.spiderid)?;
        let mut inv = self.inner.scripts.release.prepare_invoke();
        inv.key(&base).arg(&lease.id.token);
        let reply = Reply::new("release", self.run("release", &inv).await?)?;
        Ok(reply.int()? == 1)
    }

    async fn reclaim_expired(&self, spiderid: &str, max: usize) -> Result<usize> {
        let base = self.base(spiderid)?;
        let mut inv = self.inner.scripts.lease.prepare_invoke();
        inv.key(&base).arg(0).arg(1).arg(max);
        let reply = Reply::new("reclaim", self.run("reclaim", &inv).await?)?;
        Ok(usize::try_from(reply.u64_at(2)?).unwrap_or(usize::MAX))
    }

    async fn suspend(&self, job: &JobRef) -> Result<bool> {
        self.set_state(job, "susp").await
    }

    async fn resume(&self, job: &JobRef) -> Result<bool> {
        self.set_state(job, "run").await
    }

    async fn purge(&self, job: &JobRef) -> Result<bool> {
        let base = self.base(&job.spiderid)?;
        let field = job_field(job)?;
        let mut calls = 0u64;
        loop {
            let mut inv = self.inner.scripts.purge.prepare_invoke();
            inv.key(&base).arg(&field).arg(PURGE_CHUNK);
            let reply = Reply::new("purge", self.run("purge", &inv).await?)?;
            calls += 1;
            match reply.status_text() {
                Some("none") => return Ok(calls > 1),
                Some("done") => {
                    tracing::debug!(job = %job, calls, "job purged");
                    if let Ok(mut cache) = self.inner.filters.lock() {
                        cache.retain(|(spider, _), _| spider != &job.spiderid);
                    }
                    return Ok(true);
                }
                Some("more") => continue,
                _ => return Err(reply.unexpected()),
            }
        }
    }

    async fn epoch(&self, spiderid: &str) -> Result<String> {
        let key = format!("{}:epoch", self.base(spiderid)?);
        let fresh = crate::new_epoch();
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.inner.conn.clone();
        // SET NX GET: the existing epoch, or none when ours was just set.
        let existing: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&fresh)
            .arg("NX")
            .arg("GET")
            .query_async(&mut conn)
            .await
            .map_err(|source| Error::Redis {
                op: "epoch",
                source,
            })?;
        Ok(existing.unwrap_or(fresh))
    }

    async fn job_stats(&self, job: &JobRef) -> Result<Option<JobStats>> {
        let base = self.base(&job.spiderid)?;
        let mut inv = self.inner.scripts.stats.prepare_invoke();
        inv.key(&base).arg(job_field(job)?);
        let reply = Reply::new("job stats", self.run("job stats", &inv).await?)?;
        reply.job_stats()
    }

    async fn policy(&self, job: &JobRef) -> Result<Option<JobPolicy>> {
        let base = self.base(&job.spiderid)?;
        let mut inv = self.inner.scripts.stats.prepare_invoke();
        inv.key(&base).arg(job_field(job)?);
        let reply = Reply::new("job policy", self.run("job policy", &inv).await?)?;
        reply.job_policy()
    }

    async fn report_domain(&self, spiderid: &str, domain: &str, hint: DomainHint) -> Result<()> {
        let base = self.base(spiderid)?;
        let (kind, delay) = match hint {
            DomainHint::CrawlDelay(d) => ("cd", d),
            DomainHint::RetryAfter(d) => ("ra", d),
            DomainHint::Adaptive(d) => ("ad", d),
        };
        let mut inv = self.inner.scripts.domain.prepare_invoke();
        inv.key(&base)
            .arg(domain.to_ascii_lowercase())
            .arg(kind)
            .arg(duration_micros(delay))
            .arg(self.inner.config.crawl_delay_ttl.as_secs().max(1));
        self.run("report domain", &inv).await?;
        Ok(())
    }

    async fn spider_stats(&self, spiderid: &str) -> Result<SpiderStats> {
        let base = self.base(spiderid)?;
        let mut inv = self.inner.scripts.spider_stats.prepare_invoke();
        inv.key(&base);
        for window in Window::ALL {
            if let (Some(seconds), Some(g)) = (window.seconds(), window.granularity()) {
                inv.arg(window.label()).arg(seconds).arg(g);
            }
        }
        let reply = Reply::new("spider stats", self.run("spider stats", &inv).await?)?;
        reply.spider_stats()
    }

    async fn heartbeat(&self, spiderid: &str, worker: &str, ttl: Duration) -> Result<()> {
        let base = self.base(spiderid)?;
        check_name("worker", worker)?;
        let ttl = duration_micros(ttl).max(1);
        let mut inv = self.inner.scripts.heartbeat.prepare_invoke();
        inv.key(format!("{base}:workers")).arg(worker).arg(ttl);
        self.run("heartbeat", &inv).await?;
        let mut inv = self.inner.scripts.heartbeat.prepare_invoke();
        inv.key(format!("{}:spiders", self.inner.prefix))
            .arg(spiderid)
            .arg(ttl);
        self.run("heartbeat", &inv).await?;
        Ok(())
    }

    async fn workers(&self) -> Result<WorkerCounts> {
        let mut inv = self.inner.scripts.live.prepare_invoke();
        inv.key(format!("{}:spiders", self.inner.prefix));
        let reply = Reply::new("workers", self.run("workers", &inv).await?)?;
        let (now, spiders) = reply.live()?;
        let mut counts = WorkerCounts::default();
        if spiders.is_empty() {
            return Ok(counts);
        }
        let mut pipe = redis::pipe();
        for spider in &spiders {
            pipe.cmd("ZCOUNT")
                .arg(format!("{}:workers", self.base(spider)?))
                .arg(format!("({now}"))
                .arg("+inf");
        }
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.inner.conn.clone();
        let live: Vec<u64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|source| Error::Redis {
                op: "workers",
                source,
            })?;
        let per_spider: BTreeMap<String, u64> = spiders
            .into_iter()
            .zip(live)
            .filter(|(_, n)| *n > 0)
            .collect();
        counts.total = per_spider.values().sum();
        counts.unique = per_spider.len() as u64;
        counts.per_spider = per_spider;
        Ok(counts)
    }

    async fn backlog(&self, spiderid: &str) -> Result<SpiderBacklog> {
        let base = self.base(spiderid)?;
        let mut out = SpiderBacklog::default();
        let mut first = true;
        for set in ["ready", "wait"] {
            let mut offset = 0usize;
            loop {
                let mut inv = self.inner.scripts.backlog.prepare_invoke();
                inv.key(&base)
                    .arg(set)
                    .arg(offset)
                    .arg(crate::backlog::PAGE);
                let reply = Reply::new("backlog", self.run("backlog", &inv).await?)?;
                let page = reply.backlog_page()?;
                if first {
                    (out.in_flight, out.retrying) = (page.in_flight, page.retrying);
                    first = false;
                }
                // A domain moved between the sets meanwhile is counted once.
                for (domain, queued) in page.domains {
                    out.domains.entry(domain).or_insert(queued);
                }
                if page.looked < crate::backlog::PAGE {
                    break;
                }
                offset += page.looked;
            }
        }
        Ok(out)
    }

    async fn job_backlog(&self, job: &JobRef) -> Result<JobBacklog> {
        let base = self.base(&job.spiderid)?;
        let field = job_field(job)?;
        let mut out = JobBacklog::default();
        let mut cursor = "0".to_owned();
        loop {
            let mut inv = self.inner.scripts.job_backlog.prepare_invoke();
            inv.key(&base)
                .arg(&field)
                .arg(&cursor)
                .arg(crate::backlog::PAGE);
            let reply = Reply::new("job backlog", self.run("job backlog", &inv).await?)?;
            let (next, queues) = reply.job_backlog_page()?;
            for (priority, domain, queued) in queues {
                out.add(&domain, priority, queued);
            }
            if next == "0" {
                return Ok(out);
            }
            cursor = next;
        }
    }

    async fn set_domain_rules(&self, spiderid: &str, rules: &DomainRules) -> Result<()> {
        let base = self.base(spiderid)?;
        let rules = rules.normalized();
        let mut inv = self.inner.scripts.rules.prepare_invoke();
        inv.key(&base).arg(rules.throttles.len());
        for (domain, interval) in &rules.throttles {
            inv.arg(domain).arg(duration_micros(*interval));
        }
        for domain in &rules.blacklist {
            inv.arg(domain);
        }
        self.run("set domain rules", &inv).await?;
        Ok(())
    }

    async fn domain_rules(&self, spiderid: &str) -> Result<DomainRules> {
        let base = self.base(spiderid)?;
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.inner.conn.clone();
        let (throttles, blacklist): (BTreeMap<String, u64>, std::collections::BTreeSet<String>) =
            redis::pipe()
                .cmd("HGETALL")
                .arg(format!("{base}:th"))
                .cmd("SMEMBERS")
                .arg(format!("{base}:bl"))
                .query_async(&mut conn)
                .await
                .map_err(|source| Error::Redis {
                    op: "domain rules",
                    source,
                })?;
        Ok(DomainRules {
            throttles: throttles
                .into_iter()
                .map(|(d, us)| (d, Duration::from_micros(us)))
                .collect(),
            blacklist,
        })
    }
}

impl RedisFrontier {
    /// Suspends or resumes a job, one chunk of its queues per call, until every queue is
    /// detached or attached. Interrupted, it leaves the job [`JobStats::settling`], and the
    /// next call for the same state carries on where it stopped.
    async fn set_state(&self, job: &JobRef, state: &'static str) -> Result<bool> {
        let base = self.base(&job.spiderid)?;
        let field = job_field(job)?;
        loop {
            let mut inv = self.inner.scripts.suspend.prepare_invoke();
            inv.key(&base).arg(&field).arg(state).arg(STATE_CHUNK);
            let reply = Reply::new("suspend", self.run("suspend", &inv).await?)?;
            match reply.status_text() {
                Some("done") => return Ok(true),
                Some("none") => return Ok(false),
                Some("more") => {}
                _ => return Err(reply.unexpected()),
            }
        }
    }
}
