//! Scrapy Cluster's `expired` notification: when a crawl passes its `expires`, `kubecrawl
//! ingest` says so once on the outbound topic:
//!
//! ```json
//! {"action": "expired", "total_expired": 84, "server_time": 1795669004,
//!  "crawlid": "ist234", "spiderid": "link", "appid": "testapp"}
//! ```
//!
//! `total_expired` is what the crawl had queued when the operator purged it (its last
//! `status.queued`). Every [`POLL`] the ingest lists the CrawlJobs of its namespace and
//! announces each Expired one that does not carry the annotation [`ANNOTATION`], then sets
//! it. At least once: a crash between the two, or two ingest replicas at the same moment,
//! can announce a crawl twice; a failure to send or annotate is tried again at the next poll.

use std::time::Duration;

use kube::ResourceExt;
use kubecrawl_api::{CrawlJob, Phase};
use rdkafka::producer::FutureProducer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::jobs::{Jobs, Selector};

/// Set on a CrawlJob once its expiry was announced.
pub const ANNOTATION: &str = "kubecrawl.io/expired-notified";

/// How often the ingest looks for newly expired crawls.
pub const POLL: Duration = Duration::from_secs(5);

/// The notification for an expired crawl.
pub fn notification(job: &CrawlJob) -> Value {
    json!({
        "action": "expired",
        "total_expired": job.status.as_ref().map_or(0, |s| s.queued),
        "server_time": crate::now_s(),
        "crawlid": job.crawlid(),
        "spiderid": job.spec.spiderid,
        "appid": job.spec.appid,
    })
}

/// Whether `job` has expired and was not announced yet.
pub fn unannounced(job: &CrawlJob) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| s.phase == Phase::Expired)
        && !job.annotations().contains_key(ANNOTATION)
}

/// Announces expired crawls on `topic` until `shutdown`.
pub async fn run(jobs: Jobs, producer: FutureProducer, topic: String, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let found = match jobs.find(&Selector::default()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %kubecrawl_process::format_chain(&e), "listing crawljobs for expiry notifications failed");
                continue;
            }
        };
        for job in found.iter().filter(|j| unannounced(j)) {
            if !crate::ingest::send_answer(&producer, &topic, notification(job), &shutdown).await {
                return;
            }
            match jobs.annotate(job, ANNOTATION, "true").await {
                Ok(()) => tracing::info!(name = %job.name_any(), "expiry announced"),
                Err(e) => tracing::warn!(
                    name = %job.name_any(),
                    error = %kubecrawl_process::format_chain(&e),
                    "annotating an announced expiry failed; it may be announced again"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(phase: &str, annotated: bool) -> CrawlJob {
        let mut job: CrawlJob = serde_json::from_value(json!({
            "apiVersion": "kubecrawl.io/v1alpha1", "kind": "CrawlJob",
            "metadata": {"name": "ist234", "namespace": "ns"},
            "spec": {"spiderid": "link", "appid": "testapp", "crawlid": "ist234", "seeds": ["http://a.test/"]},
            "status": {"phase": phase, "queued": 84}
        }))
        .expect("a job");
        if annotated {
            job.annotations_mut()
                .insert(ANNOTATION.to_owned(), "true".to_owned());
        }
        job
    }

    #[test]
    fn an_expired_crawl_is_announced_once_in_scrapy_clusters_shape() {
        let n = notification(&job("Expired", false));
        assert_eq!(n["action"], "expired");
        assert_eq!(n["total_expired"], 84);
        assert_eq!(
            (&n["crawlid"], &n["spiderid"], &n["appid"]),
            (&json!("ist234"), &json!("link"), &json!("testapp"))
        );
        assert!(n["server_time"].is_i64());
        assert!(unannounced(&job("Expired", false)));
        assert!(!unannounced(&job("Expired", true)), "announced already");
        assert!(!unannounced(&job("Running", false)));
    }
}
