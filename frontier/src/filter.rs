//! Link filters, evaluated in Rust before anything reaches Redis.
//!
//! Lua in Redis has no regular expressions worth the name and every microsecond spent in a
//! script blocks the whole Redis, so the per-link checks that need no shared state run in the
//! client: URL canonicalisation, `maxdepth`, `allowedDomains`, `allowRegex`/`denyRegex`,
//! `denyExtensions`. What needs shared state — dedupe, `domainMaxPages`, `maxPages`, whether
//! the job accepts anything — is decided atomically in the enqueue step. The in-memory twin
//! runs the same filter, so both implementations admit the same links.

use kubecrawl_api::CrawlRequest;
use regex::RegexSet;

use crate::JobPolicy;
use crate::fingerprint::{Fingerprint, canonicalize, fingerprint};
use crate::schedule::clamp_priority;

/// Extensions not followed when a job does not say (`denyExtensions` unset): images, audio,
/// video, office documents, archives and other binaries a crawler of pages has no use for.
pub const DEFAULT_DENY_EXTENSIONS: &[&str] = &[
    // images
    "mng", "pct", "bmp", "gif", "jpg", "jpeg", "png", "pst", "psp", "tif", "tiff", "ai", "drw",
    "dxf", "eps", "ps", "svg", "cdr", "ico", "webp", "avif", "heic", // audio
    "mp3", "wma", "ogg", "wav", "ra", "aac", "mid", "au", "aiff", "flac", "m4a", "opus",
    // video
    "3gp", "asf", "asx", "avi", "mov", "mp4", "mpg", "qt", "rm", "swf", "wmv", "m4v", "mkv", "webm",
    "flv", // office
    "xls", "xlsx", "ppt", "pptx", "pps", "doc", "docx", "odt", "ods", "odg", "odp",
    // other
    "css", "pdf", "exe", "bin", "rss", "dmg", "iso", "apk", "jar", "msi", "deb", "rpm",
    // archives
    "zip", "rar", "gz", "tgz", "bz2", "xz", "7z", "tar", "zst",
];

/// A job policy that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// An `allowRegex` or `denyRegex` entry does not compile.
    #[error("{field} does not compile")]
    Regex {
        /// `allowRegex` or `denyRegex`.
        field: &'static str,
        /// The regex error.
        #[source]
        source: regex::Error,
    },
}

/// Why a link was not admitted by the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not an absolute http(s) URL.
    BadUrl,
    /// Deeper than `maxdepth`.
    TooDeep,
    /// Outside `allowedDomains`.
    Domain,
    /// Matches no `allowRegex`.
    NotAllowed,
    /// Matches a `denyRegex`.
    Denied,
    /// Has a denied extension.
    Extension,
}

/// A request that passed the filter, ready for the enqueue step.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The request, its URL canonicalised and its priority clamped.
    pub request: CrawlRequest,
    /// Its domain (host).
    pub domain: String,
    /// Its dedupe fingerprint.
    pub fingerprint: Fingerprint,
}

impl Prepared {
    /// Canonicalises a request without filtering it (seeds); `None` for an unusable URL.
    pub fn seed(request: &CrawlRequest) -> Option<Self> {
        let canonical = canonicalize(&request.url)?;
        let mut request = request.clone();
        request.priority = clamp_priority(request.priority);
        request.url = canonical.url;
        Some(Self {
            fingerprint: fingerprint(&request.url),
            domain: canonical.domain,
            request,
        })
    }
}

/// A job policy's link filters, compiled.
#[derive(Debug, Clone)]
pub struct LinkFilter {
    maxdepth: u32,
    allowed_domains: Vec<String>,
    allow: Option<RegexSet>,
    deny: Option<RegexSet>,
    deny_extensions: Vec<String>,
}

impl LinkFilter {
    /// Compiles a policy's filters.
    ///
    /// # Errors
    /// [`FilterError::Regex`] when a regex does not compile.
    pub fn new(policy: &JobPolicy) -> Result<Self, FilterError> {
        let set = |field, list: &[String]| -> Result<Option<RegexSet>, FilterError> {
            if list.is_empty() {
                return Ok(None);
            }
            RegexSet::new(list)
                .map(Some)
                .map_err(|source| FilterError::Regex { field, source })
        };
        Ok(Self {
            maxdepth: policy.maxdepth,
            allowed_domains: policy
                .allowed_domains
                .iter()
                .map(|d| d.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
            allow: set("allowRegex", &policy.allow_regex)?,
            deny: set("denyRegex", &policy.deny_regex)?,
            deny_extensions: match &policy.deny_extensions {
                Some(list) => list.iter().map(|e| e.to_ascii_lowercase()).collect(),
                None => DEFAULT_DENY_EXTENSIONS
                    .iter()
                    .map(|e| (*e).to_owned())
                    .collect(),
            },
        })
    }

    /// Checks a discovered link and prepares it for the enqueue step.
    ///
    /// # Errors
    /// The [`Rejection`] naming the first filter that refused it.
    pub fn check(&self, request: &CrawlRequest) -> Result<Prepared, Rejection> {
        if request.depth > self.maxdepth {
            return Err(Rejection::TooDeep);
        }
        let prepared = Prepared::seed(request).ok_or(Rejection::BadUrl)?;
        if !self.allowed_domains.is_empty()
            && !self
                .allowed_domains
                .iter()
                .any(|d| domain_within(&prepared.domain, d))
        {
            return Err(Rejection::Domain);
        }
        // A sitemap (or robots.txt) to read passes the domain filter only: the link filters
        // are for the pages it lists (a `.xml.gz` sitemap is no archive to skip).
        if request.sitemap_role().is_some() {
            return Ok(prepared);
        }
        let url = prepared.request.url.as_str();
        if let Some(deny) = &self.deny
            && deny.is_match(url)
        {
            return Err(Rejection::Denied);
        }
        if let Some(allow) = &self.allow
            && !allow.is_match(url)
        {
            return Err(Rejection::NotAllowed);
        }
        if let Some(ext) = extension(url)
            && self.deny_extensions.contains(&ext)
        {
            return Err(Rejection::Extension);
        }
        Ok(prepared)
    }
}

/// True when `host` is `domain` or one of its subdomains.
pub(crate) fn domain_within(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// The lowercase extension of a URL's last path segment, if it has one.
fn extension(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let last = parsed.path_segments()?.next_back()?;
    let (stem, ext) = last.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str, depth: u32) -> CrawlRequest {
        let mut r = CrawlRequest::seed(url, 1);
        r.depth = depth;
        r
    }

    fn policy() -> JobPolicy {
        JobPolicy {
            maxdepth: 2,
            ..JobPolicy::default()
        }
    }

    #[test]
    fn sitemaps_pass_the_domain_filter_only() {
        let f = LinkFilter::new(&JobPolicy {
            allowed_domains: vec!["a.test".into()],
            allow_regex: vec!["/products/".into()],
            ..JobPolicy::default()
        })
        .expect("compiles");
        let sitemap = |url: &str| {
            CrawlRequest::sitemap(url, 1, kubecrawl_api::SitemapRole::Sitemap { level: 0 })
        };
        assert!(f.check(&sitemap("http://a.test/sitemap.xml.gz")).is_ok());
        assert_eq!(
            f.check(&sitemap("http://b.test/sitemap.xml")),
            Err(Rejection::Domain)
        );
        assert_eq!(
            f.check(&req("http://a.test/sitemap.xml.gz", 0)),
            Err(Rejection::NotAllowed)
        );
    }

    #[test]
    fn depth_beyond_maxdepth_is_filtered() {
        let f = LinkFilter::new(&policy()).expect("compiles");
        assert!(f.check(&req("http://a.test/x", 2)).is_ok());
        assert_eq!(f.check(&req("http://a.test/x", 3)), Err(Rejection::TooDeep));
    }

    #[test]
    fn allowed_domains_admit_subdomains_only() {
        let f = LinkFilter::new(&JobPolicy {
            allowed_domains: vec!["example.org".into()],
            ..policy()
        })
        .expect("compiles");
        assert!(f.check(&req("http://example.org/", 1)).is_ok());
        assert!(f.check(&req("http://www.Example.org/", 1)).is_ok());
        assert_eq!(
            f.check(&req("http://badexample.org/", 1)),
            Err(Rejection::Domain)
        );
        assert_eq!(
            f.check(&req("http://example.org.evil.test/", 1)),
            Err(Rejection::Domain)
        );
    }

    #[test]
    fn deny_wins_over_allow() {
        let f = LinkFilter::new(&JobPolicy {
            allow_regex: vec!["/docs/".into()],
            deny_regex: vec!["private".into()],
            ..policy()
        })
        .expect("compiles");
        assert!(f.check(&req("http://a.test/docs/1", 1)).is_ok());
        assert_eq!(
            f.check(&req("http://a.test/docs/private", 1)),
            Err(Rejection::Denied)
        );
        assert_eq!(
            f.check(&req("http://a.test/blog/1", 1)),
            Err(Rejection::NotAllowed)
        );
    }

    #[test]
    fn default_extensions_are_denied_and_an_empty_list_denies_none() {
        let f = LinkFilter::new(&policy()).expect("compiles");
        assert_eq!(
            f.check(&req("http://a.test/pic.JPG?x=1", 1)),
            Err(Rejection::Extension)
        );
        assert!(f.check(&req("http://a.test/page.html", 1)).is_ok());
        assert!(f.check(&req("http://a.test/dir.zip/", 1)).is_ok());
        let f = LinkFilter::new(&JobPolicy {
            deny_extensions: Some(Vec::new()),
            ..policy()
        })
        .expect("compiles");
        assert!(f.check(&req("http://a.test/pic.jpg", 1)).is_ok());
    }

    #[test]
    fn bad_regex_is_an_error() {
        let err = LinkFilter::new(&JobPolicy {
            deny_regex: vec!["(".into()],
            ..policy()
        })
        .expect_err("must not compile");
        assert!(err.to_string().contains("denyRegex"));
    }

    #[test]
    fn urls_are_canonicalised_and_priorities_clamped() {
        let f = LinkFilter::new(&policy()).expect("compiles");
        let mut r = req("HTTP://A.test/x#top", 1);
        r.priority = i32::MAX;
        let p = f.check(&r).expect("passes");
        assert_eq!(p.request.url, "http://a.test/x");
        assert_eq!(p.domain, "a.test");
        assert_eq!(p.request.priority, crate::schedule::PRIORITY_MAX);
    }
}
