//! Scrapy Cluster's action requests — info, stop, expire, stats — and their answers as JSON
//! objects, shared by `kubecrawl info|stop|expire|stats` and `kubecrawl ingest`.
//!
//! Answers keep Scrapy Cluster's field names where it had them (`server_time`,
//! `total_pending`, `total_purged`, `total_expired`, `crawlids`, `total_domains`, the
//! Crawler Stats Dump keys) and add what a CrawlJob knows beyond them (phase, pages, steps,
//! status codes).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kubecrawl_api::{CrawlJob, JobRef};
use kubecrawl_frontier::{Frontier, FrontierConfig, RedisFrontier};
use serde_json::{Map, Value, json};

use crate::args::RedisArgs;
use crate::jobs::Jobs;
use crate::{Error, Result};

/// The `stats` values an action may ask for; everything kubecrawl has is in each.
pub const STATS_KINDS: [&str; 4] = ["all", "crawler", "spider", "queue"];

/// Connects to the frontier for reading statistics.
///
/// # Errors
/// [`Error::Connect`] when Redis refuses the settings or cannot be reached.
pub async fn connect_frontier(redis: &RedisArgs) -> Result<Arc<dyn Frontier>> {
    let servers = redis
        .connection
        .servers()
        .await
        .map_err(|source| Error::Connect { source })?;
    let frontier = RedisFrontier::connect_servers(
        servers,
        &redis.connection.redis_prefix,
        FrontierConfig::default(),
    )
    .await
    .map_err(Error::frontier("connect"))?;
    Ok(Arc::new(frontier))
}

/// One crawl's info: identity, phase and counts from its status (Scrapy Cluster's
/// `total_pending` is `status.queued`).
pub fn info(job: &CrawlJob) -> Map<String, Value> {
    let status = job.status.clone().unwrap_or_default();
    let time = |t: &Option<Time>| t.as_ref().map(|t| t.0.to_string());
    let mut out = Map::new();
    out.insert("server_time".into(), json!(crate::now_s()));
    out.insert("appid".into(), json!(job.spec.appid));
    out.insert("crawlid".into(), json!(job.crawlid()));
    out.insert("spiderid".into(), json!(job.spec.spiderid));
    out.insert("namespace".into(), json!(job.namespace()));
    out.insert("name".into(), json!(job.name_any()));
    out.insert("phase".into(), json!(status.phase.to_string()));
    out.insert("total_pending".into(), json!(status.queued));
    out.insert("in_flight".into(), json!(status.in_flight));
    out.insert("pages".into(), json!(status.pages));
    out.insert("items".into(), json!(status.items));
    out.insert("bytes".into(), json!(status.bytes));
    out.insert("errors".into(), json!(status.errors));
    out.insert("retries".into(), json!(status.retries));
    out.insert("steps".into(), json!(status.steps));
    out.insert("status_codes".into(), json!(status.status_codes));
    out.insert("ready_workers".into(), json!(status.ready_workers));
    out.insert("seeds".into(), json!(job.spec.seeds));
    out.insert("expires".into(), json!(time(&job.spec.expires)));
    out.insert("start_time".into(), json!(time(&status.start_time)));
    out.insert(
        "completion_time".into(),
        json!(time(&status.completion_time)),
    );
    if let Some(valid) = status.conditions.iter().find(|c| c.type_ == "Valid")
        && valid.status == "False"
    {
        out.insert("invalid".into(), json!(valid.message));
    }
    out
}

/// A crawl's info with Scrapy Cluster's domain figures from the frontier: `domains` (per
/// domain `total`, `high_priority`, `low_priority` of what it has queued), `total_domains`
/// and `distinct_domains` (both the number of those domains).
///
/// # Errors
/// [`Error::Frontier`] when Redis cannot be read.
pub async fn crawl_info(frontier: &dyn Frontier, job: &CrawlJob) -> Result<Map<String, Value>> {
    let mut out = info(job);
    let domains = domains(frontier, job).await?;
    out.insert("total_domains".into(), json!(domains.len()));
    out.insert("distinct_domains".into(), json!(domains.len()));
    out.insert("domains".into(), Value::Object(domains));
    Ok(out)
}

/// Info on every crawl of an app (Scrapy Cluster's appid-level info): `crawlids` maps each
/// crawlid to its [`crawl_info`]; `total_crawlids`, `total_pending`, `total_domains`
/// (distinct domains over every crawl) and `spiderid` (the one asked for, or the one every
/// crawl shares, else null).
///
/// # Errors
/// [`Error::Frontier`] when Redis cannot be read.
pub async fn app_info(
    frontier: &dyn Frontier,
    appid: &str,
    spiderid: Option<&str>,
    jobs: &[CrawlJob],
) -> Result<Map<String, Value>> {
    let mut crawlids = Map::new();
    let mut all = BTreeSet::new();
    for job in jobs {
        let info = crawl_info(frontier, job).await?;
        if let Some(Value::Object(domains)) = info.get("domains") {
            all.extend(domains.keys().cloned());
        }
        crawlids.insert(job.crawlid().to_owned(), Value::Object(info));
    }
    let spiders: BTreeSet<&str> = jobs.iter().map(|j| j.spec.spiderid.as_str()).collect();
    let spiderid = spiderid.or_else(|| {
        (spiders.len() == 1)
            .then(|| spiders.into_iter().next())
            .flatten()
    });
    let mut out = Map::new();
    out.insert("server_time".into(), json!(crate::now_s()));
    out.insert("appid".into(), json!(appid));
    out.insert("spiderid".into(), json!(spiderid));
    out.insert("total_crawlids".into(), json!(jobs.len()));
    out.insert("total_pending".into(), json!(pending(jobs)));
    out.insert("total_domains".into(), json!(all.len()));
    out.insert("crawlids".into(), Value::Object(crawlids));
    Ok(out)
}

async fn domains(frontier: &dyn Frontier, job: &CrawlJob) -> Result<Map<String, Value>> {
    let jobref = JobRef {
        spiderid: job.spec.spiderid.clone(),
        appid: job.spec.appid.clone(),
        crawlid: job.crawlid().to_owned(),
    };
    let backlog = frontier
        .job_backlog(&jobref)
        .await
        .map_err(Error::frontier("job backlog"))?;
    Ok(backlog
        .domains
        .into_iter()
        .map(|(d, q)| {
            let figures = json!({"total": q.total, "high_priority": q.high_priority, "low_priority": q.low_priority});
            (d, figures)
        })
        .collect())
}

fn identity(jobs: &[CrawlJob]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("server_time".into(), json!(crate::now_s()));
    if let [job] = jobs {
        out.insert("appid".into(), json!(job.spec.appid));
        out.insert("crawlid".into(), json!(job.crawlid()));
        out.insert("spiderid".into(), json!(job.spec.spiderid));
    }
    let names: Vec<String> = jobs.iter().map(ResourceExt::name_any).collect();
    out.insert("crawljobs".into(), json!(names));
    out
}

fn pending(jobs: &[CrawlJob]) -> u64 {
    jobs.iter()
        .map(|j| j.status.as_ref().map_or(0, |s| s.queued))
        .sum()
}

/// Stops crawls: deletes their CrawlJobs (the operator purges their frontier state before
/// they go). `total_purged` is what they had queued.
///
/// # Errors
/// [`Error::Kube`], [`Error::ApiRefused`]; the jobs before the failing one were deleted.
pub async fn stop(jobs: &Jobs, selected: &[CrawlJob]) -> Result<Map<String, Value>> {
    for job in selected {
        jobs.delete(job).await?;
    }
    let mut out = identity(selected);
    out.insert("total_purged".into(), json!(pending(selected)));
    out.insert("result".into(), json!("stopped"));
    Ok(out)
}

/// Expires crawls now: sets their `expires` to the current time (the operator purges them
/// and marks them Expired). `total_expired` is what they had queued.
///
/// # Errors
/// [`Error::Kube`], [`Error::ApiRefused`]; the jobs before the failing one were expired.
pub async fn expire(jobs: &Jobs, selected: &[CrawlJob]) -> Result<Map<String, Value>> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    for job in selected {
        jobs.expire(job, &now).await?;
    }
    let mut out = identity(selected);
    out.insert("total_expired".into(), json!(pending(selected)));
    out.insert("expires".into(), json!(now.0.to_string()));
    out.insert("result".into(), json!("expired"));
    Ok(out)
}

/// The Crawler Stats Dump (`crawler`) and the queue backlog (`queue`) for every spider with
/// live workers and every spider of `spiders`.
///
/// `queue` holds `total_backlog` and, per spider, `spider_backlog`, `num_domains`,
/// `in_flight`, `retrying` and `domains` (`{"domain", "backlog"}`, largest first), as
/// Scrapy Cluster's queue stats.
///
/// # Errors
/// [`Error::Frontier`] when Redis cannot be read.
pub async fn stats(frontier: &dyn Frontier, spiders: &[String], kind: &str) -> Result<Value> {
    let names: Vec<&str> = spiders.iter().map(String::as_str).collect();
    let mut out = Map::new();
    out.insert("server_time".into(), json!(crate::now_s()));
    out.insert("stats".into(), json!(kind));
    let dump = frontier
        .stats_dump(&names)
        .await
        .map_err(Error::frontier("stats dump"))?;
    let mut all: BTreeSet<String> = spiders.iter().cloned().collect();
    all.extend(
        dump.keys()
            .filter_map(|k| k.strip_suffix("_spider_count"))
            .filter(|s| *s != "total" && *s != "unique")
            .map(str::to_owned),
    );
    out.insert("crawler".into(), json!(dump));
    let mut queue = Map::new();
    let (per_spider, total) = crate::stats::backlogs(frontier, &all).await?;
    for (spider, backlog) in per_spider {
        queue.insert(spider, backlog);
    }
    queue.insert("total_backlog".into(), json!(total));
    out.insert("queue".into(), Value::Object(queue));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::seeded;
    use kubecrawl_frontier::MemoryFrontier;

    #[tokio::test]
    async fn stats_carry_the_dump_keys_and_the_backlog_per_domain() {
        let frontier = seeded(
            ("link", "a", "c"),
            &[
                ("http://a.test/1", 1),
                ("http://a.test/2", 1),
                ("http://b.test/", 1),
            ],
        )
        .await;
        let v = stats(
            &frontier,
            &["link".to_owned(), "wandering".to_owned()],
            "all",
        )
        .await
        .expect("stats");
        assert_eq!(v["crawler"]["total_spider_count"], 0);
        assert_eq!(v["crawler"]["link_spider_count"], 0);
        assert_eq!(v["queue"]["total_backlog"], 3);
        assert_eq!(v["queue"]["link"]["num_domains"], 2);
        assert_eq!(
            v["queue"]["link"]["domains"][0],
            json!({"domain": "a.test", "backlog": 2})
        );
        assert_eq!(v["queue"]["wandering"]["spider_backlog"], 0);
    }

    #[tokio::test]
    async fn info_carries_scrapy_clusters_domain_figures() {
        let job: CrawlJob = serde_json::from_value(json!({
            "apiVersion": "kubecrawl.io/v1alpha1", "kind": "CrawlJob",
            "metadata": {"name": "abc", "namespace": "ns"},
            "spec": {"spiderid": "link", "appid": "testapp", "crawlid": "abc", "seeds": ["http://a.test/"]}
        }))
        .expect("a job");
        let frontier = seeded(
            ("link", "testapp", "abc"),
            &[
                ("http://a.test/1", 2),
                ("http://a.test/2", 9),
                ("http://b.test/", 5),
            ],
        )
        .await;
        let i = crawl_info(&frontier, &job).await.expect("info");
        assert_eq!(i["total_domains"], 2);
        assert_eq!(i["distinct_domains"], 2);
        assert_eq!(
            i["domains"]["a.test"],
            json!({"total": 2, "high_priority": 9, "low_priority": 2})
        );
        let a = app_info(&frontier, "testapp", None, std::slice::from_ref(&job))
            .await
            .expect("app info");
        assert_eq!(a["spiderid"], "link", "the one spider of its crawls");
        assert_eq!(a["total_domains"], 2);
        assert_eq!(a["crawlids"]["abc"]["domains"]["b.test"]["total"], 1);
    }

    #[tokio::test]
    async fn info_reports_status_counts_in_scrapy_clusters_names() {
        let job: CrawlJob = serde_json::from_value(json!({
            "apiVersion": "kubecrawl.io/v1alpha1", "kind": "CrawlJob",
            "metadata": {"name": "abc", "namespace": "ns"},
            "spec": {"spiderid": "wandering", "appid": "testapp", "crawlid": "abc", "seeds": ["http://a.test/"]},
            "status": {"phase": "Running", "queued": 4, "pages": 2, "steps": 1}
        }))
        .expect("a job");
        let i = info(&job);
        assert_eq!(i["total_pending"], 4);
        assert_eq!(i["phase"], "Running");
        assert_eq!(i["crawlid"], "abc");
        let a = app_info(
            &MemoryFrontier::default(),
            "testapp",
            None,
            std::slice::from_ref(&job),
        )
        .await
        .expect("app info");
        assert_eq!(a["total_crawlids"], 1);
        assert_eq!(a["crawlids"]["abc"]["pages"], 2);
    }
}
