//! A whole kubecrawl installation for one test: the operator binary, a fake kubelet running
//! real worker processes for its Deployments, the synthetic site, and a namespace, Redis key
//! prefix, Kafka topic prefix and leader Lease of the test's own, so tests run side by side.
//!
//! The operator watches only the test's namespace and puts its worker Deployments there, with
//! a node selector that binds their Pods to this test's fake node.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kubecrawl_api::{CrawlJob, JobRef};
use tokio::process::{Child, Command};

use crate::crawljob::{link_spec, wait_job};
use crate::farm::{Farm, FarmConfig};
use crate::kubelet::{CommandMap, FakeKubelet, KubeletConfig, Signal};
use crate::poll::Wait;
use crate::site::{SiteConfig, TestSite};
use crate::{TestEnv, TestNamespace, ensure_crd};

/// Tests of one binary that each run a whole installation take turns: an operator, several
/// workers and a site each are as much as two cores carry without turning timing into
/// flakiness.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for this test's turn at running an installation; the turn lasts as long as the
/// guard.
pub async fn take_turn() -> tokio::sync::MutexGuard<'static, ()> {
    TURN.lock().await
}

/// How a test's installation is set up.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The synthetic site.
    pub site: SiteConfig,
    /// The replica ceiling of every fleet.
    pub max_replicas: u32,
    /// The operator's `--status-interval`.
    pub status_interval: Duration,
    /// The operator's `--completion-grace`.
    pub completion_grace: Duration,
    /// A latency-bound site of many hosts beside the synthetic one, resolved by the workers.
    pub farm: Option<FarmConfig>,
    /// Every fleet's `autoscale` settings (sized by ready work), when set.
    pub autoscale: Option<serde_json::Value>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            site: SiteConfig::default(),
            max_replicas: 4,
            status_interval: Duration::from_secs(1),
            completion_grace: Duration::from_secs(3),
            farm: None,
            autoscale: None,
        }
    }
}

/// One test's kubecrawl installation. Call [`Cluster::shutdown`] at the end; dropping it
/// also stops every process it started, less tidily.
pub struct Cluster {
    /// The test's namespace (CrawlJobs and worker Deployments live here).
    pub ns: TestNamespace,
    /// The fake kubelet running the workers.
    pub kubelet: FakeKubelet,
    /// The synthetic site.
    pub site: TestSite,
    /// The farm of [`ClusterConfig::farm`].
    pub farm: Option<Farm>,
    /// The Redis key prefix shared by this test's operator and workers.
    pub redis_prefix: String,
    /// The Kafka topic prefix of this test.
    pub topic_prefix: String,
    /// An admin client.
    pub client: kube::Client,
    env: TestEnv,
    operator_bin: PathBuf,
    fleet_config: PathBuf,
    log_dir: PathBuf,
    operator: Option<Child>,
    starts: u32,
    config: ClusterConfig,
}

impl Cluster {
    /// Starts the site, the fake kubelet and the operator (`operator_bin`), with the worker
    /// binary expected beside it.
    pub async fn start(name: &str, operator_bin: &Path, config: ClusterConfig) -> Result<Self> {
        ensure_crd()?;
        let env = TestEnv::get();
        let client = env.kube_client().await?;
        let ns = TestNamespace::create(name)?;
        let worker_bin = operator_bin.with_file_name("kubecrawl-worker");
        if !worker_bin.exists() {
            bail!(
                "{} is missing: build it with `cargo build -p kubecrawl-worker`",
                worker_bin.display()
            );
        }
        let site = TestSite::start(config.site.clone()).await?;
        let farm = match config.farm {
            Some(farm) => Some(Farm::start(farm).await?),
            None => None,
        };
        let mut resolve = site.resolve();
        if let Some(farm) = &farm {
            for host in farm.hosts() {
                resolve.push_str(&format!(",{host}={}", farm.addr().ip()));
            }
        }
        let log_dir = std::env::temp_dir().join(format!("kubecrawl-e2e-{}", ns.name));
        std::fs::create_dir_all(&log_dir)?;
        let node = format!("{}-node", ns.name);
        let kubelet = FakeKubelet::start_with(
            client.clone(),
            KubeletConfig::new(
                &node,
                CommandMap::new().with("kubecrawl-worker", worker_bin),
            )
            .with_log_dir(log_dir.join("pods"))
            .with_max_grace(Duration::from_secs(10)),
        )
        .await?;

        let selector: serde_json::Map<String, serde_json::Value> = kubelet
            .node_selector()
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        let fleet = serde_json::json!({
            "namespace": ns.name,
            "defaults": {
                "image": "kubecrawl-worker:test",
                "maxReplicas": config.max_replicas,
                "terminationGracePeriodSeconds": 10,
                "nodeSelector": selector,
                "env": [
                    {"name": "KUBECRAWL_ALLOW_PRIVATE_NETWORKS", "value": "true"},
                    {"name": "KUBECRAWL_RESOLVE", "value": resolve},
                    {"name": "KUBECRAWL_METRICS_ADDR", "value": "127.0.0.1:0"},
                    {"name": "KUBECRAWL_LEASE_DURATION", "value": "15s"},
                    {"name": "KUBECRAWL_DRAIN_TIMEOUT", "value": "5s"},
                    {"name": "KUBECRAWL_LOG_FORMAT", "value": "plain"},
                ],
            },
            "fleets": {"link": {}, "wandering": {}},
        });
        let mut fleet = fleet;
        if let Some(autoscale) = &config.autoscale {
            fleet["defaults"]["autoscale"] = autoscale.clone();
        }
        let fleet_config = log_dir.join("fleets.yaml");
        std::fs::write(&fleet_config, serde_yaml::to_string(&fleet)?)?;

        let mut cluster = Self {
            redis_prefix: format!("kc-{}", ns.name),
            topic_prefix: format!("kc-{}", ns.name),
            ns,
            kubelet,
            site,
            farm,
            client,
            env,
            operator_bin: operator_bin.to_owned(),
            fleet_config,
            log_dir,
            operator: None,
            starts: 0,
            config,
        };
        cluster.start_operator().await?;
        Ok(cluster)
    }

    /// Starts (again) the operator process.
    pub async fn start_operator(&mut self) -> Result<()> {
        let child = self.spawn_operator()?;
        self.operator = Some(child);
        Ok(())
    }

    /// Starts one more operator replica (same configuration, its own identity and log) and
    /// hands it to the caller; the cluster does not track it.
    pub fn spawn_operator(&mut self) -> Result<Child> {
        self.starts += 1;
        let log =
            std::fs::File::create(self.log_dir.join(format!("operator-{}.log", self.starts)))?;
        Command::new(&self.operator_bin)
            .env("KUBECONFIG", &self.env.kubeconfig)
            .env("KUBECRAWL_REDIS_URL", &self.env.redis_url)
            .env("KUBECRAWL_REDIS_PREFIX", &self.redis_prefix)
            .env("KUBECRAWL_KAFKA_BROKERS", &self.env.kafka_brokers)
            .env("KUBECRAWL_TOPIC_PREFIX", &self.topic_prefix)
            .env("KUBECRAWL_FLEET_CONFIG", &self.fleet_config)
            .env("KUBECRAWL_WATCH_NAMESPACE", &self.ns.name)
            .env("KUBECRAWL_LEADER_NAMESPACE", &self.ns.name)
            .env("KUBECRAWL_METRICS_ADDR", "127.0.0.1:0")
            .env(
                "KUBECRAWL_STATUS_INTERVAL",
                humantime::format_duration(self.config.status_interval).to_string(),
            )
            .env(
                "KUBECRAWL_COMPLETION_GRACE",
                humantime::format_duration(self.config.completion_grace).to_string(),
            )
            .env("KUBECRAWL_STATS_DUMP_INTERVAL", "5s")
            .env("KUBECRAWL_IDENTITY", format!("operator-{}", self.starts))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.operator_bin.display()))
    }

    /// The log of operator run number `n` (1 for the first).
    pub fn operator_log(&self, n: u32) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("operator-{n}.log"))).unwrap_or_default()
    }

    /// Stops the operator with SIGTERM and waits for it to exit; returns its exit code.
    pub async fn stop_operator(&mut self) -> Result<Option<i32>> {
        let Some(mut child) = self.operator.take() else {
            return Ok(None);
        };
        if let Some(pid) = child.id() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
            nix::sys::signal::kill(pid, Signal::SIGTERM)?;
        }
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .context("the operator did not stop within 30 s of SIGTERM")??;
        Ok(status.code())
    }

    /// The operator's pid, while it runs.
    pub fn operator_pid(&self) -> Option<u32> {
        self.operator.as_ref().and_then(Child::id)
    }

    /// Everything the operator logged so far (all its runs).
    pub fn operator_logs(&self) -> String {
        (1..=self.starts)
            .filter_map(|i| {
                std::fs::read_to_string(self.log_dir.join(format!("operator-{i}.log"))).ok()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Logs of the operator and every worker, for a failing test to print.
    pub fn all_logs(&self) -> String {
        format!(
            "--- operator ---\n{}\n--- workers ---\n{}",
            self.operator_logs(),
            self.kubelet.all_logs()
        )
    }

    /// CrawlJobs of the test's namespace.
    pub fn jobs(&self) -> Api<CrawlJob> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Deployments of the test's namespace.
    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// The frontier the operator and workers share.
    pub async fn frontier(&self) -> Result<kubecrawl_frontier::RedisFrontier> {
        kubecrawl_frontier::RedisFrontier::connect(
            &self.env.redis_url,
            &self.redis_prefix,
            kubecrawl_frontier::FrontierConfig::default(),
        )
        .await
        .context("connecting to the frontier")
    }

    /// Creates a CrawlJob from a YAML spec (indented as under `spec:`).
    pub async fn create_job(&self, name: &str, spec: serde_json::Value) -> Result<CrawlJob> {
        let job: CrawlJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubecrawl.io/v1alpha1",
            "kind": "CrawlJob",
            "metadata": {"name": name, "namespace": self.ns.name},
            "spec": spec,
        }))?;
        self.jobs()
            .create(&PostParams::default(), &job)
            .await
            .with_context(|| format!("creating CrawlJob {name}"))
    }

    /// Creates CrawlJob `name` (crawlid `name` too) of [`link_spec`]: the link spider
    /// crawling the whole site from its root with `workers` workers, `delay_millis` apart.
    pub async fn create_link_job(
        &self,
        name: &str,
        workers: u32,
        delay_millis: u32,
    ) -> Result<CrawlJob> {
        self.create_job(
            name,
            link_spec(&self.site.root(), name, workers, delay_millis),
        )
        .await
    }

    /// Polls a CrawlJob until `done` holds, or fails after `timeout` with the logs.
    pub async fn wait_job(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&CrawlJob) -> bool,
    ) -> Result<CrawlJob> {
        wait_job(&self.jobs(), name, timeout, done, || self.all_logs()).await
    }

    /// Polls `probe` until it returns `Some`; after `timeout` fails the test, naming `what`
    /// and showing every log of the installation.
    ///
    /// # Panics
    /// On timeout.
    pub async fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        probe: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        Wait::new(what, timeout)
            .explained_by(|| self.all_logs())
            .until(probe)
            .await
    }

    /// The CrawlJob of `crawlid` in the test's namespace, once there is one.
    pub async fn job_by_crawlid(&self, crawlid: &str) -> Option<CrawlJob> {
        self.jobs()
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|j| j.crawlid() == crawlid)
    }

    /// Polls the CrawlJob of `crawlid` until `done` holds; after `timeout` fails the test,
    /// naming `what`, with the logs.
    ///
    /// # Panics
    /// On timeout.
    pub async fn wait_crawl(
        &self,
        crawlid: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&CrawlJob) -> bool,
    ) -> CrawlJob {
        self.eventually(what, timeout, async || {
            self.job_by_crawlid(crawlid).await.filter(&done)
        })
        .await
    }

    /// Waits until the `spider` fleet's Deployment asks for `want` replicas.
    ///
    /// # Panics
    /// After `timeout`, with every log of the installation.
    pub async fn wait_replicas(&self, spider: &str, want: i32, timeout: Duration) {
        Wait::new(format!("the {spider} fleet at {want} replicas"), timeout)
            .every(Duration::from_millis(200))
            .explained_by(|| self.all_logs())
            .try_until(
                async || Ok((self.fleet_replicas(spider).await? == Some(want)).then_some(())),
            )
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Writes the operator's throttle ConfigMap (`kubecrawl-throttle` in the test's
    /// namespace, key `throttle.yaml`) with `document`, creating or replacing it.
    pub async fn set_throttle_rules(&self, document: &str) -> Result<()> {
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns.name);
        let map = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kubecrawl-throttle"},
            "data": {"throttle.yaml": document},
        });
        maps.patch(
            "kubecrawl-throttle",
            &PatchParams::apply("kubecrawl-test").force(),
            &Patch::Apply(&map),
        )
        .await
        .context("writing the throttle ConfigMap")?;
        Ok(())
    }

    /// Replicas the fleet's Deployment asks for (`None` while it does not exist).
    pub async fn fleet_replicas(&self, spider: &str) -> Result<Option<i32>> {
        Ok(self
            .deployments()
            .get_opt(&kubecrawl_api::contract::worker_deployment(spider))
            .await?
            .and_then(|d| d.spec.replicas))
    }

    /// The frontier's name of a job created by [`Cluster::create_job`] with appid `testapp`.
    pub fn job_ref(&self, spider: &str, crawlid: &str) -> JobRef {
        JobRef {
            spiderid: spider.to_owned(),
            appid: "testapp".to_owned(),
            crawlid: crawlid.to_owned(),
        }
    }

    /// Stops the operator and the kubelet (and so every worker).
    pub async fn shutdown(mut self) -> Result<()> {
        self.stop_operator().await?;
        let Self { kubelet, .. } = self;
        kubelet.shutdown().await
    }
}
