//! kubecrawl-e2e: end-to-end tests against the real services of `make env-up`.
//!
//! The tests in `tests/` talk to a real Redis, a real Kafka broker and a real kube-apiserver,
//! all on 127.0.0.1, whose addresses come from `.testenv/env` (`REDIS_URL`, `KAFKA_BROKERS`,
//! `KUBECONFIG`). `make test` brings them up and exports them; running these tests without
//! that environment fails with a message that says so, rather than skipping.
//!
//! This library holds what the tests share: reading the environment ([`TestEnv`]), running
//! the kubectl and helm that `make env-up` built ([`kubectl`], [`helm`]), a namespace of the
//! test's own ([`TestNamespace`]), and the fixtures beside it: a whole installation
//! ([`cluster`]), CrawlJobs ([`crawljob`]), waiting with a deadline ([`poll`]), reading output
//! back ([`records`]) and deleting a test's Redis keys ([`keys`]).

/// The chaos suite: a crawl on services of its own while faults are injected (see its docs).
pub mod chaos;
/// A whole kubecrawl installation per test: operator, fake kubelet, site.
pub mod cluster;
pub mod crawljob;
/// A latency-bound site of many hosts, for `make bench-scale`.
pub mod farm;
pub mod keys;
/// A fake kubelet that runs real local processes for the Pods bound to a fake Node.
pub mod kubelet;
pub mod poll;
/// A TCP proxy that drops, stalls and resets connections on demand, for the chaos suite.
pub mod proxy;
pub mod records;
/// Scrapy Cluster's client and record shapes, for the wire-format tests.
pub mod scrapy_cluster;
/// The synthetic web site crawler tests run against (see its module documentation).
pub mod site;
pub mod startup;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

/// The addresses of the real services, from the environment `make env-up` writes.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// `redis://127.0.0.1:PORT`
    pub redis_url: String,
    /// `127.0.0.1:PORT`
    pub kafka_brokers: String,
    /// Path of the admin kubeconfig of the test API server.
    pub kubeconfig: PathBuf,
}

impl TestEnv {
    /// Reads the environment, or explains how to get one.
    ///
    /// # Panics
    /// When a variable is missing: these tests need the real services and never skip.
    pub fn get() -> Self {
        Self::try_get().unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn try_get() -> Result<Self> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| {
                format!("{name} is not set: run these tests with `make test` (or `make env-up` and `. .testenv/env`)")
            })
        };
        let env = Self {
            redis_url: var("REDIS_URL")?,
            kafka_brokers: var("KAFKA_BROKERS")?,
            kubeconfig: PathBuf::from(var("KUBECONFIG")?),
        };
        for addr in [env.redis_url.as_str(), env.kafka_brokers.as_str()] {
            if !addr.contains("127.0.0.1") && !addr.contains("localhost") {
                bail!("{addr} is not a loopback address: tests only talk to services on 127.0.0.1");
            }
        }
        Ok(env)
    }

    /// A Kafka client configuration for the test broker (plaintext).
    pub fn kafka_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.kafka_brokers);
        config
    }

    /// A kube client for the test API server, as the admin.
    pub async fn kube_client(&self) -> Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .with_context(|| format!("reading {}", self.kubeconfig.display()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .context("loading the test kubeconfig")?;
        kube::Client::try_from(config).context("building the kube client")
    }
}

/// Whether a Pod's Ready condition is True: every container passed its readiness probe.
pub fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Runs `kubectl ARGS` against the test API server with `stdin` as its input and returns what
/// it printed, whether or not it succeeded.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<Output> {
    use std::io::Write;
    let env = TestEnv::get();
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting kubectl (is the kubectl of `make env-up` first on PATH?)")?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(input.as_bytes())
            .context("writing to kubectl")?;
    }
    child.wait_with_output().context("waiting for kubectl")
}

/// Runs `kubectl ARGS` and returns its stdout, failing with its stderr when it fails.
pub fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let out = kubectl(args, stdin)?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the helm of `make env-up` (on PATH) against the test API server; returns whether it
/// succeeded and what it printed (stdout, then stderr).
pub fn helm(args: &[&str]) -> Result<(bool, String)> {
    let env = TestEnv::get();
    let out = Command::new("helm")
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .output()
        .context("starting helm (is the helm of `make env-up` first on PATH?)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// Runs helm as [`helm`] does and returns what it printed, failing when helm fails.
///
/// # Errors
/// When helm cannot run or exits non-zero (with its output).
pub fn helm_ok(args: &[&str]) -> Result<String> {
    let (ok, text) = helm(args)?;
    if !ok {
        bail!("helm {} failed:\n{text}", args.join(" "));
    }
    Ok(text)
}

/// `helm install RELEASE charts/kubecrawl -n NS --set SETS`, with `--set-json KEY=VALUE` for
/// each of `json` (values as JSON text) and `extra` arguments after; returns what helm
/// printed.
///
/// # Errors
/// When helm fails.
pub fn helm_install(
    release: &str,
    ns: &str,
    sets: &str,
    json: &[(&str, String)],
    extra: &[&str],
) -> Result<String> {
    let chart = repo_path("charts/kubecrawl");
    let chart = chart.to_str().context("the repository path is not UTF-8")?;
    let json: Vec<String> = json.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec!["install", release, chart, "-n", ns, "--set", sets];
    for value in &json {
        args.extend(["--set-json", value.as_str()]);
    }
    args.extend(extra);
    helm_ok(&args)
}

/// `helm uninstall RELEASE -n NS --wait` (up to a minute); returns what helm printed.
///
/// # Errors
/// When helm fails or does not say the release was uninstalled.
pub fn helm_uninstall(release: &str, ns: &str) -> Result<String> {
    let text = helm_ok(&["uninstall", release, "-n", ns, "--wait", "--timeout", "60s"])?;
    if !text.contains("uninstalled") {
        bail!("helm uninstall {release} did not uninstall it:\n{text}");
    }
    Ok(text)
}

/// Writes (to `path`) a kubeconfig for the test API server that authenticates as
/// `system:serviceaccount:<ns>:<sa>` with a fresh token from the TokenRequest API: what a
/// Pod of that ServiceAccount gets, for a process the test runs in its place.
///
/// # Errors
/// When the token cannot be made or the admin kubeconfig read.
pub fn service_account_kubeconfig(ns: &str, sa: &str, path: &std::path::Path) -> Result<()> {
    let env = TestEnv::get();
    let token = kubectl_ok(&["create", "token", sa, "-n", ns, "--duration", "1h"], None)?;
    let admin: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(&env.kubeconfig).context("reading the admin kubeconfig")?,
    )?;
    let cluster = &admin["clusters"][0]["cluster"];
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": cluster["server"].as_str().context("the admin kubeconfig's server")?,
            "certificate-authority": cluster["certificate-authority"]
                .as_str()
                .context("the admin kubeconfig's CA path")?,
        }}],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": sa, "namespace": ns}}],
        "current-context": "sa",
    });
    std::fs::write(path, serde_yaml::to_string(&config)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// A name no other test (or test run) uses: `<prefix>-<pid>-<nanos>`, lowercase and
/// DNS-safe when the prefix is.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Installs the process's TLS provider (ring), which an HTTP client needs when the workspace
/// builds reqwest with `rustls-no-provider` (the worker does, and features are unified in a
/// workspace build). Safe to call any number of times.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Path of a file in the repository, from the tests crate's manifest directory.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Applies the committed CRD (`crds/crawljobs.kubecrawl.io.yaml`) with `kubectl apply
/// --server-side` and waits until the API server serves it. Safe to call from many tests.
pub fn ensure_crd() -> Result<()> {
    let crd = repo_path("crds/crawljobs.kubecrawl.io.yaml");
    let crd = crd.to_str().context("repository path is not UTF-8")?;
    kubectl_ok(
        &["apply", "--server-side", "--force-conflicts", "-f", crd],
        None,
    )?;
    kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/crawljobs.kubecrawl.io",
            "--timeout=60s",
        ],
        None,
    )?;
    Ok(())
}

/// A namespace of its own for one test, deleted (without waiting) when dropped.
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
}

impl TestNamespace {
    /// Creates `<prefix>-<unique suffix>`.
    pub fn create(prefix: &str) -> Result<Self> {
        let name = unique_name(prefix);
        kubectl_ok(&["create", "namespace", &name], None)?;
        Ok(Self { name })
    }

    /// Makes the API server hold the namespace's Pods to the restricted Pod Security
    /// Standard: Pods are refused (enforce), workload resources such as Deployments are
    /// reported in warnings (warn).
    ///
    /// # Errors
    /// When kubectl fails.
    pub fn enforce_restricted_pod_security(&self) -> Result<()> {
        kubectl_ok(
            &[
                "label",
                "namespace",
                &self.name,
                "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/warn=restricted",
            ],
            None,
        )
        .map(drop)
    }

    /// `kubectl apply --dry-run=server` of `manifests` into the namespace: what the API
    /// server (admission included) says of them, whether or not it accepts them.
    ///
    /// # Errors
    /// When kubectl cannot run.
    pub fn dry_run_apply(&self, manifests: &str) -> Result<Output> {
        kubectl(
            &["apply", "--dry-run=server", "-n", &self.name, "-f", "-"],
            Some(manifests),
        )
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"], None);
    }
}
