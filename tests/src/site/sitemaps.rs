//! The sitemaps of `site.test`, served when [`SiteConfig::sitemaps`] is on, and what reading
//! them must find.
//!
//! robots.txt then names `/sitemap.xml` (`Sitemap:` line), a sitemap index of:
//!
//! | path | what |
//! |---|---|
//! | `/sitemaps/pages-0.xml.gz` | a gzipped `urlset` (served as `application/gzip`, no `Content-Encoding`) of the even main pages |
//! | `/sitemaps/pages-1.xml` | a `urlset` of the odd main pages, with a namespace prefix and `&amp;`-free CDATA locs |
//! | `/sitemaps/text.txt` | a plain-text sitemap: `/p/0` and `/p/1` again (dedupe) and a line that is no URL |
//! | `/sitemaps/nested.xml` | an index of `/sitemaps/deeper.xml`, itself an index of `/sitemaps/deepest.xml`: three indexes deep, past the bound, so `deepest.xml` is never fetched |
//! | `/sitemaps/broken.xml` | lists `/private/press/0`, then breaks off mid-element: malformed |
//! | `/sitemaps/missing.xml` | 404 |
//!
//! Every main page `/p/{i}` has the lastmod `2026-01-01` plus `i % 28` days (a date for even
//! pages, a date and time with a zone for odd ones), so a `modifiedSince` keeps a known part.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::config::SiteConfig;
use super::render::Prepared;

/// 2026-01-01T00:00:00Z, the first lastmod.
const FIRST_LASTMOD_SECS: u64 = 1_767_225_600;
/// Lastmods cycle over this many days.
const LASTMOD_DAYS: u32 = 28;

/// What a crawl that reads the site's sitemaps (from its robots.txt) must find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitemapTruth {
    /// The page URLs the sitemaps list and a crawl queues (after `modifiedSince`), deduped.
    pub pages: BTreeSet<String>,
    /// Sitemaps and indexes read (a 2xx answer): `/sitemap.xml`, both page sitemaps, the text
    /// sitemap, `nested.xml`, `deeper.xml` and `broken.xml`.
    pub read: u64,
    /// Sitemaps not read whole: `missing.xml` (404), `broken.xml` (malformed) and
    /// `deeper.xml` (an index too deep to follow).
    pub failed: u64,
    /// Page URLs listed and handed on, repeats included.
    pub urls: u64,
    /// Page URLs left out by `modifiedSince`.
    pub unmodified: u64,
    /// Sitemap-side fetches: the robots.txt read for its `Sitemap:` line and every sitemap
    /// fetched (all but `deepest.xml`).
    pub fetches: u64,
}

/// The lastmod of main page `i`.
pub fn lastmod(i: usize) -> SystemTime {
    let day = u64::try_from(i).unwrap_or(0) % u64::from(LASTMOD_DAYS);
    UNIX_EPOCH + Duration::from_secs(FIRST_LASTMOD_SECS + day * 86_400)
}

fn lastmod_text(i: usize) -> String {
    let day = i % LASTMOD_DAYS as usize + 1;
    if i.is_multiple_of(2) {
        format!("2026-01-{day:02}")
    } else {
        // The same instant written with a zone two hours ahead.
        format!("2026-01-{day:02}T02:00:00+02:00")
    }
}

/// The ground truth of a sitemap crawl of a site with `config` on `port`.
pub fn truth(config: &SiteConfig, port: u16, modified_since: Option<SystemTime>) -> SitemapTruth {
    let url = |path: &str| format!("http://site.test:{port}{path}");
    let mut pages = BTreeSet::new();
    let (mut urls, mut unmodified) = (0, 0);
    for i in 0..config.pages {
        if modified_since.is_some_and(|since| lastmod(i) < since) {
            unmodified += 1;
        } else {
            pages.insert(url(&format!("/p/{i}")));
            urls += 1;
        }
    }
    // The text sitemap has no lastmods: its two pages are queued whatever modifiedSince says.
    for i in 0..2.min(config.pages) {
        pages.insert(url(&format!("/p/{i}")));
        urls += 1;
    }
    pages.insert(url("/private/press/0"));
    urls += 1;
    SitemapTruth {
        pages,
        read: 7,
        failed: 3,
        urls,
        unmodified,
        fetches: 9,
    }
}

/// The `Sitemap:` line robots.txt carries.
pub(crate) fn robots_line(port: u16) -> String {
    format!("Sitemap: http://site.test:{port}/sitemap.xml\n")
}

/// The answer for `path` on `site.test`, when it is one of the sitemaps.
pub(crate) fn prepare(config: &SiteConfig, port: u16, path: &str) -> Option<Prepared> {
    let url = |path: &str| format!("http://site.test:{port}{path}");
    let index = |locs: &[&str]| {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
        );
        for loc in locs {
            let _ = writeln!(xml, "  <sitemap><loc>{}</loc></sitemap>", url(loc));
        }
        xml.push_str("</sitemapindex>\n");
        xml
    };
    let body = match path {
        "/sitemap.xml" => index(&[
            "/sitemaps/pages-0.xml.gz",
            "/sitemaps/pages-1.xml",
            "/sitemaps/text.txt",
            "/sitemaps/nested.xml",
            "/sitemaps/broken.xml",
            "/sitemaps/missing.xml",
        ]),
        "/sitemaps/pages-0.xml.gz" => {
            let mut xml = String::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
            );
            for i in (0..config.pages).step_by(2) {
                let _ = writeln!(
                    xml,
                    "  <url><loc>{}</loc><lastmod>{}</lastmod><changefreq>daily</changefreq></url>",
                    url(&format!("/p/{i}")),
                    lastmod_text(i)
                );
            }
            xml.push_str("</urlset>\n");
            return Some(Prepared::ok("application/gzip", gzip(xml.as_bytes())));
        }
        "/sitemaps/pages-1.xml" => {
            let mut xml = String::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sm:urlset xmlns:sm=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
            );
            for i in (1..config.pages).step_by(2) {
                let _ = writeln!(
                    xml,
                    "  <sm:url>\n    <sm:loc><![CDATA[{}]]></sm:loc>\n    <sm:lastmod>{}</sm:lastmod>\n  </sm:url>",
                    url(&format!("/p/{i}")),
                    lastmod_text(i)
                );
            }
            xml.push_str("</sm:urlset>\n");
            xml
        }
        "/sitemaps/text.txt" => {
            return Some(Prepared::ok(
                "text/plain; charset=utf-8",
                format!("{}\n{}\nnot a url\n", url("/p/0"), url("/p/1")),
            ));
        }
        "/sitemaps/nested.xml" => index(&["/sitemaps/deeper.xml"]),
        "/sitemaps/deeper.xml" => index(&["/sitemaps/deepest.xml"]),
        "/sitemaps/deepest.xml" => {
            format!("<urlset><url><loc>{}</loc></url></urlset>\n", url("/p/0"))
        }
        "/sitemaps/broken.xml" => format!(
            "<urlset><url><loc>{}</loc></url><url><loc>{}</url>\n",
            url("/private/press/0"),
            url("/p/0")
        ),
        _ => return None,
    };
    Some(Prepared::ok("application/xml", body))
}

fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    Bytes::from(encoder.finish().unwrap_or_default())
}
