//! The fake kubelet against the real kube-apiserver, controller-manager and scheduler: a
//! Deployment's replicas run as real processes with their args and env, scale-down stops the
//! surplus, a killed process is restarted, deletion and shutdown leave nothing running.
//!
//! Each test has its own namespace and its own fake Node, and pins its Pods to that Node with a
//! `nodeSelector`, so the tests run in parallel.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubecrawl_e2e::kubelet::{CommandMap, FakeKubelet, KubeletConfig, Signal};
use kubecrawl_e2e::poll::Wait;
use kubecrawl_e2e::{TestEnv, TestNamespace, unique_name};
use serde_json::{Value, json};

/// How long anything in these tests may take to settle; generous, for a loaded machine.
const SETTLE: Duration = Duration::from_secs(60);

const FAKE_WORKER: &str = env!("CARGO_BIN_EXE_fake-worker");

/// A kubelet on a node of its own, mapping `sleeper` to the fake-worker, with a 5 s grace cap
/// and one extra variable, then whatever `configure` changes.
async fn start_kubelet(
    client: &kube::Client,
    prefix: &str,
    configure: impl FnOnce(KubeletConfig) -> KubeletConfig,
) -> FakeKubelet {
    let node = unique_name(prefix);
    let commands = CommandMap::new().with("sleeper", FAKE_WORKER);
    let config = configure(
        KubeletConfig::new(&node, commands)
            .with_max_grace(Duration::from_secs(5))
            .with_env("FAKE_KUBELET_EXTRA", "for $(POD_NAME)"),
    );
    FakeKubelet::start_with(client.clone(), config)
        .await
        .expect("the fake kubelet starts")
}

/// Polls `probe` every 200 ms until it returns `Some`; on timeout, fails with `what` and
/// every container log.
async fn wait_for<T>(
    kubelet: &FakeKubelet,
    what: &str,
    probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    Wait::new(what, SETTLE)
        .every(Duration::from_millis(200))
        .explained_by(|| format!("container logs:\n{}", kubelet.all_logs()))
        .until(probe)
        .await
}

/// Creates Deployment `name`: `replicas` Pods of `container` on the kubelet's node.
async fn create_deployment(
    deployments: &Api<Deployment>,
    name: &str,
    replicas: i32,
    kubelet: &FakeKubelet,
    container: Value,
) {
    deployments
        .create(
            &PostParams::default(),
            &deployment(name, replicas, kubelet, container),
        )
        .await
        .expect("deployment created");
}

/// Waits until exactly `n` processes run for namespace `ns`; returns them (pod, pid).
async fn processes(kubelet: &FakeKubelet, ns: &str, n: usize) -> Vec<(String, u32)> {
    wait_for(kubelet, &format!("{n} running processes"), async || {
        let running = kubelet.running(ns);
        (running.len() == n).then_some(running)
    })
    .await
}

fn deployment(name: &str, replicas: i32, kubelet: &FakeKubelet, container: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "nodeSelector": kubelet.node_selector(),
                    "terminationGracePeriodSeconds": 20,
                    "containers": [container],
                },
            },
        },
    }))
    .expect("a valid deployment")
}

/// The Deployment's (replicas, readyReplicas, availableReplicas) as its controller reports them.
async fn deployment_counts(api: &Api<Deployment>, name: &str) -> (i32, i32, i32) {
    let Ok(deployment) = api.get(name).await else {
        return (-1, -1, -1);
    };
    let status = deployment.status.unwrap_or_default();
    (
        status.replicas.unwrap_or(0),
        status.ready_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
    )
}

/// The args and env a fake-worker printed at its latest start, from its log.
fn reported(log: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let args = log
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("fake-worker args "))
        .expect("fake-worker printed its args");
    let env = log
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("fake-worker env "))
        .expect("fake-worker printed its env");
    (
        serde_json::from_str(args).expect("args are JSON"),
        serde_json::from_str(env).expect("env is JSON"),
    )
}

/// Whether a process with this pid runs and is a fake-worker (a pid reused by something else
/// does not count).
fn fake_worker_alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("fake-worker"))
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
}

async fn node_exists(client: &kube::Client, name: &str) -> bool {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .get_opt(name)
        .await
        .expect("reading the node")
        .is_some()
}

#[tokio::test]
async fn deployment_replicas_run_scale_down_restart_and_stop() {
    let env = TestEnv::get();
    let client = env.kube_client().await.expect("client");
    let ns = TestNamespace::create("e2e-kubelet").expect("namespace");
    let kubelet = start_kubelet(&client, "fake-node-main", |config| config).await;
    let node = kubelet.node_name().to_owned();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "creds" },
        "stringData": { "token": "s3cret" },
    }))
    .expect("a valid secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret created");

    let container = json!({
        "name": "worker",
        "image": "kubecrawl/fake:dev",
        "command": ["sleeper", "--pod=$(POD_NAME)", "$$(LITERAL)"],
        "args": ["--greeting", "$(GREETING) world", "--undefined=$(NOPE)", "--composed=$(COMPOSED)"],
        "env": [
            { "name": "GREETING", "value": "hello" },
            { "name": "COMPOSED", "value": "$(GREETING)-composed" },
            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
            { "name": "POD_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
            { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
            { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "token" } } },
        ],
    });
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    create_deployment(&deployments, "sleepers", 2, &kubelet, container).await;

    // Two replicas: two processes, and the Deployment counts them ready and available.
    let started = Instant::now();
    let first = processes(&kubelet, &ns.name, 2).await;
    wait_for(&kubelet, "readyReplicas 2", async || {
        (deployment_counts(&deployments, "sleepers").await == (2, 2, 2)).then_some(())
    })
    .await;
    println!("2 replicas ready after {:?}", started.elapsed());

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    for (pod_name, pid) in &first {
        assert!(fake_worker_alive(*pid), "pid {pid} of {pod_name} runs");
        let log = wait_for(&kubelet, "the worker's report", async || {
            let log = kubelet.logs(&ns.name, pod_name);
            log.contains("fake-worker env").then_some(log)
        })
        .await;
        let (args, vars) = reported(&log);
        assert_eq!(
            args,
            [
                format!("--pod={pod_name}"),
                "$(LITERAL)".to_owned(),
                "--greeting".to_owned(),
                "hello world".to_owned(),
                "--undefined=$(NOPE)".to_owned(),
                "--composed=hello-composed".to_owned(),
            ],
            "args of {pod_name}, $(VAR) expanded as Kubernetes does"
        );
        for (key, value) in [
            ("GREETING", "hello"),
            ("COMPOSED", "hello-composed"),
            ("POD_NAME", pod_name.as_str()),
            ("POD_NAMESPACE", ns.name.as_str()),
            ("POD_IP", "127.0.0.1"),
            ("NODE", node.as_str()),
            ("TOKEN", "s3cret"),
            ("HOSTNAME", pod_name.as_str()),
            ("FAKE_KUBELET_EXTRA", &format!("for {pod_name}")),
        ] {
            assert_eq!(
                vars.get(key).map(String::as_str),
                Some(value),
                "env {key} of {pod_name}"
            );
        }
        assert!(
            !vars.contains_key("KUBECONFIG") && !vars.contains_key("REDIS_URL"),
            "the test's own environment does not leak into the container: {vars:?}"
        );

        let pod = pods.get(pod_name).await.expect("pod exists");
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some(node.as_str())
        );
        let status = pod.status.expect("pod status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
        let conditions = status.conditions.unwrap_or_default();
        for type_ in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == "True"),
                "{type_} is True on {pod_name}: {conditions:?}"
            );
        }
        let container = &status.container_statuses.unwrap_or_default()[0];
        assert!(container.ready && container.started == Some(true));
        assert_eq!(container.restart_count, 0);
        assert_eq!(container.image, "kubecrawl/fake:dev");
        assert!(
            container
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .is_some()
        );
    }

    // Scale to one: exactly one process remains, and the other got SIGTERM and exited 0.
    deployments
        .patch(
            "sleepers",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 1 } })),
        )
        .await
        .expect("scaled down");
    let remaining = wait_for(&kubelet, "one process after scale-down", async || {
        let running = kubelet.running(&ns.name);
        (running.len() == 1).then_some(running)
    })
    .await;
    assert!(
        first.contains(&remaining[0]),
        "the survivor is one of the first two"
    );
    let (stopped_pod, stopped_pid) = first
        .iter()
        .find(|entry| **entry != remaining[0])
        .expect("one pod was stopped")
        .clone();
    wait_for(
        &kubelet,
        "the stopped pod object to be deleted",
        async || {
            pods.get_opt(&stopped_pod)
                .await
                .expect("reading a pod")
                .is_none()
                .then_some(())
        },
    )
    .await;
    let log = kubelet.logs(&ns.name, &stopped_pod);
    assert!(
        log.contains("fake-worker stopping on sigterm")
            && log.contains(&format!("stopped pid {stopped_pid}: exit code 0")),
        "the surplus process got SIGTERM and exited 0:\n{log}"
    );
    assert!(!fake_worker_alive(stopped_pid), "pid {stopped_pid} is gone");
    assert!(fake_worker_alive(remaining[0].1), "the survivor runs");
    wait_for(&kubelet, "readyReplicas 1", async || {
        (deployment_counts(&deployments, "sleepers").await == (1, 1, 1)).then_some(())
    })
    .await;

    // kill -9 the survivor: it is restarted, restartCount 1, and ready again.
    let (survivor, old_pid) = remaining[0].clone();
    let killed = kubelet
        .kill_pod_process(&ns.name, &survivor, Signal::SIGKILL)
        .await
        .expect("signal sent");
    assert_eq!(killed, [old_pid]);
    let restarted = wait_for(&kubelet, "the killed process to be restarted", async || {
        let running = kubelet.running(&ns.name);
        (running.len() == 1 && running[0].0 == survivor && running[0].1 != old_pid)
            .then(|| running[0].1)
    })
    .await;
    assert!(fake_worker_alive(restarted));
    let container = wait_for(&kubelet, "restartCount 1 and ready", async || {
        let pod = pods.get(&survivor).await.ok()?;
        let container = pod.status?.container_statuses?.into_iter().next()?;
        (container.restart_count == 1 && container.ready).then_some(container)
    })
    .await;
    let last = container
        .last_state
        .and_then(|s| s.terminated)
        .expect("the killed process is the last state");
    assert_eq!((last.exit_code, last.signal), (137, Some(9)));
    wait_for(&kubelet, "readyReplicas 1 after the restart", async || {
        (deployment_counts(&deployments, "sleepers").await == (1, 1, 1)).then_some(())
    })
    .await;
    let log = kubelet.logs(&ns.name, &survivor);
    assert_eq!(
        log.matches("fake-worker args ").count(),
        2,
        "started twice:\n{log}"
    );

    // Deleting the Deployment stops every process and the Pods go away.
    deployments
        .delete("sleepers", &DeleteParams::foreground())
        .await
        .expect("deployment deleted");
    wait_for(&kubelet, "no process and no pod", async || {
        let pods_left = pods.list(&ListParams::default()).await.ok()?.items.len();
        (kubelet.running(&ns.name).is_empty() && pods_left == 0).then_some(())
    })
    .await;
    assert!(!fake_worker_alive(restarted), "pid {restarted} is gone");

    kubelet.shutdown().await.expect("clean shutdown");
    assert!(!node_exists(&client, &node).await, "the node is deleted");
}

#[tokio::test]
async fn a_process_that_ignores_sigterm_is_killed_after_the_capped_grace() {
    let env = TestEnv::get();
    let client = env.kube_client().await.expect("client");
    let ns = TestNamespace::create("e2e-kubelet-grace").expect("namespace");
    let max_grace = Duration::from_secs(3);
    let kubelet = start_kubelet(&client, "fake-node-grace", |config| {
        config.with_max_grace(max_grace)
    })
    .await;

    let container = json!({
        "name": "stubborn",
        "image": "sleeper",
        "env": [{ "name": "FAKE_WORKER_IGNORE_TERM", "value": "1" }],
    });
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    create_deployment(&deployments, "stubborn", 1, &kubelet, container).await;
    let running = processes(&kubelet, &ns.name, 1).await;
    let (pod, pid) = running[0].clone();
    wait_for(&kubelet, "the worker's report", async || {
        kubelet
            .logs(&ns.name, &pod)
            .contains("fake-worker env")
            .then_some(())
    })
    .await;

    // The Pod asks for 20 s; the kubelet caps it at 3 s, then SIGKILLs.
    let deleting = Instant::now();
    deployments
        .delete("stubborn", &DeleteParams::background())
        .await
        .expect("deployment deleted");
    wait_for(&kubelet, "the stubborn process to be killed", async || {
        kubelet.running(&ns.name).is_empty().then_some(())
    })
    .await;
    let took = deleting.elapsed();
    println!("stubborn process gone {took:?} after the deletion");
    assert!(
        took >= max_grace && took < max_grace + Duration::from_secs(10),
        "killed after the capped grace period, took {took:?}"
    );
    let log = kubelet.logs(&ns.name, &pod);
    assert!(
        log.contains("fake-worker ignoring sigterm")
            && log.contains(&format!("stopped pid {pid}: exit code 137")),
        "TERM was ignored, then KILL:\n{log}"
    );
    assert!(!fake_worker_alive(pid));
    kubelet.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_unmapped_command_waits_with_a_reason_and_shutdown_stops_everything() {
    let env = TestEnv::get();
    let client = env.kube_client().await.expect("client");
    let ns = TestNamespace::create("e2e-kubelet-shutdown").expect("namespace");
    let kubelet = start_kubelet(&client, "fake-node-shutdown", |config| config).await;
    let node = kubelet.node_name().to_owned();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    // A command the kubelet has no program for never starts, and says why.
    let unmapped = json!({ "name": "lost", "image": "nowhere:1", "command": ["not-mapped"] });
    create_deployment(&deployments, "lost", 1, &kubelet, unmapped).await;
    let waiting = wait_for(
        &kubelet,
        "the unmapped container to be waiting",
        async || {
            let list = pods
                .list(&ListParams::default().labels("app=lost"))
                .await
                .ok()?;
            let status = list.items.first()?.status.clone()?;
            let container = status.container_statuses?.into_iter().next()?;
            // The kubelet reports ContainerCreating until it has tried to start it.
            container
                .state?
                .waiting
                .filter(|w| w.reason.as_deref() != Some("ContainerCreating"))
        },
    )
    .await;
    assert_eq!(waiting.reason.as_deref(), Some("CreateContainerError"));
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("not-mapped"),
        "the message names the command: {waiting:?}"
    );
    assert_eq!(
        deployment_counts(&deployments, "lost").await.1,
        0,
        "nothing is ready"
    );

    // Three replicas of a mapped one, then shutdown with the Deployment still there.
    let container = json!({ "name": "worker", "image": "sleeper:latest", "args": ["plain"] });
    create_deployment(&deployments, "sleepers", 3, &kubelet, container).await;
    let running = wait_for(&kubelet, "three running processes", async || {
        let running = kubelet.running(&ns.name);
        let reported = running
            .iter()
            .all(|(pod, _)| kubelet.logs(&ns.name, pod).contains("fake-worker env"));
        (running.len() == 3 && reported).then_some(running)
    })
    .await;
    let (args, _) = reported(&kubelet.logs(&ns.name, &running[0].0));
    assert_eq!(args, ["plain"], "the image stood for the entrypoint");

    let log_dir = kubelet.log_dir().to_owned();
    let shutting_down = Instant::now();
    kubelet.shutdown().await.expect("clean shutdown");
    println!("shutdown took {:?}", shutting_down.elapsed());
    for (pod, pid) in &running {
        assert!(!fake_worker_alive(*pid), "pid {pid} of {pod} is gone");
        let log = std::fs::read_to_string(log_dir.join(format!("{}_{pod}_worker.log", ns.name)))
            .expect("the log outlives the kubelet");
        assert!(log.contains("fake-worker stopping on sigterm"), "{log}");
    }
    assert!(!node_exists(&client, &node).await, "the node is deleted");
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .expect("listing pods");
    assert!(on_node.items.is_empty(), "no pod is left bound to the node");
    assert!(Path::new(&log_dir).is_dir());
}

/// The Ready condition's lastHeartbeatTime of a node, as RFC 3339 text.
async fn heartbeat_of(client: &kube::Client, name: &str) -> Option<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get_opt(name).await.ok()??;
    let ready = node
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(serde_json::to_string(&ready.last_heartbeat_time?).expect("a time serializes"))
}

#[tokio::test]
async fn heartbeats_stay_fresh_stale_nodes_are_reaped_and_drop_kills_everything() {
    let env = TestEnv::get();
    let client = env.kube_client().await.expect("client");
    let ns = TestNamespace::create("e2e-kubelet-drop").expect("namespace");
    let nodes: Api<Node> = Api::all(client.clone());

    // A fake node whose kubelet died ten minutes ago.
    let stale = unique_name("fake-node-stale");
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": stale, "labels": { "kubecrawl.io/fake-kubelet": "true" } },
    }))
    .expect("a valid node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("stale node created");
    let long_ago = k8s_openapi::jiff::Timestamp::now() - Duration::from_secs(600);
    let long_ago = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(long_ago);
    let status = json!({ "status": { "conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "lastHeartbeatTime": long_ago, "lastTransitionTime": long_ago,
    }] } });
    nodes
        .patch_status(&stale, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("stale node status set");

    let kubelet = start_kubelet(&client, "fake-node-drop", |config| {
        config.with_heartbeat(Duration::from_secs(1))
    })
    .await;
    let node = kubelet.node_name().to_owned();
    assert!(
        !node_exists(&client, &stale).await,
        "starting a kubelet deleted the stale fake node"
    );

    let first = heartbeat_of(&client, &node)
        .await
        .expect("the node is Ready");
    let later = wait_for(&kubelet, "a fresher heartbeat", async || {
        heartbeat_of(&client, &node)
            .await
            .filter(|beat| *beat > first)
    })
    .await;
    println!("heartbeat moved from {first} to {later}");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let container = json!({ "name": "worker", "image": "sleeper", "env": [{ "name": "FAKE_WORKER_IGNORE_TERM", "value": "1" }] });
    create_deployment(&deployments, "sleepers", 2, &kubelet, container).await;
    let running = processes(&kubelet, &ns.name, 2).await;

    // Dropped without shutdown (as when a test panics): the processes are killed at once, even
    // those that ignore SIGTERM, and the node is deleted.
    drop(kubelet);
    tokio::time::timeout(SETTLE, async {
        while running.iter().any(|(_, pid)| fake_worker_alive(*pid)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the processes of a dropped kubelet die");
    assert!(!node_exists(&client, &node).await, "the node is deleted");
}
