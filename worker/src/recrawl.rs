//! Recrawl rounds, as a worker sees them: conditional requests, and whether a page changed.
//!
//! A recrawling job's request for a page an earlier round fetched carries that page's
//! [`Validators`] in its meta. The worker sends them back as `If-None-Match` (the ETag) and
//! `If-Modified-Since` (the Last-Modified), and judges the answer ([`verdict`]):
//!
//! - `304 Not Modified`, or the same status and body as the previous round recorded (a server
//!   that ignores conditional requests, or a page without validators): **unchanged**. The
//!   page is counted (with its status code) and in the job's `unchanged` counter; no record
//!   is published and its links are not followed again (the previous round queued them, and
//!   the frontier remembers them).
//! - Any other answer for a page fetched before: **changed**. Published as usual, links
//!   followed, counted in `changed`.
//! - A page not fetched before: handled as in a one-round crawl.
//!
//! The page's request goes back to the frontier with what this answer taught ([`learnt`]):
//! the frontier keeps it for the next round. Except a page gone for good
//! ([`gone_for_good`]): a 404 or 410 that answered the same in the previous round is
//! forgotten, so dead pages are not asked for round after round (it comes back, as a new
//! page, when a changed page links to it).

use kubecrawl_api::Validators;

use crate::fetch::Fetched;

/// The job counter of pages that did not change since the previous round.
pub const UNCHANGED: &str = "unchanged";
/// The job counter of pages that changed since the previous round.
pub const CHANGED: &str = "changed";

/// What a round's answer says about a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 304, or the same status and body as before: counted, not published.
    Unchanged,
    /// Fetched before, answered differently now: published, links followed.
    Changed,
    /// Not fetched before: handled as any page.
    New,
}

/// Judges `page`, the answer to a request that carried `previous` (none: not fetched before).
pub fn verdict(previous: Option<&Validators>, page: &Fetched) -> Verdict {
    let Some(previous) = previous else {
        return Verdict::New;
    };
    if page.status == 304
        || previous
            .digest
            .as_ref()
            .is_some_and(|d| *d == digest(page.status, &page.body))
    {
        Verdict::Unchanged
    } else {
        Verdict::Changed
    }
}

/// Whether an unchanged answer says the page is gone (404 Not Found or 410 Gone, the same
/// as in the previous round): it is not remembered for the next round.
pub fn gone_for_good(page: &Fetched) -> bool {
    matches!(page.status, 404 | 410)
}

/// What the next round should send for this page: the answer's ETag and Last-Modified (a
/// 304 may omit them: then the previous ones stay), and the digest of its status and body (a
/// 304 keeps the previous one).
pub fn learnt(previous: Option<&Validators>, page: &Fetched) -> Validators {
    let header = |name: &str| page.header(name).map(str::to_owned);
    if page.status == 304 {
        let previous = previous.cloned().unwrap_or_default();
        return Validators {
            etag: header("etag").or(previous.etag),
            last_modified: header("last-modified").or(previous.last_modified),
            digest: previous.digest,
        };
    }
    Validators {
        etag: header("etag"),
        last_modified: header("last-modified"),
        digest: Some(digest(page.status, &page.body)),
    }
}

/// An answer's digest: 32 hex digits of xxh3-128 over its status code and body (a
/// fingerprint, not a security hash: a server that wants a page refetched changes its body or
/// its ETag).
pub fn digest(status: u16, body: &[u8]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&status.to_be_bytes());
    hasher.update(body);
    format!("{:032x}", hasher.digest128())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use kubecrawl_api::page::Headers;

    use super::*;

    fn page(status: u16, headers: &[(&str, &str)], body: &'static [u8]) -> Fetched {
        let mut map = Headers::new();
        for (name, value) in headers {
            map.entry((*name).to_owned())
                .or_default()
                .push((*value).to_owned());
        }
        Fetched {
            final_url: url::Url::parse("http://example.org/a").expect("url"),
            redirect_chain: Vec::new(),
            status,
            status_msg: String::new(),
            headers: map,
            request_headers: Headers::new(),
            body: Bytes::from_static(body),
            truncated: false,
            encoded: None,
            elapsed: Duration::ZERO,
            version: reqwest::Version::HTTP_11,
            remote_addr: None,
        }
    }

    fn known(body: &[u8]) -> Validators {
        Validators {
            etag: Some("\"v1\"".to_owned()),
            last_modified: Some("Mon, 30 Nov 2026 10:00:00 GMT".to_owned()),
            digest: Some(digest(200, body)),
        }
    }

    #[test]
    fn a_page_not_fetched_before_is_new() {
        assert_eq!(verdict(None, &page(200, &[], b"a")), Verdict::New);
        assert_eq!(verdict(None, &page(304, &[], b"")), Verdict::New);
    }

    #[test]
    fn not_modified_and_the_same_answer_are_unchanged_another_changed() {
        let before = known(b"<p>one</p>");
        assert_eq!(
            verdict(Some(&before), &page(304, &[], b"")),
            Verdict::Unchanged
        );
        assert_eq!(
            verdict(Some(&before), &page(200, &[], b"<p>one</p>")),
            Verdict::Unchanged,
            "a server that ignores If-None-Match sends the same body"
        );
        assert_eq!(
            verdict(Some(&before), &page(200, &[], b"<p>two</p>")),
            Verdict::Changed
        );
        assert_eq!(
            verdict(Some(&before), &page(500, &[], b"<p>one</p>")),
            Verdict::Changed,
            "the same body under another status is a change"
        );
        let gone = Validators {
            digest: Some(digest(404, b"gone")),
            ..Validators::default()
        };
        assert_eq!(
            verdict(Some(&gone), &page(404, &[], b"gone")),
            Verdict::Unchanged,
            "a page still missing is not published again"
        );
        let no_digest = Validators {
            digest: None,
            ..before
        };
        assert_eq!(
            verdict(Some(&no_digest), &page(200, &[], b"<p>one</p>")),
            Verdict::Changed
        );
    }

    #[test]
    fn validators_come_from_the_answer_and_a_304_keeps_what_it_omits() {
        let before = known(b"<p>one</p>");
        let fresh = learnt(
            Some(&before),
            &page(200, &[("etag", "\"v2\"")], b"<p>two</p>"),
        );
        assert_eq!(fresh.etag.as_deref(), Some("\"v2\""));
        assert_eq!(fresh.last_modified, None, "the new answer gave none");
        assert_eq!(fresh.digest, Some(digest(200, b"<p>two</p>")));
        let same = learnt(Some(&before), &page(304, &[("etag", "\"v1b\"")], b""));
        assert_eq!(same.etag.as_deref(), Some("\"v1b\""));
        assert_eq!(same.last_modified, before.last_modified);
        assert_eq!(same.digest, before.digest, "a 304 has no body to digest");
    }

    #[test]
    fn only_missing_and_gone_pages_are_gone_for_good() {
        assert!(gone_for_good(&page(404, &[], b"")));
        assert!(gone_for_good(&page(410, &[], b"")));
        for status in [200, 301, 304, 403, 500] {
            assert!(!gone_for_good(&page(status, &[], b"")), "{status}");
        }
    }

    #[test]
    fn digests_differ_for_different_answers() {
        assert_eq!(digest(200, b"a").len(), 32);
        assert_ne!(digest(200, b"a"), digest(200, b"b"));
        assert_ne!(digest(200, b"a"), digest(404, b"a"));
        assert_eq!(digest(200, b"a"), digest(200, b"a"));
    }
}
