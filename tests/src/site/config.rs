//! What shapes a test site, and what can go wrong starting one or asking it for ground truth.

use std::net::Ipv4Addr;
use std::time::Duration;

/// Why the test site could not start or could not answer a ground-truth question.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A [`SiteConfig`] field is out of range.
    #[error("invalid test site configuration: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The listener could not be bound.
    #[error("binding the test site to 127.0.0.1:{port}")]
    Bind {
        /// The port asked for (0 for any).
        port: u16,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A seed or URL given to the ground truth is not served by this site.
    #[error("{url} is not a URL of this test site")]
    ForeignUrl {
        /// The URL.
        url: String,
    },
    /// The question has no finite answer: the repeating-path trap is reachable and neither a
    /// depth limit nor a URL length limit bounds it.
    #[error(
        "the reachable set is infinite: the repeating-path trap needs max_depth or max_url_len"
    )]
    Unbounded,
}

/// Result of the test site's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The shape of a synthetic site. The site, the HTML it serves and its ground truth are a
/// deterministic function of this value (and of the port the site listens on, which every
/// absolute URL carries).
///
/// Start from [`SiteConfig::default`] and change what a test needs:
///
/// ```
/// # use kubecrawl_e2e::site::SiteConfig;
/// let config = SiteConfig::default().with_seed(7).with_pages(2_000).with_traps(true);
/// assert_eq!(config.pages, 2_000);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    /// Seed of the generator; two sites with equal configs serve the same graph.
    pub seed: u64,
    /// Number of main pages `/p/0` .. `/p/{pages-1}` on `site.test` (at least 1).
    pub pages: usize,
    /// Most distinct main pages one main page links to (tree children plus cross links).
    pub max_links: usize,
    /// Link the trap index `/traps` from the root. Trap paths are served either way; this only
    /// decides whether a crawl from the root finds them (and so whether the ground truth holds
    /// them). Off by default so that exact reachable-set tests stay exact and fast.
    pub with_traps: bool,
    /// Number of pages `/o/{k}` on `other.test` (each links back to `site.test`).
    pub other_pages: usize,
    /// Number of pages `/f/{k}` on `far.test`, linked only from `other.test`.
    pub far_pages: usize,
    /// Steps of the wandering area: `/w/0` is step 0, pages of step `wander_steps` have no links.
    pub wander_steps: u32,
    /// Pages per step of the wandering area (at least 1).
    pub wander_width: u32,
    /// Bytes of filler text on each main page, to make pages heavier or lighter.
    pub padding: usize,
    /// Serve the main pages gzip-compressed (`Content-Encoding: gzip`, whatever
    /// `Accept-Encoding` says; compressed once at start), as most real servers send HTML.
    pub gzip_pages: bool,
    /// `Disallow:` lines of the `User-agent: *` group of `site.test`'s robots.txt.
    pub robots_disallow: Vec<String>,
    /// `Allow:` lines of the `User-agent: *` group of `site.test`'s robots.txt.
    pub robots_allow: Vec<String>,
    /// `Crawl-delay:` of the `User-agent: *` group (none by default: a 1 s delay makes a
    /// crawl of a few hundred pages take minutes).
    pub crawl_delay: Option<Duration>,
    /// How long `/trap/slow` waits before it answers.
    pub slow_delay: Duration,
    /// How long `/trap/stall` holds its connection, body unfinished, before dropping it.
    pub stall_for: Duration,
    /// Bytes streamed by `/trap/huge` and `/trap/huge-chunked`.
    pub huge_bytes: u64,
    /// Requests to each `/trap/flaky/{status}` path that fail before it succeeds.
    pub flaky_failures: u32,
    /// Requests to the robots.txt of `site.test` and `far.test` answered with 503 before it
    /// is served (a robots.txt outage); 0 by default.
    pub robots_failures: u32,
    /// Redirects from `/trap/chain/0` to the page at its end (at least 1).
    pub chain_len: u32,
    /// A host under load: main pages of `site.test` answer 503 (without Retry-After) to
    /// every request past this many in one second, for this long after the first page
    /// request; then they answer normally. `None` by default.
    pub overload: Option<(u32, Duration)>,
    /// Requests kept in the request log; the oldest are dropped first.
    pub log_capacity: usize,
    /// Port to listen on (0: any free port).
    pub port: u16,
    /// Address to listen on: 127.0.0.1, or the real node's bridge address for Pods on its pod
    /// network (a local address with no route out either).
    pub address: Ipv4Addr,
    /// Serve the sitemaps (`/sitemap.xml` and `/sitemaps/…`, see [`crate::site::sitemaps`])
    /// and name them in robots.txt. Off by default.
    pub sitemaps: bool,
    /// Serve the script area under `/js/` ([`super::scripts`]).
    pub scripts: bool,
    /// Benchmark pages of the script area, `/js/spa/{k}` for `k` below this.
    pub script_pages: usize,
    /// Serve main pages with an `ETag` and a `Last-Modified`, and answer a conditional request
    /// for an unchanged one with `304 Not Modified` (see [`crate::site::TestSite::edit_page`]).
    /// Off by default.
    pub validators: bool,
}

impl Default for SiteConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            pages: 300,
            max_links: 8,
            with_traps: false,
            other_pages: 6,
            far_pages: 3,
            wander_steps: 5,
            wander_width: 3,
            padding: 256,
            gzip_pages: false,
            robots_disallow: vec!["/private/".to_owned()],
            robots_allow: vec!["/private/press/".to_owned()],
            crawl_delay: None,
            slow_delay: Duration::from_secs(2),
            stall_for: Duration::from_secs(60),
            huge_bytes: 50 << 20,
            flaky_failures: 2,
            robots_failures: 0,
            chain_len: 30,
            overload: None,
            log_capacity: 100_000,
            port: 0,
            address: Ipv4Addr::LOCALHOST,
            sitemaps: false,
            scripts: false,
            script_pages: 0,
            validators: false,
        }
    }
}

impl SiteConfig {
    /// Sets [`SiteConfig::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets [`SiteConfig::pages`].
    pub fn with_pages(mut self, pages: usize) -> Self {
        self.pages = pages;
        self
    }

    /// Sets [`SiteConfig::sitemaps`].
    pub fn with_sitemaps(mut self, sitemaps: bool) -> Self {
        self.sitemaps = sitemaps;
        self
    }

    /// Sets [`SiteConfig::scripts`].
    pub fn with_scripts(mut self, scripts: bool) -> Self {
        self.scripts = scripts;
        self
    }

    /// Serves the script area with `pages` benchmark pages (`/js/spa/{k}`).
    pub fn with_script_pages(mut self, pages: usize) -> Self {
        self.scripts = true;
        self.script_pages = pages;
        self
    }

    /// Sets [`SiteConfig::validators`].
    pub fn with_validators(mut self, validators: bool) -> Self {
        self.validators = validators;
        self
    }

    /// Sets [`SiteConfig::max_links`].
    pub fn with_max_links(mut self, max_links: usize) -> Self {
        self.max_links = max_links;
        self
    }

    /// Sets [`SiteConfig::with_traps`].
    pub fn with_traps(mut self, with_traps: bool) -> Self {
        self.with_traps = with_traps;
        self
    }

    /// Sets [`SiteConfig::other_pages`] and [`SiteConfig::far_pages`].
    pub fn with_offsite(mut self, other_pages: usize, far_pages: usize) -> Self {
        self.other_pages = other_pages;
        self.far_pages = far_pages;
        self
    }

    /// Sets [`SiteConfig::wander_steps`] and [`SiteConfig::wander_width`].
    pub fn with_wander(mut self, steps: u32, width: u32) -> Self {
        self.wander_steps = steps;
        self.wander_width = width;
        self
    }

    /// Sets [`SiteConfig::padding`].
    pub fn with_padding(mut self, bytes: usize) -> Self {
        self.padding = bytes;
        self
    }

    /// Serves the main pages gzip-compressed.
    pub fn with_gzip_pages(mut self, on: bool) -> Self {
        self.gzip_pages = on;
        self
    }

    /// Sets the `Disallow:` and `Allow:` lines of robots.txt's `User-agent: *` group.
    pub fn with_robots(mut self, disallow: &[&str], allow: &[&str]) -> Self {
        self.robots_disallow = disallow.iter().map(|s| (*s).to_owned()).collect();
        self.robots_allow = allow.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Sets [`SiteConfig::crawl_delay`].
    pub fn with_crawl_delay(mut self, delay: Duration) -> Self {
        self.crawl_delay = Some(delay);
        self
    }

    /// Sets [`SiteConfig::slow_delay`].
    pub fn with_slow_delay(mut self, delay: Duration) -> Self {
        self.slow_delay = delay;
        self
    }

    /// Sets [`SiteConfig::stall_for`].
    pub fn with_stall_for(mut self, hold: Duration) -> Self {
        self.stall_for = hold;
        self
    }

    /// Sets [`SiteConfig::huge_bytes`].
    pub fn with_huge_bytes(mut self, bytes: u64) -> Self {
        self.huge_bytes = bytes;
        self
    }

    /// Sets [`SiteConfig::flaky_failures`].
    pub fn with_flaky_failures(mut self, failures: u32) -> Self {
        self.flaky_failures = failures;
        self
    }

    /// Sets [`SiteConfig::robots_failures`].
    pub fn with_robots_failures(mut self, failures: u32) -> Self {
        self.robots_failures = failures;
        self
    }

    /// Sets [`SiteConfig::chain_len`].
    pub fn with_chain_len(mut self, hops: u32) -> Self {
        self.chain_len = hops;
        self
    }

    /// Sets [`SiteConfig::overload`]: at most `per_second` page requests a second are served
    /// during the first `lasts` of the crawl, the others get a 503.
    pub fn with_overload(mut self, per_second: u32, lasts: Duration) -> Self {
        self.overload = Some((per_second, lasts));
        self
    }

    /// Sets [`SiteConfig::log_capacity`].
    pub fn with_log_capacity(mut self, requests: usize) -> Self {
        self.log_capacity = requests;
        self
    }

    /// Sets [`SiteConfig::port`].
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Checks the ranges the generator relies on.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason| Err(Error::InvalidConfig { field, reason });
        // Page numbers, levels and link counts are kept in u32.
        const MAX_PAGES: usize = 1 << 24;
        if self.pages == 0 {
            return invalid("pages", "must be at least 1");
        }
        if self.pages > MAX_PAGES {
            return invalid("pages", "must be at most 16777216");
        }
        if self.max_links > 1_000 {
            return invalid("max_links", "must be at most 1000");
        }
        if self.other_pages > 1_000 || self.far_pages > 1_000 {
            return invalid("other_pages", "and far_pages must be at most 1000");
        }
        if self.far_pages > 0 && self.other_pages == 0 {
            return invalid(
                "far_pages",
                "needs other_pages > 0 (far pages are linked from them)",
            );
        }
        if self.wander_width == 0 || self.wander_width > 1_000 {
            return invalid("wander_width", "must be between 1 and 1000");
        }
        if self.wander_steps > 1_000 {
            return invalid("wander_steps", "must be at most 1000");
        }
        if self.chain_len == 0 || self.chain_len > 1_000 {
            return invalid("chain_len", "must be between 1 and 1000");
        }
        if self.padding > 1 << 20 {
            return invalid("padding", "must be at most 1 MiB");
        }
        let rule_ok = |r: &String| r.starts_with('/') && !r.contains(['\n', '\r']);
        if !self.robots_disallow.iter().all(rule_ok) || !self.robots_allow.iter().all(rule_ok) {
            return invalid("robots_disallow", "and robots_allow rules must be paths");
        }
        Ok(())
    }
}
