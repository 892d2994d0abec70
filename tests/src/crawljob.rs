//! CrawlJobs as the tests see them: the spec of a whole-site link crawl, a job's phase,
//! waiting until a job gets somewhere, and letting go of jobs no operator will finalize.

use std::time::Duration;

use anyhow::{Result, bail};
use kube::api::Api;
use kubecrawl_api::{CrawlJob, Phase};

use crate::poll::Wait;

/// The spec of a link-spider job (appid `testapp`) crawling the synthetic site from `seed`,
/// site.test only, with `workers` workers, `delay_millis` between two fetches.
pub fn link_spec(seed: &str, crawlid: &str, workers: u32, delay_millis: u32) -> serde_json::Value {
    serde_json::json!({
        "spiderid": "link",
        "appid": "testapp",
        "crawlid": crawlid,
        "seeds": [seed],
        "maxdepth": 1000,
        "allowedDomains": ["site.test"],
        "workers": workers,
        "politeness": {"delayMillis": delay_millis},
    })
}

/// The job's phase (Pending before it has a status).
pub fn phase(job: &CrawlJob) -> Phase {
    job.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// Whether the job fetched at least `pages` pages.
pub fn has_pages(job: &CrawlJob, pages: u64) -> bool {
    job.status.as_ref().is_some_and(|s| s.pages >= pages)
}

/// Polls CrawlJob `name` of `jobs` until `done` holds, for at most `timeout`.
///
/// # Errors
/// On timeout, with the job as last seen and what `explain` returns (logs); or when the API
/// server does not answer.
pub async fn wait_job(
    jobs: &Api<CrawlJob>,
    name: &str,
    timeout: Duration,
    done: impl Fn(&CrawlJob) -> bool,
    explain: impl Fn() -> String,
) -> Result<CrawlJob> {
    let mut last = None;
    let waited = Wait::new(format!("CrawlJob {name}"), timeout)
        .try_until(async || {
            let job = jobs.get_opt(name).await?;
            let reached = job.as_ref().is_some_and(&done);
            last = job;
            Ok(reached.then(|| last.clone()).flatten())
        })
        .await;
    match waited {
        Ok(job) => Ok(job),
        Err(e) => bail!("{e:#}; last seen: {last:#?}\n{}", explain()),
    }
}

/// Removes the finalizers of every CrawlJob of namespace `ns`, so that the namespace can be
/// deleted once no operator is left to remove them (a test that failed). Best effort.
pub fn release_finalizers(ns: &str) {
    let Ok(names) = crate::kubectl_ok(&["get", "crawljobs", "-n", ns, "-o", "name"], None) else {
        return;
    };
    for name in names.lines().filter(|l| !l.is_empty()) {
        let _ = crate::kubectl(
            &[
                "patch",
                "-n",
                ns,
                name,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
            None,
        );
    }
}
