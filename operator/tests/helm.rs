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
use kubecrawl_e2e::crawljob::{phase, wait_job};
use kubecrawl_e2e::kubelet::{CommandMap, FakeKubelet, KubeletConfig};
use kubecrawl_e2e::site::{SiteConfig, TestSite};
use kubecrawl_e2e::{
    TestEnv, TestNamespace, ensure_crd, helm_install, helm_uninstall, service_account_kubeconfig,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_then_the_chart_operator_crawls_with_its_own_rbac() {
    ensure_crd().expect("CRD applies");
    let env = TestEnv::get();
    let client = env.kube_client().await.expect("client");
    let ns = TestNamespace::create("e2e-helm").expect("namespace");
    // A release of its own: the chart's cluster-scoped RBAC is named after it.
    let release = ns.name.clone();
    let site = TestSite::start(SiteConfig::default()).await.expect("site");
    let truth = site.truth();
    let dir = std::env::temp_dir().join(format!("kubecrawl-{}", ns.name));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let node = format!("{}-node", ns.name);
    let selector = serde_json::json!({"kubernetes.io/hostname": node}).to_string();
    let worker_env = serde_json::json!([
        {"name": "KUBECRAWL_RESOLVE", "value": site.resolve()},
        {"name": "KUBECRAWL_LEASE_DURATION", "value": "15s"},
    ])
    .to_string();
    let prefix = format!("kc-{}", ns.name);
    let sets = format!(
        "redis.url={},redis.prefix={prefix},kafka.brokers={},kafka.topicPrefix={prefix},operator.watchNamespace={},\
         operator.statusInterval=1s,operator.completionGrace=3s,operator.logFormat=plain,workers.allowPrivateNetworks=true,\
         workers.terminationGracePeriodSeconds=5",
        env.redis_url, env.kafka_brokers, ns.name
    );
    let install = helm_install(
        &release,
        &ns.name,
        &sets,
        &[
            ("operator.nodeSelector", selector.clone()),
            ("workers.nodeSelector", selector),
            ("workers.env", worker_env),
        ],
        &[],
    )
    .expect("helm install");
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
    let kubeconfig = dir.join("operator-kubeconfig.yaml");
    service_account_kubeconfig(&ns.name, &sa, &kubeconfig).expect("a ServiceAccount kubeconfig");
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
    let done = wait_job(
        &jobs,
        "helm-link",
        Duration::from_secs(180),
        |j| phase(j) == Phase::Succeeded,
        || kubelet.all_logs(),
    )
    .await
    .expect("the job succeeds");
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

    helm_uninstall(&release, &ns.name).expect("helm uninstall");
    kubelet.shutdown().await.expect("kubelet shutdown");
}

/// The worker Deployments the operator writes pass the restricted Pod Security Standard, as
/// the API server's own admission judges it.
#[test]
fn worker_deployments_pass_the_restricted_pod_security_standard() {
    use kubecrawl_operator::fleet::{Connections, FleetConfig, deployment};
    let ns = TestNamespace::create("e2e-worker-pss").expect("namespace");
    ns.enforce_restricted_pod_security().expect("label");
    let config = FleetConfig {
        namespace: ns.name.clone(),
        ..FleetConfig::default()
    };
    let conns = Connections {
        redis_url: "redis://redis:6379".into(),
        redis_prefix: "kubecrawl".into(),
        kafka_brokers: "kafka:9092".into(),
        topic_prefix: "kubecrawl".into(),
        redis_cluster: false,
        redis_shards: None,
    };
    let manifest = serde_json::to_string(&deployment(&config, &conns, "link", 2)).expect("json");
    let out = ns.dry_run_apply(&manifest).expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("violate"),
        "restricted PSS refused the worker Deployment:\n{stderr}"
    );
}
