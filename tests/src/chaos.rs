//! The chaos suite: a crawl of the synthetic site by several real worker processes on real
//! services of the suite's own, while faults are injected at points drawn from a seed, then
//! the output is checked against the site's ground truth.
//!
//! # What runs
//! - A Redis of its own with AOF on (`appendfsync always`) and a single-node Kafka broker of
//!   its own ([`services`]), on free ports: the shared ones other tests use are never
//!   touched. Each sits behind a [`FaultProxy`]; workers reach them only through it.
//! - `kubecrawl-worker run` processes ([`ChaosConfig::workers`]), restarted when they die.
//! - With [`ChaosConfig::operator`]: a second kube-apiserver on the shared etcd, and two
//!   `kubecrawl-operator` replicas (leader and standby) talking to it, in a namespace of the
//!   run's own; the job is a CrawlJob, which must end `Succeeded`. The operator's worker
//!   Deployment gets no node (its Pods stay Pending): the suite's own processes are the
//!   fleet. Without it, the suite registers and seeds the job on the frontier itself, as the
//!   operator would.
//!
//! # The faults
//! [`FaultKind`] lists them. [`schedule::plan`] places each at a share of the crawl's
//! progress (pages fetched over the ground truth) drawn from the seed; a fault fires once
//! the job has fetched that share, after the previous fault has healed and the crawl has
//! resumed, so each fault's time to resume is its own.
//!
//! # The verdict
//! Every ground-truth page is in Kafka at least once and nothing else is; the job finished
//! (frontier: nothing queued or in flight; with the operator: `Succeeded`) with pages equal
//! to the ground truth; duplicate records are no more than the requests that could be in
//! flight at the faults (workers hit × each worker's concurrency). A missing page is
//! reported with the log lines that mention it and the fault that preceded them.

mod check;
mod fleet;
mod process;
pub mod schedule;
pub mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use kube::api::{Api, PostParams};
use kubecrawl_api::{CrawlJob, CrawlRequest, JobRef, Phase, Politeness};
use kubecrawl_frontier::{Frontier, FrontierConfig, JobPolicy, JobStats, RedisFrontier};
use serde_json::json;

use crate::proxy::{FaultProxy, Mode};
use crate::site::{FAR_HOST, MAIN_HOST, OTHER_HOST, SiteConfig, TestSite};
use crate::{TestEnv, TestNamespace, ensure_crd};
use fleet::{Operators, Workers};
pub use schedule::{FaultKind, PlannedFault, fresh_seed, parse_counts, plan};
use services::{ApiServer, Kafka, Redis};

/// The spider fleet the workers serve.
const SPIDER: &str = "link";
/// How often the job's progress is read.
const POLL: Duration = Duration::from_millis(250);
/// How long the crawl may take to move again after a fault before the suite calls it stuck.
const RESUME_DEADLINE: Duration = Duration::from_secs(180);
/// The leader Lease the operators share (their default name).
const LEADER_LEASE: &str = "kubecrawl-operator";

/// How a chaos run is set up.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// The seed of the fault plan (printed; pass it again to replay).
    pub seed: u64,
    /// Main pages of the site (`site.test`); `other.test` and `far.test` add
    /// [`ChaosConfig::offsite_pages`].
    pub pages: usize,
    /// Pages of `other.test` and of `far.test`.
    pub offsite_pages: (usize, usize),
    /// Worker processes.
    pub workers: usize,
    /// Each worker's fetch concurrency (`KUBECRAWL_CONCURRENCY`), and its lease batch.
    pub concurrency: usize,
    /// The job's politeness delay per domain: what paces the crawl, so that it lasts
    /// through the faults.
    pub delay: Duration,
    /// The workers' lease duration.
    pub lease: Duration,
    /// How many faults of each kind.
    pub faults: BTreeMap<FaultKind, u32>,
    /// Run the operator pair on an API server of the run's own (needed by
    /// [`FaultKind::ApiServerRestart`] and [`FaultKind::OperatorKill`]).
    pub operator: bool,
    /// Where `kubecrawl-worker` and `kubecrawl-operator` are.
    pub bin_dir: PathBuf,
    /// How long the whole crawl may take.
    pub deadline: Duration,
}

impl ChaosConfig {
    /// `make chaos`: 20,000+ pages on three hosts, three workers, the operator pair, and
    /// every kind of fault (20 worker kills).
    pub fn full(seed: u64, bin_dir: PathBuf) -> Self {
        let mut faults: BTreeMap<FaultKind, u32> =
            FaultKind::ALL.into_iter().map(|k| (k, 1)).collect();
        faults.insert(FaultKind::WorkerKill, 20);
        Self {
            seed,
            pages: 19_000,
            offsite_pages: (1_000, 1_000),
            workers: 3,
            concurrency: 16,
            delay: Duration::from_millis(10),
            lease: Duration::from_secs(15),
            faults,
            operator: true,
            bin_dir,
            deadline: Duration::from_secs(1800),
        }
    }

    /// Refuses a configuration that cannot run: no workers, a control-plane fault without
    /// the operator, a missing binary.
    fn check(&self) -> Result<()> {
        if self.workers == 0 || self.concurrency == 0 {
            bail!("a chaos run needs workers with some concurrency");
        }
        if !self.operator
            && let Some(kind) = self.faults.keys().find(|k| k.needs_operator())
        {
            bail!("fault {} needs the operator", kind.name());
        }
        for bin in ["kubecrawl-worker", "kubecrawl-operator"] {
            let path = self.bin_dir.join(bin);
            if (bin == "kubecrawl-worker" || self.operator) && !path.exists() {
                bail!(
                    "{} is missing: build it first (`cargo build --bins -p kubecrawl-worker -p kubecrawl-operator`)",
                    path.display()
                );
            }
        }
        Ok(())
    }
}

/// The workspace's binaries beside the running executable: `<target>/debug` for a test
/// (which lives in `<target>/debug/deps`) or a binary of this crate.
pub fn default_bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("the running executable's path")?;
    let dir = exe.parent().context("an executable lives in a directory")?;
    Ok(if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir).to_owned()
    } else {
        dir.to_owned()
    })
}

/// What one fault did.
#[derive(Debug, Clone)]
struct FaultRecord {
    planned: PlannedFault,
    /// Wall-clock time it was injected.
    at: SystemTime,
    /// Seconds since the crawl started.
    at_s: f64,
    /// Pages fetched when it was injected.
    at_pages: u64,
    /// Requests in flight (leased, not acknowledged) just before it.
    in_flight: u64,
    /// Seconds the injection took (kill and restart, or the hold).
    took_s: f64,
    /// Seconds from the end of the injection until the crawl moved again; `None`: it never
    /// did within [`RESUME_DEADLINE`].
    resume_s: Option<f64>,
    /// What happened, in a few words.
    note: String,
    /// A broken guarantee the fault revealed, with its evidence.
    finding: Option<String>,
}

/// The result of a run: the figures (the JSON the suite prints last) and what failed.
#[derive(Debug, Clone)]
pub struct Report {
    /// The figures, one JSON object.
    pub figures: serde_json::Value,
    /// Every pass criterion that failed, with its evidence. Empty: the run passed.
    pub failures: Vec<String>,
    /// Where the run's logs and data are (kept when it failed).
    pub run_dir: PathBuf,
}

impl Report {
    /// True when every criterion held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The job's progress as last read from Redis.
#[derive(Debug, Default)]
struct Progress {
    stats: Option<JobStats>,
    read_errors: u64,
}

type Shared = Arc<Mutex<Progress>>;

fn progress(shared: &Shared) -> (Option<JobStats>, u64) {
    let p = shared.lock().unwrap_or_else(PoisonError::into_inner);
    (p.stats.clone(), p.read_errors)
}

fn pages(shared: &Shared) -> u64 {
    progress(shared).0.map_or(0, |s| s.pages)
}

/// Everything a run started, so that it can be stopped whatever happens.
struct Rig {
    dir: PathBuf,
    site: TestSite,
    redis: Redis,
    redis_proxy: FaultProxy,
    kafka: Kafka,
    kafka_proxy: FaultProxy,
    workers: Option<Workers>,
    control: Option<Control>,
    monitor: Option<tokio::task::JoinHandle<()>>,
}

/// The operator side of a run.
struct Control {
    /// Held, not read: dropping it deletes the run's namespace.
    _namespace: TestNamespace,
    apiserver: ApiServer,
    operators: Operators,
    jobs: Api<CrawlJob>,
}

impl Rig {
    async fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(monitor) = self.monitor.take() {
            monitor.abort();
        }
        if let Some(workers) = &mut self.workers
            && let Err(e) = workers.stop().await
        {
            problems.push(format!("stopping the workers: {e:#}"));
        }
        if let Some(control) = &mut self.control {
            if let Err(e) = control.operators.stop().await {
                problems.push(format!("stopping the operators: {e:#}"));
            }
            if let Err(e) = control.apiserver.stop().await {
                problems.push(format!("stopping the API server: {e:#}"));
            }
        }
        for (what, result) in [
            ("kafka", self.kafka.stop().await),
            ("redis", self.redis.stop().await),
        ] {
            if let Err(e) = result {
                problems.push(format!("stopping {what}: {e:#}"));
            }
        }
        problems
    }
}

/// Runs the chaos suite as `config` says and returns its figures and verdict.
///
/// # Errors
/// When the run could not be set up or a fault could not be injected (a service that does
/// not come back, a missing binary): the suite's own failure, not a finding about kubecrawl.
pub async fn run(config: ChaosConfig) -> Result<Report> {
    config.check()?;
    crate::install_tls_provider();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("chaos-{}-{nanos:x}", std::process::id());
    let dir = std::env::temp_dir().join(format!("kubecrawl-{name}"));
    std::fs::create_dir_all(&dir)?;
    let plan = plan(config.seed, &config.faults, config.workers);
    eprintln!(
        "[chaos] seed {} ({} faults); logs and data in {}",
        config.seed,
        plan.len(),
        dir.display()
    );

    let site = TestSite::start(
        SiteConfig::default()
            .with_pages(config.pages)
            .with_offsite(config.offsite_pages.0, config.offsite_pages.1),
    )
    .await?;
    let seeds = [
        site.root(),
        site.url(OTHER_HOST, "/"),
        site.url(FAR_HOST, "/"),
    ];
    let hosts = [MAIN_HOST, OTHER_HOST, FAR_HOST];
    let truth = site.reachable(&site.reach().seeds(seeds.clone()).allowed_hosts(&hosts))?;
    eprintln!("[chaos] site: {} pages reachable on {hosts:?}", truth.len());

    let redis = Redis::start(&dir).await?;
    let redis_proxy = FaultProxy::start(redis.addr()).await?;
    let kafka_port = process::free_port()?;
    let kafka_proxy = FaultProxy::start(([127, 0, 0, 1], kafka_port).into()).await?;
    let kafka = Kafka::start(&dir, kafka_port, kafka_proxy.addr().port()).await?;
    eprintln!(
        "[chaos] redis {} (proxy {}), kafka {} (proxy {})",
        redis.url(),
        redis_proxy.addr(),
        kafka.brokers(),
        kafka_proxy.addr()
    );
    let mut rig = Rig {
        dir: dir.clone(),
        site,
        redis,
        redis_proxy,
        kafka,
        kafka_proxy,
        workers: None,
        control: None,
        monitor: None,
    };
    let outcome = crawl(&config, &name, &plan, &truth, &seeds, &hosts, &mut rig).await;
    let problems = rig.stop().await;
    let mut report = outcome?;
    report.failures.extend(problems);
    if report.passed() {
        let _ = std::fs::remove_dir_all(&rig.dir);
    }
    drop(rig.site);
    Ok(report)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site, the run's whole context"
)]
async fn crawl(
    config: &ChaosConfig,
    name: &str,
    plan: &[PlannedFault],
    truth: &crate::site::GroundTruth,
    seeds: &[String; 3],
    hosts: &[&str; 3],
    rig: &mut Rig,
) -> Result<Report> {
    let started = Instant::now();
    let job = JobRef {
        spiderid: SPIDER.to_owned(),
        appid: "chaos".to_owned(),
        crawlid: "chaos".to_owned(),
    };
    let frontier =
        RedisFrontier::connect(&rig.redis.url(), name, FrontierConfig::default()).await?;
    let delay_millis = u32::try_from(config.delay.as_millis()).context("a delay in ms")?;

    if config.operator {
        rig.control = Some(start_control(config, name, rig, seeds, hosts, delay_millis).await?);
    } else {
        let policy = JobPolicy {
            maxdepth: 1000,
            allowed_domains: hosts.iter().map(|h| (*h).to_owned()).collect(),
            politeness: Some(Politeness {
                hits: None,
                window_seconds: None,
                delay_millis: Some(delay_millis),
                obey_robots: true,
                per_ip: false,
            }),
            ..JobPolicy::default()
        };
        frontier.register(&job, &policy).await?;
        let requests: Vec<CrawlRequest> = seeds.iter().map(|s| CrawlRequest::seed(s, 1)).collect();
        let admission = frontier.seed(&job, &requests).await?;
        if admission.admitted != 3 {
            bail!("the seeds were not all admitted: {admission:?}");
        }
    }

    let env: Vec<(String, String)> = [
        ("KUBECRAWL_SPIDER", SPIDER.to_owned()),
        (
            "KUBECRAWL_REDIS_URL",
            format!("redis://{}", rig.redis_proxy.addr()),
        ),
        ("KUBECRAWL_REDIS_PREFIX", name.to_owned()),
        (
            "KUBECRAWL_KAFKA_BROKERS",
            rig.kafka_proxy.addr().to_string(),
        ),
        ("KUBECRAWL_TOPIC_PREFIX", name.to_owned()),
        ("KUBECRAWL_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("KUBECRAWL_ALLOW_PRIVATE_NETWORKS", "true".to_owned()),
        ("KUBECRAWL_RESOLVE", rig.site.resolve()),
        (
            "KUBECRAWL_LEASE_DURATION",
            humantime::format_duration(config.lease).to_string(),
        ),
        ("KUBECRAWL_CONCURRENCY", config.concurrency.to_string()),
        ("KUBECRAWL_LEASE_BATCH", config.concurrency.to_string()),
        ("KUBECRAWL_DRAIN_TIMEOUT", "5s".to_owned()),
        ("KUBECRAWL_LOG_FORMAT", "json".to_owned()),
        ("KUBECRAWL_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    rig.workers = Some(Workers::start(
        &config.bin_dir.join("kubecrawl-worker"),
        env,
        &rig.dir,
        config.workers,
    )?);

    let shared: Shared = Arc::default();
    rig.monitor = Some(tokio::spawn(monitor(
        frontier.clone(),
        job.clone(),
        Arc::clone(&shared),
    )));

    // The faults, each once the crawl reached its share and resumed after the previous one.
    let ground = truth.len() as u64;
    let mut records = Vec::with_capacity(plan.len());
    for planned in plan {
        let threshold = (planned.at_share * ground as f64) as u64;
        wait_until(
            config,
            rig,
            &shared,
            started,
            "the crawl to reach the next fault",
            |p| p.pages >= threshold || p.finished(),
        )
        .await?;
        if progress(&shared).0.is_some_and(|s| s.finished()) {
            bail!(
                "the crawl finished before fault {} ({} at {:.0} %): slow it down (--delay)",
                records.len() + 1,
                planned.kind.name(),
                planned.at_share * 100.0
            );
        }
        let record = inject(rig, &shared, started, planned).await?;
        eprintln!(
            "[chaos] {:>6.1} s  fault {:>2}/{}  {:<17} at {:>6} pages, {:>3} in flight: {} (took {:.1} s, resumed after {})",
            record.at_s,
            records.len() + 1,
            plan.len(),
            planned.kind.name(),
            record.at_pages,
            record.in_flight,
            record.note,
            record.took_s,
            record
                .resume_s
                .map_or("never".to_owned(), |s| format!("{s:.1} s"))
        );
        records.push(record);
    }

    // The end: the frontier ran out of work (and the operator called the job Succeeded).
    let finished = wait_until(config, rig, &shared, started, "the crawl to finish", |p| {
        p.finished()
    })
    .await;
    let mut failures = Vec::new();
    let mut phase = None;
    let mut status_pages = None;
    if let Err(e) = &finished {
        failures.push(format!("the crawl did not finish: {e:#}"));
    } else if let Some(control) = &rig.control {
        match wait_succeeded(config, control, started).await {
            Ok(job) => {
                let status = job.status.unwrap_or_default();
                phase = Some(format!("{:?}", status.phase));
                status_pages = Some(status.pages);
                if status.pages != ground {
                    failures.push(format!(
                        "the CrawlJob's status.pages is {}, the ground truth {ground}",
                        status.pages
                    ));
                }
            }
            Err(e) => failures.push(format!("the CrawlJob did not end Succeeded: {e:#}")),
        }
    }
    let crawl_s = started.elapsed().as_secs_f64();
    let (stats, read_errors) = progress(&shared);
    let stats = stats.unwrap_or_default();
    if let Some(workers) = &mut rig.workers {
        workers.supervise()?;
        workers.stop().await?;
    }

    // The output, against the ground truth.
    let brokers = rig.kafka.brokers();
    let topic = format!("{name}.crawled_firehose");
    let urls = tokio::task::spawn_blocking(move || check::record_urls(&brokers, &topic))
        .await
        .context("the topic reader panicked")??;
    let got: BTreeSet<String> = urls.iter().cloned().collect();
    let want = truth.urls();
    let missing: BTreeSet<String> = want.difference(&got).cloned().collect();
    let extra: BTreeSet<String> = got.difference(&want).cloned().collect();
    let duplicates = (urls.len() - got.len()) as u64;
    let bound: u64 = records
        .iter()
        .map(|r| (r.planned.kind.workers_hit(config.workers) * config.concurrency) as u64)
        .sum();
    if !missing.is_empty() {
        failures.push(format!(
            "{} ground-truth pages are not in Kafka:\n{}",
            missing.len(),
            explain_missing(&rig.dir, &missing, &records)
        ));
    }
    if !extra.is_empty() {
        failures.push(format!(
            "{} records are not ground-truth pages: {:?}",
            extra.len(),
            extra.iter().take(20).collect::<Vec<_>>()
        ));
    }
    if stats.pages != ground {
        failures.push(format!(
            "the frontier counts {} pages, the ground truth {ground}: {stats:?}",
            stats.pages
        ));
    }
    if duplicates > bound {
        failures.push(format!(
            "{duplicates} duplicate records, more than the {bound} requests that could be in flight at the faults"
        ));
    }
    for r in &records {
        if let Some(finding) = &r.finding {
            failures.push(format!(
                "{} at {:.1} s: {finding}",
                r.planned.kind.name(),
                r.at_s
            ));
        }
    }
    if let Some(workers) = &rig.workers
        && !workers.unexpected_exits.is_empty()
    {
        failures.push(format!(
            "workers exited on their own {} times:\n{}",
            workers.unexpected_exits.len(),
            workers.unexpected_exits.join("\n")
        ));
    }

    let mut by_kind: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &records {
        *by_kind.entry(r.planned.kind.name()).or_default() += 1;
    }
    let operator_exits = rig
        .control
        .as_ref()
        .map(|c| c.operators.exits.clone())
        .unwrap_or_default();
    let figures = json!({
        // A string: JSON readers that parse numbers as doubles (jq) would round it.
        "seed": config.seed.to_string(),
        "passed": failures.is_empty(),
        "ground_truth": ground,
        "pages": stats.pages,
        "records": urls.len(),
        "missing": missing.len(),
        "unexpected": extra.len(),
        "duplicates": duplicates,
        "duplicate_bound": bound,
        "workers": config.workers,
        "concurrency": config.concurrency,
        "phase": phase,
        "status_pages": status_pages,
        "faults": by_kind,
        "faults_injected": records.len(),
        "crawl_s": round1(crawl_s),
        "retries": stats.retries,
        "errors": stats.errors,
        "progress_read_errors": read_errors,
        "operator_exits": operator_exits.len(),
        "worker_warnings": check::worker_warnings(&rig.dir),
        "timeline": records.iter().map(|r| json!({
            "fault": r.planned.kind.name(),
            "at_s": round1(r.at_s),
            "at_pages": r.at_pages,
            "in_flight": r.in_flight,
            "took_s": round1(r.took_s),
            "resume_s": r.resume_s.map(round1),
            "note": r.note,
        })).collect::<Vec<_>>(),
    });
    Ok(Report {
        figures,
        failures,
        run_dir: rig.dir.clone(),
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Starts the API server, the namespace, the operator pair, and creates the CrawlJob.
async fn start_control(
    config: &ChaosConfig,
    name: &str,
    rig: &Rig,
    seeds: &[String; 3],
    hosts: &[&str; 3],
    delay_millis: u32,
) -> Result<Control> {
    ensure_crd()?;
    let env = TestEnv::get();
    let client = env.kube_client().await?;
    let ns = TestNamespace::create("chaos")?;
    let apiserver = ApiServer::start(&rig.dir, &env.kubeconfig).await?;
    // The operator's Deployment must not run anywhere: the suite's processes are the fleet.
    let fleet = json!({
        "namespace": ns.name,
        "defaults": {
            "image": "kubecrawl-worker:chaos",
            "maxReplicas": config.workers,
            "nodeSelector": {"kubecrawl.io/chaos": "no-node-has-this"},
        },
        "fleets": {SPIDER: {}},
    });
    let fleet_config = rig.dir.join("fleets.yaml");
    std::fs::write(&fleet_config, serde_yaml::to_string(&fleet)?)?;
    let operator_env: Vec<(String, String)> = [
        ("KUBECRAWL_REDIS_URL", rig.redis.url()),
        ("KUBECRAWL_REDIS_PREFIX", name.to_owned()),
        ("KUBECRAWL_KAFKA_BROKERS", rig.kafka.brokers()),
        ("KUBECRAWL_TOPIC_PREFIX", name.to_owned()),
        ("KUBECRAWL_FLEET_CONFIG", fleet_config.display().to_string()),
        ("KUBECRAWL_WATCH_NAMESPACE", ns.name.clone()),
        ("KUBECRAWL_LEADER_NAMESPACE", ns.name.clone()),
        ("KUBECRAWL_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("KUBECRAWL_STATUS_INTERVAL", "1s".to_owned()),
        ("KUBECRAWL_COMPLETION_GRACE", "5s".to_owned()),
        ("KUBECRAWL_LOG_FORMAT", "json".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let kubeconfig = std::fs::read_to_string(apiserver.kubeconfig())?;
    let mut operators = Operators::new(
        &config.bin_dir.join("kubecrawl-operator"),
        operator_env,
        &rig.dir,
        (apiserver.addr(), &kubeconfig),
        Api::namespaced(client.clone(), &ns.name),
        LEADER_LEASE,
    );
    let first = operators.spawn().await?;
    let started = Instant::now();
    while operators.leader().await?.as_deref() != Some(first.as_str()) {
        operators.supervise().await?;
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the first operator never led\n{}", operators.log_tails());
        }
        tokio::time::sleep(POLL).await;
    }
    operators.spawn().await?;
    let jobs: Api<CrawlJob> = Api::namespaced(client, &ns.name);
    let job: CrawlJob = serde_json::from_value(json!({
        "apiVersion": "kubecrawl.io/v1alpha1",
        "kind": "CrawlJob",
        "metadata": {"name": "chaos", "namespace": ns.name},
        "spec": {
            "spiderid": SPIDER,
            "appid": "chaos",
            "crawlid": "chaos",
            "seeds": seeds,
            "maxdepth": 1000,
            "allowedDomains": hosts,
            "workers": config.workers,
            "politeness": {"delayMillis": delay_millis},
        },
    }))?;
    jobs.create(&PostParams::default(), &job)
        .await
        .context("creating the CrawlJob")?;
    Ok(Control {
        _namespace: ns,
        apiserver,
        operators,
        jobs,
    })
}

/// Reads the job's stats every [`POLL`] into `shared`, straight from Redis (not through the
/// proxy), riding out Redis restarts.
async fn monitor(frontier: RedisFrontier, job: JobRef, shared: Shared) {
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), frontier.job_stats(&job)).await;
        {
            let mut p = shared.lock().unwrap_or_else(PoisonError::into_inner);
            match read {
                Ok(Ok(Some(stats))) => p.stats = Some(stats),
                Ok(Ok(None)) => {}
                _ => p.read_errors += 1,
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls until `done` holds for the job's stats, restarting processes that die; fails after
/// the run's deadline.
async fn wait_until(
    config: &ChaosConfig,
    rig: &mut Rig,
    shared: &Shared,
    started: Instant,
    what: &str,
    done: impl Fn(&JobStats) -> bool,
) -> Result<()> {
    loop {
        if progress(shared).0.is_some_and(|s| done(&s)) {
            return Ok(());
        }
        supervise(rig).await?;
        if started.elapsed() > config.deadline {
            bail!(
                "timed out after {:?} waiting for {what}; last stats {:?}",
                config.deadline,
                progress(shared).0
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn supervise(rig: &mut Rig) -> Result<()> {
    if let Some(workers) = &mut rig.workers {
        workers.supervise()?;
    }
    if let Some(control) = &mut rig.control {
        control.operators.supervise().await?;
    }
    Ok(())
}

/// Waits until the CrawlJob is Succeeded (or Failed: then an error).
async fn wait_succeeded(
    config: &ChaosConfig,
    control: &Control,
    started: Instant,
) -> Result<CrawlJob> {
    loop {
        if let Ok(Some(job)) = control.jobs.get_opt("chaos").await {
            let phase = crate::crawljob::phase(&job);
            if phase == Phase::Succeeded {
                return Ok(job);
            }
            if matches!(phase, Phase::Failed | Phase::Expired) {
                bail!("the CrawlJob ended {phase:?}: {:?}", job.status);
            }
        }
        if started.elapsed() > config.deadline {
            bail!(
                "the CrawlJob was not Succeeded within {:?}\n{}",
                config.deadline,
                control.operators.log_tails()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Injects one fault, heals it, and measures how long the crawl took to move again.
async fn inject(
    rig: &mut Rig,
    shared: &Shared,
    started: Instant,
    planned: &PlannedFault,
) -> Result<FaultRecord> {
    let (before, _) = progress(shared);
    let at_pages = before.as_ref().map_or(0, |s| s.pages);
    let in_flight = before.as_ref().map_or(0, |s| s.in_flight);
    let at = SystemTime::now();
    let at_s = started.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut finding = None;
    let note = match planned.kind {
        FaultKind::WorkerKill => {
            let workers = rig.workers.as_mut().context("no workers")?;
            let victim = planned.victim % workers.len();
            workers.kill(victim).await?;
            format!("killed worker {victim}, started again")
        }
        FaultKind::RedisRestart => {
            rig.redis.restart().await?;
            "redis killed and started again".to_owned()
        }
        FaultKind::KafkaKill => {
            rig.kafka.kill9().await?;
            tokio::time::sleep(planned.hold).await;
            rig.kafka.start_again().await?;
            format!(
                "broker killed, down {:.1} s, started again",
                planned.hold.as_secs_f64()
            )
        }
        FaultKind::ApiServerRestart => {
            let control = rig.control.as_mut().context("no operator")?;
            control.apiserver.restart().await?;
            "API server stopped and started again".to_owned()
        }
        FaultKind::OperatorKill => {
            let control = rig.control.as_mut().context("no operator")?;
            let leader = control
                .operators
                .leader()
                .await?
                .context("no operator leads")?;
            control.operators.kill(&leader).await?;
            let killed = Instant::now();
            loop {
                let now = control.operators.leader().await?;
                if now.as_ref().is_some_and(|l| *l != leader) {
                    break format!(
                        "killed leader {leader}; {} took over after {:.1} s",
                        now.unwrap_or_default(),
                        killed.elapsed().as_secs_f64()
                    );
                }
                control.operators.supervise().await?;
                if killed.elapsed() > RESUME_DEADLINE {
                    bail!(
                        "no standby took over from {leader} in {RESUME_DEADLINE:?}\n{}",
                        control.operators.log_tails()
                    );
                }
                tokio::time::sleep(POLL).await;
            }
        }
        FaultKind::OperatorStall => {
            let control = rig.control.as_mut().context("no operator")?;
            let (note, found) = stall_leader(&mut control.operators).await?;
            finding = found;
            note
        }
        kind => {
            let (redis, mode) = kind.network().context("a network fault")?;
            let proxy = if redis {
                &rig.redis_proxy
            } else {
                &rig.kafka_proxy
            };
            let live = proxy.stats().live;
            match mode {
                Mode::Drop => {
                    proxy.set_mode(Mode::Reset);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    proxy.set_mode(Mode::Drop);
                    tokio::time::sleep(planned.hold).await;
                }
                Mode::Stall => {
                    proxy.set_mode(Mode::Stall);
                    tokio::time::sleep(planned.hold).await;
                }
                Mode::Reset | Mode::Pass => {
                    proxy.set_mode(Mode::Reset);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            proxy.set_mode(Mode::Pass);
            match mode {
                Mode::Drop => format!(
                    "{live} connections cut, new ones refused for {:.1} s",
                    planned.hold.as_secs_f64()
                ),
                Mode::Stall => format!(
                    "{live} connections silent for {:.1} s",
                    planned.hold.as_secs_f64()
                ),
                _ => format!("{live} connections reset"),
            }
        }
    };
    let took_s = t0.elapsed().as_secs_f64();
    let resume_s = if planned.kind.needs_operator() {
        resume_status(rig).await?
    } else {
        resume_pages(rig, shared).await?
    };
    Ok(FaultRecord {
        planned: planned.clone(),
        at,
        at_s,
        at_pages,
        in_flight,
        took_s,
        resume_s,
        note,
        finding,
    })
}

/// How long the leader's connections to the API server stay silent: longer than the
/// operator's 15 s leader Lease, so the standby takes over during the stall.
const LEADER_STALL: Duration = Duration::from_secs(25);

/// Stalls the leader's connections to the API server for [`LEADER_STALL`], then checks from
/// the logs that it stopped acting (logged losing its leadership) no later than the standby
/// took over. Returns a note and, when it did not, the finding.
async fn stall_leader(operators: &mut Operators) -> Result<(String, Option<String>)> {
    let leader = operators.leader().await?.context("no operator leads")?;
    operators.set_mode(&leader, Mode::Stall)?;
    let stalled = Instant::now();
    let mut successor = None;
    while stalled.elapsed() < LEADER_STALL {
        if successor.is_none()
            && let Some(now) = operators.leader().await?
            && now != leader
        {
            successor = Some((now, stalled.elapsed()));
        }
        tokio::time::sleep(POLL).await;
    }
    // Only the stalled replica's proxy is touched; it may have been replaced meanwhile.
    let _ = operators.set_mode(&leader, Mode::Pass);
    // Let it see the API server again, and say what it does.
    tokio::time::sleep(Duration::from_secs(5)).await;
    operators.supervise().await?;
    let Some((successor, after)) = successor else {
        return Ok((
            format!("stalled leader {leader} for {LEADER_STALL:?}; nobody took over"),
            Some(format!(
                "the standby did not take over from {leader}, stalled for {LEADER_STALL:?} (the Lease is 15 s)"
            )),
        ));
    };
    let first = |identity: &str, messages: &[&str]| {
        operators.log(identity).lines().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let message = v["message"]
                .as_str()
                .or_else(|| v["fields"]["message"].as_str())?;
            messages
                .contains(&message)
                .then(|| v["timestamp"].as_str().map(str::to_owned))
                .flatten()
        })
    };
    let took_over = first(&successor, &["became leader"]);
    let stepped_down = first(
        &leader,
        &[
            "leader lease not renewed in time",
            "leadership lost to another replica",
        ],
    );
    let note = format!(
        "stalled leader {leader} for {:.0} s; {successor} took over after {:.1} s; {leader} stepped down at {}, {successor} led from {}",
        LEADER_STALL.as_secs_f64(),
        after.as_secs_f64(),
        stepped_down.as_deref().unwrap_or("never"),
        took_over.as_deref().unwrap_or("?"),
    );
    // RFC 3339 timestamps of one clock and format compare as strings.
    let finding = match (&stepped_down, &took_over) {
        (Some(down), Some(up)) if down <= up => None,
        _ => Some(format!(
            "two leaders at once: {successor} became leader at {} while the stalled {leader} had not stopped acting (it stepped down at {})",
            took_over.as_deref().unwrap_or("?"),
            stepped_down.as_deref().unwrap_or("never")
        )),
    };
    Ok((note, finding))
}

/// Seconds until the job's page count rises (or the job is finished).
async fn resume_pages(rig: &mut Rig, shared: &Shared) -> Result<Option<f64>> {
    let healed = Instant::now();
    let from = pages(shared);
    while healed.elapsed() < RESUME_DEADLINE {
        let (stats, _) = progress(shared);
        if stats.is_some_and(|s| s.pages > from || s.finished()) {
            return Ok(Some(healed.elapsed().as_secs_f64()));
        }
        supervise(rig).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(None)
}

/// Seconds until the CrawlJob's status shows progress again (a new page count, or a final
/// phase): the control plane works again.
async fn resume_status(rig: &mut Rig) -> Result<Option<f64>> {
    let healed = Instant::now();
    let read = |job: Option<CrawlJob>| {
        job.and_then(|j| j.status)
            .map(|s| (s.pages, s.phase))
            .unwrap_or_default()
    };
    let jobs = rig.control.as_ref().context("no operator")?.jobs.clone();
    let (from, _) = read(jobs.get_opt("chaos").await.ok().flatten());
    while healed.elapsed() < RESUME_DEADLINE {
        let (now, phase) = read(jobs.get_opt("chaos").await.ok().flatten());
        if now != from || phase == Phase::Succeeded {
            return Ok(Some(healed.elapsed().as_secs_f64()));
        }
        supervise(rig).await?;
        tokio::time::sleep(POLL).await;
    }
    Ok(None)
}

/// For each missing page (the first 20): the log lines that mention it, and the fault that
/// came last before the last of them.
fn explain_missing(dir: &Path, missing: &BTreeSet<String>, faults: &[FaultRecord]) -> String {
    let shown: BTreeSet<String> = missing.iter().take(20).cloned().collect();
    let sightings = check::sightings(dir, &shown, 4);
    let mut out = Vec::new();
    for url in &shown {
        let seen = sightings.get(url).cloned().unwrap_or_default();
        let last = seen.iter().filter_map(|s| s.timestamp).max();
        let culprit = last.and_then(|t| {
            faults
                .iter()
                .filter(|f| f.at <= t + Duration::from_secs(1))
                .max_by_key(|f| f.at)
        });
        out.push(format!(
            "- {url}\n  last fault before its last log line: {}\n{}",
            culprit.map_or("none (or no log line)".to_owned(), |f| format!(
                "{} at {:.1} s ({})",
                f.planned.kind.name(),
                f.at_s,
                f.note
            )),
            seen.iter()
                .map(|s| format!("    {}: {}", s.file, s.line))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if missing.len() > shown.len() {
        out.push(format!("… and {} more", missing.len() - shown.len()));
    }
    out.join("\n")
}
