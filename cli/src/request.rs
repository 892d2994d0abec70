//! Scrapy Cluster's crawl request, checked field by field and turned into a `CrawlJobSpec`.
//!
//! ```json
//! {"url": "http://site.test/", "appid": "testapp", "crawlid": "abc123", "spiderid": "link",
//!  "maxdepth": 2, "priority": 5, "allowed_domains": ["site.test"], "allow_regex": [],
//!  "deny_regex": ["/private/"], "deny_extensions": ["pdf"], "expires": 1767225600,
//!  "useragent": "my-crawler/1.0", "cookie": "session=x", "attrs": {"team": "a"},
//!  "domain_max_pages": 100}
//! ```
//!
//! `url`, `appid` and `crawlid` are required; `spiderid` defaults to `link` as in Scrapy
//! Cluster. `expires` is a unix timestamp in seconds (0: never) or an RFC 3339 time. `uuid`
//! may be given to have `kubecrawl ingest` acknowledge the request. Everything the
//! CrawlJob schema checks is checked here first, so that a refusal names the request's own
//! field (`priority: 500 is out of range 1..=100`) rather than the CrawlJob's.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubecrawl_api::CrawlJobSpec;
use kubecrawl_api::crawljob::{MAX_DEPTH, MAX_URL_LEN};
use serde_json::{Map, Value};

use crate::Refusal;

/// The fields a crawl request may have.
pub const FIELDS: [&str; 16] = [
    "url",
    "appid",
    "crawlid",
    "spiderid",
    "maxdepth",
    "priority",
    "allowed_domains",
    "allow_regex",
    "deny_regex",
    "deny_extensions",
    "expires",
    "useragent",
    "cookie",
    "attrs",
    "domain_max_pages",
    "uuid",
];

/// A checked crawl request.
#[derive(Debug, Clone, PartialEq)]
pub struct CrawlRequest {
    /// The URL to crawl (a seed of the job).
    pub url: String,
    /// The request's uuid, if it had one.
    pub uuid: Option<String>,
    /// The CrawlJob spec the request stands for.
    pub spec: CrawlJobSpec,
}

impl CrawlRequest {
    /// The job's crawlid.
    pub fn crawlid(&self) -> &str {
        self.spec.crawlid.as_deref().unwrap_or_default()
    }
}

/// Checks a crawl request given as a JSON object; `now_s` is the current unix time (for
/// `expires`).
///
/// # Errors
/// A [`Refusal`] naming the first field that is unknown, missing or invalid.
pub fn parse(object: &Map<String, Value>, now_s: i64) -> Result<CrawlRequest, Refusal> {
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(Refusal::new(
            unknown,
            format!("unknown field; a crawl request has {}", FIELDS.join(", ")),
        ));
    }
    let fields = Fields(object);
    let url = seed_url(&fields)?;
    let appid = fields
        .name("appid", 64, is_id_char)?
        .ok_or_else(missing("appid"))?;
    let crawlid = fields
        .name("crawlid", 128, is_id_char)?
        .ok_or_else(missing("crawlid"))?;
    let spiderid = fields
        .string("spiderid", 1, 40)?
        .unwrap_or_else(|| "link".to_owned());
    if !is_dns_label(&spiderid) {
        return Err(Refusal::new(
            "spiderid",
            format!("{spiderid:?} must be lowercase letters, digits and '-' (e.g. link)"),
        ));
    }
    let maxdepth = fields
        .integer("maxdepth", 0, i64::from(MAX_DEPTH))?
        .unwrap_or(0);
    let priority = fields.integer("priority", 1, 100)?.unwrap_or(1);
    let allowed_domains = allowed_domains(&fields)?;
    let allow_regex = fields.regexes("allow_regex")?;
    let deny_regex = fields.regexes("deny_regex")?;
    let deny_extensions = deny_extensions(&fields)?;
    let expires = fields.expires(now_s)?;
    let useragent = fields.string("useragent", 1, 512)?;
    let cookie = fields.string("cookie", 1, 4096)?;
    let attrs = attrs(object)?;
    // 0 means no limit, as in Scrapy Cluster (whose scheduler skips a falsy limit).
    let domain_max_pages = fields
        .integer("domain_max_pages", 0, i64::MAX)?
        .filter(|&n| n > 0)
        .map(i64::unsigned_abs);
    let uuid = fields.string("uuid", 1, 256)?;
    let spec = CrawlJobSpec {
        spiderid,
        seeds: vec![url.clone()],
        appid,
        crawlid: Some(crawlid),
        maxdepth: u32::try_from(maxdepth).unwrap_or(MAX_DEPTH),
        priority: i32::try_from(priority).unwrap_or(1),
        allowed_domains,
        allow_regex,
        deny_regex,
        deny_extensions,
        domain_max_pages,
        max_pages: None,
        expires,
        useragent,
        cookie,
        attrs,
        workers: 1,
        follow_nofollow: false,
        extract: None,
        suspend: false,
        politeness: None,
        sitemaps: None,
        recrawl: None,
        render: None,
    };
    Ok(CrawlRequest { url, uuid, spec })
}

/// `url`: required, an absolute http or https URL.
fn seed_url(fields: &Fields<'_>) -> Result<String, Refusal> {
    let url = fields
        .string("url", 1, MAX_URL_LEN)?
        .ok_or_else(missing("url"))?;
    match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(url),
        _ => Err(Refusal::new(
            "url",
            format!("{url:?} is not an absolute http or https URL"),
        )),
    }
}

/// `allowed_domains`: domain names, lowercased.
fn allowed_domains(fields: &Fields<'_>) -> Result<Vec<String>, Refusal> {
    fields
        .list("allowed_domains", 100, 253)?
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let d = d.to_ascii_lowercase();
            if is_domain(&d) {
                Ok(d)
            } else {
                Err(Refusal::new(
                    &format!("allowed_domains[{i}]"),
                    format!("{d:?} is not a domain name (e.g. example.org)"),
                ))
            }
        })
        .collect()
}

/// `deny_extensions`: unset or null keeps the default list; each entry 1 to 16 letters or
/// digits, a leading dot dropped, lowercased.
fn deny_extensions(fields: &Fields<'_>) -> Result<Option<Vec<String>>, Refusal> {
    if matches!(fields.0.get("deny_extensions"), None | Some(Value::Null)) {
        return Ok(None);
    }
    fields
        .list("deny_extensions", 200, 17)?
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.trim_start_matches('.').to_ascii_lowercase();
            if !e.is_empty() && e.len() <= 16 && e.bytes().all(|b| b.is_ascii_alphanumeric()) {
                Ok(e)
            } else {
                Err(Refusal::new(
                    &format!("deny_extensions[{i}]"),
                    format!("{e:?} is not a file extension (1 to 16 letters or digits)"),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `attrs`: any JSON object, or null.
fn attrs(object: &Map<String, Value>) -> Result<Option<Value>, Refusal> {
    match object.get("attrs") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(Value::Object(o.clone()))),
        Some(other) => Err(Refusal::new(
            "attrs",
            format!("must be a JSON object, not {}", kind(other)),
        )),
    }
}

fn missing(field: &'static str) -> impl FnOnce() -> Refusal {
    move || Refusal::new(field, "is required".to_owned())
}

/// The JSON type of a value, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn is_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_domain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Typed access to a request's fields, with refusals that name them.
pub(crate) struct Fields<'a>(pub(crate) &'a Map<String, Value>);

impl Fields<'_> {
    /// A string field of `min..=max` bytes; `None` when absent or null.
    pub(crate) fn string(
        &self,
        field: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<String>, Refusal> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if (min..=max).contains(&s.len()) => Ok(Some(s.clone())),
            Some(Value::String(s)) => Err(Refusal::new(
                field,
                format!("must be {min} to {max} characters long, not {}", s.len()),
            )),
            Some(other) => Err(Refusal::new(
                field,
                format!("must be a string, not {}", kind(other)),
            )),
        }
    }

    /// A name of at most `max` bytes made of `ok` bytes (appid, crawlid).
    pub(crate) fn name(
        &self,
        field: &str,
        max: usize,
        ok: fn(u8) -> bool,
    ) -> Result<Option<String>, Refusal> {
        let Some(s) = self.string(field, 1, max)? else {
            return Ok(None);
        };
        if s.bytes().all(ok) {
            Ok(Some(s))
        } else {
            Err(Refusal::new(
                field,
                format!("{s:?} may only hold letters, digits, '.', '_' and '-'"),
            ))
        }
    }

    /// An integer field in `min..=max`.
    pub(crate) fn integer(&self, field: &str, min: i64, max: i64) -> Result<Option<i64>, Refusal> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
                Some(v) => Err(Refusal::new(
                    field,
                    if max == i64::MAX {
                        format!("{v} must be at least {min}")
                    } else {
                        format!("{v} is out of range {min}..={max}")
                    },
                )),
                None => Err(Refusal::new(field, format!("{n} is not a whole number"))),
            },
            Some(other) => Err(Refusal::new(
                field,
                format!("must be a whole number, not {}", kind(other)),
            )),
        }
    }

    /// A list of at most `max_items` strings of at most `max_len` bytes each.
    fn list(&self, field: &str, max_items: usize, max_len: usize) -> Result<Vec<String>, Refusal> {
        let items = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(Refusal::new(
                    field,
                    format!("must be a list of strings, not {}", kind(other)),
                ));
            }
        };
        if items.len() > max_items {
            return Err(Refusal::new(
                field,
                format!(
                    "holds {} items, at most {max_items} are allowed",
                    items.len()
                ),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) if !s.is_empty() && s.len() <= max_len => Ok(s.clone()),
                Value::String(_) => Err(Refusal::new(
                    &format!("{field}[{i}]"),
                    format!("must be 1 to {max_len} characters long"),
                )),
                other => Err(Refusal::new(
                    &format!("{field}[{i}]"),
                    format!("must be a string, not {}", kind(other)),
                )),
            })
            .collect()
    }

    /// A list of regular expressions that compile.
    fn regexes(&self, field: &str) -> Result<Vec<String>, Refusal> {
        let list = self.list(field, 50, 1024)?;
        for (i, r) in list.iter().enumerate() {
            if let Err(e) = regex::Regex::new(r) {
                let reason = e.to_string();
                let last = reason.lines().last().unwrap_or("does not compile").trim();
                return Err(Refusal::new(
                    &format!("{field}[{i}]"),
                    format!("{r:?} is not a valid regular expression: {last}"),
                ));
            }
        }
        Ok(list)
    }

    /// `expires`: unix seconds (0: never) or RFC 3339, in the future.
    fn expires(&self, now_s: i64) -> Result<Option<Time>, Refusal> {
        let at = match self.0.get("expires") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(0) => return Ok(None),
                Some(s) => k8s_openapi::jiff::Timestamp::from_second(s).map_err(|_| {
                    Refusal::new("expires", format!("{s} is not a unix time in seconds"))
                })?,
                None => {
                    return Err(Refusal::new(
                        "expires",
                        format!("{n} is not a unix time in whole seconds"),
                    ));
                }
            },
            Some(Value::String(s)) => s.parse::<k8s_openapi::jiff::Timestamp>().map_err(|_| {
                Refusal::new(
                    "expires",
                    format!("{s:?} is neither a unix time nor an RFC 3339 time"),
                )
            })?,
            Some(other) => {
                return Err(Refusal::new(
                    "expires",
                    format!("must be a unix time in seconds, not {}", kind(other)),
                ));
            }
        };
        if at.as_second() <= now_s {
            return Err(Refusal::new(
                "expires",
                format!("{at} is in the past; 0 or no expires means never"),
            ));
        }
        Ok(Some(Time(at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("an object")
    }

    fn refused(v: Value) -> Refusal {
        parse(&object(v), NOW).expect_err("refused")
    }

    fn base() -> Value {
        json!({"url": "http://site.test/w/0", "appid": "testapp", "crawlid": "abc123"})
    }

    fn with(extra: Value) -> Value {
        let mut v = base();
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }

    #[test]
    fn the_walkthrough_request_becomes_a_wandering_job() {
        let r = parse(&object(with(json!({"spiderid": "wandering"}))), NOW).expect("valid");
        assert_eq!(r.spec.spiderid, "wandering");
        assert_eq!(r.spec.seeds, ["http://site.test/w/0"]);
        assert_eq!(r.crawlid(), "abc123");
        assert_eq!(
            (r.spec.priority, r.spec.maxdepth, r.spec.workers),
            (1, 0, 1)
        );
        assert!(r.spec.deny_extensions.is_none());
        let r = parse(&object(base()), NOW).expect("valid");
        assert_eq!(r.spec.spiderid, "link", "Scrapy Cluster's default spider");
    }

    #[test]
    fn every_field_is_carried_over() {
        let r = parse(
            &object(with(json!({
                "maxdepth": 3, "priority": 7, "allowed_domains": ["Site.test"],
                "allow_regex": ["^http"], "deny_regex": ["/private/"],
                "deny_extensions": [".PDF", "zip"], "expires": NOW + 60,
                "useragent": "ua/1", "cookie": "a=b", "attrs": {"k": [1]},
                "domain_max_pages": 10, "uuid": "u-1"
            }))),
            NOW,
        )
        .expect("valid");
        let s = &r.spec;
        assert_eq!((s.maxdepth, s.priority), (3, 7));
        assert_eq!(s.allowed_domains, ["site.test"]);
        assert_eq!(
            s.deny_extensions.as_deref(),
            Some(&["pdf".to_owned(), "zip".to_owned()][..])
        );
        assert_eq!(s.expires.as_ref().map(|t| t.0.as_second()), Some(NOW + 60));
        assert_eq!(s.domain_max_pages, Some(10));
        let unlimited = parse(
            json!({"url": "http://a.test/", "appid": "a", "crawlid": "c", "domain_max_pages": 0})
                .as_object()
                .expect("an object"),
            NOW,
        )
        .expect("0 is Scrapy Cluster's no limit");
        assert_eq!(unlimited.spec.domain_max_pages, None);
        assert_eq!(s.attrs, Some(json!({"k": [1]})));
        assert_eq!(r.uuid.as_deref(), Some("u-1"));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json!({"bogus": 1}), "bogus"),
            (json!({"url": "ftp://x"}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({"priority": 500}), "priority"),
            (json!({"priority": "high"}), "priority"),
            (json!({"maxdepth": -1}), "maxdepth"),
            (json!({"appid": "a b"}), "appid"),
            (json!({"crawlid": ""}), "crawlid"),
            (json!({"spiderid": "Link"}), "spiderid"),
            (
                json!({"allowed_domains": ["ok.test", "not a domain"]}),
                "allowed_domains[1]",
            ),
            (json!({"deny_regex": ["(unclosed"]}), "deny_regex[0]"),
            (json!({"deny_extensions": ["tar.gz"]}), "deny_extensions[0]"),
            (json!({"expires": NOW - 1}), "expires"),
            (json!({"expires": "soon"}), "expires"),
            (json!({"attrs": [1]}), "attrs"),
            (json!({"domain_max_pages": -1}), "domain_max_pages"),
        ];
        for (extra, field) in cases {
            let r = refused(with(extra.clone()));
            assert_eq!(r.field, field, "{extra}: {r}");
        }
        assert_eq!(refused(json!({"appid": "a", "crawlid": "c"})).field, "url");
        assert_eq!(
            refused(json!({"url": "http://a.test/", "crawlid": "c"})).field,
            "appid"
        );
    }

    #[test]
    fn zero_expires_means_never() {
        let r = parse(&object(with(json!({"expires": 0}))), NOW).expect("valid");
        assert!(r.spec.expires.is_none());
    }
}
