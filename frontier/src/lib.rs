//! kubecrawl-frontier: the distributed crawl frontier of kubecrawl — queues, leases,
//! politeness, dedupe and per-job accounting — on Redis, and an in-memory twin with the same
//! semantics for standalone runs.
//!
//! The operator and the workers share one API, the [`Frontier`] trait. The operator registers a
//! job's policy ([`Frontier::register`]), seeds it ([`Frontier::seed`]), reads its accounting
//! ([`Frontier::job_stats`]) and suspends, resumes or purges it. Workers lease requests for
//! their spider ([`Frontier::lease`]), fetch them, and then acknowledge each lease with its
//! outcome ([`Frontier::complete`]), schedule a retry ([`Frontier::retry`]) or give it back
//! ([`Frontier::release`]) when they shut down. For a job that recrawls, an acknowledgement
//! may also remember its request among the job's *known pages*, which outlive a purge so that
//! the next round can be seeded with them ([`known`]).
//!
//! What this crate is not: it does not fetch, parse robots.txt or talk to Kubernetes. It
//! decides what is fetched next, by whom, and when.
//!
//! # Guarantees
//!
//! - **Nothing is lost (at-least-once).** A leased request is not removed from the frontier:
//!   it stays recorded under its lease until the lease is acknowledged (completed, retried or
//!   released). A lease not acknowledged before its deadline — the worker was killed, the node
//!   was lost, the fetch hung — is *reclaimed*: its request goes back to the head of its queue.
//!   Reclaiming is atomic, so an expired lease goes back exactly once.
//! - **What can duplicate.** A request whose lease expired while the worker was still working
//!   on it is fetched again by another worker; the first worker's late acknowledgement is
//!   refused ([`Completion::Stale`]) and changes nothing, so the page is *counted* once but may
//!   be *fetched* (and its item published) twice. Nothing else duplicates: a URL is admitted to
//!   a job at most once (exact dedupe on 96-bit fingerprints), and a request is never held by two
//!   live leases at the same time.
//! - **What cannot be lost.** Requests admitted to a job's queue, leased requests (until
//!   acknowledged or reclaimed), and scheduled retries. An acknowledgement and everything it
//!   changes — the children it enqueues, the job's counters, the spider's rolling counts, the
//!   known page it remembers — is one atomic step: it happens entirely or not at all. (On a sharded Redis frontier, per shard:
//!   children on other shards are enqueued first; see [`redis`]'s "Shards".)
//! - **Politeness is fleet-wide.** A domain's clock lives in the frontier and is charged when a
//!   request of that domain is leased (really dispatched), atomically, so any number of workers
//!   are together as polite as one. See [`politeness`].
//! - **Priority across domains.** A lease returns the highest-priority request among the
//!   domains that may be fetched now, first in first out within one priority (see [`schedule`]);
//!   on a sharded Redis frontier, among the domains of each shard.
//!
//! # Tour
//! - [`Frontier`]: the operations, their contracts and errors.
//! - [`job`]: a job's policy ([`JobPolicy`]) and its accounting ([`JobStats`]).
//! - [`filter`]: link filters evaluated in Rust before anything reaches Redis (regexes,
//!   allowed domains, denied extensions, maximum depth).
//! - [`fingerprint`]: URL canonicalisation and the 96-bit fingerprints dedupe stores.
//! - [`lease`]: leases and what a worker reports when it acknowledges one.
//! - [`known`]: the pages a job's recrawl rounds acknowledged, kept across rounds.
//! - [`politeness`]: per-domain intervals, robots.txt Crawl-delay and Retry-After hints.
//! - [`schedule`]: the order of requests (priority, then first in first out).
//! - [`stats`]: spider-level rolling counts and worker heartbeats (Scrapy Cluster's "Crawler
//!   Stats Dump"); [`backlog`]: what a spider has waiting, per domain.
//! - [`rules`]: per-domain throttles and the domain blacklist, set live for a spider fleet.
//! - [`redis`]: [`RedisFrontier`], the distributed implementation, with its full key layout.
//! - [`memory`]: [`MemoryFrontier`], the in-memory twin, and [`clock`] for its time.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
pub use kubecrawl_api::{CrawlRequest, JobRef};

pub mod backlog;
pub mod clock;
pub mod config;
pub mod filter;
pub mod fingerprint;
pub mod job;
pub mod known;
pub mod lease;
pub mod memory;
pub mod politeness;
pub mod redis;
pub mod rules;
pub mod schedule;
pub mod stats;

pub use backlog::{DomainQueue, JobBacklog, SpiderBacklog};
pub use config::FrontierConfig;
pub use job::{Admission, JobPolicy, JobStats};
pub use known::{Known, KnownCursor};
pub use lease::{Completion, Lease, LeaseId, Outcome, RetryOutcome, RetryRequest};
pub use memory::MemoryFrontier;
pub use politeness::DomainHint;
pub use redis::{RedisFrontier, Servers};
pub use rules::DomainRules;
pub use stats::{SpiderStats, Window, WorkerCounts};

/// Everything that can go wrong in the frontier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting to Redis failed.
    #[error("connecting to redis failed")]
    Connect {
        /// The client's error.
        #[source]
        source: ::redis::RedisError,
    },
    /// A frontier operation failed in Redis (connection lost, script error, timeout).
    #[error("redis operation {op} failed")]
    Redis {
        /// The frontier operation, e.g. `lease`.
        op: &'static str,
        /// The client's error.
        #[source]
        source: ::redis::RedisError,
    },
    /// A Redis script answered something this client does not understand (a version skew
    /// between clients sharing one Redis, or a bug).
    #[error("unexpected reply to {op}: {detail}")]
    Reply {
        /// The frontier operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A job's policy cannot be used (a regex does not compile).
    #[error("invalid policy for job {job}")]
    Policy {
        /// The job.
        job: JobRef,
        /// What was wrong.
        #[source]
        source: filter::FilterError,
    },
    /// The operation needs a registered job and this one is not (or was purged).
    #[error("job {job} is not registered")]
    UnknownJob {
        /// The job.
        job: JobRef,
    },
    /// The job is being purged; register it again once the purge finished.
    #[error("job {job} is being purged")]
    Purging {
        /// The job.
        job: JobRef,
    },
    /// A name that becomes part of a Redis key is unusable (empty, or contains a brace, which
    /// would break Redis Cluster hash tags).
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// Which name: `spiderid`, `prefix`, `worker`.
        what: &'static str,
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The frontier under this prefix was first used with another number of shards. A
    /// domain's shard depends on the number, so the frontier refuses to run with another one.
    #[error(
        "the frontier under prefix {prefix:?} spreads over {stored} shard(s), but this client was given {configured}: list the same Redis servers (or --redis-shards) as the other processes, or use a new prefix"
    )]
    Shards {
        /// The key prefix.
        prefix: String,
        /// The number of shards recorded under the prefix.
        stored: usize,
        /// The number this client was configured with.
        configured: usize,
    },
    /// A request record could not be encoded or decoded as JSON.
    #[error("request record is not valid json")]
    Record {
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Whether the same call may succeed later unchanged: Redis could not be reached or did
    /// not answer. Everything else (a bad reply, a policy that does not compile, a corrupt
    /// record, an unknown job, a bad name) stays as it is until something changes.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Redis { source, .. } => {
                !matches!(source.retry_method(), ::redis::RetryMethod::NoRetry)
            }
            Self::Reply { .. }
            | Self::Policy { .. }
            | Self::UnknownJob { .. }
            | Self::Purging { .. }
            | Self::InvalidName { .. }
            | Self::Shards { .. }
            | Self::Record { .. } => false,
        }
    }
}

/// The frontier's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The crawl frontier: what the operator and the workers do with the shared crawl state.
///
/// Implemented by [`RedisFrontier`] (shared by a fleet) and [`MemoryFrontier`] (one process);
/// both pass the same conformance suite (`tests/conformance.rs`).
///
/// # Assumptions
/// - URLs are absolute http(s) URLs; anything else is filtered out (children) or refused
///   (seeds) and counted, never an error.
/// - A spiderid, prefix or worker name contains no `{` or `}` (they delimit Redis Cluster hash
///   tags).
///
/// # Errors
/// Every operation fails with [`Error::Redis`] when Redis cannot be reached or a script fails;
/// the operation then may or may not have happened (it is atomic, so either entirely or not at
/// all), and retrying it is safe: every operation is idempotent or guarded by its lease.
#[async_trait]
pub trait Frontier: Send + Sync {
    /// Registers (or updates) a job's policy. Until a job is registered it accepts nothing.
    ///
    /// Updating a job keeps its queues, dedupe and counters; the new policy applies to
    /// requests enqueued from then on.
    ///
    /// # Errors
    /// [`Error::Policy`] when a regex does not compile; [`Error::Purging`] while the job is
    /// being purged.
    async fn register(&self, job: &JobRef, policy: &JobPolicy) -> Result<()>;

    /// Seeds a job: enqueues the given requests through the same dedupe and budgets as
    /// discovered links (but not the link filters: a seed is always wanted). Idempotent:
    /// seeding the same URLs again enqueues nothing new.
    ///
    /// A suspended job accepts nothing: seeds are counted as refused and must be seeded again
    /// after [`Frontier::resume`].
    ///
    /// # Errors
    /// [`Error::UnknownJob`] when the job is not registered.
    async fn seed(&self, job: &JobRef, seeds: &[CrawlRequest]) -> Result<Admission>;

    /// Leases up to `max` requests of spider `spiderid`, highest priority first among the
    /// domains that may be fetched now, and charges each one's domain clock. Returns fewer
    /// (possibly none) when fewer are ready. Expired leases and due retries are put back into
    /// the queues first.
    ///
    /// # Guarantees
    /// Each returned request is held by this lease alone until `lease.deadline`; after that
    /// it may be reclaimed and leased again.
    async fn lease(&self, spiderid: &str, max: usize, duration: Duration) -> Result<Vec<Lease>>;

    /// Acknowledges a lease with what the fetch produced: filters the children through the
    /// job's policy, enqueues those that pass (dedupe, budgets), and updates the job's
    /// accounting and the spider's rolling counts — all in one atomic step.
    ///
    /// A suspended job's request is parked instead (back in its queue, fetched again after
    /// resume, children dropped); see [`Completion`] for every case.
    async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<Completion>;

    /// Acknowledges several leases, as [`Frontier::complete`] would one after the other, and
    /// answers each, in order. The Redis frontier does it in one script call per spider of the
    /// batch, so a worker that batches its acknowledgements pays one round trip and one
    /// script's overhead for many pages.
    ///
    /// An error answers the whole batch: as with `complete`, the caller cannot tell whether
    /// it was applied, and a lease that was not acknowledged expires and is leased again.
    async fn complete_many(&self, acks: &[(Lease, Outcome)]) -> Result<Vec<Completion>> {
        let mut done = Vec::with_capacity(acks.len());
        for (lease, outcome) in acks {
            done.push(self.complete(lease, outcome.clone()).await?);
        }
        Ok(done)
    }

    /// Gives up on this attempt and schedules the request again after an exponential
    /// backoff (or `retry.not_before`, if later), or gives up for good after
    /// [`FrontierConfig::max_retries`] and counts an error.
    async fn retry(&self, lease: &Lease, retry: RetryRequest) -> Result<RetryOutcome>;

    /// Moves the deadline of each lease of `leases` that is still held to `duration` from now,
    /// so a slow page (robots.txt, redirects, retries, a slow publish) keeps its lease while its
    /// worker is alive, and a dead worker's lease still expires soon. Returns how many were
    /// still held; a lease that was reclaimed or acknowledged meanwhile is left alone.
    ///
    /// # Guarantees
    /// Extending never revives a lease: only leases held at the time of the call move.
    async fn extend(&self, leases: &[Lease], duration: Duration) -> Result<usize>;

    /// Gives a lease back without counting anything (a worker shutting down): the request
    /// returns to the head of its queue. Returns false when the lease was no longer held.
    async fn release(&self, lease: &Lease) -> Result<bool>;

    /// Puts back at most `max` requests whose lease deadline passed; returns how many. Leasing
    /// does this too, so calling it is only needed when no one leases.
    async fn reclaim_expired(&self, spiderid: &str, max: usize) -> Result<usize>;

    /// Suspends a job: nothing of it is leased and it accepts nothing until resumed; its
    /// queues, dedupe and counters are kept. Returns false when the job is not registered.
    /// The state changes at once; its queues are then detached in bounded chunks (time
    /// proportional to the job's number of (domain, priority) queues, spread over calls that
    /// each block Redis briefly). If interrupted, the job reads [`JobStats::settling`] and
    /// calling this again finishes the work.
    async fn suspend(&self, job: &JobRef) -> Result<bool>;

    /// Resumes a suspended job. Returns false when the job is not registered.
    async fn resume(&self, job: &JobRef) -> Result<bool>;

    /// Deletes everything the frontier holds for a job (queues, dedupe, budgets, counters),
    /// except its known pages, which a recrawl round purges the job to start afresh with
    /// ([`Frontier::drop_known`] deletes those). Takes time proportional to that job's size,
    /// not to the whole backlog. In-flight leases and scheduled retries of the job are dropped
    /// when they come back (and remember nothing). Returns false when the job was not
    /// registered.
    async fn purge(&self, job: &JobRef) -> Result<bool>;

    /// Starts a new round's known pages: when the job has no previous set, its current set
    /// becomes the previous one and the current set is empty; when a previous set is still
    /// there (an interrupted start of a round), nothing changes. Returns whether it rotated:
    /// false means a previous set was there. A previous set is there from a rotation until
    /// [`Frontier::drop_known`] drops it, even when it is empty (a job that remembered nothing
    /// rotates too).
    ///
    /// Idempotent; does not need the job to be registered (works after purge). On a sharded
    /// Redis frontier the shards rotate one after the other; interrupted, a call again
    /// finishes the rotation (and returns true).
    async fn rotate_known(&self, job: &JobRef) -> Result<bool>;

    /// Reads a job's known pages — the previous set, then the current set — about `count` at a
    /// time: pass `None` first, then the returned cursor until it is `None`. A URL in both sets
    /// may be returned twice (seeding dedupes). Works whether or not the job is registered.
    ///
    /// # Guarantees
    /// A page known for the whole walk is returned (at least once); one remembered or dropped
    /// meanwhile may or may not be. A call may return no pages and still a cursor: carry on
    /// until the cursor is `None`.
    async fn known_pages(
        &self,
        job: &JobRef,
        cursor: Option<KnownCursor>,
        count: usize,
    ) -> Result<(Vec<CrawlRequest>, Option<KnownCursor>)>;

    /// Drops the previous set of a job's known pages, or both sets. Idempotent; does not need
    /// the job to be registered.
    async fn drop_known(&self, job: &JobRef, which: Known) -> Result<()>;

    /// The identity of spider `spiderid`'s frontier state: a random id created with the
    /// state's first use and kept as long as the state is. When it changes, the state was
    /// lost (Redis restarted without persistence, or failed over to an empty replica) and
    /// every job of the spider must be seeded again or failed, never reported as done.
    async fn epoch(&self, spiderid: &str) -> Result<String>;

    /// Reads a job's accounting in O(1) (one small hash). `None` when not registered.
    async fn job_stats(&self, job: &JobRef) -> Result<Option<JobStats>>;

    /// Reads the policy a job was last registered with, as workers need it for fetching
    /// (user agent, cookie, attrs, robots, nofollow) and for checking redirects. `None` when
    /// the job is not registered (or was purged).
    async fn policy(&self, job: &JobRef) -> Result<Option<JobPolicy>>;

    /// Reports what a worker learnt about a domain: a robots.txt Crawl-delay (raises the
    /// domain's interval for a day) or a Retry-After (no dispatch before it passes).
    async fn report_domain(&self, spiderid: &str, domain: &str, hint: DomainHint) -> Result<()>;

    /// Cuts `domain` off for `job` as a crawler trap (a worker found that the host explodes:
    /// see the worker's `traps` module), saying why: the job's queued requests for the domain
    /// are dropped when they come up and its links to the domain are refused, both counted as
    /// blacklisted, and [`JobStats::traps`] lists it. Returns false when the job is not
    /// registered; a domain cut off twice keeps its first reason.
    async fn cut_off(&self, job: &JobRef, domain: &str, reason: &str) -> Result<bool>;

    /// The spider's rolling counts per status code for each [`Window`].
    async fn spider_stats(&self, spiderid: &str) -> Result<SpiderStats>;

    /// Records that `worker` of spider `spiderid` is alive for the next `ttl`. A worker
    /// that stops heart-beating disappears from [`Frontier::workers`] after its ttl.
    async fn heartbeat(&self, spiderid: &str, worker: &str, ttl: Duration) -> Result<()>;

    /// Live workers: total, per spider, and the number of distinct spiders.
    async fn workers(&self) -> Result<WorkerCounts>;

    /// What spider `spiderid` has waiting: queued requests per domain, retries waiting for
    /// their backoff, leases in flight (see [`SpiderBacklog`]).
    ///
    /// Time proportional to the spider's number of domains with a politeness clock or
    /// queued requests (and the (job, priority) queues of those domains), read in pages of
    /// [`backlog::PAGE`] domains: each page is a consistent snapshot, the whole is not
    /// (a domain dispatched meanwhile may be counted before or after its dispatch). Never a
    /// scan of the keyspace.
    async fn backlog(&self, spiderid: &str) -> Result<SpiderBacklog>;

    /// What job `job` has queued, per domain with its highest and lowest priority (Scrapy
    /// Cluster's per-crawl `info`); empty when the job is not registered. Time proportional to
    /// the job's number of (priority, domain) queues, read in pages of [`backlog::PAGE`];
    /// each page is a consistent snapshot, the whole is not.
    async fn job_backlog(&self, job: &JobRef) -> Result<JobBacklog>;

    /// Replaces spider `spiderid`'s domain rules — per-domain throttles and the blacklist
    /// (see [`rules`]) — with `rules`, atomically. Empty rules clear them.
    ///
    /// # Guarantees
    /// From the call's return on, every lease of the spider honours the new rules: a
    /// throttle charges the host's clock at its next dispatch, a blacklisted domain's queued
    /// requests are dropped (counted) when they come up, and offered ones are refused.
    async fn set_domain_rules(&self, spiderid: &str, rules: &DomainRules) -> Result<()>;

    /// The domain rules spider `spiderid` runs with (normalized: lowercase, no zero
    /// throttle).
    async fn domain_rules(&self, spiderid: &str) -> Result<DomainRules>;

    /// Scrapy Cluster's "Crawler Stats Dump": `total_spider_count`, `unique_spider_count`,
    /// `<spider>_spider_count` and `<spider>_<status>_<window>` (windows 900 … 604800 and
    /// `lifetime`) for every spider with live workers and for `extra_spiders`.
    async fn stats_dump(&self, extra_spiders: &[&str]) -> Result<BTreeMap<String, u64>> {
        let workers = self.workers().await?;
        let mut out = BTreeMap::new();
        out.insert("total_spider_count".to_owned(), workers.total);
        out.insert("unique_spider_count".to_owned(), workers.unique);
        let mut spiders: Vec<String> = workers.per_spider.keys().cloned().collect();
        spiders.extend(extra_spiders.iter().map(|s| (*s).to_owned()));
        spiders.sort();
        spiders.dedup();
        for spider in spiders {
            let count = workers.per_spider.get(&spider).copied().unwrap_or(0);
            out.insert(format!("{spider}_spider_count"), count);
            let stats = self.spider_stats(&spider).await?;
            stats.write_dump(&spider, &mut out);
        }
        Ok(out)
    }
}

/// A new random epoch: 16 hex digits from the time, the process and the standard library's
/// randomly seeded hasher; unique in practice.
pub(crate) fn new_epoch() -> String {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let random =
        std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()));
    format!(
        "{:016x}",
        random ^ xxhash_rust::xxh3::xxh3_64(&nanos.to_le_bytes())
    )
}

/// Checks a name that becomes part of a Redis key.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.contains(['{', '}']) {
        Some("must not contain '{' or '}'")
    } else if name.len() > 256 {
        Some("must be at most 256 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            what,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}
