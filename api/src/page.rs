//! The page record: what a worker publishes to Kafka for every response.
//!
//! It keeps every field of Scrapy Cluster's `RawResponseItem` under the same name, so existing
//! firehose consumers keep working, and adds what they lacked: `spiderid`, `depth`,
//! `fetch_time_ms`, `content_type`, `body_encoding`, `body_truncated`, `redirect_chain`, and,
//! for a job with `extract` rules, `fields`: the item fields those rules took from the page.
//!
//! ```json
//! {
//!   "appid": "testapp", "crawlid": "test123456", "spiderid": "link",
//!   "url": "http://example.org/", "response_url": "https://example.org/",
//!   "status_code": 200, "status_msg": "OK",
//!   "response_headers": {"Content-Type": ["text/html; charset=utf-8"]},
//!   "request_headers": {"User-Agent": ["kubecrawl/0.1"]},
//!   "body": "<html>…</html>", "body_encoding": "text", "body_truncated": false,
//!   "encoding": "utf-8", "content_type": "text/html",
//!   "links": [{"url": "https://example.org/about", "text": "About"}],
//!   "attrs": {"step": 0}, "timestamp": "2026-11-26T10:00:00.042000",
//!   "depth": 0, "fetch_time_ms": 42, "redirect_chain": ["http://example.org/"],
//!   "fields": {"title": "Example Domain", "price": null, "images": []}
//! }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Headers as name → every value sent under that name, in order. In a [`PageRecord`] the
/// names are title-cased as Scrapy Cluster's records have them (`Content-Type`).
pub type Headers = BTreeMap<String, Vec<String>>;

/// How `body` is written in the record.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// The body decoded to text (from `encoding`) and stored as a JSON string.
    #[default]
    Text,
    /// The body was not text (or not valid in its charset) and is standard base64.
    Base64,
}

/// A link found on the page.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The absolute, canonical URL.
    pub url: String,
    /// The anchor text, whitespace collapsed.
    #[serde(default)]
    pub text: String,
    /// The link is marked `rel="nofollow"` (or the page is `<meta name="robots"
    /// content="nofollow">`), so it is reported but not followed unless the job says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nofollow: bool,
}

/// One fetched page, as published to `<prefix>.crawled_firehose`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PageRecord {
    /// The submitting application.
    pub appid: String,
    /// The job id.
    pub crawlid: String,
    /// The spider fleet that fetched it (new in kubecrawl).
    pub spiderid: String,
    /// The URL that was requested.
    pub url: String,
    /// The URL the final response came from, after redirects.
    pub response_url: String,
    /// HTTP status code of the final response.
    pub status_code: u16,
    /// The status code's reason phrase.
    pub status_msg: String,
    /// Response headers, name → values.
    pub response_headers: Headers,
    /// Request headers sent, name → values.
    pub request_headers: Headers,
    /// The body: text, or base64 when `body_encoding` says so.
    pub body: String,
    /// How `body` is written (new in kubecrawl).
    #[serde(default)]
    pub body_encoding: BodyEncoding,
    /// True when the body was cut at the worker's size limit (new in kubecrawl).
    #[serde(default)]
    pub body_truncated: bool,
    /// Links extracted from the page.
    #[serde(default)]
    pub links: Vec<Link>,
    /// The job's attrs plus what the spider added (the wandering spider's `step`); `null` on
    /// the wire when there are none, as in Scrapy Cluster.
    #[serde(
        default,
        serialize_with = "attrs_or_null",
        deserialize_with = "null_as_no_attrs"
    )]
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// When the response arrived, in UTC with microseconds and no offset, as Scrapy
    /// Cluster writes it (`2026-11-26T10:00:00.042000`).
    pub timestamp: String,
    /// The charset the body was decoded with, e.g. `utf-8`, `windows-1252`.
    pub encoding: String,
    /// The media type of the response without parameters, e.g. `text/html` (new in kubecrawl).
    #[serde(default)]
    pub content_type: String,
    /// Hops from a seed (new in kubecrawl).
    #[serde(default)]
    pub depth: u32,
    /// Time from sending the request to the end of the body, in milliseconds (new in kubecrawl).
    #[serde(default)]
    pub fetch_time_ms: u64,
    /// Every URL requested before `response_url`, in order; empty without redirects (new in
    /// kubecrawl).
    #[serde(default)]
    pub redirect_chain: Vec<String>,
    /// The item fields a job's `extract` rules took from the page, by field name: a string
    /// or null (the first match, or none), or a list of strings (`all: true`). Every field of
    /// the rules is present on a page the rules ran on; absent when the job has no fields or
    /// the spider does not read them (new in kubecrawl).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Set only on a dead-letter record: why the page's record could not be published
    /// (e.g. `record_too_large`, `topic_authorization_failed`) after its retries. Such a
    /// record carries no body, no links and no fields (new in kubecrawl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when `body` is the DOM after a headless browser ran the page's scripts (the job's
    /// `render`), and `links` were found in it; absent when the page is as fetched (new in
    /// kubecrawl).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rendered: bool,
    /// A JPEG screenshot of the rendered page, base64, when the job asks for one and it fits
    /// its bound (new in kubecrawl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshot: Option<String>,
}

fn attrs_or_null<S: serde::Serializer>(
    attrs: &serde_json::Map<String, serde_json::Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if attrs.is_empty() {
        serializer.serialize_none()
    } else {
        attrs.serialize(serializer)
    }
}

fn null_as_no_attrs<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<serde_json::Map<String, serde_json::Value>, D::Error> {
    Ok(Option::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_example() -> &'static str {
        let doc = include_str!("page.rs");
        let start = doc.find("//! {").expect("doc has an example");
        let end = doc[start..].find("//! ```").expect("example ends") + start;
        Box::leak(
            doc[start..end]
                .lines()
                .map(|l| l.trim_start_matches("//!"))
                .collect::<Vec<_>>()
                .join("\n")
                .into_boxed_str(),
        )
    }

    #[test]
    fn documented_example_parses_and_round_trips() {
        let record: PageRecord = serde_json::from_str(doc_example()).expect("doc example parses");
        assert_eq!(record.status_code, 200);
        assert_eq!(record.body_encoding, BodyEncoding::Text);
        assert_eq!(record.links[0].text, "About");
        assert_eq!(record.fields["price"], serde_json::Value::Null);
        let text = serde_json::to_string(&record).expect("serializes");
        let back: PageRecord = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, record);
    }

    #[test]
    fn keeps_every_raw_response_item_field_name() {
        let record: PageRecord = serde_json::from_str(doc_example()).expect("parses");
        let value = serde_json::to_value(&record).expect("serializes");
        for field in [
            "appid",
            "crawlid",
            "url",
            "response_url",
            "status_code",
            "status_msg",
            "response_headers",
            "request_headers",
            "body",
            "links",
            "attrs",
            "timestamp",
            "encoding",
        ] {
            assert!(
                value.get(field).is_some(),
                "missing Scrapy Cluster field {field}"
            );
        }
    }

    #[test]
    fn no_attrs_are_null_on_the_wire_as_in_scrapy_cluster() {
        let mut record: PageRecord = serde_json::from_str(doc_example()).expect("parses");
        record.attrs.clear();
        let value = serde_json::to_value(&record).expect("serializes");
        assert_eq!(value["attrs"], serde_json::Value::Null);
        let back: PageRecord = serde_json::from_value(value).expect("null attrs parse");
        assert!(back.attrs.is_empty());
    }

    #[test]
    fn no_fields_leave_the_key_out() {
        let mut record: PageRecord = serde_json::from_str(doc_example()).expect("parses");
        record.fields.clear();
        let value = serde_json::to_value(&record).expect("serializes");
        assert!(value.get("fields").is_none(), "{value}");
    }

    #[test]
    fn base64_marker_is_lowercase_on_the_wire() {
        let v = serde_json::to_value(BodyEncoding::Base64).expect("serializes");
        assert_eq!(v, serde_json::json!("base64"));
    }
}
