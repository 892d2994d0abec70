//! Sitemaps (sitemaps.org): what a sitemap, a sitemap index or a robots.txt lists.
//!
//! A job's sitemap requests carry [`kubecrawl_api::SITEMAP_META`] in their meta; the worker
//! fetches them like pages (robots.txt rules, politeness, retries) and then, instead of
//! running the spider, reads them here:
//!
//! - a robots.txt: its `Sitemap:` lines ([`robots_sitemaps`]);
//! - a sitemap: XML `<urlset>` (pages), XML `<sitemapindex>` (more sitemaps) or plain text
//!   (one URL per line), any of them gzipped (by its bytes, whatever the headers say)
//!   ([`read`]).
//!
//! Bounds, from the protocol: a sitemap is read up to [`MAX_BYTES`] decompressed and
//! [`MAX_ENTRIES`] entries; a sitemap index more than [`MAX_LEVEL`] indexes deep is not read.
//! Whatever is past a bound, or cannot be parsed, is a [`Problem`]: the entries read before it
//! are kept and the problem is counted, never fatal to the crawl.

use std::borrow::Cow;
use std::io::Read as _;
use std::time::SystemTime;

use quick_xml::events::Event;
use url::Url;

/// The most bytes of one sitemap read, decompressed (the protocol's 50 MiB).
pub const MAX_BYTES: usize = 50 * 1024 * 1024;
/// The most entries (pages or sitemaps) read from one sitemap (the protocol's 50,000).
pub const MAX_ENTRIES: usize = 50_000;
/// The deepest sitemap read: a sitemap the job names or a robots.txt lists is level 0, one
/// listed by an index at level `n` is level `n + 1`. Indexes should not nest at all; sites that
/// nest them rarely go past two.
pub const MAX_LEVEL: u32 = 2;
/// The most `Sitemap:` lines taken from one robots.txt.
pub const MAX_ROBOTS_SITEMAPS: usize = 100;

/// What one sitemap lists.
#[derive(Debug, Default, PartialEq)]
pub struct Listing {
    /// Page URLs, in document order (absolute http(s) only).
    pub pages: Vec<String>,
    /// Sitemap URLs (a sitemap index's entries).
    pub sitemaps: Vec<String>,
    /// Page entries left out because their lastmod is before the job's `modifiedSince`.
    pub unmodified: u64,
    /// Entries whose `loc` is not an absolute http(s) URL, left out.
    pub invalid: u64,
    /// Why the sitemap was not read whole, if it was not.
    pub problem: Option<Problem>,
}

/// Why a sitemap was not (wholly) usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not XML the parser accepts, or XML that is neither a `urlset` nor a `sitemapindex`.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Longer than [`MAX_BYTES`] decompressed, or cut at the worker's body cap: read up to
    /// the cut.
    #[error("too large: read up to {0} bytes")]
    TooLarge(usize),
    /// More than [`MAX_ENTRIES`] entries: the first ones were read.
    #[error("more than {MAX_ENTRIES} entries: the rest were left out")]
    TooManyEntries,
    /// A gzip stream that does not decompress.
    #[error("bad gzip data: {0}")]
    Gzip(String),
}

impl Problem {
    /// A short, fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::TooLarge(_) => "too_large",
            Self::TooManyEntries => "too_many_entries",
            Self::Gzip(_) => "bad_gzip",
        }
    }
}

/// The sitemap URLs a robots.txt lists (`Sitemap:` lines, any case; relative ones resolved
/// against the file's URL), at most [`MAX_ROBOTS_SITEMAPS`], in order, without repeats.
pub fn robots_sitemaps(body: &[u8], base: &Url) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("sitemap") {
            continue;
        }
        if let Some(url) = absolute(base, value.trim())
            && !out.contains(&url)
        {
            out.push(url);
        }
        if out.len() >= MAX_ROBOTS_SITEMAPS {
            break;
        }
    }
    out
}

/// Reads a sitemap's body. `truncated`: the fetcher cut the body at its cap. Pages whose
/// lastmod is before `modified_since` are counted, not listed.
pub fn read(body: &[u8], truncated: bool, modified_since: Option<SystemTime>) -> Listing {
    let mut listing = Listing::default();
    let (bytes, cut) = match decompress(body) {
        Ok(pair) => pair,
        Err(problem) => {
            listing.problem = Some(problem);
            return listing;
        }
    };
    let cut = cut || truncated;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    let result = if text.starts_with('<') {
        read_xml(text, modified_since, &mut listing)
    } else {
        read_text(text, &mut listing)
    };
    listing.problem = match result {
        Err(Problem::Malformed(_)) | Ok(()) if cut => Some(Problem::TooLarge(bytes.len())),
        Err(problem) => Some(problem),
        Ok(()) => None,
    };
    listing
}

/// The body, gunzipped when it starts with gzip's magic bytes, up to [`MAX_BYTES`]; and
/// whether it was cut there.
fn decompress(body: &[u8]) -> Result<(Cow<'_, [u8]>, bool), Problem> {
    if !body.starts_with(&[0x1f, 0x8b]) {
        return Ok(if body.len() > MAX_BYTES {
            (Cow::Borrowed(&body[..MAX_BYTES]), true)
        } else {
            (Cow::Borrowed(body), false)
        });
    }
    let mut out = Vec::new();
    let limit = u64::try_from(MAX_BYTES).unwrap_or(u64::MAX) + 1;
    match flate2::read::MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
    {
        Ok(_) => {}
        // A stream cut short (the body cap) still yields what was decompressed before.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {
            return Ok((Cow::Owned(out), true));
        }
        Err(e) => return Err(Problem::Gzip(e.to_string())),
    }
    let cut = out.len() > MAX_BYTES;
    out.truncate(MAX_BYTES);
    Ok((Cow::Owned(out), cut))
}

/// Which element's text is being read.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    None,
    Loc,
    Lastmod,
}

fn read_xml(
    text: &str,
    modified_since: Option<SystemTime>,
    listing: &mut Listing,
) -> Result<(), Problem> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    // `Some(true)`: a sitemap index; `Some(false)`: a urlset; `None`: no root seen yet.
    let mut index: Option<bool> = None;
    let mut in_entry = false;
    let mut field = Field::None;
    let (mut loc, mut lastmod) = (String::new(), String::new());
    let mut entries = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| Problem::Malformed(format!("{e} at byte {}", reader.error_position())))?;
        match event {
            Event::Start(e) => {
                let name = e.local_name();
                match (name.as_ref(), index) {
                    ("urlset", None) => index = Some(false),
                    ("sitemapindex", None) => index = Some(true),
                    (_, None) => {
                        return Err(Problem::Malformed(format!(
                            "the root element is <{}>, not <urlset> or <sitemapindex>",
                            name.as_ref()
                        )));
                    }
                    ("url", Some(false)) | ("sitemap", Some(true)) => {
                        in_entry = true;
                        loc.clear();
                        lastmod.clear();
                    }
                    ("loc", _) if in_entry => field = Field::Loc,
                    ("lastmod", _) if in_entry => field = Field::Lastmod,
                    _ => field = Field::None,
                }
            }
            Event::End(e) => {
                let name = e.local_name();
                match name.as_ref() {
                    "url" | "sitemap" if in_entry => {
                        in_entry = false;
                        entries += 1;
                        if entries > MAX_ENTRIES {
                            return Err(Problem::TooManyEntries);
                        }
                        take_entry(index == Some(true), &loc, &lastmod, modified_since, listing);
                    }
                    _ => field = Field::None,
                }
            }
            Event::Text(t) => push_text(field, &t.xml10_content(), &mut loc, &mut lastmod),
            Event::CData(t) => push_text(field, &t, &mut loc, &mut lastmod),
            Event::GeneralRef(r) => {
                let resolved = match &*r {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    _ => r.resolve_char_ref().ok().flatten(),
                };
                if let Some(c) = resolved {
                    push_text(field, c.encode_utf8(&mut [0; 4]), &mut loc, &mut lastmod);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if index.is_none() {
        return Err(Problem::Malformed(
            "no <urlset> or <sitemapindex> element".to_owned(),
        ));
    }
    Ok(())
}

fn push_text(field: Field, text: &str, loc: &mut String, lastmod: &mut String) {
    match field {
        Field::Loc => loc.push_str(text),
        Field::Lastmod => lastmod.push_str(text),
        Field::None => {}
    }
}

fn take_entry(
    index: bool,
    loc: &str,
    lastmod: &str,
    modified_since: Option<SystemTime>,
    listing: &mut Listing,
) {
    let Some(url) = Url::parse(loc.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
    else {
        listing.invalid += 1;
        return;
    };
    if index {
        listing.sitemaps.push(url.into());
        return;
    }
    let old = modified_since
        .zip(lastmod_time(lastmod))
        .is_some_and(|(since, modified)| modified < since);
    if old {
        listing.unmodified += 1;
    } else {
        listing.pages.push(url.into());
    }
}

fn read_text(text: &str, listing: &mut Listing) -> Result<(), Problem> {
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if listing.pages.len() + usize::try_from(listing.invalid).unwrap_or(usize::MAX)
            >= MAX_ENTRIES
        {
            return Err(Problem::TooManyEntries);
        }
        match Url::parse(line) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                listing.pages.push(u.into());
            }
            _ => listing.invalid += 1,
        }
    }
    if listing.pages.is_empty() && listing.invalid > 0 {
        return Err(Problem::Malformed(
            "neither XML nor a list of URLs".to_owned(),
        ));
    }
    Ok(())
}

/// A sitemap `<lastmod>` (W3C Datetime: a date, or a date and time with a zone) as a time;
/// `None` when it cannot be read.
fn lastmod_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(SystemTime::from(ts));
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    let ts = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(SystemTime::from(ts))
}

fn absolute(base: &Url, value: &str) -> Option<String> {
    base.join(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Duration;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).expect("gzips");
        encoder.finish().expect("gzips")
    }

    const URLSET: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>http://a.test/one</loc><lastmod>2026-01-02</lastmod></url>
  <url><loc> http://a.test/two?x=1&amp;y=2 </loc><lastmod>2026-06-01T10:00:00+02:00</lastmod></url>
  <url><loc><![CDATA[http://a.test/three]]></loc></url>
  <url><loc>mailto:someone@a.test</loc></url>
</urlset>"#;

    #[test]
    fn a_urlset_lists_its_pages() {
        let listing = read(URLSET.as_bytes(), false, None);
        assert_eq!(
            listing.pages,
            [
                "http://a.test/one",
                "http://a.test/two?x=1&y=2",
                "http://a.test/three"
            ]
        );
        assert_eq!((listing.invalid, listing.unmodified), (1, 0));
        assert_eq!(listing.problem, None);
        assert!(listing.sitemaps.is_empty());
    }

    #[test]
    fn lastmod_before_modified_since_is_left_out() {
        let since = SystemTime::from(
            "2026-03-01T00:00:00Z"
                .parse::<jiff::Timestamp>()
                .expect("time"),
        );
        let listing = read(URLSET.as_bytes(), false, Some(since));
        // one (January) is older; two (June) is newer; three has no lastmod and is kept.
        assert_eq!(
            listing.pages,
            ["http://a.test/two?x=1&y=2", "http://a.test/three"]
        );
        assert_eq!(listing.unmodified, 1);
    }

    #[test]
    fn lastmod_reads_dates_and_times_with_zones() {
        let day = lastmod_time("2026-01-02").expect("a date");
        let noon = lastmod_time("2026-01-02T12:00:00Z").expect("a time");
        assert_eq!(
            noon.duration_since(day).ok(),
            Some(Duration::from_secs(12 * 3600))
        );
        let shifted = lastmod_time("2026-01-02T14:00:00+02:00").expect("a zoned time");
        assert_eq!(shifted, noon);
        assert_eq!(lastmod_time("last tuesday"), None);
        assert_eq!(lastmod_time(""), None);
    }

    #[test]
    fn an_index_lists_sitemaps_and_gzip_is_read_by_its_bytes() {
        let index = r#"<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <sitemap><loc>http://a.test/s1.xml.gz</loc><lastmod>2020-01-01</lastmod></sitemap>
            <sitemap><loc>http://a.test/s2.xml</loc></sitemap>
        </sitemapindex>"#;
        let since = SystemTime::now();
        let listing = read(&gzip(index.as_bytes()), false, Some(since));
        // An index's lastmod does not filter: a sitemap may list new pages whatever its date.
        assert_eq!(
            listing.sitemaps,
            ["http://a.test/s1.xml.gz", "http://a.test/s2.xml"]
        );
        assert!(listing.pages.is_empty());
        assert_eq!(listing.problem, None);
    }

    #[test]
    fn a_text_sitemap_lists_a_url_per_line() {
        let listing = read(
            b"http://a.test/1\n\n  http://a.test/2  \nnot a url\n",
            false,
            None,
        );
        assert_eq!(listing.pages, ["http://a.test/1", "http://a.test/2"]);
        assert_eq!(listing.invalid, 1);
        assert_eq!(listing.problem, None);
    }

    #[test]
    fn malformed_sitemaps_keep_what_was_read_and_name_the_problem() {
        let broken =
            "<urlset><url><loc>http://a.test/kept</loc></url><url><loc>http://a.test/x</url>";
        let listing = read(broken.as_bytes(), false, None);
        assert_eq!(listing.pages, ["http://a.test/kept"]);
        assert!(
            matches!(&listing.problem, Some(Problem::Malformed(m)) if !m.is_empty()),
            "{listing:?}"
        );

        let html = read(b"<html><body>not found</body></html>", false, None);
        assert!(
            matches!(&html.problem, Some(Problem::Malformed(m)) if m.contains("<html>")),
            "{html:?}"
        );
        let junk = read(b"\x00\x01 garbage", false, None);
        assert!(
            matches!(junk.problem, Some(Problem::Malformed(_))),
            "{junk:?}"
        );
        let gz = read(
            &[0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8],
            false,
            None,
        );
        assert!(
            matches!(
                gz.problem,
                Some(Problem::Gzip(_)) | Some(Problem::TooLarge(_))
            ),
            "{gz:?}"
        );
    }

    #[test]
    fn a_body_cut_at_the_cap_is_read_up_to_the_cut() {
        let cut = &URLSET.as_bytes()[..URLSET.find("three").expect("in the urlset")];
        let listing = read(cut, true, None);
        assert_eq!(
            listing.pages,
            ["http://a.test/one", "http://a.test/two?x=1&y=2"]
        );
        assert!(
            matches!(listing.problem, Some(Problem::TooLarge(_))),
            "{listing:?}"
        );
    }

    #[test]
    fn entries_past_the_bound_are_left_out() {
        let mut xml = String::from("<urlset>");
        for i in 0..=MAX_ENTRIES {
            xml.push_str(&format!("<url><loc>http://a.test/{i}</loc></url>"));
        }
        xml.push_str("</urlset>");
        let listing = read(xml.as_bytes(), false, None);
        assert_eq!(listing.pages.len(), MAX_ENTRIES);
        assert_eq!(listing.problem, Some(Problem::TooManyEntries));
    }

    #[test]
    fn robots_txt_sitemap_lines_are_read_in_any_case() {
        let base = Url::parse("http://a.test/robots.txt").expect("url");
        let body = b"User-agent: *\nDisallow: /private\nSitemap: http://a.test/sitemap.xml\nsitemap:/relative.xml # comment\nSITEMAP: http://a.test/sitemap.xml\nSitemap: ftp://a.test/x\n";
        assert_eq!(
            robots_sitemaps(body, &base),
            ["http://a.test/sitemap.xml", "http://a.test/relative.xml"]
        );
    }
}
