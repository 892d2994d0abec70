//! The spider trait: what a spider author writes, and what a spider gets for free.
//!
//! A spider is a type with a name and a `parse` method, like a Scrapy spider's `parse`: it
//! receives a fetched [`Response`] and yields [`Output`]s — new requests to crawl and items to
//! publish. The runtime around it provides what Scrapy Cluster's `RedisSpider` provides:
//!
//! - a `tracing` span per request carrying `appid`, `crawlid`, `spiderid` and `url`, so every
//!   `tracing::info!` inside `parse` is scoped to the job;
//! - headers reconstructed as name → list of values ([`Response::headers`]);
//! - meta passthrough: [`Response::follow`] builds a child request that carries the parent's
//!   meta and crawl context, one hop deeper, without the spider copying anything;
//! - links already extracted ([`Response::links`]) and the raw-response item already built
//!   ([`Response::item`]);
//! - a worker that never closes when the frontier is empty: it waits for work.
//!
//! `parse` is synchronous: parsing is CPU work, and `scraper::Html` is not `Send`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use kubecrawl_api::page::Headers;
use kubecrawl_api::{BodyEncoding, CrawlRequest, JobRef, Link, PageRecord};
use url::Url;

use crate::declarative::{Extracted, Rules};

/// What a spider yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A request to crawl; it passes the job's filters, dedupe and budgets in the frontier.
    Request(CrawlRequest),
    /// An item to publish.
    Item(Box<PageRecord>),
}

/// A spider: turns a response into requests and items.
///
/// Implementations must be cheap to share: one instance serves every concurrent request of
/// a worker.
pub trait Spider: Send + Sync + 'static {
    /// The spiderid this spider serves (`link`, `wandering`, ...).
    fn name(&self) -> &str;

    /// Parses one response.
    fn parse(&self, response: &Response) -> Vec<Output>;
}

/// A fetched page as a spider sees it.
#[derive(Debug, Clone)]
pub struct Response {
    /// The job the request belongs to.
    pub job: JobRef,
    /// The request that was fetched, with its depth and meta.
    pub request: CrawlRequest,
    /// The URL of the final response, after redirects.
    pub url: Url,
    /// HTTP status code.
    pub status: u16,
    /// The status code's reason phrase.
    pub status_msg: String,
    /// Response headers, name (lowercase) → values.
    pub headers: Headers,
    /// Request headers sent, name → values.
    pub request_headers: Headers,
    /// The raw body (decompressed, at most the worker's body cap).
    pub body: Bytes,
    /// The body was cut at the worker's cap.
    pub truncated: bool,
    /// The body as text, when it is text.
    pub text: Option<String>,
    /// The charset `text` was decoded from.
    pub encoding: Option<String>,
    /// The media type, lowercase, without parameters.
    pub content_type: String,
    /// Links found in the page (HTML only), canonical, in document order.
    pub links: Vec<Link>,
    /// Follow links marked nofollow anyway (the job's choice).
    pub follow_nofollow: bool,
    /// The job's attrs.
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// URLs requested before `url`.
    pub redirect_chain: Vec<String>,
    /// From sending the request to the end of the body.
    pub fetch_time: Duration,
    /// When the response arrived.
    pub timestamp: SystemTime,
    /// The job's declarative rules (`spec.extract`), compiled; `None` when it has none (or
    /// they did not compile). The `link` spider applies them through [`Response::extract`];
    /// another spider may too.
    pub rules: Option<Arc<Rules>>,
    /// `body` is the DOM after a headless browser ran the page's scripts, and `links` were
    /// found in it.
    pub rendered: bool,
    /// A JPEG screenshot of the rendered page, base64, when the job asked for one.
    pub screenshot: Option<String>,
}

impl Response {
    /// The first value of a response header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// The links a polite spider follows: all of them, less `nofollow` ones unless the job
    /// follows those too.
    pub fn followable_links(&self) -> impl Iterator<Item = &Link> {
        self.links
            .iter()
            .filter(|l| self.follow_nofollow || !l.nofollow)
    }

    /// The job's declarative rules applied to this page: every item field, and the links
    /// the rules follow (see [`crate::declarative`]). `None` when the job has no rules. Parses
    /// the page into a DOM: call it once per page.
    pub fn extract(&self) -> Option<Extracted> {
        let rules = self.rules.as_ref()?;
        let html = self
            .text
            .as_deref()
            .filter(|_| crate::charset::is_html(&self.content_type));
        let links: Vec<&Link> = self.followable_links().collect();
        Some(rules.apply(html, &self.url, &links))
    }

    /// A request for `url`, found on this page: one hop deeper, the job's priority, this
    /// page as referer, and this request's meta carried over (meta passthrough).
    pub fn follow(&self, url: impl Into<String>) -> CrawlRequest {
        self.request.child(url)
    }

    /// Scrapy Cluster's raw-response item for this page, with kubecrawl's additions: the
    /// body as text or base64, the links, the job's attrs.
    pub fn item(&self) -> PageRecord {
        let (body, body_encoding) = match &self.text {
            Some(text) => (text.clone(), BodyEncoding::Text),
            None => (
                base64::engine::general_purpose::STANDARD.encode(&self.body),
                BodyEncoding::Base64,
            ),
        };
        PageRecord {
            appid: self.job.appid.clone(),
            crawlid: self.job.crawlid.clone(),
            spiderid: self.job.spiderid.clone(),
            url: self.request.url.clone(),
            response_url: self.url.to_string(),
            status_code: self.status,
            status_msg: self.status_msg.clone(),
            response_headers: title_case(&self.headers),
            request_headers: title_case(&self.request_headers),
            body,
            body_encoding,
            body_truncated: self.truncated,
            links: self.links.clone(),
            attrs: self.attrs.clone(),
            timestamp: scrapy_timestamp(self.timestamp),
            encoding: self.encoding.clone().unwrap_or_default(),
            content_type: self.content_type.clone(),
            depth: self.request.depth,
            fetch_time_ms: u64::try_from(self.fetch_time.as_millis()).unwrap_or(u64::MAX),
            redirect_chain: self.redirect_chain.clone(),
            fields: serde_json::Map::new(),
            error: None,
            rendered: self.rendered,
            screenshot: self.screenshot.clone(),
        }
    }
}

/// The spiders a worker binary knows, by name.
#[derive(Clone, Default)]
pub struct Registry {
    spiders: Vec<Arc<dyn Spider>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    /// The built-in spiders: `link` and `wandering`.
    pub fn builtin() -> Self {
        Self::default()
            .with(crate::spiders::link::LinkSpider)
            .with(crate::spiders::wandering::WanderingSpider)
    }

    /// Adds (or replaces) a spider.
    pub fn with(mut self, spider: impl Spider) -> Self {
        self.spiders.retain(|s| s.name() != spider.name());
        self.spiders.push(Arc::new(spider));
        self
    }

    /// The spider named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Spider>> {
        self.spiders.iter().find(|s| s.name() == name).cloned()
    }

    /// Every registered name.
    pub fn names(&self) -> Vec<&str> {
        self.spiders.iter().map(|s| s.name()).collect()
    }
}

/// Header names as Scrapy Cluster's records have them: Scrapy title-cases every name
/// (`content-type` → `Content-Type`, `x-xss-protection` → `X-Xss-Protection`).
fn title_case(headers: &Headers) -> Headers {
    headers
        .iter()
        .map(|(name, values)| {
            let mut titled = String::with_capacity(name.len());
            let mut start = true;
            for c in name.chars() {
                if c.is_ascii_alphabetic() {
                    titled.push(if start {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    });
                    start = false;
                } else {
                    titled.push(c);
                    start = true;
                }
            }
            (titled, values.clone())
        })
        .collect()
}

/// A time as Scrapy Cluster's records write it (Python's `datetime.utcnow().isoformat()`):
/// UTC, microseconds, no offset, e.g. `2026-11-26T10:00:00.123456`.
fn scrapy_timestamp(time: SystemTime) -> String {
    let mut text = humantime::format_rfc3339_micros(time).to_string();
    text.pop(); // the trailing `Z`
    text
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A response builder for spider tests.
    use super::*;

    /// An HTML response at `url` with the given links, depth and meta.
    pub(crate) fn response(url: &str, links: &[&str], depth: u32) -> Response {
        let mut request = CrawlRequest::seed(url, 3);
        request.depth = depth;
        request
            .meta
            .insert("custom".into(), serde_json::json!("kept"));
        Response {
            job: JobRef {
                spiderid: "link".into(),
                appid: "testapp".into(),
                crawlid: "c1".into(),
            },
            request,
            url: Url::parse(url).expect("valid url"),
            status: 200,
            status_msg: "OK".into(),
            headers: Headers::new(),
            request_headers: Headers::new(),
            body: Bytes::from_static(b"<html></html>"),
            truncated: false,
            text: Some("<html></html>".into()),
            encoding: Some("utf-8".into()),
            content_type: "text/html".into(),
            links: links
                .iter()
                .map(|u| Link {
                    url: (*u).to_owned(),
                    text: String::new(),
                    nofollow: false,
                })
                .collect(),
            follow_nofollow: false,
            attrs: serde_json::Map::new(),
            redirect_chain: Vec::new(),
            fetch_time: Duration::from_millis(5),
            timestamp: SystemTime::UNIX_EPOCH,
            rules: None,
            rendered: false,
            screenshot: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::response;
    use super::*;

    #[test]
    fn record_headers_and_timestamp_are_written_as_scrapy_cluster_writes_them() {
        let mut headers = Headers::new();
        headers.insert("content-type".into(), vec!["text/html".into()]);
        headers.insert("x-b3-traceid".into(), vec!["1".into()]);
        headers.insert("etag".into(), vec!["\"a\"".into()]);
        let titled: Vec<String> = title_case(&headers).into_keys().collect();
        assert_eq!(titled, ["Content-Type", "Etag", "X-B3-Traceid"]);
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_151_200_042_000);
        assert_eq!(scrapy_timestamp(t), "2025-11-26T10:00:00.042000");
    }

    #[test]
    fn follow_passes_meta_and_context_through() {
        let r = response("http://site.test/a", &[], 2);
        let child = r.follow("http://site.test/b");
        assert_eq!(child.depth, 3);
        assert_eq!(child.priority, 3);
        assert_eq!(child.meta["custom"], "kept");
        assert_eq!(child.referer.as_deref(), Some("http://site.test/a"));
    }

    #[test]
    fn binary_bodies_become_base64_with_a_marker() {
        let mut r = response("http://site.test/a", &[], 0);
        r.text = None;
        r.body = Bytes::from_static(&[0, 159, 146, 150]);
        let item = r.item();
        assert_eq!(item.body_encoding, BodyEncoding::Base64);
        assert_eq!(item.body, "AJ+Slg==");
    }

    #[test]
    fn nofollow_links_are_not_followable_unless_the_job_says_so() {
        let mut r = response(
            "http://site.test/",
            &["http://site.test/a", "http://site.test/b"],
            0,
        );
        r.links[0].nofollow = true;
        assert_eq!(r.followable_links().count(), 1);
        r.follow_nofollow = true;
        assert_eq!(r.followable_links().count(), 2);
    }

    #[test]
    fn the_registry_finds_builtin_spiders() {
        let registry = Registry::builtin();
        assert_eq!(registry.names(), ["link", "wandering"]);
        assert!(registry.get("link").is_some());
        assert!(registry.get("nope").is_none());
    }
}
