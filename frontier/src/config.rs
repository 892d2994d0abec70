//! Settings shared by every client of one frontier.

use std::time::Duration;

/// How the frontier behaves where a job's policy says nothing. Every client of one Redis
/// frontier should use the same settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontierConfig {
    /// Requests allowed per domain per [`FrontierConfig::default_window`] when a job sets no
    /// politeness (Scrapy Cluster's default: 10 per 60 s).
    pub default_hits: u32,
    /// The window of [`FrontierConfig::default_hits`].
    pub default_window: Duration,
    /// The first retry's delay; each further retry doubles it.
    pub retry_base: Duration,
    /// The longest retry delay.
    pub retry_max: Duration,
    /// Retries after which [`crate::Frontier::retry`] gives up and counts an error.
    pub max_retries: u32,
    /// How long a reported robots.txt Crawl-delay is remembered.
    pub crawl_delay_ttl: Duration,
    /// How many expired leases, due retries and due domains one lease call moves at most,
    /// which bounds the time of one call.
    pub housekeeping_batch: usize,
}

impl Default for FrontierConfig {
    fn default() -> Self {
        Self {
            default_hits: 10,
            default_window: Duration::from_secs(60),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
            max_retries: 3,
            crawl_delay_ttl: Duration::from_secs(86_400),
            housekeeping_batch: 256,
        }
    }
}

impl FrontierConfig {
    /// The delay before retry number `attempt` (1 for the first retry): `retry_base` doubled
    /// for each earlier retry, at most `retry_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.retry_base
            .checked_mul(factor)
            .unwrap_or(self.retry_max)
            .min(self.retry_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let config = FrontierConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..FrontierConfig::default()
        };
        let delays: Vec<u64> = (1..=6).map(|a| config.backoff(a).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(config.backoff(200), Duration::from_secs(10));
    }
}
