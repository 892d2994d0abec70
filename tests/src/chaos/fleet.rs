//! The processes the chaos suite kills and brings back: the worker fleet and the operator
//! replicas. Like a kubelet, it restarts any of them that exits, and keeps a note of the
//! exits it did not cause.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::process::Command;

use super::process::Proc;
use crate::proxy::{FaultProxy, Mode};

/// The worker processes (`kubecrawl-worker run`), each started again when it dies.
#[derive(Debug)]
pub(crate) struct Workers {
    bin: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    procs: Vec<Proc>,
    starts: Vec<u32>,
    /// Exits nobody asked for: which worker, how, and the end of its log.
    pub(crate) unexpected_exits: Vec<String>,
}

impl Workers {
    /// Starts `n` workers of `bin` with `env` (and nothing else from this process's
    /// environment: only what a Deployment sets), logging to `dir/worker-<i>.log`.
    pub(crate) fn start(
        bin: &Path,
        env: Vec<(String, String)>,
        dir: &Path,
        n: usize,
    ) -> Result<Self> {
        let mut workers = Self {
            bin: bin.to_owned(),
            env,
            dir: dir.to_owned(),
            procs: Vec::with_capacity(n),
            starts: vec![0; n],
            unexpected_exits: Vec::new(),
        };
        for i in 0..n {
            let proc = workers.spawn(i)?;
            workers.procs.push(proc);
        }
        Ok(workers)
    }

    fn spawn(&mut self, i: usize) -> Result<Proc> {
        self.starts[i] += 1;
        let name = format!("w{i}-{}", self.starts[i]);
        Proc::spawn(
            &format!("worker {name}"),
            Command::new(&self.bin)
                .arg("run")
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env("KUBECRAWL_WORKER_NAME", &name)
                .env("KUBECRAWL_USER_AGENT", format!("kubecrawl-chaos/{name}")),
            &self.dir.join(format!("worker-{i}.log")),
        )
    }

    /// How many workers there are.
    pub(crate) fn len(&self) -> usize {
        self.procs.len()
    }

    /// `kill -9` of worker `i`, started again at once.
    pub(crate) async fn kill(&mut self, i: usize) -> Result<()> {
        self.procs[i].kill9().await?;
        self.procs[i] = self.spawn(i)?;
        Ok(())
    }

    /// Starts again every worker that exited on its own, noting it.
    pub(crate) fn supervise(&mut self) -> Result<()> {
        for i in 0..self.procs.len() {
            if let Some(status) = self.procs[i].exited()? {
                self.unexpected_exits.push(format!(
                    "{} exited with {status}\n{}",
                    self.procs[i].name(),
                    self.procs[i].log_tail(15)
                ));
                self.procs[i] = self.spawn(i)?;
            }
        }
        Ok(())
    }

    /// Stops every worker (SIGTERM: drain, flush, give leases back).
    pub(crate) async fn stop(&mut self) -> Result<()> {
        for proc in &mut self.procs {
            proc.stop().await?;
        }
        Ok(())
    }
}

/// One operator replica: its identity, its process, and the fault proxy between it and the
/// API server (each replica has its own, so one can be cut off alone).
#[derive(Debug)]
struct Replica {
    identity: String,
    proc: Proc,
    proxy: FaultProxy,
}

/// The operator replicas (`kubecrawl-operator`), two at a time: a leader and a standby.
#[derive(Debug)]
pub(crate) struct Operators {
    bin: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    apiserver: SocketAddr,
    kubeconfig: String,
    leases: Api<Lease>,
    lease_name: String,
    replicas: Vec<Replica>,
    starts: u32,
    /// Exits nobody asked for (a replica that lost its leadership exits non-zero).
    pub(crate) exits: Vec<String>,
}

impl Operators {
    /// Prepares replicas of `bin` with `env`, logging to `dir/operator-<n>.log`, each talking
    /// to the API server at `apiserver` through a proxy of its own, with `kubeconfig` (whose
    /// `server:` line is pointed at that proxy); `leases` reads the leader Lease
    /// `lease_name`. Starts none.
    pub(crate) fn new(
        bin: &Path,
        env: Vec<(String, String)>,
        dir: &Path,
        apiserver: (SocketAddr, &str),
        leases: Api<Lease>,
        lease_name: &str,
    ) -> Self {
        Self {
            bin: bin.to_owned(),
            env,
            dir: dir.to_owned(),
            apiserver: apiserver.0,
            kubeconfig: apiserver.1.to_owned(),
            leases,
            lease_name: lease_name.to_owned(),
            replicas: Vec::new(),
            starts: 0,
            exits: Vec::new(),
        }
    }

    /// Starts one more replica; returns its identity.
    pub(crate) async fn spawn(&mut self) -> Result<String> {
        self.starts += 1;
        let identity = format!("operator-{}", self.starts);
        let proxy = FaultProxy::start(self.apiserver).await?;
        let server = regex::Regex::new(r"server: https://127\.0\.0\.1:[0-9]+")?;
        let kubeconfig = self.dir.join(format!("{identity}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            server
                .replace(
                    &self.kubeconfig,
                    format!("server: https://{}", proxy.addr()).as_str(),
                )
                .as_ref(),
        )?;
        let proc = Proc::spawn(
            &identity,
            Command::new(&self.bin)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env("KUBECONFIG", &kubeconfig)
                .env("KUBECRAWL_IDENTITY", &identity),
            &self.log_path(&identity),
        )?;
        self.replicas.push(Replica {
            identity: identity.clone(),
            proc,
            proxy,
        });
        Ok(identity)
    }

    fn log_path(&self, identity: &str) -> PathBuf {
        self.dir.join(format!("{identity}.log"))
    }

    /// What replica `identity` logged so far.
    pub(crate) fn log(&self, identity: &str) -> String {
        std::fs::read_to_string(self.log_path(identity)).unwrap_or_default()
    }

    /// The identity holding the leader Lease, as the shared API server says.
    pub(crate) async fn leader(&self) -> Result<Option<String>> {
        Ok(self
            .leases
            .get_opt(&self.lease_name)
            .await
            .context("reading the leader lease")?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty()))
    }

    /// Sets the mode of the proxy between replica `identity` and the API server.
    pub(crate) fn set_mode(&self, identity: &str, mode: Mode) -> Result<()> {
        self.replicas
            .iter()
            .find(|r| r.identity == identity)
            .with_context(|| format!("no running replica is {identity}"))?
            .proxy
            .set_mode(mode);
        Ok(())
    }

    /// `kill -9` of the replica named `identity`, and a new replica in its place.
    pub(crate) async fn kill(&mut self, identity: &str) -> Result<String> {
        let at = self
            .replicas
            .iter()
            .position(|r| r.identity == identity)
            .with_context(|| format!("no running replica is {identity}"))?;
        let mut replica = self.replicas.remove(at);
        replica.proc.kill9().await?;
        self.spawn().await
    }

    /// Replaces every replica that exited, noting it.
    pub(crate) async fn supervise(&mut self) -> Result<()> {
        let mut exited = Vec::new();
        for (i, replica) in self.replicas.iter_mut().enumerate() {
            if let Some(status) = replica.proc.exited()? {
                self.exits
                    .push(format!("{} exited with {status}", replica.identity));
                exited.push(i);
            }
        }
        for i in exited.into_iter().rev() {
            self.replicas.remove(i);
            self.spawn().await?;
        }
        Ok(())
    }

    /// Stops every replica (SIGTERM).
    pub(crate) async fn stop(&mut self) -> Result<()> {
        for replica in &mut self.replicas {
            replica.proc.stop().await?;
        }
        Ok(())
    }

    /// The ends of every replica's log, for a failure message.
    pub(crate) fn log_tails(&self) -> String {
        self.replicas
            .iter()
            .map(|r| r.proc.log_tail(20))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
