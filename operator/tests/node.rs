//! The chart as deployed, on the real node of `make node-up`: a kubelet v1.37.2 with
//! containerd and runc, running the images of `make images` (imported into containerd, never
//! pulled). Nothing is played by the test: the images' binaries, the chart's probes and
//! security contexts, the projected ServiceAccount token, the mounted fleet ConfigMap and
//! SIGTERM on Pod deletion are the real kubelet's and runtime's.
//!
//! Pods run on the node's network (hostNetwork), so that they reach the test Redis, Kafka
//! and API server on 127.0.0.1 and traffic never leaves the machine; the node's taint keeps
//! every other Pod of the shared cluster away from it.
//!
//! Run by `make test-node` (the tests are `#[ignore]`d in a plain `cargo test`, which has no
//! node).

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use kubecrawl_api::{CrawlJob, PageRecord, Phase};
use kubecrawl_e2e::crawljob::{has_pages, phase, release_finalizers, wait_job};
use kubecrawl_e2e::poll::Wait;
use kubecrawl_e2e::records::topic_records;
use kubecrawl_e2e::site::{SiteConfig, TestSite};
use kubecrawl_e2e::{
    TestEnv, TestNamespace, ensure_crd, helm_install, helm_uninstall, kubectl_ok, pod_ready,
};

/// The real node's name and taint, from `make node-up`'s env file.
struct Node {
    name: String,
    taint: String,
}

impl Node {
    fn get() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run these tests with `make test-node`")
            })
        };
        Self {
            name: var("KUBECRAWL_NODE"),
            taint: var("KUBECRAWL_NODE_TAINT"),
        }
    }
}

/// How a container ended, as the kubelet reported it.
#[derive(Debug, Clone, PartialEq)]
struct Ended {
    exit_code: i32,
    reason: Option<String>,
}

/// Every Pod of a namespace as last seen, and how each of its containers ended: a Pod's
/// final status is only visible between the kubelet's last status write and its deletion.
#[derive(Default)]
struct PodLog {
    last: BTreeMap<String, Pod>,
    ended: BTreeMap<String, Ended>,
}

fn watch_pods(api: Api<Pod>) -> (Arc<Mutex<PodLog>>, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(PodLog::default()));
    let seen = Arc::clone(&log);
    let task = tokio::spawn(async move {
        let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let (Ok(Event::Apply(pod)) | Ok(Event::InitApply(pod))) = event else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let mut log = seen.lock().expect("pod log lock");
            for status in pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
            {
                if let Some(t) = status.state.as_ref().and_then(|s| s.terminated.as_ref()) {
                    log.ended.insert(
                        name.clone(),
                        Ended {
                            exit_code: t.exit_code,
                            reason: t.reason.clone(),
                        },
                    );
                }
            }
            log.last.insert(name, pod);
        }
    });
    (log, task)
}

/// A port nothing listens on now (the Pods bind it on the node's network).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Drops the operator's finalizer from the namespace's CrawlJobs when the test ends, pass or
/// fail: the operator is gone by then, and the namespace could not be deleted otherwise.
struct ReleaseFinalizers<'a>(&'a str);

impl Drop for ReleaseFinalizers<'_> {
    fn drop(&mut self) {
        release_finalizers(self.0);
    }
}

/// The Pods last seen with the label `app.kubernetes.io/name=<name>`.
fn pods_named(log: &Mutex<PodLog>, name: &str) -> Vec<Pod> {
    log.lock()
        .expect("pod log lock")
        .last
        .values()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/name"))
                .is_some_and(|n| n == name)
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real node and images: run by `make test-node`"]
async fn the_chart_runs_on_a_real_node_and_a_deleted_worker_drains_losing_nothing() {
    kubecrawl_e2e::install_tls_provider();
    let node = Node::get();
    ensure_crd().expect("CRD applies");
    let env = TestEnv::get();
    let client = env.kube_client().await.expect("client");
    let ns = TestNamespace::create("e2e-node").expect("namespace");
    let _finalizers = ReleaseFinalizers(&ns.name);
    let release = ns.name.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let (log, watch) = watch_pods(pods.clone());

    // The script area too, for the render fleet's job.
    let site = TestSite::start(SiteConfig::default().with_scripts(true))
        .await
        .expect("site");
    let truth = site.truth();

    // The operator reaches the API server the way a Pod does, through its ServiceAccount
    // token and the cluster CA the kubelet projects; only the address is the loopback one,
    // as no Service proxy runs here.
    let server: url::Url = {
        let kubeconfig: serde_yaml::Value = serde_yaml::from_str(
            &std::fs::read_to_string(&env.kubeconfig).expect("admin kubeconfig"),
        )
        .expect("yaml");
        kubeconfig["clusters"][0]["cluster"]["server"]
            .as_str()
            .expect("server")
            .parse()
            .expect("server URL")
    };
    let operator_env = serde_json::json!([
        {"name": "KUBERNETES_SERVICE_HOST", "value": server.host_str().expect("host")},
        {"name": "KUBERNETES_SERVICE_PORT", "value": server.port().expect("port").to_string()},
    ]);
    let worker_env = serde_json::json!([
        {"name": "KUBECRAWL_RESOLVE", "value": site.resolve()},
        {"name": "KUBECRAWL_LEASE_DURATION", "value": "15s"},
    ]);
    let on_node = serde_json::json!({"kubernetes.io/hostname": node.name}).to_string();
    let tolerate =
        serde_json::json!([{"key": node.taint, "operator": "Exists", "effect": "NoSchedule"}])
            .to_string();
    let prefix = format!("kc-{}", ns.name);
    let sets = format!(
        "redis.url={},redis.prefix={prefix},kafka.brokers={},kafka.topicPrefix={prefix},\
         operator.watchNamespace={},operator.statusInterval=1s,operator.completionGrace=3s,\
         operator.logFormat=plain,operator.hostNetwork=true,metrics.port={},\
         operator.image.pullPolicy=Never,workers.image.pullPolicy=Never,\
         workers.hostNetwork=true,workers.metricsPort={},workers.allowPrivateNetworks=true,\
         workers.terminationGracePeriodSeconds=30,fleets.link-render.metricsPort={}",
        env.redis_url,
        env.kafka_brokers,
        ns.name,
        free_port(),
        free_port(),
        free_port(),
    );
    let install_started = std::time::Instant::now();
    let install = helm_install(
        &release,
        &ns.name,
        &sets,
        &[
            ("operator.nodeSelector", on_node.clone()),
            ("operator.tolerations", tolerate.clone()),
            ("operator.env", operator_env.to_string()),
            ("workers.nodeSelector", on_node),
            ("workers.tolerations", tolerate),
            ("workers.env", worker_env.to_string()),
        ],
        // Returns when the operator's Deployment is available: its Pod Ready by its probes.
        &["--wait", "--timeout", "180s"],
    )
    .expect("helm install");
    assert!(install.contains("STATUS: deployed"), "{install}");
    println!(
        "helm install --wait: operator Ready in {:?}",
        install_started.elapsed()
    );

    let operator = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
        .await
        .expect("list")
        .items;
    assert_eq!(operator.len(), 1, "one operator Pod");
    let op = &operator[0];
    assert_eq!(
        op.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node.name.as_str())
    );
    assert!(pod_ready(op), "operator Ready: {:#?}", op.status);
    let status = &op
        .status
        .as_ref()
        .expect("status")
        .container_statuses
        .as_ref()
        .expect("containers")[0];
    assert!(status.state.as_ref().is_some_and(|s| s.running.is_some()));
    assert_eq!(status.restart_count, 0, "the operator never restarted");
    assert!(
        status.image_id.starts_with("sha256:") || status.image_id.contains("@sha256:"),
        "the runtime ran a real image: {}",
        status.image_id
    );

    // A CrawlJob, applied as a user would, with extract rules for the stock image's link
    // spider: two fields from every page, every allowed link still followed.
    let job = format!(
        "apiVersion: kubecrawl.io/v1alpha1\nkind: CrawlJob\nmetadata: {{name: node-link, namespace: {}}}\n\
         spec: {{spiderid: link, appid: testapp, crawlid: node1, seeds: ['{}'], maxdepth: 1000, \
         allowedDomains: [site.test], workers: 1, politeness: {{delayMillis: 80}}, \
         extract: {{fields: [{{name: heading, selector: 'h1#top'}}, {{name: anchor, selector: h1, attribute: id}}]}}}}\n",
        ns.name,
        site.root()
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&job)).expect("kubectl apply");
    let jobs: Api<CrawlJob> = Api::namespaced(client.clone(), &ns.name);

    // Mid-crawl, the worker Pod is deleted: the real kubelet sends SIGTERM, the worker drains
    // and exits 0; its replacement finishes the crawl.
    let victim = Wait::new(
        "a Ready worker 30 pages into the crawl",
        Duration::from_secs(120),
    )
    .every(Duration::from_millis(300))
    .explained_by(|| {
        format!(
            "{:#?}",
            pods_named(&log, "kubecrawl-worker")
                .iter()
                .map(|p| &p.status)
                .collect::<Vec<_>>()
        )
    })
    .until(async || {
        let job = jobs.get("node-link").await.expect("get");
        let pod = pods_named(&log, "kubecrawl-worker")
            .into_iter()
            .find(pod_ready)
            .filter(|_| has_pages(&job, 30))?;
        println!(
            "deleting worker Pod {:?} at {} pages",
            pod.metadata.name,
            job.status.map_or(0, |s| s.pages)
        );
        pod.metadata.name
    })
    .await;
    kubectl_ok(
        &[
            "delete",
            "pod",
            &victim,
            "-n",
            &ns.name,
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    )
    .expect("kubectl delete pod");
    let ended = log
        .lock()
        .expect("pod log lock")
        .ended
        .get(&victim)
        .cloned();
    assert_eq!(
        ended.as_ref().map(|e| e.exit_code),
        Some(0),
        "the deleted worker drained and exited 0 on the kubelet's SIGTERM: {ended:?}"
    );
    println!("the deleted worker ended: {ended:?}");

    let done = wait_job(
        &jobs,
        "node-link",
        Duration::from_secs(180),
        |j| phase(j) == Phase::Succeeded,
        String::new,
    )
    .await
    .expect("the job succeeds");
    assert_eq!(done.status.expect("status").pages, truth.len() as u64);

    // Nothing lost: every reachable page is in Kafka (at least once).
    let records: Vec<PageRecord> = topic_records(
        env.kafka_config(),
        &format!("{prefix}.crawled_firehose"),
        Duration::from_secs(120),
    )
    .await
    .expect("the firehose reads back")
    .into_iter()
    .filter(|r: &PageRecord| r.crawlid == "node1")
    .collect();
    let got: BTreeSet<String> = records.iter().map(|r| r.url.clone()).collect();
    let want = truth.urls();
    assert_eq!(
        got.difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "pages outside the ground truth"
    );
    assert_eq!(
        want.difference(&got).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "pages lost"
    );
    // The extract rules ran in the image's worker: every main page's record carries its
    // heading (the page's <title>, as the site writes both) and the heading's id.
    let main_pages: Vec<&PageRecord> = records
        .iter()
        .filter(|r| {
            r.status_code == 200
                && r.url
                    .rsplit_once("/p/")
                    .is_some_and(|(_, n)| n.parse::<u32>().is_ok())
        })
        .collect();
    assert!(main_pages.len() > 50, "{} main pages", main_pages.len());
    for r in main_pages {
        let title = r
            .body
            .split_once("<title>")
            .and_then(|(_, rest)| rest.split_once("</title>"))
            .map(|(t, _)| t)
            .unwrap_or_else(|| panic!("{} has a title", r.url));
        assert_eq!(
            (r.fields.get("heading"), r.fields.get("anchor")),
            (
                Some(&serde_json::json!(title)),
                Some(&serde_json::json!("top"))
            ),
            "the fields of {}",
            r.url
        );
    }

    // A job that renders, on the chart's link-render fleet: the render worker's image runs
    // headless Chromium under the restricted security context and finds what exists only
    // once the pages' scripts ran.
    let render_job = format!(
        "apiVersion: kubecrawl.io/v1alpha1\nkind: CrawlJob\nmetadata: {{name: node-render, namespace: {}}}\n\
         spec: {{spiderid: link-render, appid: testapp, crawlid: node2, seeds: ['{}'], maxdepth: 3, \
         allowedDomains: [site.test], render: {{mode: auto, timeoutSeconds: 4, maxElements: 100000}}}}\n",
        ns.name,
        site.url(
            kubecrawl_e2e::site::MAIN_HOST,
            kubecrawl_e2e::site::scripts::INDEX
        )
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&render_job)).expect("kubectl apply");
    let rendered_done = wait_job(
        &jobs,
        "node-render",
        Duration::from_secs(240),
        |j| phase(j) == Phase::Succeeded,
        || {
            format!(
                "{:#?}",
                pods_named(&log, "kubecrawl-worker-link-render")
                    .iter()
                    .map(|p| &p.status)
                    .collect::<Vec<_>>()
            )
        },
    )
    .await
    .expect("the render job succeeds");
    let script_truth = site.script_truth();
    let status = rendered_done.status.expect("status");
    assert_eq!(status.pages, script_truth.rendered.len() as u64);
    let rendered: Vec<PageRecord> = topic_records(
        env.kafka_config(),
        &format!("{prefix}.crawled_firehose"),
        Duration::from_secs(120),
    )
    .await
    .expect("the firehose reads back")
    .into_iter()
    .filter(|r: &PageRecord| r.crawlid == "node2")
    .collect();
    let got: BTreeSet<String> = rendered.iter().map(|r| r.url.clone()).collect();
    assert_eq!(
        got, script_truth.rendered,
        "the pages the render fleet found"
    );
    let app = rendered
        .iter()
        .find(|r| r.url.ends_with("/js/app"))
        .expect("the app page's record");
    assert!(
        app.rendered && app.body.contains("Rendered app"),
        "{}",
        app.body
    );
    println!(
        "the render fleet found {} pages, {} rendered, from {:?} to {:?}",
        got.len(),
        rendered.iter().filter(|r| r.rendered).count(),
        status.start_time,
        status.completion_time
    );

    // Uninstall: the kubelet stops the operator with SIGTERM, and it exits 0.
    let op_name = op.metadata.name.clone().expect("name");
    helm_uninstall(&release, &ns.name).expect("helm uninstall");
    let ended = Wait::new("the operator Pod to go", Duration::from_secs(60))
        .every(Duration::from_millis(300))
        .until(async || {
            let gone = pods.get_opt(&op_name).await.expect("get").is_none();
            let ended = log
                .lock()
                .expect("pod log lock")
                .ended
                .get(&op_name)
                .cloned();
            (gone || ended.is_some()).then_some(ended)
        })
        .await;
    assert_eq!(
        ended.as_ref().map(|e| e.exit_code),
        Some(0),
        "the operator exited 0 on SIGTERM: {ended:?}"
    );
    println!(
        "the operator ended: {ended:?}; {} page records for {} pages",
        records.len(),
        want.len()
    );

    // The fleet the operator left behind (not part of the release) goes with the namespace.
    kubectl_ok(
        &[
            "delete",
            "deployment",
            "--all",
            "-n",
            &ns.name,
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    )
    .expect("delete worker deployments");
    watch.abort();
    site.shutdown().await;
}
