//! The request record: one URL waiting in the frontier or leased to a worker.
//!
//! The frontier stores millions of these, so the record is small and its JSON keys are one
//! letter long. The job a request belongs to is not repeated in it: the frontier keeps requests
//! per job and hands each leased request back together with its [`JobRef`].
//!
//! ```json
//! {"u":"https://example.org/a?x=1","d":2,"p":5,"r":1,"f":"https://example.org/","m":{"tag":"x"}}
//! ```
//!
//! | key | field | default |
//! |---|---|---|
//! | `u` | `url` | required |
//! | `d` | `depth` | 0 (a seed) |
//! | `p` | `priority` | 1 |
//! | `r` | `retries` | 0 |
//! | `f` | `referer` | none |
//! | `m` | `meta` | empty |
//!
//! A request whose meta holds [`SITEMAP_META`] is a sitemap (or a robots.txt) to read for
//! page URLs, not a page to parse: see [`SitemapRole`]. A recrawling job's request for a page
//! an earlier round fetched holds that page's [`Validators`] under [`RECRAWL_META`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Names one crawl job everywhere: Scrapy Cluster's spiderid, appid and crawlid.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobRef {
    /// The spider fleet that runs the job.
    pub spiderid: String,
    /// The submitting application.
    pub appid: String,
    /// The job id.
    pub crawlid: String,
}

impl std::fmt::Display for JobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.spiderid, self.appid, self.crawlid)
    }
}

/// One request to fetch, as the frontier queues it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CrawlRequest {
    /// The absolute URL to fetch, canonicalised by whoever enqueued it.
    #[serde(rename = "u")]
    pub url: String,
    /// Hops from a seed: 0 for a seed, the parent's depth + 1 for a discovered link. The
    /// wandering spider's `step`.
    #[serde(rename = "d", default, skip_serializing_if = "is_zero_u32")]
    pub depth: u32,
    /// Scheduling priority, higher first (the job's priority unless the spider set another).
    #[serde(
        rename = "p",
        default = "default_priority",
        skip_serializing_if = "is_default_priority"
    )]
    pub priority: i32,
    /// How many times this request was already retried after a transient failure.
    #[serde(rename = "r", default, skip_serializing_if = "is_zero_u32")]
    pub retries: u32,
    /// The page this link was found on, sent as the Referer header.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    /// Custom meta a spider attached; it flows from a response to the requests it yields.
    #[serde(rename = "m", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, serde_json::Value>,
}

impl CrawlRequest {
    /// A seed request: depth 0, the given priority, no referer, no meta.
    pub fn seed(url: impl Into<String>, priority: i32) -> Self {
        Self {
            url: url.into(),
            depth: 0,
            priority,
            retries: 0,
            referer: None,
            meta: BTreeMap::new(),
        }
    }

    /// A request for a link found on `self`'s page: one hop deeper, same priority, the parent
    /// as referer and the parent's meta carried over (but not its [`Validators`], which are
    /// the parent's page's own).
    pub fn child(&self, url: impl Into<String>) -> Self {
        let mut meta = self.meta.clone();
        meta.remove(RECRAWL_META);
        Self {
            url: url.into(),
            depth: self.depth.saturating_add(1),
            priority: self.priority,
            retries: 0,
            referer: Some(self.url.clone()),
            meta,
        }
    }

    /// What the previous recrawl round learnt about this request's page; `None` for a page
    /// not fetched before (or a record that is not an object of strings).
    pub fn validators(&self) -> Option<Validators> {
        serde_json::from_value(self.meta.get(RECRAWL_META)?.clone()).ok()
    }

    /// This request as the next recrawl round should make it: no retries counted, and
    /// `validators` in its meta (none: the page is fetched whole).
    pub fn remembered(&self, validators: Option<&Validators>) -> Self {
        let mut request = self.clone();
        request.retries = 0;
        match validators.and_then(|v| serde_json::to_value(v).ok()) {
            Some(value) => request.meta.insert(RECRAWL_META.to_owned(), value),
            None => request.meta.remove(RECRAWL_META),
        };
        request
    }
}

/// The meta key under which a recrawling job's request carries its page's [`Validators`]
/// from the previous round.
pub const RECRAWL_META: &str = "kubecrawl.recrawl";

/// What a recrawl round keeps about a page for the next one: the server's validators, for a
/// conditional request, and a digest of the body, for servers that give none.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    /// The response's `ETag`, sent back as `If-None-Match`.
    #[serde(default, rename = "e", skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The response's `Last-Modified`, sent back as `If-Modified-Since`.
    #[serde(default, rename = "l", skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// The body's digest (32 hex digits of xxh3-128), compared with the next round's body.
    #[serde(default, rename = "h", skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The meta key that marks a request as a sitemap to read: `"robots"` for a robots.txt whose
/// `Sitemap:` lines are read, or the sitemap's nesting level, a number (0 for a sitemap the
/// job names or a robots.txt lists, one more for each sitemap index above it).
pub const SITEMAP_META: &str = "kubecrawl.sitemap";

/// What a sitemap request is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SitemapRole {
    /// A robots.txt: its `Sitemap:` lines are the sitemaps to read (level 0).
    Robots,
    /// A sitemap or sitemap index, `level` indexes deep.
    Sitemap {
        /// 0 for a sitemap the job names or a robots.txt lists.
        level: u32,
    },
}

impl CrawlRequest {
    /// A request to read a sitemap (or a robots.txt's sitemaps): depth 0, marked in its meta.
    pub fn sitemap(url: impl Into<String>, priority: i32, role: SitemapRole) -> Self {
        let mut request = Self::seed(url, priority);
        request.meta.insert(SITEMAP_META.to_owned(), role.to_meta());
        request
    }

    /// What this request is read for when it is a sitemap request; `None` for a page.
    pub fn sitemap_role(&self) -> Option<SitemapRole> {
        match self.meta.get(SITEMAP_META)? {
            serde_json::Value::String(s) if s == "robots" => Some(SitemapRole::Robots),
            value => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(|level| SitemapRole::Sitemap { level }),
        }
    }

    /// A request for `url`, listed by this sitemap request: a sitemap to read (`Some(role)`)
    /// or a page (`None`), at depth 0 like a seed, this request's priority, the sitemap as
    /// referer, and this request's meta without the sitemap mark (for a page).
    pub fn listed(&self, url: impl Into<String>, role: Option<SitemapRole>) -> Self {
        let mut meta = self.meta.clone();
        match role {
            Some(role) => meta.insert(SITEMAP_META.to_owned(), role.to_meta()),
            None => meta.remove(SITEMAP_META),
        };
        Self {
            url: url.into(),
            depth: 0,
            priority: self.priority,
            retries: 0,
            referer: Some(self.url.clone()),
            meta,
        }
    }
}

impl SitemapRole {
    fn to_meta(self) -> serde_json::Value {
        match self {
            Self::Robots => serde_json::Value::from("robots"),
            Self::Sitemap { level } => serde_json::Value::from(level),
        }
    }
}

fn default_priority() -> i32 {
    1
}

fn is_default_priority(p: &i32) -> bool {
    *p == default_priority()
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let mut req = CrawlRequest::seed("https://example.org/", 5).child("https://example.org/a");
        req.meta
            .insert("tag".into(), serde_json::json!({"k": [1, 2]}));
        req.retries = 2;
        let text = serde_json::to_string(&req).expect("serializes");
        let back: CrawlRequest = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, req);
    }

    #[test]
    fn validators_ride_in_meta_and_stay_with_their_page() {
        let mut page = CrawlRequest::seed("https://example.org/", 1).child("https://example.org/a");
        page.retries = 3;
        assert_eq!(page.validators(), None);
        let validators = Validators {
            etag: Some("\"v1\"".to_owned()),
            last_modified: None,
            digest: Some("00ff".to_owned()),
        };
        let known = page.remembered(Some(&validators));
        assert_eq!(known.retries, 0);
        assert_eq!(known.depth, 1);
        assert_eq!(known.validators(), Some(validators));
        assert_eq!(
            known.meta[RECRAWL_META],
            serde_json::json!({"e": "\"v1\"", "h": "00ff"})
        );
        let child = known.child("https://example.org/b");
        assert_eq!(child.validators(), None, "a child is another page");
        assert_eq!(known.remembered(None).validators(), None);
    }

    #[test]
    fn documented_example_parses() {
        let req: CrawlRequest = serde_json::from_str(
            r#"{"u":"https://example.org/a?x=1","d":2,"p":5,"r":1,"f":"https://example.org/","m":{"tag":"x"}}"#,
        )
        .expect("example parses");
        assert_eq!(req.depth, 2);
        assert_eq!(req.priority, 5);
        assert_eq!(req.referer.as_deref(), Some("https://example.org/"));
    }

    #[test]
    fn a_seed_is_a_url_and_nothing_else() {
        let text = serde_json::to_string(&CrawlRequest::seed("http://a.test/", 1)).expect("ok");
        assert_eq!(text, r#"{"u":"http://a.test/"}"#);
    }

    #[test]
    fn a_sitemap_request_is_marked_and_its_pages_are_not() {
        let robots = CrawlRequest::sitemap("http://a.test/robots.txt", 4, SitemapRole::Robots);
        assert_eq!(robots.sitemap_role(), Some(SitemapRole::Robots));
        let text = serde_json::to_string(&robots).expect("serializes");
        assert_eq!(
            text,
            r#"{"u":"http://a.test/robots.txt","p":4,"m":{"kubecrawl.sitemap":"robots"}}"#
        );
        let sitemap = robots.listed(
            "http://a.test/sitemap.xml",
            Some(SitemapRole::Sitemap { level: 0 }),
        );
        assert_eq!(
            sitemap.sitemap_role(),
            Some(SitemapRole::Sitemap { level: 0 })
        );
        let page = sitemap.listed("http://a.test/page", None);
        assert_eq!(page.sitemap_role(), None);
        assert!(page.meta.is_empty());
        assert_eq!((page.depth, page.priority), (0, 4));
        assert_eq!(page.referer.as_deref(), Some("http://a.test/sitemap.xml"));
        assert_eq!(CrawlRequest::seed("http://a.test/", 1).sitemap_role(), None);
    }

    #[test]
    fn children_inherit_meta_and_go_one_deeper() {
        let mut parent = CrawlRequest::seed("http://a.test/", 7);
        parent.meta.insert("custom".into(), serde_json::json!(true));
        let child = parent.child("http://a.test/b");
        assert_eq!(child.depth, 1);
        assert_eq!(child.priority, 7);
        assert_eq!(child.meta, parent.meta);
        assert_eq!(child.referer.as_deref(), Some("http://a.test/"));
    }
}
