//! Per-domain politeness, enforced for the whole fleet.
//!
//! Each domain (host) of a spider has one clock: the earliest time it may be dispatched again.
//! Leasing a request charges its domain: the clock moves to `now + interval`, where the
//! interval is the largest of
//! - the job's `politeness.delayMillis`,
//! - the job's `windowSeconds / hits` (so a rate of `hits` per window is enforced as an even
//!   spacing: no window of that length ever holds more than `hits` dispatches, not even at
//!   start-up — the strict reading of the rate),
//! - the fleet default rate when the job sets no politeness,
//! - a robots.txt Crawl-delay a worker reported for the domain ([`DomainHint::CrawlDelay`]),
//! - a throttle set for the domain (or a parent domain) for the whole fleet
//!   ([`crate::rules`], [`crate::Frontier::set_domain_rules`]),
//! - the adaptive delay a worker learnt from the domain's answers ([`DomainHint::Adaptive`]).
//!
//! A [`DomainHint::RetryAfter`] pushes the clock to at least that time. Only a lease charges
//! the clock — a filtered, refused or retried request costs nothing — and the charge and the
//! dispatch are one atomic step, so concurrent workers can never both pass one slot.
//!
//! Domains are per spider: two spider fleets fetching one host each keep their own clock
//! (every key of one spider shares one Redis Cluster hash slot, and a domain's clock must be
//! updated in the same atomic step as the lease). `politeness.perIp` is not enforced by the
//! frontier (it does not resolve names).

use std::time::Duration;

use kubecrawl_api::Politeness;

use crate::FrontierConfig;

/// What a worker learnt about a domain and reports to the frontier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainHint {
    /// robots.txt asks for this delay between requests. Remembered for
    /// [`FrontierConfig::crawl_delay_ttl`]; raises the interval of every job on the domain.
    CrawlDelay(Duration),
    /// The server answered 429 or 503 with Retry-After: no dispatch to the domain before this
    /// much time from now.
    RetryAfter(Duration),
    /// The worker's adaptive delay for the domain, learnt from its answers (429, 503,
    /// connection errors, latency): the least interval between dispatches while it is set,
    /// on top of the others; zero clears it. Remembered for
    /// [`FrontierConfig::crawl_delay_ttl`], so a delay no worker renews lapses.
    Adaptive(Duration),
}

/// The least time between two dispatches to one domain under `politeness` (or the fleet
/// default when `None`).
pub fn interval(politeness: Option<&Politeness>, config: &FrontierConfig) -> Duration {
    let (hits, window, delay) = match politeness {
        Some(p) => (
            p.hits,
            p.window_seconds.map(|s| Duration::from_secs(u64::from(s))),
            p.delay_millis
                .map(|ms| Duration::from_millis(u64::from(ms)))
                .unwrap_or_default(),
        ),
        None => (
            Some(config.default_hits),
            Some(config.default_window),
            Duration::ZERO,
        ),
    };
    let rate = match (hits, window) {
        (Some(hits), Some(window)) if hits > 0 => window / hits,
        _ => Duration::ZERO,
    };
    rate.max(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polite(hits: Option<u32>, window: Option<u32>, delay: Option<u32>) -> Politeness {
        Politeness {
            hits,
            window_seconds: window,
            delay_millis: delay,
            obey_robots: true,
            per_ip: false,
        }
    }

    #[test]
    fn the_larger_of_rate_and_delay_wins() {
        let config = FrontierConfig::default();
        let p = polite(Some(4), Some(2), Some(100));
        assert_eq!(interval(Some(&p), &config), Duration::from_millis(500));
        let p = polite(Some(100), Some(1), Some(250));
        assert_eq!(interval(Some(&p), &config), Duration::from_millis(250));
        let p = polite(None, None, None);
        assert_eq!(interval(Some(&p), &config), Duration::ZERO);
        assert_eq!(interval(None, &config), Duration::from_secs(6));
    }
}
