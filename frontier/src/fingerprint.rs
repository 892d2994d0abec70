//! URL canonicalisation and the fingerprints dedupe stores.
//!
//! Dedupe is exact up to fingerprint collisions: a job remembers every URL it admitted as a
//! 96-bit fingerprint (XXH3-128 of the canonical URL, truncated), so two different URLs are
//! mistaken for one with probability about n²/2⁹⁷ — below 10⁻¹² for a billion URLs — and the
//! memory per URL does not depend on its length.

use url::Url;

/// Bytes in a stored fingerprint.
pub const FINGERPRINT_LEN: usize = 12;

/// A URL's dedupe fingerprint.
pub type Fingerprint = [u8; FINGERPRINT_LEN];

/// A URL as the frontier keys it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalUrl {
    /// The URL serialised by the WHATWG URL parser (scheme and host lowercased, default port
    /// and fragment dropped, percent-encoding normalised).
    pub url: String,
    /// The host, lowercase: the unit of politeness and of `domainMaxPages`.
    pub domain: String,
}

/// Canonicalises an absolute http(s) URL; `None` for anything else (relative, other schemes,
/// no host, unparsable).
pub fn canonicalize(raw: &str) -> Option<CanonicalUrl> {
    let mut url = Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let domain = url.host_str()?.to_ascii_lowercase();
    if domain.is_empty() {
        return None;
    }
    url.set_fragment(None);
    Some(CanonicalUrl {
        url: url.into(),
        domain,
    })
}

/// The fingerprint of a canonical URL.
pub fn fingerprint(canonical_url: &str) -> Fingerprint {
    let wide = xxhash_rust::xxh3::xxh3_128(canonical_url.as_bytes()).to_le_bytes();
    let mut out = [0u8; FINGERPRINT_LEN];
    out.copy_from_slice(&wide[..FINGERPRINT_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_ignores_case_of_host_fragment_and_default_port() {
        let a = canonicalize("HTTP://Example.ORG:80/a?x=1#frag").expect("valid");
        let b = canonicalize("http://example.org/a?x=1").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.domain, "example.org");
        assert_eq!(fingerprint(&a.url), fingerprint(&b.url));
    }

    #[test]
    fn non_http_urls_are_refused() {
        for raw in [
            "mailto:a@b.c",
            "/relative",
            "ftp://example.org/x",
            "javascript:void(0)",
        ] {
            assert!(canonicalize(raw).is_none(), "{raw}");
        }
    }

    #[test]
    fn different_urls_get_different_fingerprints() {
        let a = fingerprint("http://example.org/a");
        let b = fingerprint("http://example.org/b");
        assert_ne!(a, b);
    }
}
