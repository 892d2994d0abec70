//! Leases, and what a worker reports when it acknowledges one.
//!
//! A lease is the right to fetch one request until its deadline. The worker fetches, runs the
//! spider, publishes the item, and only then acknowledges the lease: [`crate::Frontier::complete`]
//! (with an [`Outcome`]), [`crate::Frontier::retry`] or [`crate::Frontier::release`]. A lease
//! whose deadline passed is reclaimed and its request leased again (at-least-once).

use std::time::{Duration, SystemTime};

use kubecrawl_api::{CrawlRequest, JobRef};

/// Names one lease. Opaque; shown as `<spiderid>/<number>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseId {
    pub(crate) spiderid: String,
    pub(crate) number: u64,
    /// The job's number inside its spider.
    pub(crate) job: u64,
    /// The job's policy generation when leased.
    pub(crate) generation: u64,
    /// The Redis frontier's record of the lease (empty for the in-memory twin).
    pub(crate) token: String,
}

impl LeaseId {
    /// The spider the lease belongs to.
    pub fn spiderid(&self) -> &str {
        &self.spiderid
    }

    /// The lease's number, unique within its spider.
    pub fn number(&self) -> u64 {
        self.number
    }
}

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.spiderid, self.number)
    }
}

/// One leased request.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The lease.
    pub id: LeaseId,
    /// The job the request belongs to.
    pub job: JobRef,
    /// The request to fetch.
    pub request: CrawlRequest,
    /// The request's domain (host), whose politeness clock this lease charged.
    pub domain: String,
    /// When the frontier dispatched it (the frontier's clock: Redis `TIME`).
    pub leased_at: SystemTime,
    /// Until when it is held; after that it may be reclaimed and leased again.
    pub deadline: SystemTime,
}

/// What fetching a leased request produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The HTTP status code, or `None` when no response came (the fetch failed for good;
    /// counted as an error).
    pub status: Option<u16>,
    /// Response body bytes.
    pub bytes: u64,
    /// Items published for this page.
    pub items: u64,
    /// The page's step, when the spider counts steps its own way (the wandering spider);
    /// `None` means the request's depth.
    pub step: Option<u32>,
    /// Requests the spider yielded. They pass the job's filters, dedupe and budgets.
    pub children: Vec<CrawlRequest>,
    /// Named counters to add to the job's ([`crate::JobStats::counters`]), e.g. what reading a
    /// sitemap found. Names are the program's own: lowercase letters and '_'.
    pub counters: Vec<(&'static str, u64)>,
    /// The request to offer again in the job's next recrawl round (the worker sets it, with the
    /// validators it learnt, for jobs that recrawl); kept in the job's known pages when the
    /// acknowledgement is applied ([`Completion::Acked`]), under its URL (a later one replaces
    /// an earlier one). `None`: nothing remembered. See [`crate::known`].
    pub remember: Option<CrawlRequest>,
}

impl Outcome {
    /// A response with a status code and a body size, nothing else yet.
    pub fn status(status: u16, bytes: u64) -> Self {
        Self {
            status: Some(status),
            bytes,
            ..Self::default()
        }
    }

    /// No response at all (connection refused, DNS failure, too many redirects).
    pub fn failed() -> Self {
        Self::default()
    }

    /// Adds children.
    pub fn with_children(mut self, children: Vec<CrawlRequest>) -> Self {
        self.children = children;
        self
    }

    /// Sets the item count.
    pub fn with_items(mut self, items: u64) -> Self {
        self.items = items;
        self
    }

    /// Adds `n` to the job's counter `name` (lowercase letters and '_').
    pub fn with_counter(mut self, name: &'static str, n: u64) -> Self {
        debug_assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "counter names are lowercase letters and '_'"
        );
        self.counters.push((name, n));
        self
    }

    /// Remembers `request` in the job's known pages if the acknowledgement is applied.
    pub fn remembering(mut self, request: CrawlRequest) -> Self {
        self.remember = Some(request);
        self
    }
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Counted; the children went through the job's policy as the admission says (all
    /// `refused` when the job expired).
    Acked(crate::Admission),
    /// The job is suspended: the request went back to its queue (it is fetched again after
    /// resume, and its children then) and nothing was counted.
    Parked,
    /// The job was purged or never registered: the lease was dropped, nothing counted.
    JobGone,
    /// The lease was not held any more (its deadline passed and it was reclaimed, or it was
    /// already acknowledged): nothing changed. The request is (or was) another lease's.
    Stale,
}

/// A worker's request to try a lease's request again later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryRequest {
    /// Not before this much time from now (a Retry-After); the backoff applies when longer.
    pub not_before: Option<Duration>,
    /// The status code of the failed attempt, if there was a response; recorded if the
    /// frontier gives up.
    pub status: Option<u16>,
}

/// What a retry request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Scheduled: the request is queued again after `delay`, as retry number `attempt`.
    Scheduled {
        /// 1 for the first retry.
        attempt: u32,
        /// The delay before it may be leased again.
        delay: Duration,
    },
    /// Too many retries: counted as an error, not queued again.
    GaveUp,
    /// The job was purged: dropped.
    JobGone,
    /// The lease was not held any more: nothing changed.
    Stale,
}
