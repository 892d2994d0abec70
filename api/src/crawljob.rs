//! The `CrawlJob` custom resource: one crawl, as a Kubernetes object.
//!
//! The spec carries Scrapy Cluster's crawl request over (`url` became `seeds`, snake_case became
//! camelCase). Everything the API server can check is in the schema: required fields, ranges,
//! lengths, patterns, list bounds, and CEL rules for what OpenAPI cannot say (seeds must be
//! http(s) URLs). What only a program can check (a regex compiles, the spider fleet exists) is
//! the operator's job and shows as a `Valid=False` condition.
//!
//! Every field's doc comment below is what `kubectl explain crawljob.spec.<field>` prints, so
//! each one says its unit and default.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::extract::Extract;
use crate::render::Render;
use crate::request::{CrawlRequest, SitemapRole};

/// The most seeds one CrawlJob may carry. Bounded so that CEL rules on the items stay within
/// the API server's cost budget and one object stays small in etcd.
pub const MAX_SEEDS: usize = 1000;
/// The longest URL accepted as a seed, in bytes (the de-facto limit of browsers and servers).
pub const MAX_URL_LEN: usize = 2048;
/// The deepest `maxdepth` accepted.
pub const MAX_DEPTH: u32 = 1000;
/// The most worker replicas one job may ask for.
pub const MAX_WORKERS: u32 = 1000;
/// The most sitemap URLs one CrawlJob may name.
pub const MAX_SITEMAP_URLS: usize = 100;

/// Specification of a crawl job: where to start, what to follow, how fast, and for whom.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubecrawl.io",
    version = "v1alpha1",
    kind = "CrawlJob",
    plural = "crawljobs",
    singular = "crawljob",
    namespaced,
    status = "CrawlJobStatus",
    shortname = "crawl",
    category = "kubecrawl",
    derive = "PartialEq",
    doc = "A crawl job: seeds, link filters, budgets and politeness for one spider fleet.",
    printcolumn = r#"{"name":"Spider","type":"string","jsonPath":".spec.spiderid","description":"The spider fleet that runs the job"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Pending, Running, Succeeded, Failed, Expired or Suspended"}"#,
    printcolumn = r#"{"name":"Pages","type":"integer","jsonPath":".status.pages","description":"Pages fetched so far"}"#,
    printcolumn = r#"{"name":"Steps","type":"integer","jsonPath":".status.steps","description":"The furthest depth (hop) reached"}"#,
    printcolumn = r#"{"name":"Queued","type":"integer","jsonPath":".status.queued","description":"Requests waiting in the frontier"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Round","type":"integer","jsonPath":".status.recrawl.round","description":"The recrawl round (recrawling jobs)","priority":1}"#,
    printcolumn = r#"{"name":"Next-Round","type":"date","jsonPath":".status.recrawl.nextRoundTime","description":"When the next recrawl round starts","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
// The job's identity (spiderid, appid, crawlid) names its state in the frontier; changing it
// on a live object would orphan that state, so the API server refuses it (transition rules).
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.crawlid) == has(oldSelf.crawlid) && (!has(self.crawlid) || self.crawlid == oldSelf.crawlid)",
    "message": "crawlid is immutable: create a new CrawlJob for a new crawl",
    "fieldPath": ".crawlid",
    "reason": "FieldValueForbidden"
}]))]
pub struct CrawlJobSpec {
    /// The spider fleet that runs this job, e.g. `link` or `wandering`. Workers of one fleet
    /// run in one Deployment, shared by every job with the same spiderid. Lowercase letters,
    /// digits and '-', at most 40 characters. Required; immutable.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        extend("x-kubernetes-validations" = [{
            "rule": "self == oldSelf",
            "message": "spiderid is immutable: create a new CrawlJob for another spider"
        }])
    )]
    pub spiderid: String,

    /// The URLs the crawl starts from (Scrapy Cluster's `url`): 1 to 1000 absolute http or
    /// https URLs of at most 2048 characters. Seeds pass through the same dedupe as discovered
    /// links, so a repeated seed is fetched once. Required.
    #[schemars(schema_with = "seeds_schema")]
    pub seeds: Vec<String>,

    /// The submitting application, echoed in every item and usable as a Kafka topic suffix:
    /// letters, digits, '.', '_' and '-', 1 to 64 characters. Required; immutable.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9._-]+$"),
        extend("x-kubernetes-validations" = [{
            "rule": "self == oldSelf",
            "message": "appid is immutable: create a new CrawlJob for another application"
        }])
    )]
    pub appid: String,

    /// The job id that scopes dedupe, page budgets and statistics. Defaults to the object's
    /// metadata.name. Letters, digits, '.', '_' and '-', 1 to 128 characters. Immutable: it
    /// can be neither changed, added nor removed once the object exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub crawlid: Option<String>,

    /// How many hops to follow from a seed: the link spider follows links while the page's
    /// depth is below maxdepth. 0 (the default) fetches the seeds only. At most 1000.
    #[serde(default)]
    #[schemars(range(max = 1000))]
    pub maxdepth: u32,

    /// Scheduling priority, 1 (lowest, the default) to 100. Higher-priority requests are
    /// fetched first across all domains; equal priorities are first in, first out.
    #[serde(default = "default_priority")]
    #[schemars(range(min = 1, max = 100))]
    pub priority: i32,

    /// Domains the crawl may visit; a domain admits its subdomains. Empty (the default) admits
    /// every domain. Lowercase host names, at most 100 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "domains_schema")]
    pub allowed_domains: Vec<String>,

    /// Regular expressions (Rust `regex` syntax); when any is given, a link is followed only
    /// if it matches one of them. At most 50, each at most 1024 characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "regex_list_schema")]
    pub allow_regex: Vec<String>,

    /// Regular expressions (Rust `regex` syntax); a link that matches any of them is never
    /// followed, even when it matches allowRegex (deny wins). At most 50, each at most 1024
    /// characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "regex_list_schema")]
    pub deny_regex: Vec<String>,

    /// File extensions (without the dot) whose links are not followed. Unset means kubecrawl's
    /// default list of binary and media types (images, audio, video, archives, office files);
    /// an empty list follows every extension. At most 200, each 1 to 16 lowercase letters or
    /// digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "extensions_schema")]
    pub deny_extensions: Option<Vec<String>>,

    /// The most pages fetched from any one domain in this job. Unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub domain_max_pages: Option<u64>,

    /// The most pages fetched in this job. Unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_pages: Option<u64>,

    /// An RFC 3339 time (e.g. `2026-12-01T00:00:00Z`) after which the job is stopped, its
    /// frontier state purged and its phase set to Expired. Unset means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,

    /// The User-Agent header sent with every request of the job. Unset means the worker's
    /// default. At most 512 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub useragent: Option<String>,

    /// A Cookie header sent with every request of the job. At most 4096 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub cookie: Option<String>,

    /// Free JSON object copied into every item's `attrs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "attrs_schema")]
    pub attrs: Option<serde_json::Value>,

    /// Worker replicas this job asks for, 0 to 1000 (default 1). The fleet of a spiderid runs
    /// the sum over its active jobs, capped by the fleet's maximum.
    #[serde(default = "default_workers")]
    #[schemars(range(max = 1000))]
    pub workers: u32,

    /// Follow links marked `rel="nofollow"` (and links of pages marked `<meta name="robots"
    /// content="nofollow">`) too. Default false: they are reported in the item, not followed.
    #[serde(default)]
    pub follow_nofollow: bool,

    /// A declarative spider: item fields taken from each page with CSS selectors, and which
    /// links to follow (selectors with allow/deny regexes per rule, a pagination selector).
    /// The link spider reads it; the job's link filters and maxdepth still apply. Unset means
    /// no fields and every allowed link followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<Extract>,

    /// Pause the job without losing its frontier: nothing is leased while true. Default false.
    #[serde(default)]
    pub suspend: bool,

    /// Per-domain rate limits and robots.txt handling. Unset means the fleet's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub politeness: Option<Politeness>,

    /// Sitemaps to seed the crawl from, besides `seeds`: sitemap or sitemap-index URLs,
    /// and/or those the seeds' robots.txt files list. Unset means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sitemaps: Option<Sitemaps>,

    /// Crawl the job again, round after round, some time after each round finished. A round
    /// refetches every page the previous one reached with conditional requests (ETag,
    /// Last-Modified), and publishes only the pages that changed and the new ones. Unset
    /// means one round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recrawl: Option<Recrawl>,

    /// Render pages in headless Chromium before parsing them: never (the default), always,
    /// pages whose URL matches patterns, or `auto` (pages whose HTML shows it needs
    /// scripts). The record holds the DOM after the scripts ran. Unset means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render: Option<Render>,
}

/// When and how often a job is crawled again.
///
/// A round starts `afterSeconds` after the previous one finished (Succeeded): the job's
/// queues, dedupe and counters are cleared, and its seeds, sitemaps and every page the last
/// round acknowledged are queued again at their depth. A page is requested with
/// `If-None-Match` / `If-Modified-Since` when the server gave an ETag / Last-Modified; a 304
/// answer, or a 200 whose body is the same as before, counts as unchanged and is not
/// published. Changed and new pages are published, with their links followed as usual.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recrawl {
    /// Seconds from the end of a round to the start of the next, 1 to 31,536,000 (a year).
    #[schemars(range(min = 1, max = 31_536_000))]
    pub after_seconds: u32,

    /// The most rounds, the first included (at least 2); unset means no limit. The job stays
    /// Succeeded after its last round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 1_000_000))]
    pub max_rounds: Option<u32>,
}

/// Where a job's sitemaps are (sitemaps.org: XML `urlset` or `sitemapindex`, plain text, or
/// either gzipped). The pages a sitemap lists are queued like seeds (depth 0, the job's
/// priority and filters); a sitemap index's sitemaps are read in turn. Each sitemap is read
/// up to 50 MiB (decompressed) and 50,000 entries, and indexes nest at most 3 deep; what is
/// past a bound is counted as a failed sitemap, as is one that is missing or malformed,
/// and the crawl goes on. Sitemap and robots.txt fetches count as the job's pages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.urls) && size(self.urls) > 0) || (has(self.fromRobots) && self.fromRobots)",
    "message": "sitemaps needs urls, fromRobots: true, or both"
}]))]
pub struct Sitemaps {
    /// Sitemap or sitemap-index URLs to read: at most 100 absolute http or https URLs of at
    /// most 2048 characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "sitemap_urls_schema")]
    pub urls: Vec<String>,
    /// Also read the sitemaps listed (`Sitemap:` lines) in the robots.txt of each seed's host.
    /// Default false.
    #[serde(default)]
    pub from_robots: bool,
    /// An RFC 3339 time: only pages whose sitemap `<lastmod>` is at or after it are queued
    /// (entries without a lastmod, or with one that cannot be read, are queued). Unset
    /// queues every listed page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_since: Option<Time>,
}

impl Sitemaps {
    /// The requests that start reading the sitemaps: one per URL in `urls`, and, with
    /// `fromRobots`, one for the robots.txt of each distinct origin among `seeds` (seeds that
    /// are not absolute http(s) URLs are skipped).
    pub fn requests(&self, seeds: &[String], priority: i32) -> Vec<CrawlRequest> {
        let mut out: Vec<CrawlRequest> = self
            .urls
            .iter()
            .map(|u| CrawlRequest::sitemap(u.as_str(), priority, SitemapRole::Sitemap { level: 0 }))
            .collect();
        if self.from_robots {
            let mut origins: Vec<String> = seeds
                .iter()
                .filter_map(|s| url::Url::parse(s).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .map(|u| u.origin().ascii_serialization())
                .collect();
            origins.sort();
            origins.dedup();
            out.extend(origins.into_iter().map(|origin| {
                CrawlRequest::sitemap(
                    format!("{origin}/robots.txt"),
                    priority,
                    SitemapRole::Robots,
                )
            }));
        }
        out
    }
}

/// How fast the fleet may fetch from one domain, enforced across all workers together.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.hits) == has(self.windowSeconds)",
    "message": "hits and windowSeconds must be set together"
}]))]
pub struct Politeness {
    /// Requests allowed per domain within each window (with windowSeconds). 1 to 100000.
    /// Unset: no per-window limit (only delayMillis applies). Without a politeness object at
    /// all, the fleet's default applies (10 per 60 seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub hits: Option<u32>,

    /// Length of the rate window in seconds (with hits). 1 to 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub window_seconds: Option<u32>,

    /// Minimum time between two requests to one domain, in milliseconds, 0 to 3600000. A
    /// robots.txt Crawl-delay that asks for more wins. Unset means no minimum delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 3_600_000))]
    pub delay_millis: Option<u32>,

    /// Obey robots.txt (Disallow rules and Crawl-delay). Default true.
    #[serde(default = "default_true")]
    pub obey_robots: bool,

    /// Also limit the rate per resolved IP address, so that many domains on one server share
    /// one budget. Default false.
    #[serde(default)]
    pub per_ip: bool,
}

/// Where a job is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Accepted, not yet seeded or not yet valid.
    #[default]
    Pending,
    /// Seeded; workers are fetching.
    Running,
    /// Seeded, and nothing was queued or in flight for the completion grace period.
    Succeeded,
    /// The job cannot run (invalid spec, unknown spider) and needs a person.
    Failed,
    /// `expires` passed; the frontier state was purged.
    Expired,
    /// `suspend` is true; the frontier is kept.
    Suspended,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What the operator observed of a job. The operator is the only writer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrawlJobStatus {
    /// Pending, Running, Succeeded, Failed, Expired or Suspended.
    #[serde(default)]
    pub phase: Phase,
    /// Standard conditions: `Valid` (the spec passed the operator's checks), `Seeded`,
    /// `Complete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the job was first seeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job reached Succeeded, Failed or Expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Pages fetched (any status code).
    #[serde(default)]
    pub pages: u64,
    /// Items published to Kafka.
    #[serde(default)]
    pub items: u64,
    /// Response body bytes fetched.
    #[serde(default)]
    pub bytes: u64,
    /// Requests that ended in an error (after retries).
    #[serde(default)]
    pub errors: u64,
    /// Retries scheduled.
    #[serde(default)]
    pub retries: u64,
    /// Requests waiting in the frontier.
    #[serde(default)]
    pub queued: u64,
    /// Requests leased to workers and not yet acknowledged.
    #[serde(default)]
    pub in_flight: u64,
    /// Pages per HTTP status code, keyed by the code as a string.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_codes: BTreeMap<String, u64>,
    /// The furthest depth (hop from a seed) reached; for the wandering spider, its step.
    #[serde(default)]
    pub steps: u32,
    /// Ready workers in this job's spider fleet.
    #[serde(default)]
    pub ready_workers: u32,
    /// What reading the job's sitemaps found so far; unset when the job has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sitemaps: Option<SitemapStatus>,
    /// The job's recrawl rounds; unset when the job does not recrawl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recrawl: Option<RecrawlStatus>,
    /// The identity of the frontier state the job was seeded into. When the frontier's Redis
    /// loses its data (a restart without persistence, a failover to an empty replica) it
    /// changes: the operator then seeds the job again and sets the FrontierLost condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier_epoch: Option<String>,
}

impl CrawlJob {
    /// The job id that scopes this job's frontier state: `spec.crawlid`, else metadata.name.
    pub fn crawlid(&self) -> &str {
        self.spec
            .crawlid
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

/// What reading a job's sitemaps found.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SitemapStatus {
    /// Sitemaps and sitemap indexes read (robots.txt files not included).
    pub read: u64,
    /// Sitemaps that could not be used, wholly or in part: missing (not 2xx), malformed,
    /// past a bound (size, entries, nesting). Each is logged by the worker with its reason.
    pub failed: u64,
    /// Page URLs the sitemaps listed and handed to the frontier (its filters and dedupe
    /// then apply).
    pub urls: u64,
    /// Page URLs left out because their lastmod is before `sitemaps.modifiedSince`.
    pub unmodified: u64,
}

/// Where a recrawling job is in its rounds, and what the current round found.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecrawlStatus {
    /// The current (or last) round, 1 for the first crawl.
    pub round: u32,
    /// When the current round started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_start_time: Option<Time>,
    /// When the next round starts; unset while a round runs and after the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_round_time: Option<Time>,
    /// Pages of this round that changed since the previous round (published).
    pub changed: u64,
    /// Pages of this round that did not change: answered 304 Not Modified, or a body equal
    /// to the previous round's (not published).
    pub unchanged: u64,
}

/// The CustomResourceDefinition as YAML, exactly as `crds/crawljobs.kubecrawl.io.yaml` holds it.
///
/// # Errors
/// Fails only if serde_yaml cannot render the definition, which would be a bug.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(&CrawlJob::crd())?;
    Ok(format!(
        "# Generated by `cargo run -p kubecrawl-api --bin crdgen`; do not edit by hand.\n{body}"
    ))
}

fn default_priority() -> i32 {
    1
}

fn default_workers() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

fn seeds_schema(_: &mut SchemaGenerator) -> Schema {
    http_urls_schema(1, MAX_SEEDS)
}

fn sitemap_urls_schema(_: &mut SchemaGenerator) -> Schema {
    http_urls_schema(0, MAX_SITEMAP_URLS)
}

/// A list of `min` to `max` absolute http(s) URLs of at most [`MAX_URL_LEN`] characters (the
/// items checked by a CEL rule); `min` 0 sets no lower bound.
fn http_urls_schema(min: usize, max: usize) -> Schema {
    let mut schema = json_schema!({
        "type": "array",
        "maxItems": max,
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_URL_LEN,
            "x-kubernetes-validations": [{
                "rule": "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",
                "message": "must be an absolute http or https URL"
            }]
        }
    });
    if min > 0 {
        schema.insert("minItems".to_owned(), min.into());
    }
    schema
}

fn domains_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 100,
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": 253,
            "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
        }
    })
}

fn regex_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 50,
        "items": {"type": "string", "minLength": 1, "maxLength": 1024}
    })
}

fn extensions_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 200,
        "items": {"type": "string", "pattern": "^[a-z0-9]{1,16}$"}
    })
}

fn attrs_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> &'static str {
        include_str!("../../examples/link.yaml")
    }

    #[test]
    fn example_manifests_parse_as_crawljobs() {
        for text in [example(), include_str!("../../examples/wandering.yaml")] {
            let job: CrawlJob = serde_yaml::from_str(text).expect("example parses");
            assert_eq!(job.spec.appid, "testapp");
            assert_eq!(job.crawlid(), "test123456");
            assert!(!job.spec.seeds.is_empty());
        }
    }

    #[test]
    fn defaults_fill_in_when_fields_are_absent() {
        let spec: CrawlJobSpec = serde_json::from_value(serde_json::json!({
            "spiderid": "link", "appid": "a", "seeds": ["http://example.test/"]
        }))
        .expect("minimal spec parses");
        assert_eq!(spec.priority, 1);
        assert_eq!(spec.workers, 1);
        assert_eq!(spec.maxdepth, 0);
        assert!(!spec.suspend);
        assert!(spec.deny_extensions.is_none());
    }

    #[test]
    fn crawlid_falls_back_to_the_object_name() {
        let mut job: CrawlJob = serde_yaml::from_str(example()).expect("example parses");
        job.spec.crawlid = None;
        assert_eq!(
            job.crawlid(),
            job.metadata.name.as_deref().expect("example has a name")
        );
    }

    #[test]
    fn crd_carries_names_columns_and_cel_rules() {
        let crd = CrawlJob::crd();
        assert_eq!(crd.spec.names.short_names, Some(vec!["crawl".to_string()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["kubecrawl".to_string()])
        );
        let version = &crd.spec.versions[0];
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Spider",
                "Phase",
                "Pages",
                "Steps",
                "Queued",
                "Age",
                "Round",
                "Next-Round"
            ]
        );
        let yaml = crd_yaml().expect("renders");
        assert!(yaml.contains("x-kubernetes-validations"));
        assert!(yaml.contains("isURL(self)"));
        assert!(yaml.contains("hits and windowSeconds must be set together"));
    }

    /// Guards against a stale `crds/` file: regenerate with crdgen when this fails.
    #[test]
    fn committed_crd_matches_the_types() {
        let committed = include_str!("../../crds/crawljobs.kubecrawl.io.yaml");
        let generated = crd_yaml().expect("renders");
        assert!(
            committed == generated,
            "crds/crawljobs.kubecrawl.io.yaml is stale: run \
             `cargo run -p kubecrawl-api --bin crdgen > crds/crawljobs.kubecrawl.io.yaml`"
        );
    }
}
