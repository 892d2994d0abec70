//! `kubecrawl-worker crawl`: a whole crawl in one process, no cluster needed.
//!
//! The frontier is in memory (or Redis with `--redis`), the output JSON lines (or Kafka with
//! `--kafka`), and with `--warc-dir` WARC files too ([`crate::warc`]). The records are exactly those a cluster worker publishes to Kafka. A progress
//! bar is drawn on a terminal; a summary is returned at the end.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kubecrawl_api::{CrawlRequest, Extract, JobRef, Politeness, Render, RenderMode, Sitemaps};
use kubecrawl_frontier::{
    Frontier, FrontierConfig, JobPolicy, JobStats, Known, MemoryFrontier, RedisFrontier, known,
};
use tokio_util::sync::CancellationToken;

use crate::args::CrawlArgs;
use crate::declarative::Rules;
use crate::metrics::Metrics;
use crate::runtime::{Worker, WorkerConfig};
use crate::sink::Sink;
use crate::sink::jsonl::JsonLines;
use crate::spider::Registry;
use crate::{
    Error, Result, fetcher, kafka_sink, recrawl, renderer, robots_cache, spider, warc_writer,
};

/// What a standalone crawl did.
#[derive(Debug, Clone)]
pub struct CrawlSummary {
    /// The job.
    pub job: JobRef,
    /// The frontier's accounting at the end.
    pub stats: JobStats,
    /// Handled leases per outcome (`ok`, `retry`, `robots_denied`, `timeout`, ...).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Wall time of the crawl.
    pub elapsed: Duration,
    /// The crawl was interrupted (Ctrl-C) before it finished.
    pub interrupted: bool,
    /// The hosts adaptive politeness slowed down, with the largest delay each had.
    pub slowed_hosts: Vec<(String, Duration)>,
}

impl std::fmt::Display for CrawlSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.stats.pages as f64 / secs
        } else {
            0.0
        };
        writeln!(
            f,
            "{} {}: {} pages, {} items, {} bytes, {} errors, {} retries in {:.1} s ({:.0} pages/s), furthest step {}",
            if self.interrupted {
                "interrupted"
            } else {
                "finished"
            },
            self.job,
            self.stats.pages,
            self.stats.items,
            self.stats.bytes,
            self.stats.errors,
            self.stats.retries,
            secs,
            rate,
            self.stats.furthest_step,
        )?;
        let codes: Vec<String> = self
            .stats
            .status_codes
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        writeln!(
            f,
            "status codes: {}",
            if codes.is_empty() {
                "none".to_owned()
            } else {
                codes.join(", ")
            }
        )?;
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(o, n)| format!("{o}: {n}"))
            .collect();
        write!(f, "outcomes: {}", outcomes.join(", "))?;
        if !self.slowed_hosts.is_empty() {
            let slowed: Vec<String> = self
                .slowed_hosts
                .iter()
                .map(|(host, peak)| format!("{host} (at most {:.2} s)", peak.as_secs_f64()))
                .collect();
            write!(f, "\nslowed down: {}", slowed.join(", "))?;
        }
        if !self.stats.traps.is_empty() {
            let cut: Vec<String> = self
                .stats
                .traps
                .iter()
                .map(|(host, reason)| format!("{host} ({reason})"))
                .collect();
            write!(f, "\ncut off as traps: {}", cut.join(", "))?;
        }
        let counter = |name: &str| self.stats.counters.get(name).copied().unwrap_or(0);
        if self.stats.counters.contains_key(recrawl::CHANGED)
            || self.stats.counters.contains_key(recrawl::UNCHANGED)
        {
            write!(
                f,
                "\nrecrawl: {} changed, {} unchanged since the previous round",
                counter(recrawl::CHANGED),
                counter(recrawl::UNCHANGED),
            )?;
        }
        if self.stats.counters.keys().any(|k| k.starts_with("render")) {
            use crate::render::counter;
            write!(
                f,
                "\nrendering: {} rendered ({} chosen by auto), {} read before they settled, {} too large, {} failed, {} without a browser",
                counter(counter::RENDERED),
                counter(counter::AUTO),
                counter(counter::UNSETTLED),
                counter(counter::TOO_LARGE),
                counter(counter::FAILED),
                counter(counter::UNAVAILABLE),
            )?;
        }
        if self.stats.counters.keys().any(|k| k.starts_with("sitemap")) {
            write!(
                f,
                "\nsitemaps: {} read, {} failed, {} pages listed, {} older than --sitemaps-modified-since",
                counter("sitemaps_read"),
                counter("sitemaps_failed"),
                counter("sitemap_urls"),
                counter("sitemap_unmodified"),
            )?;
        }
        Ok(())
    }
}

/// Runs a standalone crawl until the job runs out of work or `shutdown` is cancelled.
///
/// # Errors
/// An unknown spider, a start URL that is not absolute http(s), a regex that does not
/// compile, an `--extract` file that cannot be read or does not compile, an output that
/// cannot be created, or Redis/Kafka that cannot be reached.
pub async fn crawl(
    args: CrawlArgs,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<CrawlSummary> {
    let spider = spider(registry, &args.spider)?;
    let mut seeds = seeds(&args.urls)?;
    seeds.extend(sitemap_requests(&args)?);
    let job = JobRef {
        spiderid: spider.name().to_owned(),
        appid: args.appid.clone(),
        crawlid: args.crawlid.clone().unwrap_or_else(default_crawlid),
    };
    let mut policy = policy(&args);
    policy.extract = args.extract.as_deref().map(read_extract).transpose()?;
    policy.render = render_policy(&args)?;
    let policy_renders = policy.render.is_some();
    let config = FrontierConfig::default();
    let frontier = frontier(&args, &config).await?;
    policy.recrawl = args.recrawl;
    if args.recrawl {
        known::start_round(frontier.as_ref(), &job)
            .await
            .map_err(Error::frontier("start_round"))?;
    }
    frontier
        .register(&job, &policy)
        .await
        .map_err(Error::frontier("register"))?;
    if args.recrawl {
        known::seed_known(frontier.as_ref(), &job)
            .await
            .map_err(Error::frontier("seed_known"))?;
    }
    frontier
        .seed(&job, &seeds)
        .await
        .map_err(Error::frontier("seed"))?;
    let metrics = Metrics::new();
    let worker_config = worker_config(&args, &job, &config);
    let warc = warc_writer(
        &args.warc,
        &args.fetch,
        &worker_config.worker_name,
        &job.spiderid,
        &metrics,
    )?;
    let worker = Arc::new(
        Worker::new(
            frontier.clone(),
            fetcher(&args.fetch)?,
            robots_cache(&args.fetch),
            spider,
            sink(&args).await?,
            metrics.clone(),
            worker_config,
        )
        .with_warc(warc)
        .with_renderer(renderer(policy_renders, &args.browser, &args.fetch).await?),
    );

    let started = Instant::now();
    let progress = (!args.no_progress && std::io::stderr().is_terminal()).then(|| {
        tokio::spawn(progress(
            frontier.clone(),
            job.clone(),
            shutdown.child_token(),
        ))
    });
    worker.clone().run(shutdown.child_token()).await;
    if let Some(bar) = progress {
        bar.abort();
    }
    let stats = frontier
        .job_stats(&job)
        .await
        .map_err(Error::frontier("job_stats"))?
        .unwrap_or_default();
    // A finished round no longer needs the pages it was seeded from; an interrupted one keeps
    // them, and the next run seeds from them again.
    if args.recrawl && !shutdown.is_cancelled() && stats.finished() {
        frontier
            .drop_known(&job, Known::Previous)
            .await
            .map_err(Error::frontier("drop_known"))?;
    }
    Ok(CrawlSummary {
        job,
        stats,
        outcomes: metrics.outcomes(),
        elapsed: started.elapsed(),
        interrupted: shutdown.is_cancelled(),
        slowed_hosts: worker.adaptive_delays().peaks(),
    })
}

/// `crawl-<unix seconds>`, the crawlid of a crawl that names none.
fn default_crawlid() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("crawl-{secs}")
}

/// The Redis frontier with --redis, else one in memory.
async fn frontier(args: &CrawlArgs, config: &FrontierConfig) -> Result<Arc<dyn Frontier>> {
    let Some(url) = &args.redis else {
        return Ok(Arc::new(MemoryFrontier::new(config.clone())));
    };
    let servers = args
        .redis_security
        .servers(url, false, None)
        .await
        .map_err(|source| Error::Connect { source })?;
    let frontier = RedisFrontier::connect_servers(servers, &args.redis_prefix, config.clone())
        .await
        .map_err(Error::frontier("connect"))?;
    Ok(Arc::new(frontier))
}

/// The job's policy from the command line.
fn policy(args: &CrawlArgs) -> JobPolicy {
    JobPolicy {
        maxdepth: args.maxdepth,
        allowed_domains: args
            .allowed_domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        allow_regex: args.allow_regex.clone(),
        deny_regex: args.deny_regex.clone(),
        max_pages: args.max_pages,
        politeness: Some(Politeness {
            hits: None,
            window_seconds: None,
            delay_millis: Some(u32::try_from(args.delay.as_millis()).unwrap_or(u32::MAX)),
            obey_robots: !args.ignore_robots,
            per_ip: false,
        }),
        follow_nofollow: args.follow_nofollow,
        sitemaps_modified_since: args.sitemaps_modified_since,
        ..JobPolicy::default()
    }
}

/// The job's `render`, from `--render` and its flags; `None` for `never`. Every pattern must
/// compile.
fn render_policy(args: &CrawlArgs) -> Result<Option<Render>> {
    if args.render == RenderMode::Never {
        return Ok(None);
    }
    for pattern in &args.render_patterns {
        regex::Regex::new(pattern).map_err(|source| Error::InvalidRenderPattern {
            pattern: pattern.clone(),
            source,
        })?;
    }
    Ok(Some(Render {
        mode: args.render,
        patterns: args.render_patterns.clone(),
        timeout_seconds: args.render_timeout,
        settle_millis: args.render_settle_ms,
        max_elements: args.render_max_elements,
        screenshot_max_bytes: args.screenshot_max_bytes,
    }))
}

/// The `extract` object of a `--extract` file (YAML or JSON), once its selectors and regexes
/// compile: bad rules stop the crawl before it starts.
fn read_extract(path: &std::path::Path) -> Result<Extract> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadExtract {
        path: path.to_owned(),
        source,
    })?;
    let extract: Extract = serde_yaml::from_str(&text).map_err(|source| Error::ParseExtract {
        path: path.to_owned(),
        source,
    })?;
    Rules::compile(&extract).map_err(|source| Error::InvalidExtract {
        path: path.to_owned(),
        source,
    })?;
    Ok(extract)
}

/// Kafka with --kafka, else JSON lines to --output.
async fn sink(args: &CrawlArgs) -> Result<Arc<dyn Sink>> {
    Ok(match &args.kafka {
        Some(brokers) => {
            Arc::new(kafka_sink(brokers, &args.kafka_security, &args.kafka_args).await?)
        }
        None => Arc::new(
            JsonLines::create(&args.output.to_string_lossy())
                .map_err(|source| Error::Sink { source })?,
        ),
    })
}

/// One worker that stops once `job` has run out of work.
fn worker_config(args: &CrawlArgs, job: &JobRef, config: &FrontierConfig) -> WorkerConfig {
    WorkerConfig {
        spiderid: job.spiderid.clone(),
        concurrency: args.fetch.concurrency,
        per_host_concurrency: args.fetch.per_host_concurrency,
        lease_batch: args.fetch.concurrency.min(64),
        // The in-memory frontier answers at once: batching would only add a hand-off.
        ack_batch: if args.redis.is_some() { 64 } else { 1 },
        lease_duration: Duration::from_secs(120),
        max_retries: config.max_retries,
        robots_retry: args.fetch.robots_retry,
        page_timeout: args.fetch.page_timeout,
        idle_poll: Duration::from_millis(200),
        stop_when_finished: Some(job.clone()),
        ..WorkerConfig::default()
    }
}

fn seeds(urls: &[String]) -> Result<Vec<CrawlRequest>> {
    urls.iter()
        .map(|raw| match http_url(raw) {
            Some(u) => Ok(CrawlRequest::seed(u.as_str(), 1)),
            None => Err(Error::InvalidSeed { url: raw.clone() }),
        })
        .collect()
}

/// `raw` as an absolute http(s) URL with a host, if it is one.
fn http_url(raw: &str) -> Option<url::Url> {
    url::Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// The requests that read the sitemaps `--sitemap` names and, with `--sitemaps-from-robots`,
/// those the start URLs' robots.txt files list.
fn sitemap_requests(args: &CrawlArgs) -> Result<Vec<CrawlRequest>> {
    if let Some(bad) = args.sitemaps.iter().find(|raw| http_url(raw).is_none()) {
        return Err(Error::InvalidSitemap { url: bad.clone() });
    }
    let sitemaps = Sitemaps {
        urls: args.sitemaps.clone(),
        from_robots: args.sitemaps_from_robots,
        modified_since: None,
    };
    Ok(sitemaps.requests(&args.urls, 1))
}

async fn progress(frontier: Arc<dyn Frontier>, job: JobRef, stop: CancellationToken) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    while !stop.is_cancelled() {
        if let Ok(Some(s)) = frontier.job_stats(&job).await {
            bar.set_message(format!(
                "{} pages, {} queued, {} in flight, {} errors, step {}",
                s.pages, s.queued, s.in_flight, s.errors, s.furthest_step
            ));
        }
        bar.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_files_are_read_as_yaml_or_json_and_must_compile() {
        let dir = std::env::temp_dir().join(format!("kubecrawl-extract-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("written");
            path
        };
        let yaml = file("ok.yaml", "fields:\n  - {name: title, selector: title}\n");
        assert_eq!(read_extract(&yaml).expect("reads").fields[0].name, "title");
        let json = file("ok.json", r#"{"follow": [], "pagination": "a[rel=next]"}"#);
        assert_eq!(read_extract(&json).expect("reads").follow, Some(Vec::new()));
        let chain = |e: Error| kubecrawl_process::format_chain(&e);
        let bad = file("bad.yaml", "fields: [{name: t, selector: 'h1['}]");
        let err = chain(read_extract(&bad).expect_err("refused"));
        assert!(
            err.contains("do not compile") && err.contains("fields[0].selector: \"h1[\""),
            "{err}"
        );
        let typo = file("typo.yaml", "field: []");
        let err = chain(read_extract(&typo).expect_err("refused"));
        assert!(err.contains("unknown field `field`"), "{err}");
        let err = chain(read_extract(&dir.join("missing.yaml")).expect_err("refused"));
        assert!(err.contains("missing.yaml"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn start_urls_must_be_absolute_http() {
        assert!(seeds(&["https://example.org/".into()]).is_ok());
        for bad in ["example.org", "ftp://example.org/", "/relative", "http://"] {
            let err = seeds(&[bad.into()]).expect_err("refused");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
