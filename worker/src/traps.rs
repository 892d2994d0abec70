//! Crawler traps: hosts that explode — URLs that keep growing, a calendar or session ids
//! serving the same page under endless addresses, a host that answers nothing but errors.
//!
//! Per job and host, the worker watches what it fetches and cuts the host off for the job
//! ([`kubecrawl_frontier::Frontier::cut_off`]) when one of these rules holds. The thresholds
//! are deliberately high: a host must have shown the pattern over many pages.
//!
//! - **Errors** ([`ERROR_ANSWERS`]): at least 50 answers from the host, at least 95 % of them
//!   errors (a 4xx status, or a failure that retrying cannot fix), and the last 20 all errors.
//!   An outage — 5xx, 408, 429, a refused or timed-out connection — is not judged here: it is
//!   retried and slows the host down ([`crate::adaptive`]), and a host down for a while is
//!   not a trap.
//! - **Duplicates** ([`DUPLICATE_PAGES`]): at least 100 pages with a 2xx status, of which at
//!   most 5 % have distinct bodies: new URLs, no new content.
//! - **Growing URLs** ([`GROWING_URLS`]): at least 30 fetched URLs that look generated — a path
//!   segment repeated 3 times or more (`/a/b/a/b/a/b`), more than 1,000 bytes, or more than 10
//!   query parameters — making up at least half of the host's answers.
//!
//! Each worker judges from what it fetched itself; the frontier keeps the first verdict for the
//! whole job, so every worker obeys it. The operator shows cut-off hosts as the job's
//! `TrapDetected` condition and an event.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Answers from a host before the errors rule may hold.
pub const ERROR_ANSWERS: u32 = 50;
/// 2xx pages from a host before the duplicates rule may hold.
pub const DUPLICATE_PAGES: u32 = 100;
/// Generated-looking URLs from a host before the growing-URLs rule may hold.
pub const GROWING_URLS: u32 = 30;
/// The last answers that must all be errors for the errors rule.
const RECENT_ERRORS: u32 = 20;
/// Distinct bodies remembered per host; past this the host has plenty of content.
const MAX_BODIES: usize = 64;
/// (job, host) pairs remembered; past this, those with few answers are forgotten.
const MAX_HOSTS: usize = 10_000;

/// Why a host was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// It answers nothing but errors.
    Errors,
    /// Endless URLs, the same few pages.
    Duplicates,
    /// Its URLs keep growing (repeated path segments, huge URLs, piles of parameters).
    GrowingUrls,
}

impl Trap {
    /// The reason recorded with the cut-off, shown in the job's status.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Errors => "errors: at least 95 % of 50 or more answers were 4xx or failures",
            Self::Duplicates => "duplicates: 100 or more pages, at most 5 % of them distinct",
            Self::GrowingUrls => "growing URLs: 30 or more generated-looking URLs",
        }
    }

    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Errors => "errors",
            Self::Duplicates => "duplicates",
            Self::GrowingUrls => "growing_urls",
        }
    }
}

/// What one fetch of a host gave.
#[derive(Debug, Clone, Copy)]
pub enum Fetch {
    /// A response: its status and a hash of its body.
    Response {
        /// The HTTP status.
        status: u16,
        /// A hash of the body (equal bodies, equal hashes).
        body: u64,
    },
    /// No response at all.
    Failed,
}

#[derive(Debug, Default)]
struct Host {
    answers: u32,
    errors: u32,
    recent_errors: u32,
    pages: u32,
    bodies: HashSet<u64>,
    generated: u32,
    cut: bool,
}

/// The traps of every (job, host) this worker fetched from.
#[derive(Debug, Default)]
pub struct TrapDetector {
    hosts: Mutex<HashMap<(String, String), Host>>,
}

impl TrapDetector {
    /// An empty detector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a fetch of `url` from `host` for `job` (any stable name of the job); returns the
    /// trap the first time a rule holds for the pair, and never again for it.
    pub fn observe(&self, job: &str, host: &str, url: &str, fetch: Fetch) -> Option<Trap> {
        let Ok(mut hosts) = self.hosts.lock() else {
            return None;
        };
        let key = (job.to_owned(), host.to_owned());
        if !hosts.contains_key(&key) && hosts.len() >= MAX_HOSTS {
            hosts.retain(|_, h| h.cut || h.answers >= 10);
            if hosts.len() >= MAX_HOSTS {
                return None;
            }
        }
        let h = hosts.entry(key).or_default();
        if h.cut {
            return None;
        }
        h.answers += 1;
        match fetch {
            Fetch::Response { status, body } if status < 400 => {
                h.recent_errors = 0;
                if (200..300).contains(&status) {
                    h.pages += 1;
                    if h.bodies.len() < MAX_BODIES {
                        h.bodies.insert(body);
                    }
                }
            }
            Fetch::Response { .. } | Fetch::Failed => {
                h.errors += 1;
                h.recent_errors += 1;
            }
        }
        if generated(url) {
            h.generated += 1;
        }
        let trap = if h.answers >= ERROR_ANSWERS
            && u64::from(h.errors) * 100 >= u64::from(h.answers) * 95
            && h.recent_errors >= RECENT_ERRORS
        {
            Some(Trap::Errors)
        } else if h.pages >= DUPLICATE_PAGES
            && h.bodies.len() < MAX_BODIES
            && (h.bodies.len() as u64) * 100 <= u64::from(h.pages) * 5
        {
            Some(Trap::Duplicates)
        } else if h.generated >= GROWING_URLS && h.generated * 2 >= h.answers {
            Some(Trap::GrowingUrls)
        } else {
            None
        };
        if trap.is_some() {
            h.cut = true;
        }
        trap
    }
}

impl TrapDetector {
    /// Forgets that a (job, host) was cut off, so that its next fetch is judged again (the
    /// frontier could not record the cut-off).
    pub fn forget(&self, job: &str, host: &str) {
        if let Ok(mut hosts) = self.hosts.lock()
            && let Some(h) = hosts.get_mut(&(job.to_owned(), host.to_owned()))
        {
            h.cut = false;
        }
    }
}

/// Whether a URL looks generated: a path segment repeated 3 times or more, more than 1,000
/// bytes, or more than 10 query parameters.
pub fn generated(url: &str) -> bool {
    if url.len() > 1000 {
        return true;
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if query.split('&').filter(|p| !p.is_empty()).count() > 10 {
        return true;
    }
    let mut seen: HashMap<&str, u32> = HashMap::new();
    path.split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .any(|segment| {
            let n = seen.entry(segment).or_default();
            *n += 1;
            *n >= 3
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Fetch = Fetch::Response {
        status: 200,
        body: 1,
    };

    fn page(n: u64) -> Fetch {
        Fetch::Response {
            status: 200,
            body: n,
        }
    }

    #[test]
    fn a_host_of_errors_is_cut_after_fifty_answers() {
        let d = TrapDetector::new();
        for i in 0..49 {
            let fetch = if i % 2 == 0 {
                Fetch::Failed
            } else {
                Fetch::Response {
                    status: 500,
                    body: 0,
                }
            };
            assert_eq!(d.observe("j", "bad.test", "http://bad.test/x", fetch), None);
        }
        assert_eq!(
            d.observe("j", "bad.test", "http://bad.test/x", Fetch::Failed),
            Some(Trap::Errors)
        );
        assert_eq!(
            d.observe("j", "bad.test", "http://bad.test/x", Fetch::Failed),
            None,
            "reported once"
        );
        assert_eq!(
            d.observe("other", "bad.test", "http://bad.test/x", Fetch::Failed),
            None,
            "per job"
        );
    }

    #[test]
    fn a_host_that_recovers_or_has_some_errors_is_not_cut() {
        let d = TrapDetector::new();
        for i in 0..200u64 {
            let fetch = if i % 5 == 0 {
                Fetch::Response {
                    status: 404,
                    body: 0,
                }
            } else {
                page(i)
            };
            assert_eq!(d.observe("j", "ok.test", "http://ok.test/p", fetch), None);
        }
        for _ in 0..60 {
            assert_eq!(
                d.observe("j", "flaky.test", "http://flaky.test/", Fetch::Failed),
                None
            );
            assert_eq!(
                d.observe("j", "flaky.test", "http://flaky.test/", OK),
                None,
                "half errors is not a trap"
            );
        }
    }

    #[test]
    fn endless_urls_with_the_same_content_are_duplicates() {
        let d = TrapDetector::new();
        let mut trap = None;
        for i in 0..100u64 {
            let url = format!("http://cal.test/?day={i}");
            trap = d.observe("j", "cal.test", &url, page(i % 5));
        }
        assert_eq!(trap, Some(Trap::Duplicates));
        let d = TrapDetector::new();
        for i in 0..300u64 {
            assert_eq!(
                d.observe("j", "site.test", "http://site.test/", page(i)),
                None
            );
        }
    }

    #[test]
    fn generated_urls_are_recognised() {
        assert!(generated("http://t.test/a/b/a/b/a/b"));
        assert!(generated(&format!("http://t.test/{}", "x".repeat(1001))));
        assert!(generated(
            "http://t.test/s?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=10&k=11"
        ));
        assert!(!generated("http://t.test/2026/12/05/news/article"));
        assert!(!generated("http://t.test/a/a?x=1"));
        let d = TrapDetector::new();
        let mut trap = None;
        for i in 0..30u64 {
            let url = format!("http://loop.test/{}", "x/".repeat(3 + i as usize));
            trap = d.observe("j", "loop.test", &url, page(i));
        }
        assert_eq!(trap, Some(Trap::GrowingUrls));
    }
}
