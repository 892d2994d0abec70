//! Worker processes (`kubecrawl-worker run`, the binary the operator's Deployment runs) sharing
//! one job on the real Redis frontier and publishing to the real Kafka of `make env-up`.
//!
//! The test plays the operator: it registers and seeds the job through [`RedisFrontier`],
//! waits until the frontier says the job ran out of work, then reads the job's topic from the
//! beginning and compares the records with the synthetic site's ground truth. Delivery is
//! at-least-once: a URL may be published twice, but none may be missing and none may be
//! extra.
//!
//! Each test uses its own Redis key prefix and Kafka topic prefix and deletes both at the end.
//! Needs `REDIS_URL` and `KAFKA_BROKERS` (`make test`, or `. .testenv/env`); fails without them.
//! The TLS test needs the TLS Redis and the SASL_SSL Kafka of `make env-up` (`REDIS_TLS_URL`,
//! `KAFKA_SASL_BROKERS` and their credentials).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kubecrawl_api::{CrawlRequest, JobRef, PageRecord, Politeness};
use kubecrawl_e2e::keys::delete_prefixed;
use kubecrawl_e2e::records::topic_records;
use kubecrawl_e2e::site::{GroundTruth, SiteConfig, TestSite};
use kubecrawl_e2e::unique_name;
use kubecrawl_frontier::{Frontier, FrontierConfig, JobPolicy, JobStats, RedisFrontier};
use kubecrawl_process::connect::redis::RedisSecurity;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The spider fleet the workers serve.
const SPIDER: &str = "link";
/// How long a crawl of the test site may take before the test counts it as hung (the crawls
/// below take a few seconds; debug binaries on a loaded 2-core machine are slower).
const CRAWL_DEADLINE: Duration = Duration::from_secs(300);
/// How long a worker may take to start heart-beating, or to exit after a signal.
const PROCESS_DEADLINE: Duration = Duration::from_secs(60);
/// How long reading the topic back may take.
const CONSUME_DEADLINE: Duration = Duration::from_secs(120);

/// The real services, from the environment `make env-up` writes.
#[derive(Debug, Clone)]
struct Services {
    redis_url: String,
    kafka_brokers: String,
    /// TLS and authentication for the test's own Redis connections.
    redis_security: RedisSecurity,
    /// librdkafka properties for the test's own Kafka clients (TLS, SASL).
    kafka_properties: Vec<(String, String)>,
    /// What a worker is given besides the URLs (TLS and credential settings).
    worker_env: Vec<(String, String)>,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real Redis and Kafka; run them with \
             `make test` (or `make env-up` and `. .testenv/env`)"
        )
    })
}

impl Services {
    fn get() -> Self {
        Self {
            redis_url: var("REDIS_URL"),
            kafka_brokers: var("KAFKA_BROKERS"),
            redis_security: RedisSecurity::default(),
            kafka_properties: Vec::new(),
            worker_env: Vec::new(),
        }
    }

    /// The TLS Redis (ACL user, password from a file) and the SASL_SSL Kafka (SCRAM-SHA-512)
    /// of `make env-up`, verified against the CA it made.
    fn tls() -> Self {
        let ca = var("TLS_CA_FILE");
        let redis_password_file = var("REDIS_TLS_PASSWORD_FILE");
        let kafka_password = std::fs::read_to_string(var("KAFKA_SASL_PASSWORD_FILE"))
            .expect("reads the kafka password");
        let kafka_password = kafka_password.trim().to_owned();
        let redis_security = RedisSecurity {
            redis_ca_file: Some(ca.clone().into()),
            redis_username: Some(var("REDIS_TLS_USERNAME")),
            redis_password_file: Some(redis_password_file.clone().into()),
            ..RedisSecurity::default()
        };
        let kafka_properties = vec![
            ("security.protocol".to_owned(), "sasl_ssl".to_owned()),
            ("sasl.mechanisms".to_owned(), "SCRAM-SHA-512".to_owned()),
            ("sasl.username".to_owned(), var("KAFKA_SASL_USERNAME")),
            ("sasl.password".to_owned(), kafka_password.clone()),
            ("ssl.ca.location".to_owned(), ca.clone()),
        ];
        let worker_env = [
            ("KUBECRAWL_REDIS_CA_FILE", ca.clone()),
            ("KUBECRAWL_REDIS_USERNAME", var("REDIS_TLS_USERNAME")),
            ("KUBECRAWL_REDIS_PASSWORD_FILE", redis_password_file),
            ("KUBECRAWL_KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
            ("KUBECRAWL_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
            ("KUBECRAWL_KAFKA_USERNAME", var("KAFKA_SASL_USERNAME")),
            // From the environment, as a chart's secretKeyRef gives it.
            ("KUBECRAWL_KAFKA_PASSWORD", kafka_password),
            ("KUBECRAWL_KAFKA_CA_FILE", ca),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            redis_url: var("REDIS_TLS_URL"),
            kafka_brokers: var("KAFKA_SASL_BROKERS"),
            redis_security,
            kafka_properties,
            worker_env,
        }
    }

    /// A client configuration for the test's own Kafka clients.
    fn kafka_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.kafka_brokers);
        for (k, v) in &self.kafka_properties {
            config.set(k, v);
        }
        config
    }

    async fn redis_client(&self) -> redis::Client {
        self.redis_security
            .client(&self.redis_url)
            .await
            .expect("connects to the test's redis")
    }
}

/// One job on the real frontier, as the operator would set it up, and its output topic.
struct Crawl {
    services: Services,
    frontier: RedisFrontier,
    prefix: String,
    job: JobRef,
    site: TestSite,
    truth: GroundTruth,
}

impl Crawl {
    /// Starts a site of `pages` main pages and registers a job that crawls all of it
    /// (site.test only, robots.txt obeyed) with `delay` between two fetches, fleet-wide.
    async fn new(name: &str, pages: usize, delay: Duration) -> Self {
        Self::with_services(Services::get(), name, pages, delay).await
    }

    /// As [`Crawl::new`], on the given services.
    async fn with_services(services: Services, name: &str, pages: usize, delay: Duration) -> Self {
        let site = TestSite::start(SiteConfig::default().with_pages(pages))
            .await
            .expect("site starts");
        let truth = site.truth();
        // The Redis key prefix and the Kafka topic prefix of this test alone.
        let prefix = unique_name(&format!("kcw-{name}"));
        let frontier = RedisFrontier::connect_client(
            services.redis_client().await,
            &prefix,
            FrontierConfig::default(),
        )
        .await
        .expect("connects to REDIS_URL");
        let job = JobRef {
            spiderid: SPIDER.to_owned(),
            appid: "e2e".to_owned(),
            crawlid: name.to_owned(),
        };
        let policy = JobPolicy {
            maxdepth: 1000,
            allowed_domains: vec!["site.test".to_owned()],
            politeness: Some(Politeness {
                hits: None,
                window_seconds: None,
                delay_millis: Some(u32::try_from(delay.as_millis()).expect("a small delay")),
                obey_robots: true,
                per_ip: false,
            }),
            ..JobPolicy::default()
        };
        frontier
            .register(&job, &policy)
            .await
            .expect("registers the job");
        Self {
            services,
            frontier,
            prefix,
            job,
            site,
            truth,
        }
    }

    fn topic(&self) -> String {
        format!("{}.crawled_firehose", self.prefix)
    }

    /// Starts `kubecrawl-worker run` configured as the operator's Deployment configures it.
    fn spawn_worker(&self, name: &str, lease_duration: &str) -> WorkerProcess {
        self.spawn_worker_with(name, lease_duration, &[])
    }

    /// [`Crawl::spawn_worker`] with extra environment variables.
    fn spawn_worker_with(
        &self,
        name: &str,
        lease_duration: &str,
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let log = std::env::temp_dir().join(format!("{}-{name}.log", self.prefix));
        let stderr = std::fs::File::create(&log).expect("creates the worker's log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubecrawl-worker"))
            .arg("run")
            // Only what a Deployment sets: nothing leaks in from the developer's shell.
            .env_clear()
            .env("KUBECRAWL_SPIDER", SPIDER)
            .env("KUBECRAWL_REDIS_URL", &self.services.redis_url)
            .env("KUBECRAWL_REDIS_PREFIX", &self.prefix)
            .env("KUBECRAWL_KAFKA_BROKERS", &self.services.kafka_brokers)
            .env("KUBECRAWL_TOPIC_PREFIX", &self.prefix)
            .env("KUBECRAWL_METRICS_ADDR", "127.0.0.1:0")
            .env("KUBECRAWL_ALLOW_PRIVATE_NETWORKS", "true")
            .env("KUBECRAWL_RESOLVE", self.site.resolve())
            .env("KUBECRAWL_LEASE_DURATION", lease_duration)
            .env("KUBECRAWL_WORKER_NAME", name)
            // Tells the records (and the site's log) of each worker apart.
            .env("KUBECRAWL_USER_AGENT", user_agent(name))
            .env("KUBECRAWL_LOG_FORMAT", "json")
            .env("KUBECRAWL_LOG", "info")
            .envs(self.services.worker_env.iter().cloned())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .expect("starts kubecrawl-worker run");
        WorkerProcess {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// Waits until `n` workers heart-beat in this test's frontier, so that all of them are
    /// polling before there is work.
    async fn wait_for_workers(&self, n: u64, workers: &mut [WorkerProcess]) {
        tokio::time::timeout(PROCESS_DEADLINE, async {
            loop {
                let live = self.frontier.workers().await.expect("reads workers");
                if live.per_spider.get(SPIDER).copied().unwrap_or(0) >= n {
                    return;
                }
                for w in workers.iter_mut() {
                    w.assert_running();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the workers never heart-beat");
    }

    async fn seed(&self) {
        let admission = self
            .frontier
            .seed(&self.job, &[CrawlRequest::seed(self.site.root(), 1)])
            .await
            .expect("seeds the job");
        assert_eq!(admission.admitted, 1, "{admission:?}");
    }

    async fn stats(&self) -> JobStats {
        self.frontier
            .job_stats(&self.job)
            .await
            .expect("reads job stats")
            .expect("the job is registered")
    }

    /// Waits until the job ran out of work, failing early (with its log) when a worker in
    /// `workers` dies.
    async fn wait_finished(&self, workers: &mut [WorkerProcess]) -> JobStats {
        tokio::time::timeout(CRAWL_DEADLINE, async {
            loop {
                let stats = self.stats().await;
                if stats.finished() {
                    return stats;
                }
                for w in workers.iter_mut() {
                    w.assert_running();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .expect("the crawl never finished")
    }

    /// Every record of the job's topic, from the beginning.
    async fn records(&self) -> Vec<PageRecord> {
        self.records_of(self.topic()).await
    }

    /// Every record of `topic`, from the beginning.
    async fn records_of(&self, topic: String) -> Vec<PageRecord> {
        topic_records(self.services.kafka_config(), &topic, CONSUME_DEADLINE)
            .await
            .expect("the topic reads back")
    }

    /// Deletes the job's Redis keys (purge, then the spider-level keys under the test's own
    /// prefix) and its topic.
    async fn clean_up(&self) {
        assert!(
            self.frontier
                .purge(&self.job)
                .await
                .expect("purges the job"),
            "the job was registered"
        );
        delete_prefixed(&self.services.redis_client().await, &self.prefix)
            .await
            .expect("deletes the test's keys");
        let admin: AdminClient<DefaultClientContext> = self
            .services
            .kafka_config()
            .create()
            .expect("kafka admin client");
        let dead_letters = format!("{}.crawled_deadletter", self.prefix);
        let deleted = admin
            .delete_topics(
                &[&self.topic(), &dead_letters],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .expect("delete topic request");
        for result in deleted {
            // The dead-letter topic exists only when something was dead-lettered.
            if let Err((topic, e)) = result
                && topic != dead_letters
            {
                panic!("deleting topic {topic}: {e}");
            }
        }
    }

    /// The job's records, read back after its workers stopped; then cleans up and asserts
    /// that every page of the ground truth was published at least once and counted once by
    /// the frontier (`stats`). Returns the records and how many of them were duplicates.
    async fn published_once_or_more(&self, stats: &JobStats) -> (Vec<PageRecord>, usize) {
        let records = self.records().await;
        self.clean_up().await;
        let duplicates = assert_every_page_once_or_more(&records, &self.truth);
        assert_eq!(
            stats.pages,
            self.truth.len() as u64,
            "the frontier counts each page once: {stats:?}"
        );
        (records, duplicates)
    }
}

/// Whether `topic` exists with partitions, from the metadata of all topics (asking for one by
/// name may create it).
fn topic_exists(services: &Services, topic: &str) -> bool {
    let client: BaseConsumer = services.kafka_config().create().expect("kafka client");
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("kafka metadata");
    metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && !t.partitions().is_empty())
}

fn user_agent(worker: &str) -> String {
    format!("kubecrawl-e2e/{worker}")
}

/// A `kubecrawl-worker run` process this test started, with its stderr in a file.
struct WorkerProcess {
    name: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl WorkerProcess {
    /// Sends `signal` to this process. It is one this test spawned and has not reaped, so the
    /// pid is still its own.
    fn signal(&self, signal: Signal) {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("{} already exited", self.name));
        let pid = Pid::from_raw(i32::try_from(pid).expect("a pid fits an i32"));
        kill(pid, signal).unwrap_or_else(|e| panic!("signalling {}: {e}", self.name));
    }

    /// Waits for the process to exit and asserts that it drained and exited 0 (after a
    /// SIGTERM).
    async fn assert_exits_cleanly(&mut self) {
        let status = self.wait().await;
        assert!(
            status.success(),
            "{} exited with {status} after SIGTERM\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Stops the process with SIGTERM and asserts that it exited 0.
    async fn stop(&mut self) {
        self.signal(Signal::SIGTERM);
        self.assert_exits_cleanly().await;
    }

    async fn wait(&mut self) -> ExitStatus {
        tokio::time::timeout(PROCESS_DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit\n{}", self.name, self.log_text()))
            .expect("waits for the worker")
    }

    /// Panics, showing the log, if the process has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("polls the worker") {
            panic!(
                "worker {} exited early with {status}\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!(
            "--- log of {} ({}) ---\n{text}",
            self.name,
            self.log.display()
        )
    }

    /// The fields of the worker's last `worker stopped` log line: leases handled and given
    /// back. `None` when it never logged one.
    fn stopped(&self) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "worker stopped")
            .filter_map(|v| Some((v["handled"].as_u64()?, v["released"].as_u64()?)))
            .next_back()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: show what the worker said. kill_on_drop stops it.
            eprintln!("{}", self.log_text());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Records per worker, told apart by the User-Agent each one sends.
fn by_worker(records: &[PageRecord]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        let ua = r
            .request_headers
            .get("User-Agent")
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default();
        *counts.entry(ua).or_default() += 1;
    }
    counts
}

/// Asserts that the set of record URLs is the ground truth and returns how many records
/// were duplicates.
fn assert_every_page_once_or_more(records: &[PageRecord], truth: &GroundTruth) -> usize {
    let got: BTreeSet<String> = records.iter().map(|r| r.url.clone()).collect();
    let want = truth.urls();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} records: missing {missing:#?}\nunexpected {extra:#?}",
        records.len()
    );
    records.len() - got.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_job_and_publish_every_page() {
    let started = Instant::now();
    // A 1 ms politeness delay spaces the dispatches (one request per lease call), so both
    // workers get a share even though the site answers in microseconds.
    let crawl = Crawl::new("two-workers", 1500, Duration::from_millis(1)).await;
    let mut workers = vec![crawl.spawn_worker("a", "5m"), crawl.spawn_worker("b", "5m")];
    crawl.wait_for_workers(2, &mut workers).await;
    crawl.seed().await;
    let stats = crawl.wait_finished(&mut workers).await;

    for w in &workers {
        w.signal(Signal::SIGTERM);
    }
    for w in &mut workers {
        w.assert_exits_cleanly().await;
    }
    let (records, duplicates) = crawl.published_once_or_more(&stats).await;
    let per_worker = by_worker(&records);
    for w in &workers {
        let (handled, released) = w
            .stopped()
            .unwrap_or_else(|| panic!("{} logged no `worker stopped`\n{}", w.name, w.log_text()));
        let published = per_worker.get(&user_agent(&w.name)).copied().unwrap_or(0);
        assert!(
            handled > 0 && published > 0,
            "worker {} did no work: handled {handled}, published {published}; {per_worker:?}",
            w.name
        );
        assert_eq!(released, 0, "{} had nothing in flight to give back", w.name);
    }
    assert!(
        per_worker
            .keys()
            .all(|ua| workers.iter().any(|w| *ua == user_agent(&w.name))),
        "every record names one of the two workers: {per_worker:?}"
    );
    // At-least-once allows duplicates, but only a failure (an expired lease, a publish that
    // was not confirmed) makes one; this crawl had none.
    assert_eq!(duplicates, 0, "no failure, no duplicate");
    println!(
        "two workers: {} pages, {} records ({duplicates} duplicates), per worker {per_worker:?}, \
         {:.1} s",
        crawl.truth.len(),
        records.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_crawl_loses_no_page() {
    let started = Instant::now();
    // 2,000 pages at most one every 3 ms: six seconds at least, time to kill one worker
    // mid-way. Leases of the killed worker expire after 3 s and go to the survivor.
    let crawl = Crawl::new("kill-9", 2000, Duration::from_millis(3)).await;
    let mut workers = vec![
        crawl.spawn_worker("victim", "3s"),
        crawl.spawn_worker("survivor", "3s"),
    ];
    crawl.wait_for_workers(2, &mut workers).await;
    crawl.seed().await;

    // Kill the victim right after one of its fetches, when it most likely holds a lease whose
    // record is on its way to Kafka.
    let victim_agent = user_agent("victim");
    tokio::time::timeout(CRAWL_DEADLINE, async {
        loop {
            let fetched = crawl
                .site
                .request_log()
                .iter()
                .filter(|h| h.user_agent.as_deref() == Some(victim_agent.as_str()))
                .count();
            if fetched >= 50 {
                return;
            }
            for w in &mut workers {
                w.assert_running();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the victim never fetched 50 pages");
    workers[0].signal(Signal::SIGKILL);
    let at_kill = crawl.stats().await;
    let status = workers[0].wait().await;
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status}");
    assert!(
        !at_kill.finished() && at_kill.pages < crawl.truth.len() as u64 / 2,
        "the kill came too late to be mid-crawl: {at_kill:?}"
    );

    let stats = crawl.wait_finished(&mut workers[1..]).await;
    workers[1].stop().await;
    let (records, duplicates) = crawl.published_once_or_more(&stats).await;
    let per_worker = by_worker(&records);
    let published = |agent: &str| per_worker.get(agent).copied().unwrap_or(0);
    assert!(
        published(&victim_agent) > 0 && published(&user_agent("survivor")) > 0,
        "both workers published: {per_worker:?}"
    );
    // Pages the victim fetched but never published: it died holding their leases, which
    // expired and went to the survivor.
    let victim_fetched = crawl
        .site
        .request_log()
        .iter()
        .filter(|h| h.user_agent.as_deref() == Some(victim_agent.as_str()))
        .filter(|h| h.target != "/robots.txt")
        .count();
    println!(
        "kill -9: {} pages, {} records ({duplicates} duplicates), killed at {} pages; the \
         victim fetched {victim_fetched} pages and published {}; per worker {per_worker:?}, \
         {:.1} s",
        crawl.truth.len(),
        records.len(),
        at_kill.pages,
        published(&victim_agent),
        started.elapsed().as_secs_f64()
    );
}

/// Regression: a record Kafka refuses even without its body was given back to the head of its
/// queue and fetched again at every politeness slot forever, starving its host and never
/// letting the job end. Now it is retried a bounded number of times, then a dead-letter
/// record (no body, no links, the reason) is published and the job goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_kafka_never_accepts_is_dead_lettered_not_looped() {
    let crawl = Crawl::new("poison", 60, Duration::from_millis(1)).await;
    // librdkafka's smallest message limit: pages with a few links do not fit even without
    // their body, pages with none do.
    let mut workers = vec![crawl.spawn_worker_with(
        "w",
        "5m",
        &[(
            "KUBECRAWL_KAFKA_PROPERTIES",
            "message.max.bytes=1000,batch.size=1000",
        )],
    )];
    crawl.wait_for_workers(1, &mut workers).await;
    // The worker created its topics at start-up, before any record: the first dead letters
    // never race the topic's automatic creation (one was lost to that race once).
    let dead_letters = format!("{}.crawled_deadletter", crawl.prefix);
    for topic in [crawl.topic(), dead_letters.clone()] {
        assert!(
            topic_exists(&crawl.services, &topic),
            "{topic} does not exist after start-up"
        );
    }
    crawl.seed().await;
    let stats = crawl.wait_finished(&mut workers).await;
    workers[0].stop().await;
    let published = crawl.records().await;
    let dead = crawl.records_of(dead_letters).await;
    let log = crawl.site.request_log();
    crawl.clean_up().await;

    let dead_urls: BTreeSet<String> = dead.iter().map(|r| r.url.clone()).collect();
    assert!(
        !dead_urls.is_empty(),
        "no record was too large: the test proves nothing"
    );
    for r in &dead {
        assert_eq!(
            r.error.as_deref(),
            Some("kafka_MessageSizeTooLarge"),
            "{}",
            r.url
        );
        assert!(r.body.is_empty() && r.links.is_empty(), "{}", r.url);
    }
    let mut all = published.clone();
    all.extend(dead.iter().cloned());
    assert_every_page_once_or_more(&all, &crawl.truth);
    assert!(
        published.iter().all(|r| !dead_urls.contains(&r.url)),
        "a dead-lettered page was also published"
    );
    // A dead-lettered page counts as an error, not as a page.
    assert_eq!(
        stats.pages + dead_urls.len() as u64,
        crawl.truth.len() as u64,
        "{stats:?}"
    );
    assert!(stats.errors >= dead_urls.len() as u64, "{stats:?}");
    // Each poison page was fetched once per attempt: the first and its retries, no more.
    let max_attempts = u64::from(FrontierConfig::default().max_retries) + 1;
    for url in &dead_urls {
        let parsed = url::Url::parse(url).expect("a record's url parses");
        let target = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        let fetches = log
            .iter()
            .filter(|h| Some(h.host) == parsed.host_str() && h.target == target)
            .count() as u64;
        assert!(
            (1..=max_attempts).contains(&fetches),
            "{url} was fetched {fetches} times (at most {max_attempts})"
        );
    }
    println!(
        "poison: {} pages, {} published, {} dead-lettered, errors {}",
        crawl.truth.len(),
        published.len(),
        dead_urls.len(),
        stats.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_crawls_through_tls_redis_and_sasl_ssl_kafka() {
    let started = Instant::now();
    // Redis over TLS with an ACL user whose password comes from a file; Kafka over SASL_SSL
    // with SCRAM-SHA-512 and the password from the environment; both verified against the
    // CA `make env-up` made.
    let crawl = Crawl::with_services(Services::tls(), "tls", 200, Duration::from_millis(1)).await;
    let mut workers = vec![crawl.spawn_worker("tls", "5m")];
    crawl.wait_for_workers(1, &mut workers).await;
    crawl.seed().await;
    let stats = crawl.wait_finished(&mut workers).await;
    workers[0].stop().await;
    let (_, duplicates) = crawl.published_once_or_more(&stats).await;
    assert_eq!(duplicates, 0, "no failure, no duplicate");
    println!(
        "tls: {} pages through rediss:// and sasl_ssl in {:.1} s",
        crawl.truth.len(),
        started.elapsed().as_secs_f64()
    );
}
