//! The sync loop: it watches the Pods bound to the Node, starts a worker for each new one,
//! tells workers when their Pod is deleted, keeps the Node's heartbeat, and on shutdown stops
//! every Pod.

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinSet};
use tokio::time::{MissedTickBehavior, interval};

use super::pod::{CTL_CAPACITY, PodCtl, PodWorker};
use super::{Context, PodEntry, node};

/// The sync loop's state.
struct SyncLoop {
    ctx: Arc<Context>,
    workers: JoinSet<()>,
    /// The uid of each worker's Pod, by task id.
    uids: HashMap<Id, String>,
    /// The uids listed since the watch (re)started, until the list is complete.
    listed: Option<HashSet<String>>,
}

/// Runs until `stop` fires (or its sender is dropped), then stops every Pod, deleting their
/// objects, and returns once all processes are gone.
pub(super) async fn run(ctx: Arc<Context>, mut stop: oneshot::Receiver<()>) {
    let node_name = ctx.config.node_name.clone();
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let mut events = pin!(watcher::watcher(pods, config).default_backoff());
    let mut heartbeat = interval(ctx.config.heartbeat.min(node::MAX_HEARTBEAT));
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sync = SyncLoop {
        ctx,
        workers: JoinSet::new(),
        uids: HashMap::new(),
        listed: None,
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(joined) = sync.workers.join_next_with_id() => {
                let id = match joined {
                    Ok((id, ())) => id,
                    Err(error) => {
                        tracing::warn!(%error, "a pod worker failed");
                        error.id()
                    }
                };
                if let Some(uid) = sync.uids.remove(&id) {
                    sync.ctx.pods().remove(&uid);
                }
            }
            event = events.next() => match event {
                Some(Ok(event)) => sync.handle(event),
                Some(Err(error)) => tracing::warn!(%error, "watching the node's pods failed"),
                None => break,
            },
            _ = heartbeat.tick() => {
                if let Err(error) = node::heartbeat(&sync.ctx.client, &node_name).await {
                    tracing::warn!(error = format!("{error:#}"), "node heartbeat failed");
                }
            }
        }
    }
    sync.shutdown().await;
}

impl SyncLoop {
    fn handle(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.listed = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let (Some(listed), Some(uid)) = (&mut self.listed, &pod.metadata.uid) {
                    listed.insert(uid.clone());
                }
                self.apply(pod);
            }
            Event::InitDone => {
                // A Pod that was running but is not listed any more was deleted while the
                // watch was down.
                let listed = self.listed.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .ctx
                    .pods()
                    .keys()
                    .filter(|uid| !listed.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.terminate(&uid, None, false);
                }
            }
            Event::Apply(pod) => self.apply(pod),
            Event::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.terminate(uid, pod.metadata.deletion_grace_period_seconds, false);
                }
            }
        }
    }

    /// Starts a worker for a new Pod, or terminates the worker of a Pod being deleted.
    fn apply(&mut self, pod: Pod) {
        let (Some(uid), Some(namespace), Some(name)) = (
            pod.metadata.uid.clone(),
            pod.metadata.namespace.clone(),
            pod.metadata.name.clone(),
        ) else {
            return;
        };
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if self.ctx.pods().contains_key(&uid) {
            if deleting {
                self.terminate(&uid, pod.metadata.deletion_grace_period_seconds, true);
            }
            return;
        }
        if deleting {
            // Nothing of it runs here: let it go at once.
            let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &namespace);
            self.workers.spawn(async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default().grace_period(0)
                };
                if let Err(error) = pods.delete(&name, &params).await {
                    tracing::debug!(pod = %name, %error, "deleting a pod that never ran failed");
                }
            });
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // A finished Pod is never started again.
            return;
        }
        let (ctl, ctl_rx) = mpsc::channel(CTL_CAPACITY);
        let pids = pod
            .spec
            .iter()
            .flat_map(|spec| &spec.containers)
            .map(|c| (c.name.clone(), None))
            .collect();
        self.ctx.pods().insert(
            uid.clone(),
            PodEntry {
                namespace,
                name,
                ctl,
                pids,
                terminating: false,
            },
        );
        let worker = PodWorker::new(Arc::clone(&self.ctx), pod, uid.clone());
        let handle = self.workers.spawn(worker.run(ctl_rx));
        self.uids.insert(handle.id(), uid);
    }

    /// Tells the worker of `uid` to stop its Pod, once.
    fn terminate(&self, uid: &str, grace_seconds: Option<i64>, delete: bool) {
        let mut pods = self.ctx.pods();
        let Some(entry) = pods.get_mut(uid) else {
            return;
        };
        if entry.terminating {
            return;
        }
        entry.terminating = true;
        // The worker reads its requests until it terminates, and this is the only termination
        // it is sent; a full channel can only mean a burst of signal requests from the test.
        if let Err(error) = entry.ctl.try_send(PodCtl::Terminate {
            grace_seconds,
            delete,
        }) {
            tracing::warn!(pod = %entry.name, %error, "telling a pod worker to stop failed");
            entry.terminating = false;
        }
    }

    /// Stops every Pod, deleting its object, and waits for all workers.
    async fn shutdown(mut self) {
        let uids: Vec<String> = self.ctx.pods().keys().cloned().collect();
        for uid in &uids {
            self.terminate(uid, None, true);
        }
        while let Some(joined) = self.workers.join_next_with_id().await {
            let id = match joined {
                Ok((id, ())) => id,
                Err(error) => error.id(),
            };
            if let Some(uid) = self.uids.remove(&id) {
                self.ctx.pods().remove(&uid);
            }
        }
    }
}
