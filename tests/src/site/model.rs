//! The site's address space: its hosts, every resource it serves (a [`Node`]), the path of
//! each, the reverse mapping from a request to a node, and how each node answers.
//!
//! The server and the ground truth both go through [`resolve`] and [`behaviour`], so what the
//! ground truth says a URL does is what the server does there.

use std::time::Duration;

use super::config::SiteConfig;

/// A host the site answers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Host {
    /// `site.test`: the main site.
    Site,
    /// `other.test`: off-site pages that link back.
    Other,
    /// `far.test`: reached only through `other.test`.
    Far,
}

impl Host {
    /// Every host, main host first.
    pub(crate) const ALL: [Host; 3] = [Host::Site, Host::Other, Host::Far];

    /// The host name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Host::Site => super::MAIN_HOST,
            Host::Other => super::OTHER_HOST,
            Host::Far => super::FAR_HOST,
        }
    }

    /// Index into per-host tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The host a `Host` header or URL host names, ignoring case, a port and a trailing dot.
    pub(crate) fn parse(value: &str) -> Option<Host> {
        let name = match value.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => value,
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        Host::ALL
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
    }
}

/// Private pages `/private/{k}`, disallowed by the default robots.txt.
pub(crate) const PRIVATE_PAGES: u32 = 4;
/// Pages `/private/press/{k}`, re-allowed by the default robots.txt's `Allow:` line.
pub(crate) const PRESS_PAGES: u32 = 2;
/// Pages `/nofollow/{k}` reached only through `rel="nofollow"` links; one more,
/// `/nofollow/{NOFOLLOW_PAGES}`, is reached only from the `meta robots nofollow` page.
pub(crate) const NOFOLLOW_PAGES: u32 = 4;
/// Redirects `/r/{k}` to `/landing/{k}/`.
pub(crate) const REDIRECTS: u32 = 5;
/// Dead links `/gone/{k}` (404).
pub(crate) const GONE_PAGES: u32 = 3;
/// Search result pages `/search?q={k}&page=2` (the `&` written as `&amp;` in HTML).
pub(crate) const SEARCH_PAGES: u32 = 3;
/// Steps of the short redirect chain `/trap/short/0` .. `/trap/short/{SHORT_CHAIN}`.
pub(crate) const SHORT_CHAIN: u32 = 3;
/// Pages of the long-URL trap after its entry.
pub(crate) const LONG_PAGES: u32 = 3;
/// Children of the malformed page.
pub(crate) const MALFORMED_CHILDREN: u8 = 3;
/// The non-ASCII page as it is served (percent-encoded, as a URL parser writes it).
pub(crate) const UNICODE_PATH: &str = "/u/na%C3%AFve-caf%C3%A9";
/// The non-ASCII page as it is written in `href`s.
pub(crate) const UNICODE_HREF: &str = "/u/naïve-café";
/// Files linked from main pages: path (and query), content type. Their extensions are
/// denied by default.
pub(crate) const FILES: [(&str, &str); 5] = [
    ("/files/photo-0.jpg", "image/jpeg"),
    ("/files/chart-1.png", "image/png"),
    ("/files/report-2.pdf?download=1", "application/pdf"),
    ("/files/SCAN-3.PDF", "application/pdf"),
    ("/files/archive-4.zip", "application/zip"),
];
/// Status pages of the trap index; `/trap/status/{code}` serves any 4xx or 5xx code.
pub(crate) const LINKED_STATUSES: [u16; 3] = [404, 410, 500];
/// Statuses of `/trap/flaky/{status}`.
pub(crate) const FLAKY_STATUSES: [u16; 2] = [429, 503];

/// One resource of the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Node {
    /// `/` of a host.
    Root(Host),
    /// `/robots.txt` of a host.
    Robots(Host),
    /// `/static/site.css`, referenced by `<link rel=stylesheet>`, never by a link.
    Style,
    /// `/static/logo.png`, referenced by `<img>`, never by a link.
    Logo,
    /// `/p/{i}`: a main page.
    Page(u32),
    /// `/private/{k}`.
    Private(u32),
    /// `/private/press/{k}`.
    Press(u32),
    /// `/nofollow/{k}`.
    NoFollow(u32),
    /// `/meta-nofollow`: a page whose `<meta name="robots">` says nofollow.
    MetaNoFollow,
    /// `/r/{k}`: redirects to `/landing/{k}/`.
    Redirect(u32),
    /// `/landing/{k}/`: reached only through `/r/{k}`.
    Landing(u32),
    /// `/landing/{k}/more`: linked relatively from its landing page.
    LandingMore(u32),
    /// `/gone/{k}`: 404.
    Gone(u32),
    /// `/back/{k}` on `site.test`, linked only from `other.test`.
    Back(u32),
    /// One of [`FILES`].
    File(u32),
    /// `/search?q={k}&page=2`.
    Search(u32),
    /// [`UNICODE_PATH`].
    Unicode,
    /// `/o/{k}` on `other.test`.
    Other(u32),
    /// `/o/landing` on `other.test`: the end of the off-site redirect.
    OtherLanding,
    /// `/f/{k}` on `far.test`.
    Far(u32),
    /// `/w/0` (step 0) or `/w/{step}/{idx}`.
    Wander(u32, u32),
    /// `/traps`: the trap index.
    Traps,
    /// A trap under `/trap/`.
    Trap(Trap),
    /// Anything else: 404.
    NotFound,
}

/// The resources under `/trap/` (see the module documentation of `site` for outcomes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Trap {
    /// `/trap/loop/a`.
    LoopA,
    /// `/trap/loop/b`.
    LoopB,
    /// `/trap/chain/{k}`.
    Chain(u32),
    /// `/trap/short/{k}`.
    Short(u32),
    /// `/trap/offsite`.
    Offsite,
    /// `/trap/status/{code}`.
    Status(u16),
    /// `/trap/flaky/{status}`.
    Flaky(u16),
    /// `/trap/slow`.
    Slow,
    /// `/trap/stall`.
    Stall,
    /// `/trap/huge`.
    Huge,
    /// `/trap/huge-chunked`.
    HugeChunked,
    /// `/trap/gzip`.
    Gzip,
    /// `/trap/gzip/child`.
    GzipChild,
    /// `/trap/charset/{slug}` of the n-th charset case.
    Charset(u8),
    /// `/trap/charset/{slug}/child`.
    CharsetChild(u8),
    /// `/trap/binary`.
    Binary,
    /// `/trap/plain`.
    Plain,
    /// `/trap/never`: linked only from text/plain, never by HTML.
    Never,
    /// `/trap/malformed`.
    Malformed,
    /// `/trap/malformed/{k}`, k in 1..=3.
    MalformedChild(u8),
    /// `/trap/empty`.
    Empty,
    /// `/trap/long` (0) and `/trap/long/lll…` (1..=3).
    Long(u32),
    /// `/trap/repeat/a/a/…` with n `a`s (n >= 1).
    Repeat(u32),
}

impl Node {
    /// The host serving this node.
    pub(crate) fn host(self) -> Host {
        match self {
            Node::Root(h) | Node::Robots(h) => h,
            Node::Other(_) | Node::OtherLanding => Host::Other,
            Node::Far(_) => Host::Far,
            _ => Host::Site,
        }
    }

    /// Path and query as a URL parser serialises them.
    pub(crate) fn path(self) -> String {
        match self {
            Node::Root(_) => "/".to_owned(),
            Node::Robots(_) => "/robots.txt".to_owned(),
            Node::Style => "/static/site.css".to_owned(),
            Node::Logo => "/static/logo.png".to_owned(),
            Node::Page(i) => format!("/p/{i}"),
            Node::Private(k) => format!("/private/{k}"),
            Node::Press(k) => format!("/private/press/{k}"),
            Node::NoFollow(k) => format!("/nofollow/{k}"),
            Node::MetaNoFollow => "/meta-nofollow".to_owned(),
            Node::Redirect(k) => format!("/r/{k}"),
            Node::Landing(k) => format!("/landing/{k}/"),
            Node::LandingMore(k) => format!("/landing/{k}/more"),
            Node::Gone(k) => format!("/gone/{k}"),
            Node::Back(k) => format!("/back/{k}"),
            Node::File(k) => FILES
                .get(k as usize)
                .map_or("/files/none", |f| f.0)
                .to_owned(),
            Node::Search(k) => format!("/search?q={k}&page=2"),
            Node::Unicode => UNICODE_PATH.to_owned(),
            Node::Other(k) => format!("/o/{k}"),
            Node::OtherLanding => "/o/landing".to_owned(),
            Node::Far(k) => format!("/f/{k}"),
            Node::Wander(0, _) => "/w/0".to_owned(),
            Node::Wander(step, idx) => format!("/w/{step}/{idx}"),
            Node::Traps => "/traps".to_owned(),
            Node::Trap(t) => t.path(),
            Node::NotFound => "/not-found".to_owned(),
        }
    }

    /// Path and query as written in `href`s (differs only for the non-ASCII page).
    pub(crate) fn written_path(self) -> String {
        match self {
            Node::Unicode => UNICODE_HREF.to_owned(),
            other => other.path(),
        }
    }

    /// The canonical URL of this node on a site listening on `port`.
    pub(crate) fn url(self, port: u16) -> String {
        format!("http://{}:{port}{}", self.host().name(), self.path())
    }

    /// A short human title, used as page title and anchor text.
    pub(crate) fn title(self) -> String {
        match self {
            Node::Root(h) => format!("Home of {}", h.name()),
            Node::Page(i) => format!("Page {i}"),
            other => other.path(),
        }
    }
}

impl Trap {
    /// Path of the trap.
    pub(crate) fn path(self) -> String {
        match self {
            Trap::LoopA => "/trap/loop/a".to_owned(),
            Trap::LoopB => "/trap/loop/b".to_owned(),
            Trap::Chain(k) => format!("/trap/chain/{k}"),
            Trap::Short(k) => format!("/trap/short/{k}"),
            Trap::Offsite => "/trap/offsite".to_owned(),
            Trap::Status(code) => format!("/trap/status/{code}"),
            Trap::Flaky(code) => format!("/trap/flaky/{code}"),
            Trap::Slow => "/trap/slow".to_owned(),
            Trap::Stall => "/trap/stall".to_owned(),
            Trap::Huge => "/trap/huge".to_owned(),
            Trap::HugeChunked => "/trap/huge-chunked".to_owned(),
            Trap::Gzip => "/trap/gzip".to_owned(),
            Trap::GzipChild => "/trap/gzip/child".to_owned(),
            Trap::Charset(n) => format!("/trap/charset/{}", charset_slug(n)),
            Trap::CharsetChild(n) => format!("/trap/charset/{}/child", charset_slug(n)),
            Trap::Binary => "/trap/binary".to_owned(),
            Trap::Plain => "/trap/plain".to_owned(),
            Trap::Never => "/trap/never".to_owned(),
            Trap::Malformed => "/trap/malformed".to_owned(),
            Trap::MalformedChild(k) => format!("/trap/malformed/{k}"),
            Trap::Empty => "/trap/empty".to_owned(),
            Trap::Long(0) => "/trap/long".to_owned(),
            Trap::Long(n) => format!("/trap/long/{}", long_segment(n)),
            Trap::Repeat(n) => {
                let mut path = String::with_capacity(12 + 2 * n as usize);
                path.push_str("/trap/repeat");
                for _ in 0..n {
                    path.push_str("/a");
                }
                path
            }
        }
    }
}

fn charset_slug(n: u8) -> &'static str {
    super::traps::CHARSET_CASES
        .get(usize::from(n))
        .map_or("none", |c| c.slug)
}

/// The path segment of the n-th long-URL page: `1100 << n` letters, so the URLs pass 2,200,
/// 4,400 and 8,800 characters (beyond the common 2,048 and 2,083 limits).
fn long_segment(n: u32) -> String {
    "l".repeat(LONG_UNIT << n.min(LONG_PAGES))
}

const LONG_UNIT: usize = 1100;

/// A decimal number as a canonical path segment (no sign, no leading zeros).
fn number(segment: &str) -> Option<u32> {
    let canonical = !segment.is_empty()
        && segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    if canonical {
        segment.parse().ok()
    } else {
        None
    }
}

fn below(n: Option<u32>, limit: u32) -> Option<u32> {
    n.filter(|&n| n < limit)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The node a request for `path` (and `query`) on `host` is answered by.
pub(crate) fn resolve(config: &SiteConfig, host: Host, path: &str, query: Option<&str>) -> Node {
    let node = match host {
        Host::Site => resolve_site(config, path, query),
        Host::Other => match (path, query) {
            ("/", None) => Some(Node::Root(host)),
            ("/robots.txt", None) => Some(Node::Robots(host)),
            ("/o/landing", None) => Some(Node::OtherLanding),
            (p, None) => p
                .strip_prefix("/o/")
                .and_then(|k| below(number(k), count(config.other_pages)))
                .map(Node::Other),
            _ => None,
        },
        Host::Far => match (path, query) {
            ("/", None) => Some(Node::Root(host)),
            ("/robots.txt", None) => Some(Node::Robots(host)),
            (p, None) => p
                .strip_prefix("/f/")
                .and_then(|k| below(number(k), count(config.far_pages)))
                .map(Node::Far),
            _ => None,
        },
    };
    node.unwrap_or(Node::NotFound)
}

fn resolve_site(config: &SiteConfig, path: &str, query: Option<&str>) -> Option<Node> {
    if let Some(query) = query {
        if path == "/search" {
            let k = query.strip_prefix("q=")?.strip_suffix("&page=2")?;
            return below(number(k), SEARCH_PAGES).map(Node::Search);
        }
        let target = format!("{path}?{query}");
        return file(&target);
    }
    // The hot path of a crawl: main pages.
    if let Some(i) = path.strip_prefix("/p/") {
        return below(number(i), count(config.pages)).map(Node::Page);
    }
    let fixed = match path {
        "/" => Some(Node::Root(Host::Site)),
        "/robots.txt" => Some(Node::Robots(Host::Site)),
        "/static/site.css" => Some(Node::Style),
        "/static/logo.png" => Some(Node::Logo),
        "/meta-nofollow" => Some(Node::MetaNoFollow),
        "/traps" => Some(Node::Traps),
        UNICODE_PATH => Some(Node::Unicode),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    if let Some(rest) = path.strip_prefix("/trap/") {
        return resolve_trap(config, rest).map(Node::Trap);
    }
    if let Some(rest) = path.strip_prefix("/landing/") {
        let (k, tail) = rest.split_once('/')?;
        let k = below(number(k), REDIRECTS)?;
        return match tail {
            "" => Some(Node::Landing(k)),
            "more" => Some(Node::LandingMore(k)),
            _ => None,
        };
    }
    if let Some(rest) = path.strip_prefix("/w/") {
        return match rest.split_once('/') {
            None if rest == "0" => Some(Node::Wander(0, 0)),
            Some((step, idx)) => {
                let step = number(step).filter(|&s| s >= 1 && s <= config.wander_steps)?;
                let idx = below(number(idx), config.wander_width)?;
                Some(Node::Wander(step, idx))
            }
            None => None,
        };
    }
    if path.starts_with("/files/") {
        return file(path);
    }
    let (prefix, k) = path.rsplit_once('/')?;
    let k = number(k);
    match prefix {
        "/private" => below(k, PRIVATE_PAGES).map(Node::Private),
        "/private/press" => below(k, PRESS_PAGES).map(Node::Press),
        "/nofollow" => below(k, NOFOLLOW_PAGES + 1).map(Node::NoFollow),
        "/r" => below(k, REDIRECTS).map(Node::Redirect),
        "/gone" => below(k, GONE_PAGES).map(Node::Gone),
        "/back" => below(k, count(config.other_pages)).map(Node::Back),
        _ => None,
    }
}

fn file(target: &str) -> Option<Node> {
    FILES
        .iter()
        .position(|f| f.0 == target)
        .map(|k| Node::File(count(k)))
}

fn resolve_trap(config: &SiteConfig, rest: &str) -> Option<Trap> {
    let fixed = match rest {
        "loop/a" => Some(Trap::LoopA),
        "loop/b" => Some(Trap::LoopB),
        "offsite" => Some(Trap::Offsite),
        "slow" => Some(Trap::Slow),
        "stall" => Some(Trap::Stall),
        "huge" => Some(Trap::Huge),
        "huge-chunked" => Some(Trap::HugeChunked),
        "gzip" => Some(Trap::Gzip),
        "gzip/child" => Some(Trap::GzipChild),
        "binary" => Some(Trap::Binary),
        "plain" => Some(Trap::Plain),
        "never" => Some(Trap::Never),
        "malformed" => Some(Trap::Malformed),
        "empty" => Some(Trap::Empty),
        "long" => Some(Trap::Long(0)),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    if let Some(tail) = rest.strip_prefix("repeat") {
        let n = tail.len() / 2;
        let repeats = !tail.is_empty() && tail.as_bytes().chunks(2).all(|c| c == b"/a");
        return repeats.then(|| Trap::Repeat(count(n)));
    }
    if let Some(segment) = rest.strip_prefix("long/") {
        return (1..=LONG_PAGES)
            .find(|&n| segment.len() == LONG_UNIT << n && segment.bytes().all(|b| b == b'l'))
            .map(Trap::Long);
    }
    if let Some(slug) = rest.strip_prefix("charset/") {
        let (slug, child) = match slug.strip_suffix("/child") {
            Some(slug) => (slug, true),
            None => (slug, false),
        };
        let n = super::traps::CHARSET_CASES
            .iter()
            .position(|c| c.slug == slug)?;
        let n = u8::try_from(n).ok()?;
        return Some(if child {
            Trap::CharsetChild(n)
        } else {
            Trap::Charset(n)
        });
    }
    let (prefix, k) = rest.rsplit_once('/')?;
    let k = number(k);
    match prefix {
        "chain" => k.filter(|&k| k <= config.chain_len).map(Trap::Chain),
        "short" => k.filter(|&k| k <= SHORT_CHAIN).map(Trap::Short),
        "status" => k
            .filter(|k| (400..=599).contains(k))
            .and_then(|k| u16::try_from(k).ok())
            .map(Trap::Status),
        "flaky" => k
            .and_then(|k| u16::try_from(k).ok())
            .filter(|k| FLAKY_STATUSES.contains(k))
            .map(Trap::Flaky),
        "malformed" => k
            .and_then(|k| u8::try_from(k).ok())
            .filter(|k| (1..=MALFORMED_CHILDREN).contains(k))
            .map(Trap::MalformedChild),
        _ => None,
    }
}

/// How a node answers a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// 200 with a body (an HTML page with the node's links, or a leaf).
    Ok,
    /// A redirect to `to`, with `Location` relative when `relative`.
    Redirect {
        /// The 3xx status.
        status: u16,
        /// Where it points.
        to: Node,
        /// Whether `Location` is a relative reference.
        relative: bool,
    },
    /// An error status with a small body without links.
    Status(u16),
    /// `status` for the first `failures` requests to the path, then a 200 page.
    Flaky {
        /// Failures before the first success.
        failures: u32,
        /// The failing status.
        status: u16,
    },
    /// A 200 page after a delay.
    Slow(Duration),
    /// Headers and part of the body, then nothing until the connection is dropped.
    Stall(Duration),
    /// A body of `len` bytes, with Content-Length unless `chunked`.
    Huge {
        /// Body length.
        len: u64,
        /// Whether the length is left undeclared.
        chunked: bool,
    },
}

/// How `node` answers (the server's and the ground truth's single source).
pub(crate) fn behaviour(config: &SiteConfig, node: Node) -> Behaviour {
    const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];
    let redirect = |status, to, relative| Behaviour::Redirect {
        status,
        to,
        relative,
    };
    match node {
        Node::Redirect(k) => redirect(
            REDIRECT_STATUSES[k as usize % REDIRECT_STATUSES.len()],
            Node::Landing(k),
            k % 2 == 1,
        ),
        Node::Gone(_) | Node::NotFound | Node::Robots(Host::Other) => Behaviour::Status(404),
        Node::Robots(_) if config.robots_failures > 0 => Behaviour::Flaky {
            failures: config.robots_failures,
            status: 503,
        },
        Node::Trap(trap) => match trap {
            Trap::LoopA => redirect(302, Node::Trap(Trap::LoopB), true),
            Trap::LoopB => redirect(302, Node::Trap(Trap::LoopA), true),
            Trap::Chain(k) if k < config.chain_len => {
                redirect(302, Node::Trap(Trap::Chain(k + 1)), true)
            }
            Trap::Short(k) if k < SHORT_CHAIN => redirect(
                [301, 307, 308][k as usize % 3],
                Node::Trap(Trap::Short(k + 1)),
                false,
            ),
            Trap::Offsite => redirect(302, Node::OtherLanding, false),
            Trap::Status(code) => Behaviour::Status(code),
            Trap::Flaky(status) => Behaviour::Flaky {
                failures: config.flaky_failures,
                status,
            },
            Trap::Slow => Behaviour::Slow(config.slow_delay),
            Trap::Stall => Behaviour::Stall(config.stall_for),
            Trap::Huge => Behaviour::Huge {
                len: config.huge_bytes,
                chunked: false,
            },
            Trap::HugeChunked => Behaviour::Huge {
                len: config.huge_bytes,
                chunked: true,
            },
            _ => Behaviour::Ok,
        },
        _ => Behaviour::Ok,
    }
}

/// A small deterministic generator (SplitMix64): the site must be the same for a seed on
/// every platform and every version of every dependency, so it carries its own.
#[derive(Clone, Debug)]
pub(crate) struct Prng(u64);

impl Prng {
    /// A generator for one purpose (`stream`) of one site (`seed`).
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut mixer = Prng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        mixer.next_u64();
        Prng(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(u64::from(hi.saturating_sub(lo)) + 1) as u32
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of `items`.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        let i = self.below(items.len() as u64) as usize;
        items.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SiteConfig {
        SiteConfig::default().with_traps(true)
    }

    #[test]
    fn every_node_resolves_from_its_own_path() {
        let config = config();
        let mut nodes = vec![
            Node::Root(Host::Site),
            Node::Root(Host::Other),
            Node::Root(Host::Far),
            Node::Robots(Host::Site),
            Node::Robots(Host::Far),
            Node::Style,
            Node::Logo,
            Node::Page(0),
            Node::Page(299),
            Node::Private(3),
            Node::Press(1),
            Node::NoFollow(NOFOLLOW_PAGES),
            Node::MetaNoFollow,
            Node::Redirect(4),
            Node::Landing(4),
            Node::LandingMore(0),
            Node::Gone(2),
            Node::Back(5),
            Node::Search(2),
            Node::Unicode,
            Node::Other(5),
            Node::OtherLanding,
            Node::Far(2),
            Node::Wander(0, 0),
            Node::Wander(5, 2),
            Node::Traps,
        ];
        nodes.extend((0..FILES.len() as u32).map(Node::File));
        let traps = [
            Trap::LoopA,
            Trap::LoopB,
            Trap::Chain(0),
            Trap::Chain(30),
            Trap::Short(3),
            Trap::Offsite,
            Trap::Status(410),
            Trap::Flaky(503),
            Trap::Slow,
            Trap::Stall,
            Trap::Huge,
            Trap::HugeChunked,
            Trap::Gzip,
            Trap::GzipChild,
            Trap::Charset(0),
            Trap::CharsetChild(4),
            Trap::Binary,
            Trap::Plain,
            Trap::Never,
            Trap::Malformed,
            Trap::MalformedChild(3),
            Trap::Empty,
            Trap::Long(0),
            Trap::Long(3),
            Trap::Repeat(1),
            Trap::Repeat(40),
        ];
        nodes.extend(traps.into_iter().map(Node::Trap));
        for node in nodes {
            let target = node.path();
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (target.as_str(), None),
            };
            assert_eq!(resolve(&config, node.host(), path, query), node, "{target}");
        }
    }

    #[test]
    fn near_misses_are_not_found() {
        let config = config();
        for path in [
            "/p/300",
            "/p/01",
            "/p/+1",
            "/p/",
            "/private/4",
            "/r/more",
            "/landing/1",
            "/w/6/0",
            "/w/1/3",
            "/trap/chain/31",
            "/trap/repeat",
            "/trap/repeat/b",
            "/trap/status/200",
            "/trap/flaky/500",
            "/trap/malformed/4",
            "/trap/long/lll",
            "/o/0",
        ] {
            assert_eq!(
                resolve(&config, Host::Site, path, None),
                Node::NotFound,
                "{path}"
            );
        }
        assert_eq!(
            resolve(&config, Host::Site, "/search", Some("q=1")),
            Node::NotFound
        );
        assert_eq!(resolve(&config, Host::Other, "/p/1", None), Node::NotFound);
    }

    #[test]
    fn host_header_parsing_ignores_case_port_and_trailing_dot() {
        assert_eq!(Host::parse("SITE.test:8080"), Some(Host::Site));
        assert_eq!(Host::parse("other.test."), Some(Host::Other));
        assert_eq!(Host::parse("far.test"), Some(Host::Far));
        assert_eq!(Host::parse("example.org"), None);
        assert_eq!(Host::parse("127.0.0.1:80"), None);
    }

    #[test]
    fn prng_is_stable_and_uniform_enough() {
        let mut a = Prng::new(1, 2);
        let mut b = Prng::new(1, 2);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Prng::new(1, 3).next_u64(), xs[0]);
        let mut buckets = [0u32; 4];
        let mut r = Prng::new(9, 9);
        for _ in 0..4000 {
            buckets[r.below(4) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (800..1200).contains(&n)),
            "{buckets:?}"
        );
    }
}
