//! Link extraction from HTML.
//!
//! `a` and `area` hrefs are resolved against the page URL or its `<base href>`, canonicalised
//! (lowercase scheme and host, default port and fragment dropped), restricted to http and
//! https, and deduplicated in document order. Anchor text is kept with whitespace collapsed.
//! Links marked `rel="nofollow"`, or all links of a page whose `<meta name="robots">` says
//! `nofollow`, are kept and flagged; whether they are followed is the runtime's decision.
//!
//! `scraper::Html` is not `Send`, so everything here is synchronous and returns owned data.

use std::collections::HashSet;
use std::sync::LazyLock;

use kubecrawl_api::Link;
use kubecrawl_frontier::fingerprint::canonicalize;
use scraper::{Html, Selector};
use url::Url;

/// The most links kept from one page; a page with more is a trap or a sitemap dump.
pub const MAX_LINKS_PER_PAGE: usize = 10_000;
/// The longest anchor text kept, in characters.
const MAX_LINK_TEXT: usize = 256;
/// The longest URL followed, in bytes; longer ones are dropped (the repeating-path trap).
pub const MAX_URL_LEN: usize = 2048;

static LINKS: LazyLock<Selector> =
    LazyLock::new(|| Selector::parse("a[href], area[href]").expect("a constant, valid selector"));
static BASE: LazyLock<Selector> =
    LazyLock::new(|| Selector::parse("base[href]").expect("a constant, valid selector"));
static META_ROBOTS: LazyLock<Selector> = LazyLock::new(|| {
    Selector::parse("meta[name=robots], meta[name=ROBOTS], meta[name=Robots]")
        .expect("a constant, valid selector")
});

/// Extracts the links of an HTML document served from `page_url`.
pub fn links(html: &str, page_url: &Url) -> Vec<Link> {
    let doc = Html::parse_document(html);
    let base = doc
        .select(&BASE)
        .next()
        .and_then(|b| b.value().attr("href"))
        .and_then(|href| page_url.join(href.trim()).ok())
        .unwrap_or_else(|| page_url.clone());
    let page_nofollow = doc.select(&META_ROBOTS).any(|m| {
        m.value().attr("content").is_some_and(|c| {
            c.to_ascii_lowercase()
                .split(',')
                .any(|d| matches!(d.trim(), "nofollow" | "none"))
        })
    });

    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for element in doc.select(&LINKS) {
        let Some(href) = element.value().attr("href") else {
            continue;
        };
        let Ok(absolute) = base.join(href.trim()) else {
            continue;
        };
        let Some(canonical) = canonicalize(absolute.as_str()) else {
            continue;
        };
        if canonical.url.len() > MAX_URL_LEN || !seen.insert(canonical.url.clone()) {
            continue;
        }
        let nofollow = page_nofollow
            || element.value().attr("rel").is_some_and(|rel| {
                rel.split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("nofollow"))
            });
        let text = collapse_whitespace(&element.text().collect::<String>());
        out.push(Link {
            url: canonical.url,
            text,
            nofollow,
        });
        if out.len() == MAX_LINKS_PER_PAGE {
            break;
        }
    }
    out
}

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_LINK_TEXT));
    for word in text.split_whitespace() {
        if out.chars().count() + word.chars().count() + 1 > MAX_LINK_TEXT {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(html: &str, page: &str) -> Vec<String> {
        links(html, &Url::parse(page).expect("valid"))
            .into_iter()
            .map(|l| l.url)
            .collect()
    }

    #[test]
    fn resolves_relative_links_and_drops_fragments_and_other_schemes() {
        let html = r#"<a href="b.html#top">B</a> <a href="/c?x=1">C</a>
            <a href="mailto:a@b.c">m</a> <a href="javascript:void(0)">j</a> <a href="tel:1">t</a>
            <map><area href="HTTP://Site.TEST:80/d"></map> <a href="b.html">again</a>"#;
        assert_eq!(
            urls(html, "http://site.test/a/index.html"),
            [
                "http://site.test/a/b.html",
                "http://site.test/c?x=1",
                "http://site.test/d"
            ]
        );
    }

    #[test]
    fn base_href_changes_resolution() {
        let html = r#"<head><base href="http://other.test/dir/"></head><a href="x">x</a>"#;
        assert_eq!(urls(html, "http://site.test/"), ["http://other.test/dir/x"]);
    }

    #[test]
    fn nofollow_is_flagged_per_link_and_per_page() {
        let page = Url::parse("http://site.test/").expect("valid");
        let got = links(
            r#"<a href="/a" rel="external NoFollow">a</a><a href="/b">b</a>"#,
            &page,
        );
        assert_eq!(
            got.iter().map(|l| l.nofollow).collect::<Vec<_>>(),
            [true, false]
        );
        let got = links(
            r#"<meta name="robots" content="noindex, nofollow"><a href="/b">b</a>"#,
            &page,
        );
        assert!(got[0].nofollow);
    }

    #[test]
    fn keeps_collapsed_link_text() {
        let page = Url::parse("http://site.test/").expect("valid");
        let got = links("<a href='/a'>  Hello\n   <b>world</b> </a>", &page);
        assert_eq!(got[0].text, "Hello world");
    }

    #[test]
    fn malformed_html_still_yields_links() {
        let html = "<html><body><div><a href='/one'>one<p><a href=/two>two</div></table>\u{0}<a href=\"/three\"";
        let got = urls(html, "http://site.test/");
        assert!(got.contains(&"http://site.test/one".to_string()), "{got:?}");
        assert!(got.contains(&"http://site.test/two".to_string()), "{got:?}");
    }

    #[test]
    fn overlong_urls_are_dropped() {
        let long = "a".repeat(MAX_URL_LEN);
        let html = format!("<a href='/{long}'>x</a><a href='/ok'>ok</a>");
        assert_eq!(urls(&html, "http://site.test/"), ["http://site.test/ok"]);
    }
}
