//! The worker of one Pod: it runs a supervisor per container, reports the Pod's status from
//! what they tell it, and on termination stops them and deletes the Pod object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::container::{Change, ContainerCtl, ContainerEvent, Exit, RestartPolicy, Supervisor};
use super::{Context, MANAGER, Signal};

/// The address every Pod and the Node report: all processes share this machine's network.
pub(super) const IP: &str = "127.0.0.1";

/// Requests to a Pod worker travel in a channel this long; the sync loop never waits on it
/// (it only sends one termination per Pod) and signal requests come one at a time.
pub(super) const CTL_CAPACITY: usize = 8;

/// How soon a status write that failed is tried again.
const STATUS_RETRY: Duration = Duration::from_secs(1);

/// How often the deletion of a stopped Pod's object is tried.
const DELETE_ATTEMPTS: u32 = 5;

/// The grace period Kubernetes assumes when a Pod names none.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The kubelet never grants less than this between SIGTERM and SIGKILL, even to a Pod deleted
/// with grace period 0.
const MIN_GRACE: Duration = Duration::from_secs(2);

/// A request to a Pod worker.
#[derive(Debug)]
pub(super) enum PodCtl {
    /// Send `signal` to every running container process; the reply lists their pids.
    Signal {
        signal: Signal,
        reply: oneshot::Sender<Vec<u32>>,
    },
    /// Stop every process and end. `grace_seconds` is the deletion's grace period (`None`:
    /// the Pod's own); `delete` says whether to delete the Pod object afterwards.
    Terminate {
        grace_seconds: Option<i64>,
        delete: bool,
    },
}

/// What the Pod worker knows of one container.
struct ContainerView {
    name: String,
    image: String,
    ctl: Option<mpsc::Sender<ContainerCtl>>,
    state: State,
    last: Option<Exit>,
    restart_count: i32,
    started_once: bool,
}

enum State {
    Waiting { reason: String, message: String },
    Running { pid: u32, since: Timestamp },
    Terminated(Exit),
}

/// The worker of one Pod.
pub(super) struct PodWorker {
    ctx: Arc<Context>,
    pod: Arc<Pod>,
    uid: String,
    namespace: String,
    name: String,
    start_time: Timestamp,
    containers: Vec<ContainerView>,
    /// Each condition's status and when it last changed.
    conditions: BTreeMap<&'static str, (bool, Timestamp)>,
    /// The status last written, to write only changes.
    written: Option<Value>,
    retry_at: Option<Instant>,
}

impl PodWorker {
    /// A worker for `pod`, which must have a uid, a namespace and a name.
    pub(super) fn new(ctx: Arc<Context>, pod: Pod, uid: String) -> Self {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let containers = pod
            .spec
            .iter()
            .flat_map(|spec| &spec.containers)
            .map(|c| ContainerView {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                ctl: None,
                state: State::Waiting {
                    reason: "ContainerCreating".to_owned(),
                    message: String::new(),
                },
                last: None,
                restart_count: 0,
                started_once: false,
            })
            .collect();
        Self {
            ctx,
            pod: Arc::new(pod),
            uid,
            namespace,
            name,
            start_time: Timestamp::now(),
            containers,
            conditions: BTreeMap::new(),
            written: None,
            retry_at: None,
        }
    }

    /// Runs the Pod until it is terminated.
    pub(super) async fn run(mut self, mut ctl: mpsc::Receiver<PodCtl>) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let mut supervisors = JoinSet::new();
        let restart = RestartPolicy::of(&self.pod);
        let specs = self
            .pod
            .spec
            .as_ref()
            .map(|spec| spec.containers.clone())
            .unwrap_or_default();
        for (index, container) in specs.into_iter().enumerate() {
            let (ctl_tx, ctl_rx) = mpsc::channel(CTL_CAPACITY);
            let file = format!("{}_{}_{}", self.namespace, self.name, container.name);
            let supervisor = Supervisor {
                index,
                ctx: Arc::clone(&self.ctx),
                pod: Arc::clone(&self.pod),
                container,
                restart,
                log_path: self.ctx.config.log_dir.join(format!("{file}.log")),
                scratch_dir: self
                    .ctx
                    .config
                    .log_dir
                    .join(format!("{}_{}.work", self.namespace, self.name)),
                events: events_tx.clone(),
            };
            if let Some(view) = self.containers.get_mut(index) {
                view.ctl = Some(ctl_tx);
            }
            supervisors.spawn(supervisor.run(ctl_rx));
        }
        drop(events_tx);
        self.write_status().await;

        let (grace_seconds, delete) = loop {
            let retry_at = self.retry_at;
            tokio::select! {
                Some(event) = events.recv() => {
                    self.apply(event).await;
                    self.write_status().await;
                }
                request = ctl.recv() => match request {
                    Some(PodCtl::Signal { signal, reply }) => {
                        let _ = reply.send(self.signal(signal).await);
                    }
                    Some(PodCtl::Terminate { grace_seconds, delete }) => break (grace_seconds, delete),
                    None => break (None, false),
                },
                () = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.write_status().await;
                }
            }
        };

        let grace = self.grace(grace_seconds);
        self.event(
            EventType::Normal,
            "Killing",
            "Stop",
            format!("Stopping containers with grace period {}s", grace.as_secs()),
        )
        .await;
        for view in &self.containers {
            if let Some(ctl) = &view.ctl {
                let _ = ctl.send(ContainerCtl::Stop { grace }).await;
            }
        }
        loop {
            tokio::select! {
                Some(event) = events.recv() => self.apply(event).await,
                joined = supervisors.join_next() => {
                    if joined.is_none() {
                        break;
                    }
                }
            }
        }
        while let Ok(event) = events.try_recv() {
            self.apply(event).await;
        }
        if delete {
            self.delete().await;
        }
    }

    /// The grace period between SIGTERM and SIGKILL: the deletion's, else the Pod's, capped by
    /// the kubelet's maximum, and never under the kubelet's minimum.
    fn grace(&self, deletion_grace_seconds: Option<i64>) -> Duration {
        let seconds = deletion_grace_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.termination_grace_period_seconds)
            })
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        let asked = Duration::from_secs(u64::try_from(seconds).unwrap_or(0)).max(MIN_GRACE);
        asked.min(self.ctx.config.max_grace)
    }

    async fn signal(&self, signal: Signal) -> Vec<u32> {
        let mut pids = Vec::new();
        for view in &self.containers {
            let Some(ctl) = &view.ctl else { continue };
            let (reply, pid) = oneshot::channel();
            if ctl
                .send(ContainerCtl::Signal { signal, reply })
                .await
                .is_ok()
                && let Ok(Some(pid)) = pid.await
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Takes in a supervisor's event: the container's state, the pids the kubelet reports, and
    /// an Event on the Pod for what a person would want to see in `kubectl describe`.
    async fn apply(&mut self, event: ContainerEvent) {
        let Some(view) = self.containers.get_mut(event.index) else {
            return;
        };
        let name = view.name.clone();
        let mut note = None;
        match event.change {
            Change::Waiting { reason, message } => {
                note = Some((EventType::Warning, "Failed", format!("{reason}: {message}")));
                view.state = State::Waiting { reason, message };
            }
            Change::Started {
                pid,
                at,
                restart_count,
            } => {
                view.state = State::Running { pid, since: at };
                view.restart_count = restart_count;
                view.started_once = true;
                note = Some((
                    EventType::Normal,
                    "Started",
                    format!("Started container {name} (pid {pid})"),
                ));
            }
            Change::Exited { exit, will_restart } => {
                if will_restart {
                    note = Some((
                        EventType::Warning,
                        "BackOff",
                        format!(
                            "Back-off restarting container {name}: pid {} exited with code {}",
                            exit.pid, exit.code
                        ),
                    ));
                    view.state = State::Waiting {
                        reason: "CrashLoopBackOff".to_owned(),
                        message: format!("back-off restarting container {name}"),
                    };
                    view.last = Some(exit);
                } else {
                    view.state = State::Terminated(exit);
                }
            }
            Change::Stopped { exit } => {
                if let Some(exit) = exit {
                    view.state = State::Terminated(exit);
                }
                view.ctl = None;
            }
        }
        let pids = self
            .containers
            .iter()
            .map(|view| {
                let pid = match view.state {
                    State::Running { pid, .. } => Some(pid),
                    _ => None,
                };
                (view.name.clone(), pid)
            })
            .collect();
        if let Some(entry) = self.ctx.pods().get_mut(&self.uid) {
            entry.pids = pids;
        }
        if let Some((type_, reason, message)) = note {
            let action = if reason == "Started" { "Start" } else { "Run" };
            self.event(type_, reason, action, message).await;
        }
    }

    /// Publishes an Event on the Pod; a failure (say, a namespace being deleted) is only
    /// logged.
    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        let reference = self.pod.object_ref(&());
        if let Err(error) = self.ctx.recorder.publish(&event, &reference).await {
            tracing::debug!(pod = %self.name, %error, "publishing a pod event failed");
        }
    }

    /// Writes the Pod's status when it changed since the last write; a failed write is tried
    /// again after [`STATUS_RETRY`], unless the Pod is gone.
    async fn write_status(&mut self) {
        let status = self.status();
        if self.written.as_ref() == Some(&status) {
            self.retry_at = None;
            return;
        }
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": self.name, "namespace": self.namespace },
            "status": status,
        });
        match pods
            .patch_status(
                &self.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {
                self.written = Some(status);
                self.retry_at = None;
            }
            Err(kube::Error::Api(status)) if status.is_not_found() => self.retry_at = None,
            Err(error) => {
                tracing::warn!(pod = %self.name, %error, "writing the pod status failed");
                self.retry_at = Some(Instant::now() + STATUS_RETRY);
            }
        }
    }

    /// The Pod status this kubelet reports now.
    fn status(&mut self) -> Value {
        let all_running = self
            .containers
            .iter()
            .all(|view| matches!(view.state, State::Running { .. }));
        let now = Timestamp::now();
        for (condition, value) in [
            ("PodReadyToStartContainers", true),
            ("Initialized", true),
            ("PodScheduled", true),
            ("ContainersReady", all_running),
            ("Ready", all_running),
        ] {
            let entry = self.conditions.entry(condition).or_insert((value, now));
            if entry.0 != value {
                *entry = (value, now);
            }
        }
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|(type_, (value, since))| {
                let mut condition = json!({
                    "type": type_,
                    "status": if *value { "True" } else { "False" },
                    "lastTransitionTime": Time(*since),
                });
                if !value {
                    condition["reason"] = json!("ContainersNotReady");
                    let waiting: Vec<&str> = self
                        .containers
                        .iter()
                        .filter(|view| !matches!(view.state, State::Running { .. }))
                        .map(|view| view.name.as_str())
                        .collect();
                    condition["message"] = json!(format!(
                        "containers with unready status: [{}]",
                        waiting.join(" ")
                    ));
                }
                condition
            })
            .collect();
        json!({
            "phase": self.phase(),
            "hostIP": IP,
            "hostIPs": [{ "ip": IP }],
            "podIP": IP,
            "podIPs": [{ "ip": IP }],
            "startTime": Time(self.start_time),
            "conditions": conditions,
            "containerStatuses": self.containers.iter().map(container_status).collect::<Vec<_>>(),
        })
    }

    fn phase(&self) -> &'static str {
        if self.containers.iter().any(|view| !view.started_once) {
            return "Pending";
        }
        let mut terminated = self.containers.iter().map(|view| match &view.state {
            State::Terminated(exit) => Some(exit.code),
            _ => None,
        });
        if terminated.clone().any(|code| code.is_none()) {
            "Running"
        } else if terminated.all(|code| code == Some(0)) {
            "Succeeded"
        } else {
            "Failed"
        }
    }

    /// Deletes the Pod object with grace period 0, only if it is still the Pod this worker ran.
    async fn delete(&self) {
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default().grace_period(0)
        };
        // A Pod left with a deletionTimestamp would block its ReplicaSet and its namespace's
        // deletion forever: try a few times.
        for attempt in 1..=DELETE_ATTEMPTS {
            match pods.delete(&self.name, &params).await {
                Ok(_) => return,
                Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => {
                    return;
                }
                Err(error) => {
                    tracing::warn!(pod = %self.name, attempt, %error, "deleting a stopped pod failed");
                    tokio::time::sleep(STATUS_RETRY).await;
                }
            }
        }
    }
}

fn container_status(view: &ContainerView) -> Value {
    let state = |state: &State| match state {
        State::Waiting { reason, message } => {
            json!({ "waiting": { "reason": reason, "message": message } })
        }
        State::Running { since, .. } => json!({ "running": { "startedAt": Time(*since) } }),
        State::Terminated(exit) => json!({ "terminated": terminated(exit) }),
    };
    let running = matches!(view.state, State::Running { .. });
    let mut status = json!({
        "name": view.name,
        "image": view.image,
        "imageID": "",
        "ready": running,
        "started": running,
        "restartCount": view.restart_count,
        "state": state(&view.state),
        "lastState": view.last.as_ref().map(|exit| json!({ "terminated": terminated(exit) })).unwrap_or_else(|| json!({})),
    });
    if let State::Running { pid, .. } | State::Terminated(Exit { pid, .. }) = &view.state {
        status["containerID"] = json!(format!("fake://{pid}"));
    }
    status
}

fn terminated(exit: &Exit) -> Value {
    let mut terminated = json!({
        "exitCode": exit.code,
        "reason": if exit.code == 0 { "Completed" } else { "Error" },
        "startedAt": Time(exit.started_at),
        "finishedAt": Time(exit.finished_at),
        "containerID": format!("fake://{}", exit.pid),
    });
    if let Some(signal) = exit.signal {
        terminated["signal"] = json!(signal);
    }
    terminated
}
