//! A job's policy (what it admits) and its accounting (what happened).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use kubecrawl_api::{CrawlJobSpec, Extract, Politeness, Render};
use serde::{Deserialize, Serialize};

use crate::FrontierConfig;
use crate::clock::system_micros;

/// The part of a `CrawlJob` spec the frontier enforces. Stored with the job, so that every
/// worker filters with the same policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobPolicy {
    /// Links are followed while the page's depth is below this: a child deeper than
    /// `maxdepth` is filtered out. 0 fetches the seeds only.
    pub maxdepth: u32,
    /// Domains (and their subdomains) links may lead to; empty admits every domain.
    pub allowed_domains: Vec<String>,
    /// When not empty, a link must match one of these regexes.
    pub allow_regex: Vec<String>,
    /// A link matching one of these regexes is never followed (deny wins over allow).
    pub deny_regex: Vec<String>,
    /// Extensions not followed; `None` means [`crate::filter::DEFAULT_DENY_EXTENSIONS`].
    pub deny_extensions: Option<Vec<String>>,
    /// The most requests admitted per domain (so the most pages fetched from it).
    pub domain_max_pages: Option<u64>,
    /// The most requests admitted to the job (so the most pages fetched).
    pub max_pages: Option<u64>,
    /// After this time the job accepts nothing and nothing of it is leased.
    pub expires: Option<SystemTime>,
    /// Per-domain rate; `None` means the fleet's default ([`FrontierConfig::default_hits`]).
    pub politeness: Option<Politeness>,
    /// The User-Agent workers send for this job; `None` means the worker's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub useragent: Option<String>,
    /// A Cookie header workers send with the job's requests to [`JobPolicy::cookie_domains`]
    /// (never with robots.txt requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The domains (and their subdomains) the Cookie goes to: the job's `allowedDomains`,
    /// or, when it has none, the hosts of its seeds. Empty: the Cookie goes nowhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookie_domains: Vec<String>,
    /// Free JSON copied into every item's `attrs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<serde_json::Value>,
    /// Follow links marked `rel="nofollow"` too.
    #[serde(default)]
    pub follow_nofollow: bool,
    /// Pages a sitemap lists with a lastmod before this time are not queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sitemaps_modified_since: Option<SystemTime>,
    /// The job's declarative spider (`spec.extract`): item fields and follow rules, which the
    /// link spider applies. The frontier stores it for the workers and applies none of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<Extract>,
    /// The job recrawls (`spec.recrawl`): workers send a page's validators from the previous
    /// round as conditional requests, publish only what changed, and have the frontier
    /// remember every page for the next round.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recrawl: bool,
    /// Which pages workers render in headless Chromium (`spec.render`); `None` renders none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render: Option<Render>,
}

impl JobPolicy {
    /// The policy of a `CrawlJob` spec.
    pub fn from_spec(spec: &CrawlJobSpec) -> Self {
        Self {
            maxdepth: spec.maxdepth,
            allowed_domains: spec.allowed_domains.clone(),
            allow_regex: spec.allow_regex.clone(),
            deny_regex: spec.deny_regex.clone(),
            deny_extensions: spec.deny_extensions.clone(),
            domain_max_pages: spec.domain_max_pages,
            max_pages: spec.max_pages,
            expires: spec.expires.as_ref().map(|t| SystemTime::from(t.0)),
            politeness: spec.politeness.clone(),
            useragent: spec.useragent.clone(),
            cookie: spec.cookie.clone(),
            cookie_domains: if spec.allowed_domains.is_empty() {
                let mut hosts: Vec<String> = spec
                    .seeds
                    .iter()
                    .filter_map(|s| url::Url::parse(s).ok())
                    .filter_map(|u| u.host_str().map(str::to_ascii_lowercase))
                    .collect();
                hosts.sort();
                hosts.dedup();
                hosts
            } else {
                spec.allowed_domains
                    .iter()
                    .map(|d| d.to_ascii_lowercase())
                    .collect()
            },
            attrs: spec.attrs.clone(),
            follow_nofollow: spec.follow_nofollow,
            sitemaps_modified_since: spec
                .sitemaps
                .as_ref()
                .and_then(|s| s.modified_since.as_ref())
                .map(|t| SystemTime::from(t.0)),
            extract: spec.extract.clone(),
            recrawl: spec.recrawl.is_some(),
            render: spec.render.clone().filter(Render::is_on),
        }
    }

    /// A policy with no limits and no politeness delay: everything is followed as fast as
    /// workers fetch (tests, benchmarks, a standalone crawl of one's own site).
    pub fn unlimited() -> Self {
        Self {
            maxdepth: u32::MAX,
            deny_extensions: Some(Vec::new()),
            politeness: Some(Politeness {
                hits: None,
                window_seconds: None,
                delay_millis: Some(0),
                obey_robots: true,
                per_ip: false,
            }),
            ..Self::default()
        }
    }

    /// The Cookie to send to `host`: the job's Cookie when `host` is one of
    /// [`JobPolicy::cookie_domains`] or a subdomain of one, else none.
    pub fn cookie_for(&self, host: &str) -> Option<&str> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ours = self
            .cookie_domains
            .iter()
            .any(|d| crate::filter::domain_within(&host, d));
        self.cookie.as_deref().filter(|_| ours)
    }

    /// The least time between two dispatches to one domain for this job: the largest of the
    /// delay and `window / hits` (see [`crate::politeness`]).
    pub fn interval(&self, config: &FrontierConfig) -> Duration {
        crate::politeness::interval(self.politeness.as_ref(), config)
    }

    /// `expires` in microseconds since the epoch, 0 when unset.
    pub(crate) fn expires_micros(&self) -> u64 {
        self.expires.map(system_micros).unwrap_or(0)
    }
}

/// What happened to the requests offered in one seed or one acknowledgement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admission {
    /// Enqueued.
    pub admitted: u64,
    /// Already seen by this job (dedupe).
    pub duplicates: u64,
    /// Filtered out by the job's link filters or an unusable URL.
    pub filtered: u64,
    /// Refused by `maxPages` or `domainMaxPages`.
    pub over_budget: u64,
    /// Refused because the job accepts nothing (suspended, expired, purged).
    pub refused: u64,
    /// Refused because the request's domain is on the spider's blacklist
    /// ([`crate::rules`]) or was cut off for the job as a crawler trap
    /// ([`crate::Frontier::cut_off`]).
    pub blacklisted: u64,
}

impl std::ops::AddAssign for Admission {
    fn add_assign(&mut self, other: Self) {
        self.admitted += other.admitted;
        self.duplicates += other.duplicates;
        self.filtered += other.filtered;
        self.over_budget += other.over_budget;
        self.refused += other.refused;
        self.blacklisted += other.blacklisted;
    }
}

/// A job's accounting, as the operator copies it into `CrawlJob.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Requests waiting (including retries waiting for their backoff).
    pub queued: u64,
    /// Requests leased and not yet acknowledged.
    pub in_flight: u64,
    /// Pages fetched (responses of any status code).
    pub pages: u64,
    /// Items the workers reported.
    pub items: u64,
    /// Response body bytes.
    pub bytes: u64,
    /// Requests that ended without a response, or were given up after retries.
    pub errors: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Requests ever admitted (seeds and children).
    pub admitted: u64,
    /// Pages per HTTP status code.
    pub status_codes: BTreeMap<u16, u64>,
    /// The furthest depth (hop from a seed, or the spider's step) of a fetched page.
    pub furthest_step: u32,
    /// Requests refused at admission or dropped from the queue because their domain is on the
    /// spider's blacklist ([`crate::rules`]) or was cut off for the job as a crawler trap.
    pub blacklisted: u64,
    /// At least one seed was admitted.
    pub seeded: bool,
    /// The job is suspended.
    pub suspended: bool,
    /// A suspend or resume has not finished walking the job's queues (the client doing it
    /// was interrupted): calling [`crate::Frontier::suspend`] or [`crate::Frontier::resume`]
    /// again finishes it.
    pub settling: bool,
    /// Hosts cut off for this job as crawler traps ([`crate::Frontier::cut_off`]), with why.
    pub traps: BTreeMap<String, String>,
    /// Named counters the workers added with their acknowledgements ([`crate::Outcome::counters`]).
    pub counters: BTreeMap<String, u64>,
}

impl JobStats {
    /// Adds another part of the job's accounting to this one (the shards of a sharded
    /// frontier): counters add up, the furthest step is the furthest, and a flag set on any part
    /// is set on the whole.
    pub fn absorb(&mut self, other: &Self) {
        self.queued += other.queued;
        self.in_flight += other.in_flight;
        self.pages += other.pages;
        self.items += other.items;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.retries += other.retries;
        self.admitted += other.admitted;
        self.blacklisted += other.blacklisted;
        for (code, n) in &other.status_codes {
            *self.status_codes.entry(*code).or_default() += n;
        }
        self.furthest_step = self.furthest_step.max(other.furthest_step);
        self.seeded |= other.seeded;
        self.suspended |= other.suspended;
        self.settling |= other.settling;
        self.traps.extend(other.traps.clone());
        for (name, n) in &other.counters {
            *self.counters.entry(name.clone()).or_default() += n;
        }
    }

    /// Seeded, and nothing is queued or in flight: the crawl has run out of work. (The
    /// operator still waits a grace period before calling the job Succeeded.)
    pub fn finished(&self) -> bool {
        self.seeded && self.queued == 0 && self.in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the job's Cookie went to every host a page linked or redirected to.
    #[test]
    fn the_cookie_goes_only_to_the_jobs_own_domains() {
        let spec: CrawlJobSpec = serde_json::from_value(serde_json::json!({
            "spiderid": "link", "appid": "a", "cookie": "session=1",
            "seeds": ["https://Shop.example/start", "https://shop.example/b"]
        }))
        .expect("spec");
        let policy = JobPolicy::from_spec(&spec);
        assert_eq!(policy.cookie_domains, ["shop.example"]);
        assert_eq!(policy.cookie_for("shop.example"), Some("session=1"));
        assert_eq!(policy.cookie_for("www.SHOP.example"), Some("session=1"));
        assert_eq!(policy.cookie_for("evilshop.example"), None);
        assert_eq!(policy.cookie_for("tracker.test"), None);
        let mut spec = spec;
        spec.allowed_domains = vec!["example".to_owned()];
        let policy = JobPolicy::from_spec(&spec);
        assert_eq!(policy.cookie_for("other.example"), Some("session=1"));
    }

    /// Workers learn a job's extract rules from its stored policy, so they must survive the
    /// trip through the policy's JSON; a policy without them stores no key for them.
    #[test]
    fn extract_rules_travel_with_the_policy() {
        let spec: CrawlJobSpec = serde_json::from_value(serde_json::json!({
            "spiderid": "link", "appid": "a", "seeds": ["http://example.test/"],
            "extract": {
                "fields": [{"name": "title", "selector": "h1"}],
                "follow": [{"selector": "ul", "allow": ["/p/"]}],
                "pagination": "a[rel=next]"
            }
        }))
        .expect("spec parses");
        let policy = JobPolicy::from_spec(&spec);
        let stored = serde_json::to_string(&policy).expect("serializes");
        let back: JobPolicy = serde_json::from_str(&stored).expect("parses");
        assert_eq!(back, policy);
        let extract = back.extract.expect("the rules are kept");
        assert_eq!(extract.fields[0].selector, "h1");
        assert_eq!(extract.pagination.as_deref(), Some("a[rel=next]"));
        let plain = serde_json::to_value(JobPolicy::default()).expect("serializes");
        assert!(plain.get("extract").is_none(), "{plain}");
    }

    #[test]
    fn finished_needs_seeds_and_no_work() {
        let mut stats = JobStats::default();
        assert!(!stats.finished(), "an unseeded job is not finished");
        stats.seeded = true;
        assert!(stats.finished());
        stats.in_flight = 1;
        assert!(!stats.finished());
    }

    #[test]
    fn policy_comes_from_the_spec() {
        let spec: CrawlJobSpec = serde_json::from_value(serde_json::json!({
            "spiderid": "link", "appid": "a", "seeds": ["http://example.test/"],
            "maxdepth": 3, "maxPages": 10, "allowedDomains": ["example.test"],
            "politeness": {"hits": 5, "windowSeconds": 10}
        }))
        .expect("spec parses");
        let policy = JobPolicy::from_spec(&spec);
        assert_eq!(policy.maxdepth, 3);
        assert_eq!(policy.max_pages, Some(10));
        assert_eq!(policy.allowed_domains, vec!["example.test".to_owned()]);
        assert_eq!(policy.extract, None);
        assert_eq!(
            policy.interval(&FrontierConfig::default()),
            Duration::from_secs(2)
        );
    }
}
