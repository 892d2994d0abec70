//! The traps: their paths, the bodies that make them traps, and what a crawler should make of
//! each (the catalogue in [`TrapInfo`], the expected decoded text of [`CHARSET_CASES`]).
//!
//! Every trap is served whether or not [`SiteConfig::with_traps`] is set; the flag only links
//! the index `/traps` from the root.
//!
//! [`SiteConfig::with_traps`]: super::SiteConfig::with_traps

use std::io::Write as _;

use bytes::{Bytes, BytesMut};

use super::model::Prng;

/// `/trap/loop/a`: 302 to `/trap/loop/b`, which 302s back to `/trap/loop/a`.
pub const LOOP: &str = "/trap/loop/a";
/// `/trap/chain/0`: 302 to `/trap/chain/1`, … up to `/trap/chain/{chain_len}` (a 200 page).
pub const CHAIN: &str = "/trap/chain/0";
/// `/trap/short/0`: 301, 307 and 308 to `/trap/short/3` (a 200 page), within any sane limit.
pub const SHORT_CHAIN: &str = "/trap/short/0";
/// `/trap/offsite`: 302 to `http://other.test:PORT/o/landing`.
pub const OFFSITE: &str = "/trap/offsite";
/// `/trap/status/404`. Any `/trap/status/{4xx|5xx}` answers that status (429 and 503 with
/// `Retry-After: 1`); 404, 410 and 500 are linked from the index.
pub const NOT_FOUND: &str = "/trap/status/404";
/// `/trap/status/410`.
pub const GONE: &str = "/trap/status/410";
/// `/trap/status/500`.
pub const SERVER_ERROR: &str = "/trap/status/500";
/// `/trap/flaky/429`: 429 with `Retry-After: 1` for the first `flaky_failures` requests, then a
/// 200 page.
pub const FLAKY_429: &str = "/trap/flaky/429";
/// `/trap/flaky/503`: 503 (no `Retry-After`) for the first `flaky_failures` requests, then 200.
pub const FLAKY_503: &str = "/trap/flaky/503";
/// `/trap/slow`: a 200 page after `slow_delay`.
pub const SLOW: &str = "/trap/slow";
/// `/trap/stall`: headers and a first chunk, then nothing for `stall_for`, then the connection
/// is dropped with the declared length unmet.
pub const STALL: &str = "/trap/stall";
/// `/trap/huge`: `huge_bytes` of HTML with `Content-Length`, streamed.
pub const HUGE: &str = "/trap/huge";
/// `/trap/huge-chunked`: the same without `Content-Length`.
pub const HUGE_CHUNKED: &str = "/trap/huge-chunked";
/// `/trap/gzip`: `Content-Encoding: gzip` (whatever `Accept-Encoding` said), links to
/// [`GZIP_CHILD`].
pub const GZIP: &str = "/trap/gzip";
/// `/trap/gzip/child`: linked only from the gzip page (found only by decompressing it).
pub const GZIP_CHILD: &str = "/trap/gzip/child";
/// `/trap/binary`: random bytes served as `text/html`.
pub const BINARY: &str = "/trap/binary";
/// `/trap/plain`: `text/plain` that contains an `<a href>` to [`NEVER`].
pub const PLAIN: &str = "/trap/plain";
/// `/trap/never`: a page nothing links to in HTML.
pub const NEVER: &str = "/trap/never";
/// `/trap/malformed`: broken HTML whose links `/trap/malformed/1`..`3` are still extractable.
pub const MALFORMED: &str = "/trap/malformed";
/// `/trap/empty`: 200 with an empty body.
pub const EMPTY: &str = "/trap/empty";
/// `/trap/long`: links to a 2,200+ character URL, which links to a 4,400+ one, then 8,800+.
pub const LONG: &str = "/trap/long";
/// `/trap/repeat/a`: each `/trap/repeat/a/…/a` links `a/a`, one level deeper, forever.
pub const REPEAT: &str = "/trap/repeat/a";

/// How a charset page declares its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    /// `Content-Type: text/html; charset=…`, no meta.
    Header,
    /// `<meta charset="…">`, no charset in the header.
    MetaCharset,
    /// `<meta http-equiv="Content-Type" content="text/html; charset=…">`.
    MetaHttpEquiv,
    /// A byte order mark, nothing else.
    Bom,
    /// The header says one thing, a meta tag another; the header is right (WHATWG order).
    HeaderOverMeta,
    /// The header says one thing, a BOM another; the BOM is right (WHATWG order).
    BomOverHeader,
}

/// A page in a non-UTF-8 (or BOM-marked) encoding, at `/trap/charset/{slug}`.
///
/// The page holds `<p id="text">{text}</p>` in `encoding` and a link to
/// `/trap/charset/{slug}/child`, which a crawler finds only if it decoded the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CharsetCase {
    /// Last path segment.
    pub slug: &'static str,
    /// The WHATWG name of the encoding the bytes really are in.
    pub encoding: &'static str,
    /// How the encoding is declared.
    pub declared: Declared,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The text a correct decoder yields (all of it outside ASCII's comfort zone).
    pub text: &'static str,
}

impl CharsetCase {
    /// The page's path.
    pub fn path(&self) -> String {
        format!("/trap/charset/{}", self.slug)
    }

    fn meta(&self) -> &'static str {
        match self.slug {
            "meta-iso-8859-1" => "<meta charset=\"iso-8859-1\">\n",
            "http-equiv-shift_jis" => {
                "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=Shift_JIS\">\n"
            }
            "header-over-meta" => "<meta charset=\"utf-8\">\n",
            _ => "",
        }
    }
}

/// The charset pages, linked from the trap index in this order.
pub const CHARSET_CASES: [CharsetCase; 7] = [
    CharsetCase {
        slug: "header-windows-1252",
        encoding: "windows-1252",
        declared: Declared::Header,
        content_type: "text/html; charset=windows-1252",
        text: "Café crème brûlée – “naïve” façade, 5 €",
    },
    CharsetCase {
        slug: "meta-iso-8859-1",
        encoding: "windows-1252",
        declared: Declared::MetaCharset,
        content_type: "text/html",
        text: "Grüße aus Köln: ½ × ¾ ÷ señor Ñandú",
    },
    CharsetCase {
        slug: "http-equiv-shift_jis",
        encoding: "Shift_JIS",
        declared: Declared::MetaHttpEquiv,
        content_type: "text/html",
        text: "日本語のページ「こんにちは、世界」",
    },
    CharsetCase {
        slug: "bom-utf-8",
        encoding: "UTF-8",
        declared: Declared::Bom,
        content_type: "text/html",
        text: "Ünïcödé behind a byte order mark ✓",
    },
    CharsetCase {
        slug: "bom-utf-16le",
        encoding: "UTF-16LE",
        declared: Declared::Bom,
        content_type: "text/html",
        text: "Ελληνικά, Русский, 中文",
    },
    CharsetCase {
        slug: "header-over-meta",
        encoding: "windows-1252",
        declared: Declared::HeaderOverMeta,
        content_type: "text/html; charset=windows-1252",
        text: "Ça coûte 10 € — déjà vu",
    },
    CharsetCase {
        slug: "bom-over-header",
        encoding: "UTF-8",
        declared: Declared::BomOverHeader,
        content_type: "text/html; charset=iso-8859-1",
        text: "BOM schlägt Header: Größe ✓",
    },
];

/// The content type and bytes of the n-th charset page.
pub(crate) fn charset_page(n: u8) -> (&'static str, Bytes) {
    let Some(case) = CHARSET_CASES.get(usize::from(n)) else {
        return ("text/html", Bytes::new());
    };
    let html = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n{}<title>charset {}</title>\n</head>\n<body>\n\
         <p id=\"text\">{}</p>\n<p><a href=\"/trap/charset/{}/child\">next</a></p>\n</body>\n</html>\n",
        case.meta(),
        case.slug,
        case.text,
        case.slug
    );
    let bytes = match case.encoding {
        "UTF-8" => {
            let mut out = b"\xEF\xBB\xBF".to_vec();
            out.extend_from_slice(html.as_bytes());
            out
        }
        "UTF-16LE" => {
            let mut out = vec![0xFF, 0xFE];
            out.extend(html.encode_utf16().flat_map(u16::to_le_bytes));
            out
        }
        label => {
            let encoding = encoding_rs::Encoding::for_label(label.as_bytes())
                .expect("CHARSET_CASES name encodings encoding_rs knows");
            let (bytes, _, unmappable) = encoding.encode(&html);
            debug_assert!(!unmappable, "the text of {} fits its encoding", case.slug);
            bytes.into_owned()
        }
    };
    (case.content_type, Bytes::from(bytes))
}

/// `body` gzip-compressed.
pub(crate) fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map(Bytes::from)
        .expect("compressing into a Vec cannot fail")
}

/// `body` gunzipped: the site's own gzip pages, so always whole (what does not decode is
/// left out).
pub(crate) fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out);
    out
}

/// 16 KiB of random bytes (the same on every run), NULs and invalid UTF-8 included.
pub(crate) fn binary() -> Bytes {
    let mut rng = Prng::new(0xB1A5, 0);
    let mut out = Vec::with_capacity(16 << 10);
    while out.len() < 16 << 10 {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out[..4].copy_from_slice(b"\x00\xff\xfe\x00");
    Bytes::from(out)
}

/// The body of [`PLAIN`].
pub(crate) const PLAIN_BODY: &str = "This is text/plain, not HTML: a crawler must not extract \
links from it.\n<a href=\"/trap/never\">never follow this</a>\n";

/// The body of [`MALFORMED`]: unclosed elements, garbage bytes in declared UTF-8, unquoted and
/// upper-case attributes, a missing space between attributes, and an unterminated comment
/// that hides a fourth link (`/trap/malformed/4`, which 404s) from a real HTML parser.
pub(crate) const MALFORMED_BODY: &[u8] = b"<html><head><title>malformed page</title>\n\
<body>\n<div><p>unclosed paragraph <b>bold <i>bold italic\n\
<a href=/trap/malformed/1>unquoted href</a>\n\
\xff\xfe\x00 garbage \xc3\x28 bytes \x80\x81\n\
<table><tr><td><A HREF='/trap/malformed/2'>upper-case tag</A>\n\
<a href=\"/trap/malformed/3\"<b>missing space</b>\n\
</table></div>\n\
<!-- an unterminated comment hides this link: <a href=\"/trap/malformed/4\">hidden</a>\n";

/// The first bytes of the huge pages.
pub(crate) const HUGE_HEAD: &[u8] =
    b"<!DOCTYPE html>\n<html><head><title>huge</title></head><body>\n";

/// One 64 KiB chunk of the huge pages' filler, shared by every response.
pub(crate) fn huge_chunk() -> Bytes {
    const LINE: &[u8] = b"<p>this page goes on and on and on and on and on and on and on.</p>\n";
    let mut chunk = BytesMut::with_capacity(64 << 10);
    while chunk.len() < 64 << 10 {
        let take = LINE.len().min((64 << 10) - chunk.len());
        chunk.extend_from_slice(&LINE[..take]);
    }
    chunk.freeze()
}

/// The part of the stalled page that is sent before the stall.
pub(crate) const STALL_HEAD: &[u8] =
    b"<!DOCTYPE html>\n<html><head><title>stalled</title></head><body>\n<p>this body never ends";
/// The `Content-Length` the stalled page declares (and never meets).
pub(crate) const STALL_DECLARED: u64 = 1 << 20;

/// One trap: where it is and what a correct crawler makes of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrapInfo {
    /// Short name.
    pub name: &'static str,
    /// Path on `site.test` (linked from `/traps`).
    pub path: String,
    /// The expected outcome, in words (the ground truth states it per URL as an `Outcome`).
    pub expect: &'static str,
}

/// Every trap linked from `/traps`, in index order.
pub(crate) fn catalogue() -> Vec<TrapInfo> {
    let fixed: [(&str, &str, &str); 19] = [
        (
            "redirect loop",
            LOOP,
            "fetched; error: too many redirects (or a loop detected)",
        ),
        (
            "long redirect chain",
            CHAIN,
            "fetched; error: too many redirects when chain_len exceeds the limit, else the end page",
        ),
        (
            "short redirect chain",
            SHORT_CHAIN,
            "fetched; 200 from /trap/short/3 after 3 redirects",
        ),
        (
            "off-site redirect",
            OFFSITE,
            "fetched; the 302 itself when other.test is not allowed, else 200 from other.test",
        ),
        (
            "404",
            NOT_FOUND,
            "fetched; a page with status 404, no links",
        ),
        ("410", GONE, "fetched; a page with status 410, no links"),
        (
            "500",
            SERVER_ERROR,
            "fetched, retried; a page with status 500 after the retries",
        ),
        (
            "flaky 429",
            FLAKY_429,
            "fetched flaky_failures+1 times (Retry-After: 1); then 200",
        ),
        (
            "flaky 503",
            FLAKY_503,
            "fetched flaky_failures+1 times; then 200",
        ),
        (
            "slow",
            SLOW,
            "200 after slow_delay; a timeout error when the client timeout is shorter",
        ),
        (
            "stalled",
            STALL,
            "error: timeout (the body never completes; dropped after stall_for)",
        ),
        (
            "huge",
            HUGE,
            "200, body cut at the crawler's cap and flagged truncated",
        ),
        (
            "huge chunked",
            HUGE_CHUNKED,
            "200, body cut at the crawler's cap and flagged truncated",
        ),
        (
            "gzip",
            GZIP,
            "200, decompressed; its link to /trap/gzip/child is followed",
        ),
        (
            "binary",
            BINARY,
            "200, not text (base64 with a marker), no links",
        ),
        (
            "text/plain",
            PLAIN,
            "200, no links (the <a> in text/plain is not followed)",
        ),
        (
            "malformed",
            MALFORMED,
            "200, links /trap/malformed/1..3 extracted, not /4",
        ),
        ("empty", EMPTY, "200, empty body, no links"),
        (
            "long URLs",
            LONG,
            "200; URLs of 2,200+, 4,400+, 8,800+ chars follow, cut by a URL length limit",
        ),
    ];
    let mut out: Vec<TrapInfo> = fixed
        .into_iter()
        .map(|(name, path, expect)| TrapInfo {
            name,
            path: path.to_owned(),
            expect,
        })
        .collect();
    for case in &CHARSET_CASES {
        out.push(TrapInfo {
            name: case.slug,
            path: case.path(),
            expect: "200, decodes to its CharsetCase text; its link to …/child is followed",
        });
    }
    out.push(TrapInfo {
        name: "repeating path",
        path: REPEAT.to_owned(),
        expect: "200 each; infinite: a crawl ends only through maxdepth or a URL length limit",
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charset_pages_decode_to_their_text_with_the_declared_encoding() {
        for (n, case) in CHARSET_CASES.iter().enumerate() {
            let (_, bytes) = charset_page(n as u8);
            let encoding = encoding_rs::Encoding::for_label(case.encoding.as_bytes()).unwrap();
            // decode() sniffs a BOM first, as a browser does.
            let (text, _, malformed) = encoding.decode(&bytes);
            assert!(!malformed, "{}", case.slug);
            assert!(text.contains(case.text), "{}: {text}", case.slug);
            // Decoded as UTF-8 without thought, every one of them is wrong.
            let naive = String::from_utf8_lossy(&bytes);
            let bom = bytes.starts_with(b"\xEF\xBB\xBF");
            assert_eq!(naive.contains(case.text), bom, "{}", case.slug);
        }
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let packed = gzip(b"hello hello hello");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello hello hello");
    }

    #[test]
    fn huge_chunk_is_64_kib_and_binary_is_not_utf8() {
        assert_eq!(huge_chunk().len(), 64 << 10);
        assert!(std::str::from_utf8(&binary()).is_err());
        assert_eq!(binary(), binary());
    }
}
