//! The fake kubelet's Node: registration, heartbeat and removal.

use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::MANAGER;

/// Label that marks the Nodes of fake kubelets, so that stale ones can be found.
const FAKE_NODE_LABEL: &str = "kubecrawl.io/fake-kubelet";

/// A fake Node whose heartbeat is older than this belongs to a test process that died without
/// cleaning up: a live fake kubelet beats at least every [`MAX_HEARTBEAT`].
const STALE_AFTER: Duration = Duration::from_secs(120);

/// The longest heartbeat interval, well under [`STALE_AFTER`].
pub(super) const MAX_HEARTBEAT: Duration = Duration::from_secs(30);

/// How often a write that conflicts with another writer's is tried again.
const CONFLICT_RETRIES: u32 = 10;

/// Taints that stand for a Node that is not ready, which only a node-lifecycle controller
/// would remove (none runs here).
const NOT_READY_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// Creates (or takes over) the Node `name`, reports it Ready with room for many Pods, and
/// removes the not-ready taints it gets at creation, in that order, so that the scheduler
/// never sees it schedulable but not ready.
pub(super) async fn register(client: &kube::Client, name: &str) -> Result<()> {
    reap_stale(client, name).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": std::env::consts::ARCH,
        FAKE_NODE_LABEL: "true",
    });
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": labels },
    }))
    .context("building the node object")?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            let patch =
                json!({ "metadata": { "labels": labels }, "spec": { "unschedulable": null } });
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("taking over node {name}"))?;
        }
        Err(e) => return Err(e).with_context(|| format!("creating node {name}")),
    }
    heartbeat(client, name).await?;
    remove_not_ready_taints(&nodes, name).await
}

/// Removes the taints of [`NOT_READY_TAINTS`] from the Node, keeping any other.
async fn remove_not_ready_taints(nodes: &Api<Node>, name: &str) -> Result<()> {
    // Controllers annotate a new Node (the TTL controller does at once), which makes a write
    // based on an older read conflict: read again and retry.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let node = nodes
            .get(name)
            .await
            .with_context(|| format!("reading node {name}"))?;
        let taints = node.spec.and_then(|spec| spec.taints).unwrap_or_default();
        let kept: Vec<&Taint> = taints
            .iter()
            .filter(|taint| !NOT_READY_TAINTS.contains(&taint.key.as_str()))
            .collect();
        if kept.len() == taints.len() {
            return Ok(());
        }
        // A merge patch replaces the whole list; the resourceVersion makes it fail rather than
        // drop a taint that someone added meanwhile.
        let patch = json!({
            "metadata": { "resourceVersion": node.metadata.resource_version },
            "spec": { "taints": if kept.is_empty() { json!(null) } else { json!(kept) } },
        });
        match nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.is_conflict() && attempt < CONFLICT_RETRIES => {
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("removing the not-ready taints of node {name}"));
            }
        }
    }
}

/// Applies the Node's status: capacity, addresses and a `Ready` condition with a fresh
/// `lastHeartbeatTime`. Its `lastTransitionTime` only moves when the condition did not say
/// Ready before.
pub(super) async fn heartbeat(client: &kube::Client, name: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Time(Timestamp::now());
    let since = nodes
        .get_status(name)
        .await
        .ok()
        .and_then(|node| node.status?.conditions)
        .and_then(|conditions| {
            conditions
                .into_iter()
                .find(|c| c.type_ == "Ready" && c.status == "True")
        })
        .and_then(|ready| ready.last_transition_time)
        .unwrap_or_else(|| now.clone());
    let resources =
        json!({ "cpu": "64", "memory": "256Gi", "pods": "500", "ephemeral-storage": "1Ti" });
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    let status = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                { "type": "InternalIP", "address": "127.0.0.1" },
                { "type": "Hostname", "address": name },
            ],
            "conditions": [
                condition("Ready", "True", "KubeletReady", "fake kubelet is posting ready status"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "fake kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "fake kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "fake kubelet has sufficient PID available"),
            ],
            "nodeInfo": {
                "architecture": std::env::consts::ARCH,
                "operatingSystem": "linux",
                "osImage": "kubecrawl fake kubelet",
                "kubeletVersion": "v1.37.2-fake",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "fake://0",
                "kernelVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    });
    nodes
        .patch_status(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
        .with_context(|| format!("applying the status of node {name}"))?;
    Ok(())
}

/// Deletes the Node; one that is already gone is fine.
pub(super) async fn delete(client: &kube::Client, name: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting node {name}")),
    }
}

/// Deletes the fake Nodes (but `keep`) whose heartbeat stopped long ago: a test process that
/// was killed left them, and the scheduler would keep binding Pods to them that nothing runs.
/// Best effort: a failure is only logged.
async fn reap_stale(client: &kube::Client, keep: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = match nodes
        .list(&ListParams::default().labels(&format!("{FAKE_NODE_LABEL}=true")))
        .await
    {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(%error, "listing fake nodes failed");
            return;
        }
    };
    let now = Timestamp::now();
    for node in list {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        let heartbeat = node
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
            .and_then(|ready| ready.last_heartbeat_time.as_ref())
            .or(node.metadata.creation_timestamp.as_ref());
        let stale = heartbeat.is_some_and(|Time(at)| {
            now.duration_since(*at)
                .try_into()
                .is_ok_and(|age: Duration| age > STALE_AFTER)
        });
        if name != keep && stale {
            tracing::info!(node = name, "deleting a stale fake node");
            if let Err(error) = delete(client, name).await {
                tracing::warn!(
                    node = name,
                    error = format!("{error:#}"),
                    "deleting a stale fake node failed"
                );
            }
        }
    }
}
