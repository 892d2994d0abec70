//! Turning a response body into text: which charset, and whether it is text at all.
//!
//! The charset comes from, in order: a byte-order mark, the `charset` parameter of the
//! Content-Type header, a `<meta charset>` or `<meta http-equiv="Content-Type">` in the first
//! 1024 bytes of an HTML body, UTF-8 when the bytes are valid UTF-8, and windows-1252 (what
//! browsers assume for unlabelled Western pages) otherwise. A body is treated as binary, and
//! published as base64, when its media type is not textual, or when more than a few percent
//! of it is undecodable bytes or control characters (a few stray bytes become U+FFFD, as in a
//! browser, and the page stays text).

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};

/// Above this share (in percent) of undecodable bytes and control characters, a text-typed
/// body is binary. Random bytes score 10% or more in any charset; a real page with a few
/// stray bytes scores far below 1%.
const MAX_BAD_PERCENT: usize = 5;
/// How far into an HTML body a `<meta>` charset declaration is looked for (as browsers do).
const META_PRESCAN_BYTES: usize = 1024;

/// A decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The body as text, and the charset's canonical name (e.g. `utf-8`, `windows-1252`).
    Text {
        /// The text.
        text: String,
        /// The charset it was decoded from.
        encoding: String,
    },
    /// Not text; kept as bytes.
    Binary,
}

/// The media type of a Content-Type value, lowercase, without parameters.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a media type is text a crawler should decode. An absent type is sniffed as text.
pub fn is_textual(media_type: &str) -> bool {
    media_type.is_empty()
        || media_type.starts_with("text/")
        || media_type.ends_with("+xml")
        || media_type.ends_with("+json")
        || matches!(
            media_type,
            "application/xml"
                | "application/json"
                | "application/javascript"
                | "application/x-javascript"
        )
}

/// Whether a media type is HTML, whose links are extracted.
pub fn is_html(media_type: &str) -> bool {
    media_type.is_empty() || media_type == "text/html" || media_type == "application/xhtml+xml"
}

/// Decodes `body` served with `content_type`.
pub fn decode(body: &[u8], content_type: Option<&str>) -> Decoded {
    let media = media_type(content_type);
    if !is_textual(&media) {
        return Decoded::Binary;
    }
    // A byte-order mark, then a declared charset; unlabelled bytes are UTF-8 when they are
    // valid UTF-8, windows-1252 otherwise.
    let (labelled, bom_len) = match Encoding::for_bom(body) {
        Some((enc, len)) => (Some(enc), len),
        None => (
            content_type
                .and_then(charset_param)
                .or_else(|| is_html(&media).then(|| meta_charset(body)).flatten()),
            0,
        ),
    };
    let bytes = &body[bom_len..];
    let (encoding, text) = match labelled {
        Some(enc) if enc != UTF_8 => (enc, enc.decode_without_bom_handling(bytes).0),
        // UTF-8 is checked once: valid bytes are the text as they are.
        _ => match std::str::from_utf8(bytes) {
            Ok(text) => (UTF_8, Cow::Borrowed(text)),
            // Declared UTF-8 with stray bytes: those become U+FFFD.
            Err(_) if labelled.is_some() => (UTF_8, UTF_8.decode_without_bom_handling(bytes).0),
            Err(_) => (
                WINDOWS_1252,
                WINDOWS_1252.decode_without_bom_handling(bytes).0,
            ),
        },
    };
    // A few bad bytes in a real page are decoded to U+FFFD, as browsers do; a body with many
    // undecodable bytes or control characters is binary content under a text type.
    let (chars, bad) = count_chars(&text);
    if bad * 100 > chars.max(1) * MAX_BAD_PERCENT {
        return Decoded::Binary;
    }
    Decoded::Text {
        text: text.into_owned(),
        encoding: encoding.name().to_ascii_lowercase(),
    }
}

/// How many characters `text` has, and how many of them are binary (the replacement character,
/// and control characters other than tab, line feed, form feed and carriage return):
/// byte counts in one pass the compiler vectorises, instead of decoding every character twice
/// (this runs on every page).
fn count_chars(text: &str) -> (usize, usize) {
    let bytes = text.as_bytes();
    let (mut continuation, mut control) = (0usize, 0usize);
    // Per chunk of at most 255 bytes, byte-wide counters cannot overflow and add up 16 or 32
    // bytes per instruction.
    for chunk in bytes.chunks(255) {
        let (mut cont, mut ctrl, mut space) = (0u8, 0u8, 0u8);
        for &b in chunk {
            // Every byte but a continuation byte (10xxxxxx) starts a character.
            cont += u8::from(b & 0xC0 == 0x80);
            // C0 controls and DEL...
            ctrl += u8::from(b < 0x20) + u8::from(b == 0x7F);
            // ...but tab, line feed, form feed and carriage return.
            space += u8::from(b == b'\t')
                + u8::from(b == b'\n')
                + u8::from(b == 0x0C)
                + u8::from(b == b'\r');
        }
        continuation += usize::from(cont);
        control += usize::from(ctrl - space);
    }
    let mut bad = control;
    // C1 controls, U+0080..U+009F: C2 80..C2 9F.
    if bytes.contains(&0xC2) {
        bad += bytes
            .windows(2)
            .filter(|w| w[0] == 0xC2 && (0x80..=0x9F).contains(&w[1]))
            .count();
    }
    // U+FFFD, the replacement character: EF BF BD.
    if bytes.contains(&0xEF) {
        bad += bytes
            .windows(3)
            .filter(|w| *w == [0xEF, 0xBF, 0xBD])
            .count();
    }
    (bytes.len() - continuation, bad)
}

fn charset_param(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        Encoding::for_label(value.trim().trim_matches(['"', '\'']).as_bytes())
    })
}

/// The charset of a `<meta charset=...>` or `<meta http-equiv=content-type content="...;
/// charset=...">` in the first bytes of an HTML document. A plain byte scan, since the
/// document cannot be parsed before its charset is known.
fn meta_charset(body: &[u8]) -> Option<&'static Encoding> {
    let head = &body[..body.len().min(META_PRESCAN_BYTES)];
    let lower: Vec<u8> = head.to_ascii_lowercase();
    let mut rest = lower.as_slice();
    while let Some(pos) = find(rest, b"<meta") {
        rest = &rest[pos + 5..];
        let end = find(rest, b">").unwrap_or(rest.len());
        let tag = &rest[..end];
        if let Some(at) = find(tag, b"charset") {
            let value = tag[at + 7..]
                .iter()
                .skip_while(|b| {
                    b.is_ascii_whitespace() || **b == b'=' || **b == b'"' || **b == b'\''
                })
                .take_while(|b| {
                    !(b.is_ascii_whitespace() || matches!(**b, b'"' | b'\'' | b';' | b'/' | b'>'))
                })
                .copied()
                .collect::<Vec<u8>>();
            if let Some(enc) = Encoding::for_label(&value) {
                // A page that says UTF-16 in ASCII bytes is not UTF-16 (WHATWG rule).
                return Some(
                    if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
                        UTF_8
                    } else {
                        enc
                    },
                );
            }
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule [`count_chars`] counts by, character by character.
    fn is_binary_char(c: char) -> bool {
        c == char::REPLACEMENT_CHARACTER
            || (c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c'))
    }

    #[test]
    fn counting_bytes_counts_what_decoded_characters_count() {
        let samples = [
            "",
            "plain ascii text\twith\r\ntabs and\x0cfeeds",
            "control \x00\x01\x1f and DEL \x7f",
            "C1 \u{80}\u{85}\u{9f} but not \u{a0}\u{ff}",
            "replacement \u{fffd}\u{fffd} and \u{fffe}\u{fffc}",
            "multibyte é ü 日本語 😀 \u{800}\u{ffff}\u{10000}",
        ];
        for text in samples {
            let chars = text.chars().count();
            let bad = text.chars().filter(|c| is_binary_char(*c)).count();
            assert_eq!(count_chars(text), (chars, bad), "{text:?}");
        }
    }

    fn text(d: Decoded) -> (String, String) {
        match d {
            Decoded::Text { text, encoding } => (text, encoding),
            Decoded::Binary => panic!("decoded as binary"),
        }
    }

    #[test]
    fn header_charset_wins_over_guessing() {
        let body = b"caf\xe9";
        let (t, e) = text(decode(body, Some("text/html; charset=ISO-8859-1")));
        assert_eq!(t, "café");
        assert_eq!(e, "windows-1252");
    }

    #[test]
    fn meta_charset_is_found() {
        let body =
            b"<html><head><meta charset=\"shift_jis\"></head><body>\x93\xfa\x96\x7b</body></html>";
        let (t, e) = text(decode(body, Some("text/html")));
        assert!(t.contains("日本"), "{t}");
        assert_eq!(e, "shift_jis");
        let body = b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1252\">\x93hi\x94";
        let (t, _) = text(decode(body, Some("text/html")));
        assert!(t.contains("\u{201c}hi\u{201d}"), "{t}");
    }

    #[test]
    fn bom_wins_over_everything() {
        let mut body = vec![0xFF, 0xFE];
        for c in "hé".encode_utf16() {
            body.extend_from_slice(&c.to_le_bytes());
        }
        let (t, e) = text(decode(&body, Some("text/html; charset=utf-8")));
        assert_eq!(t, "hé");
        assert_eq!(e, "utf-16le");
        let body = b"\xEF\xBB\xBFh\xc3\xa9";
        let (t, e) = text(decode(body, Some("text/html; charset=windows-1252")));
        assert_eq!(t, "hé");
        assert_eq!(e, "utf-8");
    }

    #[test]
    fn unlabelled_bytes_fall_back_sensibly() {
        assert_eq!(text(decode("héllo".as_bytes(), None)).1, "utf-8");
        assert_eq!(
            text(decode(b"h\xe9llo", Some("text/html"))).1,
            "windows-1252"
        );
    }

    #[test]
    fn binary_is_detected() {
        assert_eq!(
            decode(b"\x89PNG\r\n\x1a\n\0\0", Some("text/html")),
            Decoded::Binary
        );
        assert_eq!(decode(b"GIF89a", Some("image/gif")), Decoded::Binary);
        assert_eq!(
            decode(b"\xff\xfe\xfd", Some("text/html; charset=utf-8")),
            Decoded::Binary
        );
    }
}
