//! Domain rules: per-domain throttles and a domain blacklist that a person sets for a whole
//! spider fleet, live (Scrapy Cluster kept them in Zookeeper; kubecrawl's operator copies them
//! from a Kubernetes object with [`crate::Frontier::set_domain_rules`]).
//!
//! A rule names a domain and covers its subdomains too: a throttle or blacklist entry for
//! `example.org` applies to `example.org`, `www.example.org` and `a.b.example.org`. When
//! several throttles match a host, the most specific (longest) domain wins.
//!
//! - **Throttle**: the least time between two dispatches to each host the entry covers. Like a
//!   robots.txt Crawl-delay it is a floor: a lease charges the host's clock with the largest
//!   of the job's interval, a reported Crawl-delay and the throttle (see
//!   [`crate::politeness`]), so a throttle slows a domain down and never speeds it up. Each
//!   host keeps its own clock. A change applies from the host's next dispatch on.
//! - **Blacklist**: a request whose host is covered is refused when it is offered (seed or
//!   acknowledgement: counted in [`crate::Admission::blacklisted`]) and, when it was already
//!   queued before the domain was blacklisted, dropped when its queue comes up for a lease
//!   (the whole (job, priority, domain) queue at once). Both count in the job's
//!   [`crate::JobStats::blacklisted`]. A refused URL does not enter the job's dedupe, so it is
//!   admitted again once the domain is off the blacklist; a dropped one stays seen.
//!
//! Rules are stored per spider (every key of a spider shares one Redis Cluster hash slot, and
//! a lease must read them in the same atomic step), so whoever sets them sets them for each
//! spider fleet. A spider without rules pays nothing for them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The throttles and blacklist of one spider fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainRules {
    /// Domain → the least interval between two dispatches to each host of that domain.
    /// Domains are lowercase host names; a zero interval is no throttle.
    pub throttles: BTreeMap<String, Duration>,
    /// Domains whose requests (their subdomains' too) are refused and dropped.
    pub blacklist: BTreeSet<String>,
}

impl DomainRules {
    /// No throttle, nothing blacklisted.
    pub fn is_empty(&self) -> bool {
        self.throttles.is_empty() && self.blacklist.is_empty()
    }

    /// The throttle that applies to `host`: the entry of the longest domain covering it.
    pub fn throttle_for(&self, host: &str) -> Option<Duration> {
        suffixes(host).find_map(|d| self.throttles.get(d).copied())
    }

    /// Whether `host` is on the blacklist, itself or through a parent domain.
    pub fn is_blacklisted(&self, host: &str) -> bool {
        suffixes(host).any(|d| self.blacklist.contains(d))
    }

    /// The same rules with every domain lowercased and zero throttles left out, as the
    /// frontier stores them.
    pub fn normalized(&self) -> DomainRules {
        DomainRules {
            throttles: self
                .throttles
                .iter()
                .filter(|(_, iv)| !iv.is_zero())
                .map(|(d, iv)| (d.to_ascii_lowercase(), *iv))
                .collect(),
            blacklist: self
                .blacklist
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        }
    }
}

/// `a.b.c`, `b.c`, `c`: a host and each of its parent domains, longest first.
pub fn suffixes(host: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(host), |h| {
        h.split_once('.')
            .map(|(_, rest)| rest)
            .filter(|r| !r.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_go_from_the_host_to_its_top_level_domain() {
        let all: Vec<&str> = suffixes("a.b.example.org").collect();
        assert_eq!(
            all,
            ["a.b.example.org", "b.example.org", "example.org", "org"]
        );
        assert_eq!(suffixes("localhost").collect::<Vec<_>>(), ["localhost"]);
    }

    #[test]
    fn the_most_specific_throttle_wins_and_subdomains_are_covered() {
        let rules = DomainRules {
            throttles: [
                ("example.org".to_owned(), Duration::from_secs(2)),
                ("slow.example.org".to_owned(), Duration::from_secs(9)),
            ]
            .into(),
            blacklist: ["bad.test".to_owned()].into(),
        };
        assert_eq!(
            rules.throttle_for("www.example.org"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            rules.throttle_for("a.slow.example.org"),
            Some(Duration::from_secs(9))
        );
        assert_eq!(rules.throttle_for("example.com"), None);
        assert!(rules.is_blacklisted("bad.test"));
        assert!(rules.is_blacklisted("www.bad.test"));
        assert!(
            !rules.is_blacklisted("notbad.test"),
            "a suffix is not a domain"
        );
    }

    #[test]
    fn normalizing_lowercases_and_drops_zero_throttles() {
        let rules = DomainRules {
            throttles: [
                ("Example.ORG".to_owned(), Duration::from_secs(1)),
                ("zero.test".to_owned(), Duration::ZERO),
            ]
            .into(),
            blacklist: ["BAD.test".to_owned()].into(),
        };
        let n = rules.normalized();
        assert_eq!(
            n.throttles.keys().collect::<Vec<_>>(),
            [&"example.org".to_owned()]
        );
        assert!(n.blacklist.contains("bad.test"));
    }
}
