//! `helm install` of the chart into the real API server, then the operator Pod the chart
//! describes — run by the fake kubelet with the chart's env and the chart's ServiceAccount
//! token, nothing more — reconciles a CrawlJob end to end. RBAC is proven sufficient by use.
//!
//! What the fake kubelet cannot do, the test does in its place, and only that: it mounts the
//! fleet ConfigMap (writes its data to a file and points `KUBECRAWL_FLEET_CONFIG` at it), hands
//! the Pod its ServiceAccount's credentials (a kubeconfig with a token from the TokenRequest
//! API instead of the projected volume), and gives each process a loopback metrics port (Pods
//! here share one network namespace).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kubecrawl_api::{CrawlJob, Phase};
use kubecrawl_e2e::kubelet::{CommandMap, FakeKubelet, KubeletConfig};
use kubecrawl_e2e::site::{SiteConfig, TestSite};
use kubecrawl_e2e::{TestEnv, TestNamespace, ensure_crd, kubectl_ok, repo_path};

/// A kubeconfig that authenticates as `system:serviceaccount:<ns>:<sa>` with a fresh token.
fn service_account_kubeconfig(env: &TestEnv, ns: &str, sa: &str, dir: &Path) -> std::path::PathBuf {
    let token = kubectl_ok(&["create", "token", sa, "-n", ns, "--duration", "1h"], None)
        .expect("TokenRequest");
    let admin: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&env.kubeconfig).expect("admin kubeconfig"))
            .expect("yaml");
    let cluster = &admin["clusters"][0]["cluster"];
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": cluster["server"].as_str().expect("server"),
            "certificate-authority": cluster["certificate-authority"].as_str().expect("ca path"),
        }}],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": sa, "namespace": ns}}],
        "current-context": "sa",
    });
    let path = dir.join("operator-kubeconfig.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write kubeconfig");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_then_the_chart_operator_crawls_with_its_own_rbac() {
    ensure_crd().expect("CRD applies");
    let env = TestEnv::get();
    let client = env.kube_client().await.expect("client");
    let ns = TestNamespace::create("e2e-helm").expect("namespace");
    // A release of its own: the chart's cluster-scoped RBAC is named after it.
    let release = ns.name.clone();
    let site = TestSite::start(SiteConfig::default()).await.expect("site");
    let truth = site.reachable(&site.reach()).expect("ground truth");
    let dir = std::env::temp_dir().join(format!("kubecrawl-{}", ns.name));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let node = format!("{}-node", ns.name);
    let selector = serde_json::json!({"kubernetes.io/hostname": node}).to_string();
    let resolve: Vec<String> = site
        .hosts()
        .iter()
        .map(|(h, a)| format!("{h}={}", a.ip()))
        .collect();
    let worker_env = serde_json::json!([
        {"name": "KUBECRAWL_RESOLVE", "value": resolve.join(",")},
        {"name": "KUBECRAWL_LEASE_DURATION", "value": "15s"},
    ])
    .to_string();
    let chart = repo_path("charts/kubecrawl");
    let prefix = format!("kc-{}", ns.name);
    let sets = format!(
        "redis.url={},redis.prefix={prefix},kafka.brokers={},kafka.topicPrefix={prefix},operator.watchNamespace={},\
         operator.statusInterval=1s,operator.completionGrace=3s,operator.logFormat=plain,workers.allowPrivateNetworks=true,\
         workers.terminationGracePeriodSeconds=5",
        env.redis_url, env.kafka_brokers, ns.name
    );
    let install = kubectl_helm(&[
        "install",
        &release,
        chart.to_str().expect("utf-8"),
        "-n",
        &ns.name,
        "--set",
        &sets,
        "--set-json",
        &format!("operator.nodeSelector={selector}"),
        "--set-json",
        &format!("workers.nodeSelector={selector}"),
        "--set-json",
        &format!("workers.env={worker_env}"),
    ]);
    assert!(
        install.contains("STATUS: deployed"),
        "helm install:\n{install}"
    );
    assert!(
        install.contains("kubectl get crawljobs"),
        "NOTES tell what to do next:\n{install}"
    );

    // The Pod's ServiceAccount credentials and its mounted fleet configuration.
    let sa = format!("{release}-kubecrawl-operator");
    let kubeconfig = service_account_kubeconfig(&env, &ns.name, &sa, &dir);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let fleets = cms
        .get(&format!("{release}-kubecrawl-fleets"))
        .await
        .expect("fleet ConfigMap");
    let fleets_file = dir.join("fleets.yaml");
    std::fs::write(&fleets_file, &fleets.data.expect("data")["fleets.yaml"]).expect("write fleets");

    let operator_bin = Path::new(env!("CARGO_BIN_EXE_kubecrawl-operator"));
    let commands = CommandMap::new()
        .with("kubecrawl-operator", operator_bin)
        .with(
            "kubecrawl-worker",
            operator_bin.with_file_name("kubecrawl-worker"),
        );
    let kubelet = FakeKubelet::start_with(
        client.clone(),
        KubeletConfig::new(&node, commands)
            .with_log_dir(dir.join("pods"))
            .with_max_grace(Duration::from_secs(10))
            .with_env("KUBECONFIG", kubeconfig.display().to_string())
            .with_env("KUBECRAWL_FLEET_CONFIG", fleets_file.display().to_string())
            .with_env("KUBECRAWL_METRICS_ADDR", "127.0.0.1:0"),
    )
    .await
    .expect("kubelet");

    let job: CrawlJob = serde_yaml::from_str(&format!(
        "apiVersion: kubecrawl.io/v1alpha1\nkind: CrawlJob\nmetadata: {{name: helm-link}}\n\
         spec: {{spiderid: link, appid: testapp, crawlid: helm1, seeds: ['{}'], maxdepth: 1000, allowedDomains: [site.test], workers: 2, politeness: {{delayMillis: 0}}}}",
        site.root()
    ))
    .expect("job yaml");
    let jobs: Api<CrawlJob> = Api::namespaced(client.clone(), &ns.name);
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("created");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let done = loop {
        let job = jobs.get("helm-link").await.expect("get");
        if job
            .status
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Succeeded)
        {
            break job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no success: {:#?}\n{}",
            job.status,
            kubelet.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(done.status.expect("status").pages, truth.len() as u64);
    let logs = kubelet.all_logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "an RBAC refusal:\n{logs}"
    );
    assert!(
        logs.contains("became leader"),
        "the chart's operator ran with leader election:\n{logs}"
    );

    let uninstall = kubectl_helm(&[
        "uninstall",
        &release,
        "-n",
        &ns.name,
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(uninstall.contains("uninstalled"), "{uninstall}");
    kubelet.shutdown().await.expect("kubelet shutdown");
}

/// Runs helm and fails the test when it fails.
fn kubectl_helm(args: &[&str]) -> String {
    let (ok, text) = kubecrawl_e2e::helm(args).expect("helm runs");
    assert!(ok, "helm {} failed:\n{text}", args.join(" "));
    text
}

/// The worker Deployments the operator writes pass the restricted Pod Security Standard, as
/// the API server's own admission judges it.
#[test]
fn worker_deployments_pass_the_restricted_pod_security_standard() {
    use kubecrawl_operator::fleet::{Connections, FleetConfig, deployment};
    let ns = TestNamespace::create("e2e-worker-pss").expect("namespace");
    kubectl_ok(
        &[
            "label",
            "namespace",
            &ns.name,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ],
        None,
    )
    .expect("label");
    let config = FleetConfig {
        namespace: ns.name.clone(),
        ..FleetConfig::default()
    };
    let conns = Connections {
        redis_url: "redis://redis:6379".into(),
        redis_prefix: "kubecrawl".into(),
        kafka_brokers: "kafka:9092".into(),
        topic_prefix: "kubecrawl".into(),
    };
    let manifest = serde_json::to_string(&deployment(&config, &conns, "link", 2)).expect("json");
    let out = kubecrawl_e2e::kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&manifest))
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("violate"),
        "restricted PSS refused the worker Deployment:\n{stderr}"
    );
}
