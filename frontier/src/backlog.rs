//! A spider's backlog: what waits in its queues, per domain (Scrapy Cluster's queue stats).

use std::collections::{BTreeMap, BTreeSet};

/// Domains one backlog read looks at per round trip, bounding how long it blocks Redis.
pub const PAGE: usize = 1000;

/// What one spider fleet has waiting, from [`crate::Frontier::backlog`].
///
/// Counts the requests of running (and expired but not yet detached) jobs: a suspended job's
/// queues cannot be leased and are left out (its own [`crate::JobStats::queued`] still
/// counts them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpiderBacklog {
    /// Queued requests per domain (host), leasable now or once the domain's clock passes.
    /// Domains with nothing queued are left out.
    pub domains: BTreeMap<String, u64>,
    /// Requests waiting for a retry's backoff (not yet back in a queue).
    pub retrying: u64,
    /// Requests leased to workers and not yet acknowledged (expired leases included until
    /// they are reclaimed).
    pub in_flight: u64,
    /// The domains of `domains` that may be fetched now: their clock allows a dispatch. What
    /// the operator sizes a fleet by (with `in_flight`).
    pub ready: BTreeSet<String>,
}

impl SpiderBacklog {
    /// Queued requests over all domains.
    pub fn queued(&self) -> u64 {
        self.domains.values().sum()
    }
}

/// What one job has queued, per domain (Scrapy Cluster's `info`), from
/// [`crate::Frontier::job_backlog`]. Requests leased, retrying or of a purged job are not
/// counted; a suspended job's queues are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobBacklog {
    /// Per domain (host) with something queued.
    pub domains: BTreeMap<String, DomainQueue>,
}

impl JobBacklog {
    /// Queued requests over all domains.
    pub fn queued(&self) -> u64 {
        self.domains.values().map(|d| d.total).sum()
    }

    /// Adds `queued` requests of priority `priority` to `domain`.
    pub fn add(&mut self, domain: &str, priority: i32, queued: u64) {
        if queued == 0 {
            return;
        }
        let entry = self
            .domains
            .entry(domain.to_owned())
            .or_insert(DomainQueue {
                total: 0,
                high_priority: priority,
                low_priority: priority,
            });
        entry.total += queued;
        entry.high_priority = entry.high_priority.max(priority);
        entry.low_priority = entry.low_priority.min(priority);
    }
}

/// One domain's queued requests of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainQueue {
    /// Requests queued.
    pub total: u64,
    /// The highest priority among them.
    pub high_priority: i32,
    /// The lowest priority among them.
    pub low_priority: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_sums_the_domains() {
        let b = SpiderBacklog {
            domains: [("a.test".to_owned(), 3), ("b.test".to_owned(), 4)].into(),
            retrying: 1,
            in_flight: 2,
            ready: BTreeSet::new(),
        };
        assert_eq!(b.queued(), 7);
        assert_eq!(SpiderBacklog::default().queued(), 0);
    }
}
