//! Scrapy Cluster's stats requests and their answers, in its shapes.
//!
//! A stats request has no `action`: `{"appid": "testapp", "uuid": "hij1", "stats": "spider"}`
//! (`stats` defaults to `all`). The answer carries `stats`, `appid`, `uuid` and
//! `server_time`, and for each kind what Scrapy Cluster's Redis Monitor puts there:
//!
//! | `stats` | answer |
//! |---|---|
//! | `spider` | `spiders`: `unique_spider_count`, `total_spider_count`, and per spider `count` (live workers) and per status code its rolling windows (`"200": {"900": n, …, "lifetime": n}`) |
//! | `machine` | `machines`: `count` (live workers). kubecrawl keeps status counts per spider, not per machine, so no machine has windows of its own |
//! | `queue` | `queues`: `total_backlog` and per spider `queue_<spiderid>` with `spider_backlog`, `num_domains` and `domains` (`{"domain", "backlog"}`, largest first), plus kubecrawl's `in_flight` and `retrying` |
//! | `crawler` | `spiders`, `machines` and `queues` |
//! | `kafka-monitor`, `redis-monitor`, `rest` | `not_applicable`: why kubecrawl has no such component (the ingest, the operator and no REST service stand in for them) |
//! | `all` | `kafka-monitor`, `redis-monitor`, `crawler` and `rest`, each as above |
//!
//! kubecrawl's own `{"action": "stats"}` ([`crate::actions::stats`]) stays as it was: the
//! Crawler Stats Dump's flat keys and the backlog, as an extension.

use std::collections::BTreeSet;

use kubecrawl_frontier::Frontier;
use serde_json::{Map, Value, json};

use crate::request::Fields;
use crate::{Error, Refusal, Result};

/// The `stats` values Scrapy Cluster defines.
pub const KINDS: [&str; 8] = [
    "all",
    "kafka-monitor",
    "redis-monitor",
    "crawler",
    "spider",
    "machine",
    "queue",
    "rest",
];

/// The fields a stats request may have (Scrapy Cluster's schema allows no others).
pub const FIELDS: [&str; 3] = ["appid", "uuid", "stats"];

/// A checked stats request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRequest {
    /// The requesting application.
    pub appid: String,
    /// Echoed in the answer.
    pub uuid: String,
    /// One of [`KINDS`].
    pub kind: String,
}

/// Whether a request without `action` is a stats request: it has `stats`, or has no `url`
/// and only the fields of one (Scrapy Cluster's `stats` defaults to `all`).
pub fn is_stats_request(object: &Map<String, Value>) -> bool {
    object.contains_key("stats")
        || (!object.contains_key("url") && object.keys().all(|k| FIELDS.contains(&k.as_str())))
}

/// Checks a stats request as Scrapy Cluster's schema does: `uuid` (1–40 characters) and
/// `appid` (3–40) required, `stats` one of [`KINDS`].
///
/// # Errors
/// A [`Refusal`] naming the field.
pub fn parse(object: &Map<String, Value>) -> Result<StatsRequest, Refusal> {
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(Refusal::new(
            unknown,
            format!(
                "unknown field; a stats request has {} (an action request also has action)",
                FIELDS.join(", ")
            ),
        ));
    }
    let fields = Fields(object);
    let uuid = fields
        .string("uuid", 1, 40)?
        .ok_or_else(|| Refusal::new("uuid", "is required".to_owned()))?;
    let appid = fields
        .string("appid", 3, 40)?
        .ok_or_else(|| Refusal::new("appid", "is required".to_owned()))?;
    let kind = fields
        .string("stats", 1, 32)?
        .unwrap_or_else(|| "all".to_owned());
    if !KINDS.contains(&kind.as_str()) {
        return Err(Refusal::new(
            "stats",
            format!("{kind:?} is not a kind of stats; use {}", KINDS.join(", ")),
        ));
    }
    Ok(StatsRequest { appid, uuid, kind })
}

/// Answers a stats request from the frontier; `spiders` are the spiders to report besides
/// those with live workers.
///
/// # Errors
/// [`Error::Frontier`] when Redis cannot be read.
pub async fn answer(
    frontier: &dyn Frontier,
    spiders: &[String],
    request: &StatsRequest,
) -> Result<Map<String, Value>> {
    let mut out = match request.kind.as_str() {
        "kafka-monitor" | "redis-monitor" | "rest" => not_applicable(&request.kind),
        "spider" => Crawler::read(frontier, spiders).await?.select(&["spiders"]),
        "machine" => Crawler::read(frontier, spiders)
            .await?
            .select(&["machines"]),
        "queue" => Crawler::read(frontier, spiders).await?.select(&["queues"]),
        "crawler" => Crawler::read(frontier, spiders).await?.all(),
        _ => {
            let mut all = Map::new();
            for component in ["kafka-monitor", "redis-monitor", "rest"] {
                all.insert(component.into(), Value::Object(not_applicable(component)));
            }
            let crawler = Crawler::read(frontier, spiders).await?.all();
            all.insert("crawler".into(), Value::Object(crawler));
            all
        }
    };
    out.insert("stats".into(), json!(request.kind));
    out.insert("appid".into(), json!(request.appid));
    out.insert("uuid".into(), json!(request.uuid));
    out.insert("server_time".into(), json!(crate::now_s()));
    Ok(out)
}

/// What stands in for a Scrapy Cluster component kubecrawl does not have.
fn not_applicable(component: &str) -> Map<String, Value> {
    let why = match component {
        "kafka-monitor" => {
            "kubecrawl has no Kafka Monitor: `kubecrawl ingest` reads the incoming topic; its figures are its log and the consumer group's lag"
        }
        "redis-monitor" => {
            "kubecrawl has no Redis Monitor: the operator carries out stop and expire, and `kubecrawl ingest` answers info and stats"
        }
        _ => "kubecrawl has no REST service: Kafka and the CrawlJob resources are its API",
    };
    let mut out = Map::new();
    out.insert("not_applicable".into(), json!(why));
    out
}

/// The crawler's figures: spiders, machines and queues, in Scrapy Cluster's shapes.
struct Crawler {
    spiders: Map<String, Value>,
    machines: Map<String, Value>,
    queues: Map<String, Value>,
}

impl Crawler {
    async fn read(frontier: &dyn Frontier, spiders: &[String]) -> Result<Self> {
        let names: Vec<&str> = spiders.iter().map(String::as_str).collect();
        let dump = frontier
            .stats_dump(&names)
            .await
            .map_err(Error::frontier("stats dump"))?;
        let mut spider_stats = Map::new();
        let mut all: BTreeSet<String> = spiders.iter().cloned().collect();
        for (key, value) in &dump {
            match key.as_str() {
                "total_spider_count" | "unique_spider_count" => {
                    spider_stats.insert(key.clone(), json!(value));
                }
                _ => {
                    if let Some(spider) = key.strip_suffix("_spider_count") {
                        all.insert(spider.to_owned());
                        entry(&mut spider_stats, spider).insert("count".into(), json!(value));
                    } else if let Some((spider, status, window)) = split_window_key(key) {
                        let codes = entry(&mut spider_stats, spider);
                        entry(codes, status).insert(window.to_owned(), json!(value));
                    }
                }
            }
        }
        let mut machines = Map::new();
        machines.insert(
            "count".into(),
            json!(dump.get("total_spider_count").copied().unwrap_or_default()),
        );
        let mut queues = Map::new();
        let (per_spider, total) = backlogs(frontier, &all).await?;
        for (spider, backlog) in per_spider {
            queues.insert(format!("queue_{spider}"), backlog);
        }
        queues.insert("total_backlog".into(), json!(total));
        Ok(Self {
            spiders: spider_stats,
            machines,
            queues,
        })
    }

    fn all(self) -> Map<String, Value> {
        self.select(&["spiders", "machines", "queues"])
    }

    fn select(self, parts: &[&str]) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, part) in [
            ("spiders", self.spiders),
            ("machines", self.machines),
            ("queues", self.queues),
        ] {
            if parts.contains(&name) {
                out.insert(name.into(), Value::Object(part));
            }
        }
        out
    }
}

/// Each spider's backlog as Scrapy Cluster's queue stats give it — `spider_backlog`,
/// `num_domains`, `domains` (`{"domain", "backlog"}`, largest first) — plus kubecrawl's
/// `in_flight` and `retrying`; and the total queued.
///
/// # Errors
/// [`Error::Frontier`] when Redis cannot be read.
pub(crate) async fn backlogs(
    frontier: &dyn Frontier,
    spiders: &BTreeSet<String>,
) -> Result<(Vec<(String, Value)>, u64)> {
    let mut out = Vec::with_capacity(spiders.len());
    let mut total = 0u64;
    for spider in spiders {
        let backlog = frontier
            .backlog(spider)
            .await
            .map_err(Error::frontier("backlog"))?;
        total += backlog.queued();
        let mut domains: Vec<(&String, &u64)> = backlog.domains.iter().collect();
        domains.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let domains: Vec<Value> = domains
            .into_iter()
            .map(|(d, n)| json!({"domain": d, "backlog": n}))
            .collect();
        out.push((
            spider.clone(),
            json!({
                "spider_backlog": backlog.queued(),
                "num_domains": backlog.domains.len(),
                "in_flight": backlog.in_flight,
                "retrying": backlog.retrying,
                "domains": domains,
            }),
        ));
    }
    Ok((out, total))
}

/// `<spider>_<status>_<window>` → its three parts (spiderids have no `_`).
fn split_window_key(key: &str) -> Option<(&str, &str, &str)> {
    let (rest, window) = key.rsplit_once('_')?;
    let (spider, status) = rest.split_once('_')?;
    (!spider.is_empty() && !status.is_empty()).then_some((spider, status, window))
}

/// The object under `key`, created empty when missing (or replacing a non-object).
fn entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kubecrawl_frontier::{CrawlRequest, JobPolicy, JobRef, MemoryFrontier};

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => panic!("an object"),
        }
    }

    /// An in-memory frontier with one job (spiderid, appid, crawlid) registered and seeded
    /// with `seeds` (URL, priority).
    pub(crate) async fn seeded(
        (spiderid, appid, crawlid): (&str, &str, &str),
        seeds: &[(&str, i32)],
    ) -> MemoryFrontier {
        let frontier = MemoryFrontier::default();
        let job = JobRef {
            spiderid: spiderid.into(),
            appid: appid.into(),
            crawlid: crawlid.into(),
        };
        frontier
            .register(&job, &JobPolicy::unlimited())
            .await
            .expect("registers");
        let seeds: Vec<CrawlRequest> = seeds
            .iter()
            .map(|(url, priority)| CrawlRequest::seed(*url, *priority))
            .collect();
        frontier.seed(&job, &seeds).await.expect("seeds");
        frontier
    }

    #[test]
    fn scrapy_clusters_documented_requests_parse() {
        let r = parse(&object(
            json!({"appid": "testapp", "uuid": "hij1", "stats": "spider"}),
        ))
        .expect("valid");
        assert_eq!(r.kind, "spider");
        let r = parse(&object(json!({"appid": "testapp", "uuid": "x"}))).expect("valid");
        assert_eq!(r.kind, "all", "stats defaults to all");
        assert!(is_stats_request(&object(
            json!({"appid": "testapp", "uuid": "x"})
        )));
        assert!(!is_stats_request(&object(
            json!({"url": "http://a.test/", "appid": "testapp", "crawlid": "c"})
        )));
        for (bad, field) in [
            (
                json!({"appid": "testapp", "uuid": "x", "stats": "plugins"}),
                "stats",
            ),
            (json!({"appid": "te", "uuid": "x", "stats": "all"}), "appid"),
            (json!({"appid": "testapp", "stats": "all"}), "uuid"),
            (
                json!({"appid": "testapp", "uuid": "x", "stats": "all", "crawlid": "c"}),
                "crawlid",
            ),
        ] {
            let refusal = parse(&object(bad.clone())).expect_err("refused");
            assert_eq!(refusal.field, field, "{bad}");
        }
    }

    #[test]
    fn window_keys_split_into_spider_status_and_window() {
        assert_eq!(
            split_window_key("link_200_lifetime"),
            Some(("link", "200", "lifetime"))
        );
        assert_eq!(
            split_window_key("my-spider_504_900"),
            Some(("my-spider", "504", "900"))
        );
        assert_eq!(split_window_key("link"), None);
    }

    #[tokio::test]
    async fn answers_have_scrapy_clusters_shapes() {
        let frontier = seeded(
            ("link", "testapp", "c"),
            &[
                ("http://a.test/1", 1),
                ("http://a.test/2", 1),
                ("http://b.test/", 1),
            ],
        )
        .await;
        let request = |kind: &str| StatsRequest {
            appid: "testapp".into(),
            uuid: "u1".into(),
            kind: kind.into(),
        };
        let spiders = ["link".to_owned()];
        let queue = answer(&frontier, &spiders, &request("queue"))
            .await
            .expect("answer");
        assert_eq!(queue["stats"], "queue");
        assert_eq!(queue["uuid"], "u1");
        assert_eq!(queue["appid"], "testapp");
        assert_eq!(queue["queues"]["total_backlog"], 3);
        assert_eq!(queue["queues"]["queue_link"]["spider_backlog"], 3);
        assert_eq!(queue["queues"]["queue_link"]["num_domains"], 2);
        assert_eq!(
            queue["queues"]["queue_link"]["domains"][0],
            json!({"domain": "a.test", "backlog": 2})
        );
        assert!(!queue.contains_key("spiders"));
        let spider = answer(&frontier, &spiders, &request("spider"))
            .await
            .expect("answer");
        assert_eq!(spider["spiders"]["total_spider_count"], 0);
        assert_eq!(spider["spiders"]["link"]["count"], 0);
        let all = answer(&frontier, &spiders, &request("all"))
            .await
            .expect("answer");
        assert_eq!(all["crawler"]["machines"]["count"], 0);
        assert_eq!(all["crawler"]["queues"]["total_backlog"], 3);
        assert!(all["kafka-monitor"]["not_applicable"].is_string());
        assert!(all["rest"]["not_applicable"].is_string());
        let km = answer(&frontier, &spiders, &request("kafka-monitor"))
            .await
            .expect("answer");
        assert!(km["not_applicable"].is_string());
        assert!(
            !km.contains_key("action"),
            "Scrapy Cluster's stats answers have no action"
        );
    }
}
