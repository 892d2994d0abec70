//! What the walkthrough tests share: the binaries, a test installation, running `kubecrawl`
//! and Kafka clients.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use kube::api::{DeleteParams, ListParams};
use kubecrawl_e2e::cluster::{Cluster, ClusterConfig};
use kubecrawl_e2e::keys::{delete_prefixed, delete_prefixed_blocking};
use kubecrawl_e2e::{TestEnv, unique_name};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde::Deserialize;
use serde_json::Value;

/// The `kubecrawl` binary of this package.
pub(crate) const KUBECRAWL: &str = env!("CARGO_BIN_EXE_kubecrawl");

/// The operator binary, with the worker binary beside it, built (or found up to date) once per
/// test run with the cargo that runs the tests.
pub(crate) async fn operator_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = BUILT.get() {
        return path.clone();
    }
    let path = tokio::task::spawn_blocking(|| {
        BUILT
            .get_or_init(|| {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
                let status = std::process::Command::new(cargo)
                    .args([
                        "build",
                        "-p",
                        "kubecrawl-operator",
                        "-p",
                        "kubecrawl-worker",
                    ])
                    .status()
                    .expect("cargo runs");
                assert!(
                    status.success(),
                    "building the operator and the worker failed"
                );
                let exe = std::env::current_exe().expect("the test binary has a path");
                // target/<profile>/deps/<test> → target/<profile>/kubecrawl-operator
                let dir = exe
                    .parent()
                    .and_then(Path::parent)
                    .expect("the test binary lives in target/<profile>/deps");
                dir.join("kubecrawl-operator")
            })
            .clone()
    })
    .await
    .expect("the build task ends");
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// A kubecrawl installation of the test's own (namespace, Redis prefix, topic prefix, leader
/// Lease, fake node, site).
pub(crate) async fn install(name: &str) -> Installed {
    let bin = operator_bin().await;
    let cluster = tokio::time::timeout(
        Duration::from_secs(120),
        Cluster::start(name, &bin, ClusterConfig::default()),
    )
    .await
    .expect("the installation started in time")
    .expect("the installation starts");
    Installed {
        cluster: Some(cluster),
    }
}

/// A test's installation. Dropped without [`teardown`] (the test failed), it stops the
/// operator and the workers, then drops the finalizers of the namespace's CrawlJobs (no
/// operator is left to remove them, and the namespace could never be deleted otherwise) and
/// deletes the installation's Redis keys.
pub(crate) struct Installed {
    cluster: Option<Cluster>,
}

impl std::ops::Deref for Installed {
    type Target = Cluster;

    fn deref(&self) -> &Cluster {
        self.cluster
            .as_ref()
            .expect("the installation is there until teardown")
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let Some(cluster) = self.cluster.take() else {
            return;
        };
        let ns = cluster.ns.name.clone();
        let prefix = cluster.redis_prefix.clone();
        // Kills the operator and the workers, and asks for the namespace's deletion.
        drop(cluster);
        kubecrawl_e2e::crawljob::release_finalizers(&ns);
        let _ = delete_prefixed_blocking(&TestEnv::get().redis_url, &prefix);
    }
}

/// Deletes the test's CrawlJobs while the operator still runs (so its finalizer lets them
/// go and the namespace can be deleted), then stops the operator and the workers.
pub(crate) async fn teardown(mut installed: Installed) {
    let Some(cluster) = installed.cluster.take() else {
        return;
    };
    let jobs = cluster.jobs();
    let _ = jobs
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let gone = tokio::time::timeout(Duration::from_secs(30), async {
        while jobs
            .list(&ListParams::default())
            .await
            .map(|l| !l.items.is_empty())
            .unwrap_or(false)
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    if gone.is_err() {
        eprintln!("crawljobs still present at teardown");
    }
    let prefix = cluster.redis_prefix.clone();
    tokio::time::timeout(Duration::from_secs(60), cluster.shutdown())
        .await
        .expect("the installation stopped in time")
        .expect("the installation stops");
    let redis = redis::Client::open(TestEnv::get().redis_url).expect("a redis url");
    delete_prefixed(&redis, &prefix)
        .await
        .expect("the installation's keys are deleted");
}

/// The environment `kubecrawl` needs for `cluster`.
pub(crate) fn cli_env(cluster: &Cluster) -> Vec<(&'static str, String)> {
    let env = TestEnv::get();
    vec![
        ("KUBECONFIG", env.kubeconfig.display().to_string()),
        ("KUBECRAWL_NAMESPACE", cluster.ns.name.clone()),
        ("KUBECRAWL_KAFKA_BROKERS", env.kafka_brokers.clone()),
        ("KUBECRAWL_TOPIC_PREFIX", cluster.topic_prefix.clone()),
        ("KUBECRAWL_REDIS_URL", env.redis_url.clone()),
        ("KUBECRAWL_REDIS_PREFIX", cluster.redis_prefix.clone()),
    ]
}

/// Runs `kubecrawl ARGS` for `cluster` and returns what it did; fails the test when it takes
/// over a minute.
pub(crate) async fn kubecrawl(cluster: &Cluster, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(KUBECRAWL);
    command
        .args(args)
        .envs(cli_env(cluster))
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("kubecrawl starts");
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubecrawl {args:?} hung"))
        .expect("kubecrawl runs")
}

/// `kubecrawl ARGS`, which must succeed; its stdout.
pub(crate) async fn kubecrawl_ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = kubecrawl(cluster, args).await;
    assert!(
        out.status.success(),
        "kubecrawl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubecrawl ARGS` printing one JSON value.
pub(crate) async fn kubecrawl_json(cluster: &Cluster, args: &[&str]) -> Value {
    let text = kubecrawl_ok(cluster, args).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {text}"))
}

/// A consumer of `topic` from its first record, in a group of its own.
pub(crate) fn consumer(topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = TestEnv::get()
        .kafka_config()
        .set("group.id", unique_name("kcw-test"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[topic]).expect("subscribes");
    consumer
}

/// Reads `consumer` until a JSON record whose `uuid` is `uuid` arrives.
pub(crate) async fn answer(consumer: &StreamConsumer, uuid: &str) -> Value {
    answer_where(consumer, |v| v["uuid"] == uuid).await
}

/// The next message of `consumer` that `wanted` accepts, within a minute.
pub(crate) async fn answer_where(
    consumer: &StreamConsumer,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let Ok(m) = consumer.recv().await else {
                continue;
            };
            let Some(Ok(value)) = m.payload().map(serde_json::from_slice::<Value>) else {
                continue;
            };
            if wanted(&value) {
                return value;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no such answer within a minute"))
}

/// `kubecrawl ingest` as the chart runs it: the chart's `templates/ingest.yaml` rendered for
/// the test's installation and applied (ServiceAccount, Role, RoleBinding; the Deployment at
/// zero replicas), then the container's command, args and env run as a local process that
/// authenticates with the ServiceAccount's token — so the chart's RBAC is proven sufficient by
/// use. Its output goes to `log`.
pub(crate) fn chart_ingest(cluster: &Cluster, group: &str, log: &Path) -> tokio::process::Child {
    let env = TestEnv::get();
    let chart = kubecrawl_e2e::repo_path("charts/kubecrawl");
    let sets = format!(
        "ingest.enabled=true,ingest.replicas=0,ingest.group={group},ingest.logFormat=plain,\
         redis.url={},redis.prefix={},kafka.brokers={},kafka.topicPrefix={},operator.watchNamespace={}",
        env.redis_url,
        cluster.redis_prefix,
        env.kafka_brokers,
        cluster.topic_prefix,
        cluster.ns.name
    );
    let out = std::process::Command::new("helm")
        .args([
            "template",
            "kc",
            chart.to_str().expect("utf-8 path"),
            "-n",
            &cluster.ns.name,
        ])
        .args(["--show-only", "templates/ingest.yaml", "--set", &sets])
        .output()
        .expect("helm runs (is the helm of `make env-up` on PATH?)");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    kubecrawl_e2e::kubectl_ok(
        &["apply", "-n", &cluster.ns.name, "-f", "-"],
        Some(&rendered),
    )
    .expect("the chart's ingest objects apply");

    let deployment = serde_yaml::Deserializer::from_str(&rendered)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("yaml"))
        .find(|d| d["kind"] == "Deployment")
        .expect("the chart renders a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("a ServiceAccount");
    let mut argv: Vec<String> = container["command"]
        .as_sequence()
        .into_iter()
        .chain(container["args"].as_sequence())
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(argv.first().map(String::as_str), Some("kubecrawl"));
    argv.remove(0);
    let vars: Vec<(String, String)> = container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name").to_owned();
            let value = e["value"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no literal value"));
            (name, value.to_owned())
        })
        .collect();

    let kubeconfig_path = log.with_extension("kubeconfig");
    kubecrawl_e2e::service_account_kubeconfig(&cluster.ns.name, sa, &kubeconfig_path)
        .expect("a kubeconfig with a ServiceAccount token");

    let log = std::fs::File::create(log).expect("a log file");
    tokio::process::Command::new(KUBECRAWL)
        .args(argv)
        .env_clear()
        .envs(vars)
        .env("KUBECONFIG", &kubeconfig_path)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("kubecrawl ingest starts")
}
