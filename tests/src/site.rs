//! A synthetic web site for crawler tests: a seeded graph of pages, the ground truth of what a
//! correct crawler finds in it, and traps.
//!
//! [`TestSite::start`] binds 127.0.0.1 on a free port and serves, from one listener, three
//! hosts told apart by the `Host` header: [`MAIN_HOST`] (`site.test`), [`OTHER_HOST`]
//! (`other.test`, off-site pages that link back) and [`FAR_HOST`] (`far.test`, linked only
//! from `other.test`). A request naming any other host gets 404. Crawlers reach the hosts with
//! a DNS override (`reqwest::ClientBuilder::resolve(host, site.addr())` for each of
//! [`TestSite::hosts`]); since such an override carries no port, every URL carries it:
//! `http://site.test:PORT/p/7`. Nothing here ever talks to anything but 127.0.0.1.
//!
//! Everything is a deterministic function of the [`SiteConfig`] and the port: two sites with
//! one config serve the same bytes but for the port number.
//!
//! # Layout of `site.test`
//!
//! | path | what |
//! |---|---|
//! | `/` | links to `/p/0`..`/p/3` (level 1), and to `/traps` when `with_traps` |
//! | `/p/{i}` | main pages, `i < pages`: a random tree below `/` plus cross links (see below) |
//! | `/robots.txt` | `User-agent: badbot` / `Disallow: /`, then `User-agent: *` with `Allow: /private/press/`, `Disallow: /private/` and an optional `Crawl-delay` (all configurable) |
//! | `/private/{k}`, `/private/press/{k}` | linked from main pages; the first disallowed by robots.txt, the second re-allowed |
//! | `/nofollow/{k}` | linked only by `rel="nofollow"` links (`/nofollow/4` only from `/meta-nofollow`, whose `<meta name="robots">` says nofollow) |
//! | `/r/{k}` | 301/302/303/307/308 to `/landing/{k}/` (absolute or relative `Location`) |
//! | `/landing/{k}/` | reached only by that redirect; links `more` relatively, which a crawler must resolve against the final URL (`/landing/{k}/more`; against the requested one it gets `/r/more`, a 404) |
//! | `/gone/{k}` | dead links: 404 |
//! | `/files/…` | `.jpg`, `.png`, `.pdf` (one with a query, one upper-case `.PDF`), `.zip`: skipped by [`DEFAULT_DENY_EXTENSIONS`] |
//! | `/search?q={k}&page=2` | pages with a query (written `&amp;` in HTML) |
//! | `/u/naïve-café` | a non-ASCII href; served at its percent-encoded form `/u/na%C3%AFve-caf%C3%A9` |
//! | `/back/{k}` | linked only from `other.test` |
//! | `/w/0`, `/w/{step}/{idx}` | the wandering area (not linked from `/`): each step-k page links to every step-(k+1) page, step `wander_steps` pages have no links |
//! | `/traps`, `/trap/…` | the traps (see [`traps`]) |
//! | `/static/site.css`, `/static/logo.png` | referenced by `<link>` and `<img>`, never by a link |
//!
//! `other.test` serves `/o/{k}` (each linked from one main page; each links forward to main
//! pages, to `/back/{k}` and to some `far.test` pages) and `/o/landing` (the end of the off-site
//! redirect trap); its robots.txt is a 404. `far.test` serves `/f/{k}` and an allow-all
//! robots.txt. The `/` of both lists their pages (useful as extra seeds).
//!
//! Links come in every form that canonicalises to the same URL: absolute, upper-case scheme
//! and host, a zero-padded port (`:08080`), scheme-relative, root-relative, relative (against
//! the page or its `<base href>`, which some pages set to `/p/deep/er/`, absolute or not), with
//! dot segments, with surrounding whitespace, with a `#frag`, as `<area>`, and duplicated.
//! Some pages also carry `mailto:`, `javascript:`, `tel:`, `data:` and `ftp:` links, `#top` and
//! `href=""`, none of which leads anywhere new. (A default-port form `:80` is not used: the site
//! is not on port 80, so such a URL would be another URL.)
//!
//! # Ground truth
//!
//! [`TestSite::reachable`] answers, for a crawler configured as a [`Reach`], which URLs it
//! requests: a breadth-first search from the seeds over the links a correct crawler follows.
//!
//! - **Keys** are canonical URLs, as the `url` crate serialises them without fragment:
//!   lower-case scheme and host, default port dropped, dot segments resolved, non-ASCII
//!   percent-encoded, query kept as written (`&amp;` decoded).
//! - **Fetched** means requested: the set holds pages that answer 404, 500 and the like, and
//!   fetches that end in errors; [`Expected::outcome`] and [`Expected::status`] tell which.
//!   The set holds no robots.txt and no URL that robots.txt disallows (when obeyed).
//! - **Depth**: a seed is depth 0; links of a page at depth `d` are followed only while
//!   `d < max_depth`, and lead to depth `d + 1`. Seeds are fetched whatever the filters say.
//! - **Links followed**: `a` and `area` hrefs resolved against `<base href>` or else the URL of
//!   the *final* response; only `http`; not `rel="nofollow"` nor from a meta-nofollow page
//!   (unless [`Reach::follow_nofollow`]); host in [`Reach::allowed_hosts`] (a domain or its
//!   subdomains); extension not in [`Reach::deny_extensions`]; matching an allow pattern if
//!   there are any and no deny pattern; not longer than [`Reach::max_url_len`]. No links are
//!   taken from error pages (they have none), from non-HTML (`text/plain` holds an `<a>` that
//!   must not be followed) or from undecodable bodies. Nofollow pages are reached only through
//!   nofollow links, and no page links one URL both with and without nofollow, so extractors
//!   that keep the first occurrence of a duplicate link and those that keep any agree.
//! - **Redirects** are followed within the fetch, up to [`Reach::max_redirects`]; each hop
//!   must pass the same host, extension, pattern and length filters and robots.txt, else the
//!   fetch ends with the 3xx response itself ([`Outcome::Status`]). A record is keyed by the
//!   *requested* URL; [`Expected::final_url`] is where it landed; redirects add no depth. No
//!   redirect target or intermediate hop is ever linked directly and no two chains share a
//!   hop, so the set is the same whether or not a crawler marks hops as seen.
//! - **Retries**: 5xx, 429 and timeouts are retried [`Reach::max_retries`] times;
//!   [`Expected::retries`] says how many retries happen on a fresh site (flaky traps count
//!   requests since start or [`TestSite::reset_counters`]).
//!
//! Every followable link from a page at depth `d` (from the root seed) leads to a page of
//! depth `d + 1`, or to a page of depth at most 1 (the root, its children, `/traps`), which the
//! root enqueues before anything else happens. So any deduplicating crawler, in any order and
//! with any concurrency, gives each page its ground-truth depth: a maxdepth-limited crawl of
//! the root finds exactly the ground truth, not a superset or subset depending on timing.
//! (With other seeds, shortest-path depth is still what the ground truth reports.)
//!
//! With `with_traps` the repeating-path trap makes the reachable set infinite;
//! [`TestSite::reachable`] then needs `max_depth` or `max_url_len` and otherwise returns
//! [`Error::Unbounded`].
//!
//! # Counters
//!
//! The site counts requests per host and target ([`TestSite::hits`]) and keeps a bounded log
//! of them with arrival times and user agents ([`TestSite::request_log`]), for politeness
//! ("at most N per window per host") and "fetched once" checks.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> kubecrawl_e2e::site::Result<()> {
//! use kubecrawl_e2e::site::{SiteConfig, TestSite};
//! let site = TestSite::start(SiteConfig::default().with_pages(500)).await?;
//! let truth = site.reachable(&site.reach().max_depth(3))?;
//! // crawl site.root() with a client that resolves each of site.hosts() to site.addr(),
//! // then compare the fetched URLs with truth.urls().
//! # Ok(()) }
//! ```
//!
//! [`TestSite::start`]: crate::site::TestSite::start
//! [`MAIN_HOST`]: crate::site::MAIN_HOST
//! [`OTHER_HOST`]: crate::site::OTHER_HOST
//! [`FAR_HOST`]: crate::site::FAR_HOST
//! [`TestSite::hosts`]: crate::site::TestSite::hosts
//! [`SiteConfig`]: crate::site::SiteConfig
//! [`DEFAULT_DENY_EXTENSIONS`]: crate::site::DEFAULT_DENY_EXTENSIONS
//! [`traps`]: crate::site::traps
//! [`TestSite::reachable`]: crate::site::TestSite::reachable
//! [`Reach`]: crate::site::Reach
//! [`Expected::outcome`]: crate::site::Expected::outcome
//! [`Expected::status`]: crate::site::Expected::status
//! [`Reach::follow_nofollow`]: crate::site::Reach::follow_nofollow
//! [`Reach::allowed_hosts`]: crate::site::Reach::allowed_hosts
//! [`Reach::deny_extensions`]: crate::site::Reach::deny_extensions
//! [`Reach::max_url_len`]: crate::site::Reach::max_url_len
//! [`Reach::max_redirects`]: crate::site::Reach::max_redirects
//! [`Outcome::Status`]: crate::site::Outcome::Status
//! [`Expected::final_url`]: crate::site::Expected::final_url
//! [`Reach::max_retries`]: crate::site::Reach::max_retries
//! [`Expected::retries`]: crate::site::Expected::retries
//! [`TestSite::reset_counters`]: crate::site::TestSite::reset_counters
//! [`Error::Unbounded`]: crate::site::Error::Unbounded
//! [`TestSite::hits`]: crate::site::TestSite::hits
//! [`TestSite::request_log`]: crate::site::TestSite::request_log

// The link targets above are spelled from the crate root because rustdoc resolves the inner
// docs of a module that also has an outer doc comment (in lib.rs) in the parent's scope.

mod config;
mod graph;
mod model;
mod render;
pub mod scripts;
mod server;
pub mod sitemaps;
pub mod traps;
mod truth;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{Error, Result, SiteConfig};
pub use scripts::ScriptTruth;
pub use server::Hit;
pub use sitemaps::SitemapTruth;
pub use traps::{CharsetCase, Declared, TrapInfo};
pub use truth::{DEFAULT_DENY_EXTENSIONS, Expected, GroundTruth, OutLink, Outcome, Reach};

use graph::Graph;
use model::{Host, Node};
use render::{Prepared, Renderer};
use server::Recorder;

/// The main host.
pub const MAIN_HOST: &str = "site.test";
/// The off-site host whose pages link back to the main host.
pub const OTHER_HOST: &str = "other.test";
/// A host linked only from [`OTHER_HOST`].
pub const FAR_HOST: &str = "far.test";

/// The state behind a running site: the generated graph and every pre-rendered response.
#[derive(Debug)]
pub(crate) struct Site {
    config: SiteConfig,
    port: u16,
    graph: Graph,
    pages: Vec<Bytes>,
    prepared: HashMap<Node, Prepared>,
    huge_chunk: Bytes,
    recorder: Recorder,
    overload: server::Overload,
    edits: server::Edits,
}

impl Site {
    fn build(config: SiteConfig, port: u16) -> Self {
        let graph = Graph::generate(&config);
        let renderer = Renderer {
            config: &config,
            graph: &graph,
            port,
        };
        let mut pages = renderer.main_pages();
        if config.gzip_pages {
            for page in &mut pages {
                *page = traps::gzip(page);
            }
        }
        let prepared = renderer.prepared();
        Self {
            recorder: Recorder::new(config.log_capacity),
            config,
            port,
            graph,
            pages,
            prepared,
            huge_chunk: traps::huge_chunk(),
            overload: server::Overload::default(),
            edits: server::Edits::default(),
        }
    }
}

/// A running synthetic site. It stops when dropped or [`shut down`](TestSite::shutdown).
#[derive(Debug)]
pub struct TestSite {
    site: Arc<Site>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestSite {
    /// Generates the site of `config`, binds `config.address` (127.0.0.1 by default) on
    /// `config.port` (0: any free port) and
    /// serves it from a task on the current Tokio runtime.
    ///
    /// Main pages and every finite response are rendered here, once; serving a page is a
    /// lookup and a reference-counted copy.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a config out of range, [`Error::Bind`] when the port is
    /// taken.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn start(config: SiteConfig) -> Result<TestSite> {
        config.validate()?;
        let port = config.port;
        let bind = |source| Error::Bind { port, source };
        let listener = TcpListener::bind((config.address, port))
            .await
            .map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let site = Arc::new(Site::build(config, addr.port()));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server::serve(listener, Arc::clone(&site), stopped));
        Ok(TestSite {
            site,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops accepting, drops every open connection and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// The configuration the site was generated from.
    pub fn config(&self) -> &SiteConfig {
        &self.site.config
    }

    /// The listening address (127.0.0.1 and the port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port, which every URL of the site carries.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://{host}:{port}{path}`.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port())
    }

    /// The main seed, `http://site.test:PORT/`.
    pub fn root(&self) -> String {
        self.url(MAIN_HOST, "/")
    }

    /// The URL of main page `i`.
    pub fn page_url(&self, i: usize) -> String {
        self.url(MAIN_HOST, &format!("/p/{i}"))
    }

    /// The seed of the wandering area, `http://site.test:PORT/w/0` (step 0).
    pub fn wander_root(&self) -> String {
        self.url(MAIN_HOST, "/w/0")
    }

    /// The last step of the wandering area: a wandering crawl from [`TestSite::wander_root`]
    /// emits steps `0..=wander_steps()` and stops at a page without links.
    pub fn wander_steps(&self) -> u32 {
        self.site.config.wander_steps
    }

    /// Every host the site serves with the address to resolve it to (a DNS override).
    pub fn hosts(&self) -> Vec<(&'static str, SocketAddr)> {
        Host::ALL.iter().map(|h| (h.name(), self.addr)).collect()
    }

    /// The host overrides of [`TestSite::hosts`] as a crawler takes them
    /// (`KUBECRAWL_RESOLVE`): `host=ip`, comma-separated.
    pub fn resolve(&self) -> String {
        self.hosts()
            .iter()
            .map(|(host, addr)| format!("{host}={}", addr.ip()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A crawler configuration with the defaults of [`Reach`], seeded with the root.
    pub fn reach(&self) -> Reach {
        Reach::from_seed(self.root())
    }

    /// The ground truth for `reach`: every URL a correct crawler requests (see the module
    /// documentation for the exact rules).
    ///
    /// # Errors
    /// [`Error::ForeignUrl`] for a seed that is not this site's; [`Error::Unbounded`] when the
    /// repeating-path trap is reachable without a depth or URL length limit.
    pub fn reachable(&self, reach: &Reach) -> Result<GroundTruth> {
        self.site.reachable(reach)
    }

    /// The ground truth of a whole-site crawl from the root with the defaults of [`Reach`]:
    /// what a link job of [`crate::crawljob::link_spec`] must find.
    ///
    /// # Panics
    /// When that crawl is unbounded (the repeating-path trap is on: use
    /// [`TestSite::reachable`] with a limit).
    pub fn truth(&self) -> GroundTruth {
        self.reachable(&self.reach())
            .expect("the whole site from its root has a ground truth")
    }

    /// The distinct links of the page at `url` that a correct extractor reports, in document
    /// order: canonical http URLs, with their nofollow mark. Pages without links, error
    /// pages, redirects and non-HTML give an empty list.
    ///
    /// # Errors
    /// [`Error::ForeignUrl`] for a URL that is not this site's.
    pub fn outlinks(&self, url: &str) -> Result<Vec<OutLink>> {
        let node = self.site.node_of(url)?;
        Ok(self
            .site
            .outlinks(node)
            .into_iter()
            .map(|(target, nofollow)| OutLink {
                url: target.url(self.port()),
                nofollow,
            })
            .collect())
    }

    /// The robots.txt of `site.test`.
    pub fn robots_txt(&self) -> String {
        Renderer {
            config: &self.site.config,
            graph: &self.site.graph,
            port: self.port(),
        }
        .robots_txt()
    }

    /// What a crawl reading this site's sitemaps (from its robots.txt) must find, with the
    /// job's `modifiedSince` (needs [`SiteConfig::sitemaps`]).
    pub fn sitemap_truth(&self, modified_since: Option<std::time::SystemTime>) -> SitemapTruth {
        sitemaps::truth(&self.site.config, self.port(), modified_since)
    }

    /// What a crawl of the script area (`with_scripts`) finds, as full URLs.
    pub fn script_truth(&self) -> ScriptTruth {
        let truth = scripts::truth();
        let full = |paths: std::collections::BTreeSet<String>| {
            paths.into_iter().map(|p| self.url(MAIN_HOST, &p)).collect()
        };
        ScriptTruth {
            unrendered: full(truth.unrendered),
            rendered: full(truth.rendered),
        }
    }

    /// The traps linked from `/traps`, with their expected outcomes.
    pub fn traps(&self) -> Vec<TrapInfo> {
        traps::catalogue()
    }

    /// Requests `target` (path and query, as sent) on `site.test` has had.
    pub fn hits(&self, target: &str) -> u64 {
        self.site.recorder.hits(Host::Site, target)
    }

    /// Requests `target` on `host` has had (0 for a host the site does not serve).
    pub fn hits_on(&self, host: &str, target: &str) -> u64 {
        Host::parse(host).map_or(0, |h| self.site.recorder.hits(h, target))
    }

    /// Requests received, unknown hosts included.
    pub fn total_hits(&self) -> u64 {
        self.site.recorder.total()
    }

    /// The most recent requests (at most [`SiteConfig::log_capacity`]), oldest first.
    pub fn request_log(&self) -> Vec<Hit> {
        self.site.recorder.log()
    }

    /// How many page requests the overloaded host ([`SiteConfig::overload`]) refused with a
    /// 503.
    pub fn overload_refusals(&self) -> u64 {
        self.site.overload.refusals()
    }

    /// Changes main page `i` (`/p/i`): its body gains a paragraph naming the edit, and with
    /// [`SiteConfig::validators`] its ETag and Last-Modified change. Returns the page's edit
    /// count. Links are unchanged, so the ground truth stays right.
    pub fn edit_page(&self, i: usize) -> u32 {
        self.site.edits.edit(i)
    }

    /// The text an edited page's body holds after its `n`-th edit.
    pub fn edit_marker(i: usize, n: u32) -> String {
        server::edit_marker(i, n)
    }

    /// `304 Not Modified` answers sent so far.
    pub fn not_modified(&self) -> u64 {
        self.site.edits.not_modified()
    }

    /// [`TestSite::overload_refusals`] per second of the overload, from its first request.
    pub fn overload_refusals_by_second(&self) -> Vec<u64> {
        self.site.overload.refusals_by_second()
    }

    /// Forgets all counts and the log (the flaky traps fail again afterwards).
    pub fn reset_counters(&self) {
        self.site.recorder.reset();
    }
}

impl Drop for TestSite {
    fn drop(&mut self) {
        // Aborting the server task drops its connection set, which aborts every connection.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
