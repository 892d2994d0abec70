//! A fake kubelet: the end-to-end tests play the kubelet's part for one fake Node, running
//! real local processes for the Pods the scheduler binds to it.
//!
//! The test API server has a controller-manager and a scheduler but no kubelet and no
//! container runtime. [`FakeKubelet::start`] registers a Ready, untainted `Node`; the scheduler
//! binds Pods to it (a test Deployment pins its Pods there with [`FakeKubelet::node_selector`]);
//! the fake kubelet watches the Pods bound to its node in every namespace, starts one OS process
//! per container, reports the Pod `Running` and `Ready`, restarts processes that exit, and stops
//! them when the Pod is deleted. A Deployment's `readyReplicas` then tells the truth, and
//! scaling it down stops exactly the surplus processes.
//!
//! # What of the Pod spec is honoured
//! - **Program**: a container's `command[0]` is looked up in the [`CommandMap`] (exactly, then
//!   by its file name: `/usr/local/bin/kubecrawl-worker` finds `kubecrawl-worker`); without a
//!   `command`, the image is looked up instead (exactly, then by its repository's last path
//!   segment without tag or digest: `ghcr.io/kubecrawl/kubecrawl-worker:0.1` finds
//!   `kubecrawl-worker`), standing for the image's entrypoint. The rest of `command`, then
//!   `args`, are the arguments. An unmapped container never starts: it stays `Waiting` with
//!   reason `CreateContainerError` and a `Failed` event says why.
//! - **Environment**: the process starts with an empty environment plus
//!   [`KubeletConfig::pass_env`] (`PATH` by default) and `HOSTNAME` = the Pod's name; then
//!   `envFrom` (ConfigMaps and Secrets, with `prefix` and `optional`), then `env` in order:
//!   literal `value`s with `$(VAR)` expanded against the variables defined before them,
//!   `fieldRef` (`metadata.name`, `metadata.namespace`, `metadata.uid`,
//!   `metadata.labels['k']`, `metadata.annotations['k']`, `spec.nodeName`,
//!   `spec.serviceAccountName`, `status.podIP`, `status.podIPs`, `status.hostIP`,
//!   `status.hostIPs`; the IPs are `127.0.0.1`), `secretKeyRef` and `configMapKeyRef` (read from
//!   the API server before each start, so a Secret created late is picked up on the next try),
//!   and finally [`KubeletConfig::extra_env`], which overrides the Pod's. `resourceFieldRef`
//!   and `fileKeyRef` variables are left unset, with a warning. A missing non-optional Secret,
//!   ConfigMap or key keeps the container `Waiting` (`CreateContainerConfigError`), retried
//!   with backoff, as the kubelet does.
//! - **`$(VAR)` in command and args** is expanded against the container's environment as
//!   Kubernetes does: `$$` is a literal `$`, an undefined `$(VAR)` stays as written.
//! - **`workingDir`** when that directory exists on this machine; otherwise each Pod gets a
//!   scratch directory under the log directory.
//! - **`restartPolicy`** (`Always`, `OnFailure`, `Never`) with a doubling restart backoff from
//!   [`KubeletConfig::restart_backoff`] to [`KubeletConfig::max_restart_backoff`], reset after a
//!   process ran for ten seconds. `restartCount` counts the restarts.
//! - **`terminationGracePeriodSeconds`** and a deletion's own grace period, capped by
//!   [`KubeletConfig::max_grace`], with the kubelet's two-second minimum.
//!
//! Ignored: images (nothing is pulled), init containers, sidecars and ephemeral containers,
//! probes (a running process is ready at once), resources and limits, volumes, ports,
//! security contexts, hostAliases and DNS. Every process shares this machine's network, so two
//! replicas that listen on the same fixed port collide: give the processes port `0` or distinct
//! ports (for instance through [`KubeletConfig::extra_env`] when the program reads its listen
//! address from an environment variable).
//!
//! # Status written
//! `phase` (`Pending` until every container has started once, then `Running`, or
//! `Succeeded`/`Failed` when no container will restart), `hostIP(s)` and `podIP(s)`
//! `127.0.0.1`, `startTime`, the conditions `PodReadyToStartContainers`, `Initialized`,
//! `PodScheduled` (True) and `ContainersReady`, `Ready` (True while every container runs), and
//! `containerStatuses` (`state` running / waiting / terminated, `lastState`, `ready`,
//! `started`, `restartCount`). Status is written with server-side apply (field manager
//! `kubecrawl-fake-kubelet`), so conditions that others own are kept.
//!
//! # How processes stop
//! Each process is the leader of its own process group. On Pod deletion (or
//! [`FakeKubelet::shutdown`]) its group gets SIGTERM, then SIGKILL once the grace period has
//! passed; then the Pod object is deleted with grace period 0 (precondition: its uid), so its
//! ReplicaSet sees it gone.
//!
//! # Guarantees
//! - Only pids this kubelet started are ever signalled, and only while their process has not
//!   been reaped (so a pid can never have been reused by then).
//! - No process outlives the kubelet: [`FakeKubelet::shutdown`] stops them all (TERM, then
//!   KILL); dropping a `FakeKubelet` or its runtime kills them (`kill_on_drop`); where
//!   `setpriv` exists (util-linux), every process also gets SIGKILL when the thread that started
//!   it dies, so even a test binary killed by a signal leaves nothing behind.
//!
//! # Assumptions
//! - The node name is unique to this kubelet: two kubelets on one node would both run its Pods.
//! - Grandchildren of a container process are stopped with its group at Pod deletion, but not
//!   chased after the process itself exited on its own.
//!
//! # Example
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use kubecrawl_e2e::kubelet::{CommandMap, FakeKubelet, KubeletConfig, Signal};
//! use std::time::Duration;
//!
//! let client = kubecrawl_e2e::TestEnv::get().kube_client().await?;
//! // The built worker binary (`env!("CARGO_BIN_EXE_<name>")` in a test of the package that
//! // builds it).
//! let worker = std::path::PathBuf::from("/path/to/kubecrawl-worker");
//! let commands = CommandMap::new().with("kubecrawl-worker", worker);
//! let config = KubeletConfig::new("e2e-node-1", commands)
//!     .with_max_grace(Duration::from_secs(5))
//!     // Replicas share 127.0.0.1: let each process pick a free port.
//!     .with_env("KUBECRAWL_METRICS_ADDR", "127.0.0.1:0");
//! let kubelet = FakeKubelet::start_with(client, config).await?;
//! // ... create a Deployment whose pod template has `nodeSelector: kubelet.node_selector()` ...
//! let running = kubelet.running("my-namespace");
//! if let Some((pod, _pid)) = running.first() {
//!     kubelet.kill_pod_process("my-namespace", pod, Signal::SIGKILL).await?;
//!     println!("{}", kubelet.logs("my-namespace", pod));
//! }
//! kubelet.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod container;
mod node;
mod pod;
mod spec;
mod sync;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The signal type of [`FakeKubelet::kill_pod_process`].
pub use nix::sys::signal::Signal;

/// Field manager of everything the fake kubelet writes, and its event reporter.
const MANAGER: &str = "kubecrawl-fake-kubelet";

/// The local programs that stand for container commands and images.
///
/// Keys are matched against a container's `command[0]` (or, without a command, its image),
/// exactly first and then by file name or image repository name; see the [module
/// docs](self).
#[derive(Debug, Clone, Default)]
pub struct CommandMap {
    programs: BTreeMap<String, PathBuf>,
}

impl CommandMap {
    /// An empty map: no container can start until something is added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `command` (a command name, a path, an image or an image's repository name) run as
    /// the local `program`.
    pub fn with(mut self, command: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        self.insert(command, program);
        self
    }

    /// Adds `command` run as the local `program`, replacing an earlier mapping.
    pub fn insert(&mut self, command: impl Into<String>, program: impl Into<PathBuf>) {
        self.programs.insert(command.into(), program.into());
    }

    /// The local program for a container and the arguments that come from its `command` (the
    /// ones after `command[0]`) and `args`, not yet `$(VAR)`-expanded.
    fn lookup(&self, container: &Container) -> Option<(PathBuf, Vec<String>)> {
        let command = container.command.as_deref().unwrap_or_default();
        let args = container.args.as_deref().unwrap_or_default();
        let (program, args) = match command.split_first() {
            Some((first, rest)) => (
                self.programs
                    .get(first)
                    .or_else(|| self.programs.get(file_name(first)))?,
                [rest, args].concat(),
            ),
            None => {
                let image = container.image.as_deref()?;
                (
                    self.programs
                        .get(image)
                        .or_else(|| self.programs.get(image_name(image)))?,
                    args.to_vec(),
                )
            }
        };
        Some((program.clone(), args))
    }

    fn keys(&self) -> Vec<&str> {
        self.programs.keys().map(String::as_str).collect()
    }
}

/// `/usr/bin/foo` → `foo`.
fn file_name(command: &str) -> &str {
    command.rsplit('/').next().unwrap_or(command)
}

/// `registry:5000/org/name:tag@sha256:…` → `name`.
fn image_name(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last)
}

/// How a [`FakeKubelet`] runs; [`KubeletConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// Name of the Node (and its `kubernetes.io/hostname` label). Unique per kubelet.
    pub node_name: String,
    /// The local programs for container commands and images.
    pub commands: CommandMap,
    /// Where each container's stdout and stderr go, as `<namespace>_<pod>_<container>.log`
    /// (appended across restarts and kept after the Pod is gone), and where Pods get their
    /// scratch working directories. Default: a fresh directory under the system temp dir.
    pub log_dir: PathBuf,
    /// The longest grace period granted between SIGTERM and SIGKILL, whatever the Pod asks.
    /// Default 30 s.
    pub max_grace: Duration,
    /// How often the Node's `Ready` condition gets a fresh `lastHeartbeatTime`. Default 10 s,
    /// at most 30 s: a fake kubelet that starts deletes the fake Nodes whose heartbeat is older
    /// than two minutes, left by test processes that were killed.
    pub heartbeat: Duration,
    /// The wait before the first restart of a process that exited; it doubles with every
    /// quick exit. Default 500 ms.
    pub restart_backoff: Duration,
    /// The longest wait between restarts. Default 10 s.
    pub max_restart_backoff: Duration,
    /// Variables of this process's own environment copied into every container's (before the
    /// Pod's own). Default `PATH` and `RUST_BACKTRACE`.
    pub pass_env: Vec<String>,
    /// Variables set in every container, overriding the Pod's; `$(VAR)` in their values is
    /// expanded against the container's environment. Default none.
    pub extra_env: Vec<(String, String)>,
}

impl KubeletConfig {
    /// The defaults for a node named `node_name` running `commands`.
    pub fn new(node_name: &str, commands: CommandMap) -> Self {
        Self {
            node_name: node_name.to_owned(),
            commands,
            log_dir: std::env::temp_dir()
                .join("kubecrawl-fake-kubelet")
                .join(format!("{node_name}-{}", std::process::id())),
            max_grace: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            restart_backoff: Duration::from_millis(500),
            max_restart_backoff: Duration::from_secs(10),
            pass_env: vec!["PATH".to_owned(), "RUST_BACKTRACE".to_owned()],
            extra_env: Vec::new(),
        }
    }

    /// Sets [`KubeletConfig::log_dir`].
    pub fn with_log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = dir.into();
        self
    }

    /// Sets [`KubeletConfig::max_grace`].
    pub fn with_max_grace(mut self, grace: Duration) -> Self {
        self.max_grace = grace;
        self
    }

    /// Sets [`KubeletConfig::heartbeat`].
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Adds a variable to [`KubeletConfig::extra_env`].
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_env.push((name.into(), value.into()));
        self
    }
}

/// What the sync loop, the Pod workers and the container supervisors share.
struct Context {
    client: kube::Client,
    config: KubeletConfig,
    recorder: Recorder,
    /// `setpriv`, when this machine has it, to give every process a parent-death signal.
    setpriv: Option<PathBuf>,
    /// The Pods this kubelet runs, by uid.
    pods: Mutex<HashMap<String, PodEntry>>,
}

impl Context {
    fn pods(&self) -> MutexGuard<'_, HashMap<String, PodEntry>> {
        // A panic elsewhere never leaves the map half-updated: every update is one insert,
        // remove or field assignment.
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One Pod this kubelet runs, as the API of [`FakeKubelet`] sees it.
struct PodEntry {
    namespace: String,
    name: String,
    ctl: mpsc::Sender<pod::PodCtl>,
    /// Each container's name and the pid of its current process, if one runs.
    pids: Vec<(String, Option<u32>)>,
    /// Whether its processes are being stopped.
    terminating: bool,
}

/// A running fake kubelet; see the [module docs](self).
///
/// Call [`FakeKubelet::shutdown`] at the end of a test. Dropping it instead kills every process
/// at once (SIGKILL) and deletes the Node and its Pods with the `kubectl` found on `PATH` (the
/// one of `make env-up` under `make test`), as a best effort.
pub struct FakeKubelet {
    ctx: Arc<Context>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeKubelet {
    /// Starts a kubelet for `node_name` running `commands`, with the other settings of
    /// [`KubeletConfig::new`].
    ///
    /// # Errors
    /// When the Node cannot be registered or the log directory created.
    pub async fn start(
        client: kube::Client,
        node_name: &str,
        commands: CommandMap,
    ) -> Result<Self> {
        Self::start_with(client, KubeletConfig::new(node_name, commands)).await
    }

    /// Registers the Node (creating it or taking over an existing one of that name), makes it
    /// Ready and schedulable, and starts running the Pods bound to it. On the way it deletes
    /// other fake kubelets' Nodes whose heartbeat stopped over two minutes ago.
    ///
    /// # Errors
    /// When the Node cannot be registered or the log directory created.
    pub async fn start_with(client: kube::Client, config: KubeletConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.log_dir)
            .with_context(|| format!("creating {}", config.log_dir.display()))?;
        if let Err(error) = node::register(&client, &config.node_name).await {
            // Leave no half-registered Node behind for the scheduler to bind Pods to.
            let _ = node::delete(&client, &config.node_name).await;
            return Err(error);
        }
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.to_owned(),
                instance: Some(config.node_name.clone()),
            },
        );
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        if setpriv.is_none() {
            tracing::warn!("setpriv not found: processes may outlive a killed test binary");
        }
        let ctx = Arc::new(Context {
            client,
            config,
            recorder,
            setpriv,
            pods: Mutex::new(HashMap::new()),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(sync::run(Arc::clone(&ctx), stopped));
        Ok(Self {
            ctx,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The Node's name.
    pub fn node_name(&self) -> &str {
        &self.ctx.config.node_name
    }

    /// The `nodeSelector` that pins a Pod to this kubelet's Node.
    pub fn node_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(
            "kubernetes.io/hostname".to_owned(),
            self.ctx.config.node_name.clone(),
        )])
    }

    /// The directory of the container logs.
    pub fn log_dir(&self) -> &Path {
        &self.ctx.config.log_dir
    }

    /// The processes running now for Pods of `namespace`: (Pod name, pid), one per running
    /// container, sorted. A Pod that is being deleted is listed until its processes are gone.
    pub fn running(&self, namespace: &str) -> Vec<(String, u32)> {
        let mut running: Vec<(String, u32)> = self
            .ctx
            .pods()
            .values()
            .filter(|entry| entry.namespace == namespace)
            .flat_map(|entry| {
                entry
                    .pids
                    .iter()
                    .filter_map(|(_, pid)| pid.map(|pid| (entry.name.clone(), pid)))
            })
            .collect();
        running.sort();
        running
    }

    /// Sends `signal` to the running processes of a Pod's containers (the process only, not
    /// its group), as if it came from outside: a process that exits is then restarted
    /// according to the Pod's `restartPolicy`. Returns the pids signalled.
    ///
    /// # Errors
    /// When this kubelet runs no such Pod (or is stopping it), or none of its containers has a
    /// process now.
    pub async fn kill_pod_process(
        &self,
        namespace: &str,
        pod: &str,
        signal: Signal,
    ) -> Result<Vec<u32>> {
        let ctl = self
            .ctx
            .pods()
            .values()
            .find(|entry| entry.namespace == namespace && entry.name == pod && !entry.terminating)
            .map(|entry| entry.ctl.clone())
            .with_context(|| format!("this kubelet runs no pod {namespace}/{pod}"))?;
        let (reply, pids) = oneshot::channel();
        ctl.send(pod::PodCtl::Signal { signal, reply })
            .await
            .with_context(|| format!("pod {namespace}/{pod} is stopping"))?;
        let pids = pids
            .await
            .with_context(|| format!("pod {namespace}/{pod} is stopping"))?;
        anyhow::ensure!(
            !pids.is_empty(),
            "pod {namespace}/{pod} has no running process"
        );
        Ok(pids)
    }

    /// What the containers of a Pod wrote to stdout and stderr, across restarts and after the
    /// Pod is gone, interleaved with the kubelet's own lines (each starts with `fake-kubelet: `:
    /// starts, exits, stops, why a container cannot start). With several containers, each log
    /// follows a `==> container <==` header. Empty when there is none.
    pub fn logs(&self, namespace: &str, pod: &str) -> String {
        let files = self.log_files(&format!("{namespace}_{pod}_"));
        if let [(_, only)] = files.as_slice() {
            return read_lossy(only);
        }
        files
            .iter()
            .map(|(container, path)| format!("==> {container} <==\n{}", read_lossy(path)))
            .collect()
    }

    /// Every container log this kubelet wrote, each after a `==> namespace_pod_container <==`
    /// header: for a failing test to print.
    pub fn all_logs(&self) -> String {
        self.log_files("")
            .iter()
            .map(|(name, path)| format!("==> {name} <==\n{}", read_lossy(path)))
            .collect()
    }

    /// Log files whose name starts with `prefix`, as (name without prefix and `.log`, path),
    /// sorted.
    fn log_files(&self, prefix: &str) -> Vec<(String, PathBuf)> {
        let Ok(dir) = std::fs::read_dir(&self.ctx.config.log_dir) else {
            return Vec::new();
        };
        let mut files: Vec<(String, PathBuf)> = dir
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let name = path.file_name()?.to_str()?;
                let rest = name.strip_prefix(prefix)?.strip_suffix(".log")?;
                Some((rest.to_owned(), path))
            })
            .collect();
        files.sort();
        files
    }

    /// Stops every process (SIGTERM, SIGKILL after the Pod's grace period capped by
    /// [`KubeletConfig::max_grace`]), deletes the Pods bound to the Node with grace period 0, and
    /// deletes the Node. Nothing this kubelet started runs afterwards.
    ///
    /// # Errors
    /// When the API server refuses the Node's or the Pods' deletion; the processes are stopped
    /// whatever happens.
    pub async fn shutdown(mut self) -> Result<()> {
        let name = self.ctx.config.node_name.clone();
        // The Node goes first, so that nothing more is bound to it while its Pods stop.
        let node_deleted = node::delete(&self.ctx.client, &name).await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .context("the fake kubelet's sync loop panicked")?;
        }
        // Pods bound after the watch stopped never ran: remove them too.
        let pods: Api<Pod> = Api::all(self.ctx.client.clone());
        let left = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
            .await
            .context("listing the pods left on the node")?;
        for pod in left {
            let (Some(ns), Some(pod_name)) = (pod.metadata.namespace, pod.metadata.name) else {
                continue;
            };
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
            match api
                .delete(&pod_name, &DeleteParams::default().grace_period(0))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("deleting pod {ns}/{pod_name}"));
                }
            }
        }
        node_deleted
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        // Aborting the sync loop drops every Pod worker and supervisor, and with them each
        // `Child`, whose `kill_on_drop` sends SIGKILL to a process not yet reaped.
        task.abort();
        let name = &self.ctx.config.node_name;
        let selector = format!("spec.nodeName={name}");
        for args in [
            vec!["delete", "node", name.as_str(), "--wait=false"],
            vec![
                "delete",
                "pods",
                "--all-namespaces",
                "--field-selector",
                selector.as_str(),
                "--grace-period=0",
                "--force",
                "--wait=false",
            ],
        ] {
            let _ = std::process::Command::new("kubectl")
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(command: &[&str], args: &[&str], image: &str) -> Container {
        Container {
            name: "c".to_owned(),
            command: (!command.is_empty()).then(|| command.iter().map(|s| s.to_string()).collect()),
            args: (!args.is_empty()).then(|| args.iter().map(|s| s.to_string()).collect()),
            image: Some(image.to_owned()),
            ..Container::default()
        }
    }

    #[test]
    fn a_command_is_found_by_name_then_file_name() {
        let map = CommandMap::new()
            .with("kubecrawl-worker", "/local/worker")
            .with("/opt/exact", "/local/exact");
        let (program, args) = map
            .lookup(&container(
                &["/usr/local/bin/kubecrawl-worker", "cluster"],
                &["--spider", "link"],
                "any",
            ))
            .expect("mapped by file name");
        assert_eq!(program, PathBuf::from("/local/worker"));
        assert_eq!(args, ["cluster", "--spider", "link"]);
        let (program, _) = map
            .lookup(&container(&["/opt/exact"], &[], "any"))
            .expect("mapped exactly");
        assert_eq!(program, PathBuf::from("/local/exact"));
        assert!(
            map.lookup(&container(&["other"], &[], "kubecrawl-worker"))
                .is_none()
        );
    }

    #[test]
    fn without_a_command_the_image_stands_for_the_entrypoint() {
        let map = CommandMap::new().with("kubecrawl-worker", "/local/worker");
        for image in [
            "kubecrawl-worker",
            "kubecrawl-worker:dev",
            "ghcr.io/kubecrawl/kubecrawl-worker:0.1",
            "localhost:5000/kubecrawl-worker@sha256:abc",
        ] {
            let (program, args) = map
                .lookup(&container(&[], &["cluster"], image))
                .unwrap_or_else(|| panic!("{image} is mapped"));
            assert_eq!(program, PathBuf::from("/local/worker"));
            assert_eq!(args, ["cluster"]);
        }
        assert!(
            map.lookup(&container(&[], &[], "ghcr.io/other:1"))
                .is_none()
        );
    }
}
