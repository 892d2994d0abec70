//! The ground truth: which URLs a correct crawler fetches, at which depth, with which outcome.
//!
//! See the `site` module documentation for the exact semantics; [`Reach`] is the crawler's
//! configuration the answer depends on.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::Duration;

use regex::Regex;

use super::Site;
use super::config::{Error, Result};
use super::graph::To;
use super::model::{Behaviour, Host, Node, Trap, behaviour, resolve};
use super::render::BLOCKED_AGENT;

/// The extensions a crawler skips by default and that the site links to.
pub const DEFAULT_DENY_EXTENSIONS: [&str; 4] = ["jpg", "png", "pdf", "zip"];

/// What a crawl is allowed to do: the question the ground truth answers.
///
/// Get one from [`TestSite::reach`](super::TestSite::reach) (seeded with the root) and adjust.
/// Defaults mirror a kubecrawl worker's: robots.txt obeyed, nofollow honoured, `site.test`
/// only, no depth limit, 10 redirects, 3 retries, 30 s timeout, 1 MiB body cap.
#[derive(Debug, Clone)]
pub struct Reach {
    /// Start URLs, fetched at depth 0 whatever the filters say (robots.txt still applies).
    pub seeds: Vec<String>,
    /// Links are followed from a page at depth `d` only while `d < max_depth`; `None`: no limit.
    pub max_depth: Option<u32>,
    /// Hosts links may lead to; a host matches an entry equal to it or a parent domain of it.
    /// Empty: any host the site serves.
    pub allowed_hosts: Vec<String>,
    /// Skip URLs that robots.txt disallows for [`Reach::user_agent`].
    pub obey_robots: bool,
    /// The crawler's user agent; its product token (before the first `/` or space) selects
    /// the robots.txt group. A token equal to `badbot` is disallowed everywhere on `site.test`.
    pub user_agent: String,
    /// Follow `rel="nofollow"` links and links of `<meta name="robots" content="nofollow">`
    /// pages.
    pub follow_nofollow: bool,
    /// When not empty, a link's canonical URL must match one of these.
    pub allow: Vec<Regex>,
    /// A link whose canonical URL matches one of these is not followed (deny wins over allow).
    pub deny: Vec<Regex>,
    /// Links whose path ends in `.{ext}` (ASCII case-insensitive) are not followed.
    pub deny_extensions: Vec<String>,
    /// Links whose canonical URL is longer than this many bytes are not followed.
    pub max_url_len: Option<usize>,
    /// Redirects followed per fetch; one more ends the fetch with [`Outcome::TooManyRedirects`].
    pub max_redirects: u32,
    /// Retries after a retryable failure (5xx, 429, timeout).
    pub max_retries: u32,
    /// The client's total timeout per request.
    pub timeout: Duration,
    /// Body bytes kept; `None`: no cap.
    pub max_body: Option<u64>,
}

impl Reach {
    /// The defaults, seeded with `seed`.
    pub fn from_seed(seed: impl Into<String>) -> Self {
        Self {
            seeds: vec![seed.into()],
            max_depth: None,
            allowed_hosts: vec![super::MAIN_HOST.to_owned()],
            obey_robots: true,
            user_agent: "kubecrawl".to_owned(),
            follow_nofollow: false,
            allow: Vec::new(),
            deny: Vec::new(),
            deny_extensions: DEFAULT_DENY_EXTENSIONS.map(str::to_owned).to_vec(),
            max_url_len: None,
            max_redirects: 10,
            max_retries: 3,
            timeout: Duration::from_secs(30),
            max_body: Some(1 << 20),
        }
    }

    /// Sets [`Reach::max_depth`].
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.max_depth = Some(depth);
        self
    }

    /// Replaces the seeds.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.seeds = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`Reach::allowed_hosts`] (empty: any host).
    pub fn allowed_hosts(mut self, hosts: &[&str]) -> Self {
        self.allowed_hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        self
    }

    /// Sets [`Reach::obey_robots`].
    pub fn obey_robots(mut self, obey: bool) -> Self {
        self.obey_robots = obey;
        self
    }

    /// Sets [`Reach::user_agent`].
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// Sets [`Reach::follow_nofollow`].
    pub fn follow_nofollow(mut self, follow: bool) -> Self {
        self.follow_nofollow = follow;
        self
    }

    /// Adds an allow pattern.
    pub fn allow(mut self, pattern: Regex) -> Self {
        self.allow.push(pattern);
        self
    }

    /// Adds a deny pattern.
    pub fn deny(mut self, pattern: Regex) -> Self {
        self.deny.push(pattern);
        self
    }

    /// Replaces [`Reach::deny_extensions`].
    pub fn deny_extensions(mut self, extensions: &[&str]) -> Self {
        self.deny_extensions = extensions.iter().map(|e| (*e).to_owned()).collect();
        self
    }

    /// Sets [`Reach::max_url_len`].
    pub fn max_url_len(mut self, bytes: usize) -> Self {
        self.max_url_len = Some(bytes);
        self
    }

    /// Sets [`Reach::max_redirects`].
    pub fn max_redirects(mut self, redirects: u32) -> Self {
        self.max_redirects = redirects;
        self
    }

    /// Sets [`Reach::max_retries`].
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets [`Reach::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`Reach::max_body`] (`None`: no cap).
    pub fn max_body(mut self, bytes: Option<u64>) -> Self {
        self.max_body = bytes;
        self
    }

    fn host_allowed(&self, host: Host) -> bool {
        let name = host.name();
        self.allowed_hosts.is_empty()
            || self.allowed_hosts.iter().any(|d| {
                let d = d.trim_end_matches('.');
                name.eq_ignore_ascii_case(d)
                    || (name.len() > d.len()
                        && name[name.len() - d.len()..].eq_ignore_ascii_case(d)
                        && name.as_bytes()[name.len() - d.len() - 1] == b'.')
            })
    }

    fn extension_denied(&self, url: &str) -> bool {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let last = path.rsplit('/').next().unwrap_or("");
        last.rsplit_once('.').is_some_and(|(_, ext)| {
            self.deny_extensions
                .iter()
                .any(|d| d.trim_start_matches('.').eq_ignore_ascii_case(ext))
        })
    }

    /// Whether a link or redirect to `url` passes the job's filters (not depth, not nofollow).
    fn passes(&self, host: Host, url: &str) -> bool {
        self.host_allowed(host)
            && !self.extension_denied(url)
            && (self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(url)))
            && !self.deny.iter().any(|r| r.is_match(url))
            && self.max_url_len.is_none_or(|max| url.len() <= max)
    }
}

/// How a fetch ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response with its whole body (maybe after redirects and retries).
    Ok,
    /// A non-2xx final response (404, 410, 500 after retries, a 3xx whose next hop the
    /// crawler's policy refused).
    Status,
    /// More redirects than [`Reach::max_redirects`] (the loop, the long chain): no page.
    TooManyRedirects,
    /// No complete response within [`Reach::timeout`] (the slow page when slower than the
    /// timeout, the stalled page): an error after the retries.
    Timeout,
    /// The connection closed before the declared body was complete (the stalled page, when
    /// the timeout is longer than the stall): an error after the retries.
    Incomplete,
    /// A 2xx response whose body exceeds [`Reach::max_body`]: kept up to the cap, flagged.
    Truncated,
}

/// What a correct crawler gets for one requested URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// Hops from the nearest seed (redirects do not add depth).
    pub depth: u32,
    /// Final HTTP status; `None` when the fetch ends without a usable response.
    pub status: Option<u16>,
    /// The URL of the final response (the requested URL when there was no redirect).
    pub final_url: String,
    /// Redirects followed.
    pub redirects: u32,
    /// Retries expected before the final answer (so the site sees `1 + retries` requests
    /// for the URL on a fresh site).
    pub retries: u32,
    /// How the fetch ends.
    pub outcome: Outcome,
}

/// The URLs a correct crawler requests, keyed by canonical URL, with what it gets for each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroundTruth {
    pages: BTreeMap<String, Expected>,
}

impl GroundTruth {
    /// Number of URLs requested (the expected number of crawled pages and errors).
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether nothing is fetched.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// What is expected for `url` (canonical form), if it is fetched at all.
    pub fn get(&self, url: &str) -> Option<&Expected> {
        self.pages.get(url)
    }

    /// Whether `url` (canonical form) is fetched.
    pub fn contains(&self, url: &str) -> bool {
        self.pages.contains_key(url)
    }

    /// Every fetched URL with its expectation, in URL order.
    pub fn pages(&self) -> &BTreeMap<String, Expected> {
        &self.pages
    }

    /// The fetched URLs.
    pub fn urls(&self) -> BTreeSet<String> {
        self.pages.keys().cloned().collect()
    }

    /// Fetched URL to depth.
    pub fn depths(&self) -> BTreeMap<String, u32> {
        self.pages
            .iter()
            .map(|(u, e)| (u.clone(), e.depth))
            .collect()
    }

    /// Number of fetched URLs per depth.
    pub fn per_depth(&self) -> BTreeMap<u32, usize> {
        let mut out = BTreeMap::new();
        for e in self.pages.values() {
            *out.entry(e.depth).or_default() += 1;
        }
        out
    }

    /// The deepest depth fetched.
    pub fn max_depth(&self) -> Option<u32> {
        self.pages.values().map(|e| e.depth).max()
    }

    /// The URLs whose fetch ends in `outcome`.
    pub fn with_outcome(&self, outcome: Outcome) -> BTreeSet<String> {
        self.pages
            .iter()
            .filter(|(_, e)| e.outcome == outcome)
            .map(|(u, _)| u.clone())
            .collect()
    }
}

/// A link of a page as a correct extractor reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutLink {
    /// Canonical URL (http only; fragments dropped).
    pub url: String,
    /// Whether the link is marked nofollow (by `rel` or by the page's meta robots).
    pub nofollow: bool,
}

impl Site {
    /// The node a URL names, if it is one of this site's (any form a URL parser accepts).
    pub(crate) fn node_of(&self, raw: &str) -> Result<Node> {
        let foreign = || Error::ForeignUrl {
            url: raw.to_owned(),
        };
        let url = url::Url::parse(raw).map_err(|_| foreign())?;
        let host = url.host_str().and_then(Host::parse).ok_or_else(foreign)?;
        if url.scheme() != "http" || url.port() != Some(self.port) {
            return Err(foreign());
        }
        Ok(resolve(&self.config, host, url.path(), url.query()))
    }

    /// The distinct links of `node`'s page, in document order, as an extractor reports them.
    pub(crate) fn outlinks(&self, node: Node) -> Vec<(Node, bool)> {
        let page_nofollow = node == Node::MetaNoFollow;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let links = self.graph.links(node);
        // Document order: the page lists its `a` links, then its image map's `area`s.
        let anchors = links.iter().filter(|l| !l.area);
        for link in anchors.chain(links.iter().filter(|l| l.area)) {
            let target = match link.to {
                To::Node(target) => target,
                // `#top` and `href=""` resolve to the page itself, which a crawler has already
                // seen: they only appear on main pages without <base>, never reached by
                // redirect.
                To::SelfFragment | To::SelfEmpty => node,
                To::Verbatim(_) => continue,
            };
            if seen.insert(target) {
                out.push((target, link.nofollow || page_nofollow));
            }
        }
        out
    }

    fn robots_allow(&self, reach: &Reach, node: Node) -> bool {
        if !reach.obey_robots || node.host() != Host::Site {
            return true;
        }
        let token = reach
            .user_agent
            .split(['/', ' '])
            .next()
            .unwrap_or_default();
        if token.eq_ignore_ascii_case(BLOCKED_AGENT) {
            return false;
        }
        let target = node.path();
        // RFC 9309: the longest matching rule wins; on a tie, allow.
        let longest = |rules: &[String]| {
            rules
                .iter()
                .filter(|r| target.starts_with(r.as_str()))
                .map(String::len)
                .max()
        };
        match (
            longest(&self.config.robots_allow),
            longest(&self.config.robots_disallow),
        ) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(d)) => a >= d,
        }
    }

    /// The ground truth for `reach`.
    pub(crate) fn reachable(&self, reach: &Reach) -> Result<GroundTruth> {
        let bounded = reach.max_depth.is_some() || reach.max_url_len.is_some();
        let mut seen: HashSet<Node> = HashSet::new();
        let mut queue: VecDeque<(Node, u32)> = VecDeque::new();
        for seed in &reach.seeds {
            let node = self.node_of(seed)?;
            if seen.insert(node) {
                queue.push_back((node, 0));
            }
        }
        let mut pages = BTreeMap::new();
        while let Some((node, depth)) = queue.pop_front() {
            if !self.robots_allow(reach, node) {
                continue;
            }
            let (expected, landed) = self.fetch(reach, node, depth);
            pages.insert(node.url(self.port), expected);
            // A redirect to another host is not followed: its target is a request of its own,
            // at the same depth, checked like a link.
            if let Some(target) = self.handoff(node)
                && !seen.contains(&target)
                && reach.passes(target.host(), &target.url(self.port))
            {
                seen.insert(target);
                queue.push_back((target, depth));
            }
            let Some(landed) = landed else { continue };
            if reach.max_depth.is_some_and(|max| depth >= max) {
                continue;
            }
            for (target, nofollow) in self.outlinks(landed) {
                if (nofollow && !reach.follow_nofollow) || seen.contains(&target) {
                    continue;
                }
                if !reach.passes(target.host(), &target.url(self.port)) {
                    continue;
                }
                if matches!(target, Node::Trap(Trap::Repeat(_))) && !bounded {
                    return Err(Error::Unbounded);
                }
                seen.insert(target);
                queue.push_back((target, depth + 1));
            }
        }
        Ok(GroundTruth { pages })
    }

    /// Where the redirect chain from `node` leaves its host, if it does: the first hop to
    /// another host, after the same-host hops a crawler follows.
    fn handoff(&self, node: Node) -> Option<Node> {
        let mut current = node;
        for _ in 0..=self.config.chain_len + 1 {
            match behaviour(&self.config, current) {
                Behaviour::Redirect { to, .. } if to.host() != current.host() => return Some(to),
                Behaviour::Redirect { to, .. } => current = to,
                _ => return None,
            }
        }
        None
    }

    /// What fetching `node` gives, and the node whose links the crawler then follows.
    fn fetch(&self, reach: &Reach, node: Node, depth: u32) -> (Expected, Option<Node>) {
        let mut current = node;
        let mut redirects = 0;
        let expected = |status, current: Node, redirects, retries, outcome| Expected {
            depth,
            status,
            final_url: current.url(self.port),
            redirects,
            retries,
            outcome,
        };
        loop {
            let answer = behaviour(&self.config, current);
            let retryable = |status: u16| status == 429 || status >= 500;
            let give_up = |status| {
                let retries = if retryable(status) {
                    reach.max_retries
                } else {
                    0
                };
                expected(Some(status), current, redirects, retries, Outcome::Status)
            };
            return match answer {
                Behaviour::Redirect { status, to, .. } => {
                    if redirects == reach.max_redirects {
                        let e = expected(None, current, redirects, 0, Outcome::TooManyRedirects);
                        return (e, None);
                    }
                    // Only same-host hops are followed inline (see `handoff`).
                    let hop_ok = to.host() == current.host()
                        && reach.passes(to.host(), &to.url(self.port))
                        && self.robots_allow(reach, to);
                    if !hop_ok {
                        return (give_up(status), None);
                    }
                    redirects += 1;
                    current = to;
                    continue;
                }
                Behaviour::Status(status) => (give_up(status), None),
                Behaviour::Flaky { failures, status } => {
                    if failures > reach.max_retries {
                        (give_up(status), None)
                    } else {
                        let e = expected(Some(200), current, redirects, failures, Outcome::Ok);
                        (e, Some(current))
                    }
                }
                Behaviour::Slow(delay) => {
                    if delay < reach.timeout {
                        (
                            expected(Some(200), current, redirects, 0, Outcome::Ok),
                            Some(current),
                        )
                    } else {
                        let e = expected(
                            None,
                            current,
                            redirects,
                            reach.max_retries,
                            Outcome::Timeout,
                        );
                        (e, None)
                    }
                }
                Behaviour::Stall(hold) => {
                    let outcome = if reach.timeout < hold {
                        Outcome::Timeout
                    } else {
                        Outcome::Incomplete
                    };
                    (
                        expected(None, current, redirects, reach.max_retries, outcome),
                        None,
                    )
                }
                Behaviour::Huge { len, .. } => {
                    let outcome = if reach.max_body.is_some_and(|max| len > max) {
                        Outcome::Truncated
                    } else {
                        Outcome::Ok
                    };
                    (expected(Some(200), current, redirects, 0, outcome), None)
                }
                Behaviour::Ok => (
                    expected(Some(200), current, redirects, 0, Outcome::Ok),
                    Some(current),
                ),
            };
        }
    }
}
