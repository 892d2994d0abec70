//! What the README's cluster commands must have done on the real node, beyond what they
//! print: `helm install … --set dev.enabled=true` put the operator, the dev Redis and Kafka and
//! (once `kubectl apply` made a job) a worker fleet on the node, Running and Ready through
//! their probes, on the pod network; and that install crawls. The README's example job seeds
//! a site Pods cannot reach (nothing leaves this machine), so a job seeded at the synthetic
//! site, served on the node's bridge, checks the crawl: pages = ground truth, through the dev
//! Redis and Kafka.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kubecrawl_api::{CrawlJob, Phase};
use kubecrawl_e2e::crawljob::{phase, wait_job};
use kubecrawl_e2e::poll::Wait;
use kubecrawl_e2e::{TestEnv, kubectl_ok, pod_ready};

use crate::sandbox::{Sandbox, node_var};

/// The Deployments of a dev install with the README's job, by Pod name prefix.
const RELEASE_PODS: &[&str] = &[
    "kubecrawl-operator-",
    "kubecrawl-redis-",
    "kubecrawl-kafka-",
    "kubecrawl-worker-link-",
];
/// The job the README applies (`examples/link.yaml`).
const README_JOB: &str = "test123456-link";

/// Checks the release the README's commands installed in the sandbox's namespace.
///
/// # Errors
/// What is not as it should be, with what was seen.
pub(crate) async fn check(sandbox: &mut Sandbox) -> Result<(), String> {
    let node = node_var("KUBECRAWL_NODE");
    let client = TestEnv::get()
        .kube_client()
        .await
        .map_err(|e| format!("a Kubernetes client: {e}"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &sandbox.ns.name);
    let jobs: Api<CrawlJob> = Api::namespaced(client.clone(), &sandbox.ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client, &sandbox.ns.name);

    every_pod_ready_on(&pods, &node).await?;
    let job = wait_job(
        &jobs,
        README_JOB,
        Duration::from_secs(60),
        |j| phase(j) == Phase::Running,
        String::new,
    )
    .await
    .map_err(|e| format!("the README's job does not run: {e}"))?;
    println!(
        "{README_JOB}: {:?}, seeded in the dev Redis by the operator's Pod",
        job.status.map(|s| s.phase)
    );

    // The workers' guard refuses private addresses (the bridge's among them) by default.
    let upgrade = sandbox
        .run(
            "helm upgrade kubecrawl charts/kubecrawl --reuse-values \
             --set workers.allowPrivateNetworks=true",
        )
        .await;
    if upgrade.code != Some(0) {
        return Err(format!(
            "helm upgrade --set workers.allowPrivateNetworks=true failed:\n{}",
            upgrade.output
        ));
    }
    // The operator rolls the fleet to the new setting; a job applied before the old workers
    // are gone would meet one that refuses the site (and retries its robots.txt a minute
    // later).
    fleet_rolled_out(&deployments, &pods).await?;
    let truth = sandbox.site.truth();
    let manifest = format!(
        "apiVersion: kubecrawl.io/v1alpha1\nkind: CrawlJob\n\
         metadata: {{name: site-link, namespace: {}}}\n\
         spec: {{spiderid: link, appid: testapp, crawlid: site1, seeds: ['{}'], maxdepth: 1000, \
         allowedDomains: [site.test], workers: 1, politeness: {{delayMillis: 20}}}}\n",
        sandbox.ns.name,
        sandbox.site.root()
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&manifest)).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let done = wait_job(
        &jobs,
        "site-link",
        Duration::from_secs(240),
        |j| phase(j) == Phase::Succeeded,
        String::new,
    )
    .await
    .map_err(|e| format!("the crawl of the site from the node's Pods: {e}"))?;
    let pages = done.status.map_or(0, |s| s.pages);
    println!(
        "site-link: {pages} pages from the node's Pods in {:.1} s (ground truth {})",
        started.elapsed().as_secs_f64(),
        truth.len()
    );
    if pages != truth.len() as u64 {
        return Err(format!(
            "the crawl from the node's Pods fetched {pages} pages; the site has {} reachable",
            truth.len()
        ));
    }
    Ok(())
}

/// Waits until the release's Pods run on `node`, every container Ready.
async fn every_pod_ready_on(pods: &Api<Pod>, node: &str) -> Result<(), String> {
    let mut seen = Vec::new();
    let ready = Wait::new(
        "the release's Pods Running and Ready on the node",
        Duration::from_secs(180),
    )
    .every(Duration::from_millis(500))
    .try_until(async || {
        let list = pods.list(&ListParams::default()).await?.items;
        seen = list.iter().map(describe).collect();
        let all_there = RELEASE_PODS.iter().all(|prefix| {
            list.iter().any(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(prefix))
            })
        });
        let all_ready = list.iter().all(|p| {
            pod_ready(p) && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
        });
        anyhow::Ok((all_there && all_ready).then_some(()))
    })
    .await;
    match ready {
        Ok(()) => {
            println!("on {node}: {}", seen.join("; "));
            Ok(())
        }
        Err(e) => Err(format!("{e}\nPods as last seen:\n{}", seen.join("\n"))),
    }
}

/// Waits until the worker fleet's Deployment allows private networks and every worker Pod is
/// of that template and Ready.
async fn fleet_rolled_out(deployments: &Api<Deployment>, pods: &Api<Pod>) -> Result<(), String> {
    let fleet = "kubecrawl-worker-link";
    Wait::new(
        "the worker fleet rolled out with private networks allowed",
        Duration::from_secs(120),
    )
    .every(Duration::from_millis(500))
    .try_until(async || {
        let Some(deployment) = deployments.get_opt(fleet).await? else {
            return anyhow::Ok(None);
        };
        let allows = deployment.spec.template.spec.as_ref().is_some_and(|s| {
            s.containers.iter().any(|c| {
                c.env.iter().flatten().any(|e| {
                    e.name == "KUBECRAWL_ALLOW_PRIVATE_NETWORKS"
                        && e.value.as_deref() == Some("true")
                })
            })
        });
        let want = deployment.spec.replicas.unwrap_or(1);
        let status = deployment.status.unwrap_or_default();
        let current = status.observed_generation == deployment.metadata.generation
            && status.updated_replicas == Some(want)
            && status.ready_replicas == Some(want)
            && status.replicas == Some(want);
        let workers = pods
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(fleet))
            })
            .count();
        anyhow::Ok((allows && current && workers == usize::try_from(want)?).then_some(()))
    })
    .await
    .map_err(|e| e.to_string())
}

/// A Pod in one line: name, node, phase, Ready, restarts, IP.
fn describe(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let restarts: i32 = status
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
    format!(
        "{} on {} {} ready={} restarts={} ip={}",
        pod.metadata.name.as_deref().unwrap_or("?"),
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("-"),
        status.and_then(|s| s.phase.as_deref()).unwrap_or("-"),
        pod_ready(pod),
        restarts,
        status.and_then(|s| s.pod_ip.as_deref()).unwrap_or("-"),
    )
}
