//! robots.txt, fetched once per origin and cached, with RFC 9309 semantics.
//!
//! - 2xx: the rules apply (parsed with `texting_robots`, matched against the worker's robots
//!   product token); `Crawl-delay` is handed to the frontier for the whole fleet.
//! - 4xx (including 404): "unavailable", everything is allowed.
//! - The network guard refused the origin's address (private, loopback, …): "refused", the
//!   request goes on to its own fetch, which the guard refuses the same way, so it is
//!   recorded as `private_destination` at once instead of after every robots.txt retry. Kept
//!   only as long as an unreachable file: a name may resolve elsewhere later.
//! - 5xx, a network failure or a timeout: "unreachable", everything is disallowed *for now*:
//!   the check says so ([`Verdict::unreachable`]) and the worker retries the request later
//!   instead of counting it as denied; the file is fetched again after the retry interval
//!   ([`UNREACHABLE_RETRY`] by default).
//! - Redirects are followed (up to the fetcher's limit); the body is read up to the fetcher's
//!   cap (at least the 500 KiB RFC 9309 asks parsers to read, with the default cap).
//!
//! The cache holds at most [`RobotsCache::capacity`] origins and forgets an entry after its
//! time to live; concurrent requests for one origin wait for one fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use texting_robots::Robot;
use tokio::sync::OnceCell;
use url::Url;

use crate::fetch::{FetchErrorKind, Fetcher, RequestOptions};

/// How long fetched rules are used before the file is fetched again.
pub const RULES_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long an unreachable robots.txt disallows its origin before it is tried again.
pub const UNREACHABLE_RETRY: Duration = Duration::from_secs(60);

/// What robots.txt says about one origin.
#[derive(Debug)]
pub enum Rules {
    /// Parsed rules.
    Parsed {
        /// The parsed file.
        robot: Box<Robot>,
    },
    /// No usable file (4xx or unparsable): everything allowed.
    AllowAll,
    /// The file could not be fetched (5xx, network): everything disallowed for now.
    Unreachable,
    /// The network guard refused the origin's address: nothing can be fetched there, which
    /// each request's own fetch finds out and records.
    Refused,
}

impl Rules {
    /// Whether `url` may be fetched.
    pub fn allowed(&self, url: &Url) -> bool {
        match self {
            Self::Parsed { robot } => robot.allowed(url.as_str()),
            Self::AllowAll | Self::Refused => true,
            Self::Unreachable => false,
        }
    }

    /// The Crawl-delay the file asks of this agent.
    pub fn crawl_delay(&self) -> Option<Duration> {
        match self {
            Self::Parsed { robot } => robot
                .delay
                .filter(|d| d.is_finite() && *d > 0.0)
                .map(|d| Duration::from_secs_f32(d.min(3600.0))),
            _ => None,
        }
    }
}

struct Entry {
    rules: Arc<OnceCell<(Arc<Rules>, Instant)>>,
    created: Instant,
}

/// What a check found.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The URL may be fetched.
    pub allowed: bool,
    /// The origin's rules were fetched by this very check (so its Crawl-delay is news).
    pub fresh: bool,
    /// The origin's Crawl-delay.
    pub crawl_delay: Option<Duration>,
    /// robots.txt could not be fetched: not a "no", a "not now" (`allowed` is false).
    pub unreachable: bool,
}

/// A bounded, shared cache of robots.txt rules per origin.
pub struct RobotsCache {
    agent: String,
    capacity: usize,
    unreachable_retry: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for RobotsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotsCache")
            .field("agent", &self.agent)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl RobotsCache {
    /// A cache matching rules for the product token `agent` (e.g. `kubecrawl`), holding at
    /// most `capacity` origins.
    pub fn new(agent: impl Into<String>, capacity: usize) -> Self {
        Self {
            agent: agent.into(),
            capacity: capacity.max(1),
            unreachable_retry: UNREACHABLE_RETRY,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Fetches an unreachable robots.txt again after `retry` instead of [`UNREACHABLE_RETRY`].
    pub fn with_unreachable_retry(mut self, retry: Duration) -> Self {
        self.unreachable_retry = retry;
        self
    }

    /// The most origins held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `url` may be fetched, fetching its origin's robots.txt with `fetcher` first
    /// when it is not cached.
    pub async fn check(
        &self,
        fetcher: &Fetcher,
        url: &Url,
        options: &RequestOptions<'_>,
    ) -> Verdict {
        let origin = url.origin().ascii_serialization();
        let cell = self.cell(&origin);
        let mut fresh = false;
        let (rules, _) = cell
            .get_or_init(|| {
                fresh = true;
                self.fetch_rules(fetcher, url, options)
            })
            .await;
        Verdict {
            allowed: rules.allowed(url),
            fresh,
            crawl_delay: rules.crawl_delay(),
            unreachable: matches!(**rules, Rules::Unreachable),
        }
    }

    /// What the cached rules of `url`'s origin say, without fetching: `None` when the
    /// origin's robots.txt is not cached (or was unreachable).
    pub fn cached_allows(&self, url: &Url) -> Option<bool> {
        let origin = url.origin().ascii_serialization();
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (rules, _) = entries.get(&origin)?.rules.get()?;
        match **rules {
            Rules::Unreachable | Rules::Refused => None,
            _ => Some(rules.allowed(url)),
        }
    }

    fn cell(&self, origin: &str) -> Arc<OnceCell<(Arc<Rules>, Instant)>> {
        // The lock is held only for map bookkeeping, never across an await.
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let expired = entries.get(origin).is_some_and(|e| match e.rules.get() {
            Some((rules, at)) => {
                let ttl = if matches!(**rules, Rules::Unreachable | Rules::Refused) {
                    self.unreachable_retry
                } else {
                    RULES_TTL
                };
                now.duration_since(*at) > ttl
            }
            None => false,
        });
        if expired {
            entries.remove(origin);
        }
        if !entries.contains_key(origin) && entries.len() >= self.capacity {
            // Evict the oldest entry; a linear scan is fine at this size and this rate.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries
            .entry(origin.to_owned())
            .or_insert_with(|| Entry {
                rules: Arc::new(OnceCell::new()),
                created: now,
            })
            .rules
            .clone()
    }

    async fn fetch_rules(
        &self,
        fetcher: &Fetcher,
        url: &Url,
        options: &RequestOptions<'_>,
    ) -> (Arc<Rules>, Instant) {
        let mut robots_url = url.clone();
        robots_url.set_path("/robots.txt");
        robots_url.set_query(None);
        robots_url.set_fragment(None);
        // robots.txt is fetched without the job's Cookie and Referer, and unconditionally
        // (the validators a page request carries are the page's).
        let options = RequestOptions {
            referer: None,
            cookie: None,
            if_none_match: None,
            if_modified_since: None,
            ..options.clone()
        };
        let rules = match fetcher.fetch(&robots_url, &options, |_| true).await {
            Ok(page) if (200..300).contains(&page.status) => {
                match Robot::new(&self.agent, &page.body) {
                    Ok(robot) => Rules::Parsed {
                        robot: Box::new(robot),
                    },
                    Err(_) => Rules::AllowAll,
                }
            }
            Ok(page) if (400..500).contains(&page.status) => Rules::AllowAll,
            Err(e) if e.kind() == FetchErrorKind::PrivateDestination => Rules::Refused,
            Ok(_) | Err(_) => Rules::Unreachable,
        };
        tracing::debug!(origin = %url.origin().ascii_serialization(), rules = ?rules_kind(&rules), "robots.txt fetched");
        (Arc::new(rules), Instant::now())
    }
}

fn rules_kind(rules: &Rules) -> &'static str {
    match rules {
        Rules::Parsed { .. } => "parsed",
        Rules::AllowAll => "allow_all",
        Rules::Unreachable => "unreachable",
        Rules::Refused => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_rules_allow_and_disallow_with_crawl_delay() {
        let robot = Robot::new(
            "kubecrawl",
            b"User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n",
        )
        .expect("parses");
        let rules = Rules::Parsed {
            robot: Box::new(robot),
        };
        assert!(rules.allowed(&Url::parse("http://a.test/public").expect("url")));
        assert!(!rules.allowed(&Url::parse("http://a.test/private/x").expect("url")));
        assert_eq!(rules.crawl_delay(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn unreachable_disallows_and_unavailable_allows() {
        let url = Url::parse("http://a.test/x").expect("url");
        assert!(!Rules::Unreachable.allowed(&url));
        assert!(Rules::AllowAll.allowed(&url));
        // The request's own fetch is refused by the guard and recorded.
        assert!(Rules::Refused.allowed(&url));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = RobotsCache::new("kubecrawl", 3);
        for i in 0..10 {
            let _ = cache.cell(&format!("http://h{i}.test"));
        }
        assert_eq!(cache.entries.lock().expect("lock").len(), 3);
    }
}
