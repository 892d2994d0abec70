//! The processes the chaos suite kills and brings back: the worker fleet and the operator
//! replicas. Like a kubelet, it restarts any of them that exits, and keeps a note of the
//! exits it did not cause.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::process::Command;

use super::process::Proc;

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

/// The operator replicas (`kubecrawl-operator`), two at a time: a leader and a standby.
#[derive(Debug)]
pub(crate) struct Operators {
    bin: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    leases: Api<Lease>,
    lease_name: String,
    procs: Vec<(String, Proc)>,
    starts: u32,
    /// Exits nobody asked for (a replica that lost its leadership exits non-zero).
    pub(crate) exits: Vec<String>,
}

impl Operators {
    /// Prepares replicas of `bin` with `env`, logging to `dir/operator-<n>.log`; `leases`
    /// reads the leader Lease `lease_name`. Starts none.
    pub(crate) fn new(
        bin: &Path,
        env: Vec<(String, String)>,
        dir: &Path,
        leases: Api<Lease>,
        lease_name: &str,
    ) -> Self {
        Self {
            bin: bin.to_owned(),
            env,
            dir: dir.to_owned(),
            leases,
            lease_name: lease_name.to_owned(),
            procs: Vec::new(),
            starts: 0,
            exits: Vec::new(),
        }
    }

    /// Starts one more replica; returns its identity.
    pub(crate) fn spawn(&mut self) -> Result<String> {
        self.starts += 1;
        let identity = format!("operator-{}", self.starts);
        let proc = Proc::spawn(
            &identity,
            Command::new(&self.bin)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env("KUBECRAWL_IDENTITY", &identity),
            &self.dir.join(format!("{identity}.log")),
        )?;
        self.procs.push((identity.clone(), proc));
        Ok(identity)
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

    /// `kill -9` of the replica named `identity`, and a new replica in its place.
    pub(crate) async fn kill(&mut self, identity: &str) -> Result<String> {
        let at = self
            .procs
            .iter()
            .position(|(id, _)| id == identity)
            .with_context(|| format!("no running replica is {identity}"))?;
        let (_, mut proc) = self.procs.remove(at);
        proc.kill9().await?;
        self.spawn()
    }

    /// Replaces every replica that exited, noting it.
    pub(crate) fn supervise(&mut self) -> Result<()> {
        let mut exited = Vec::new();
        for (i, (identity, proc)) in self.procs.iter_mut().enumerate() {
            if let Some(status) = proc.exited()? {
                self.exits.push(format!("{identity} exited with {status}"));
                exited.push(i);
            }
        }
        for i in exited.into_iter().rev() {
            self.procs.remove(i);
            self.spawn()?;
        }
        Ok(())
    }

    /// Stops every replica (SIGTERM).
    pub(crate) async fn stop(&mut self) -> Result<()> {
        for (_, proc) in &mut self.procs {
            proc.stop().await?;
        }
        Ok(())
    }

    /// The ends of every replica's log, for a failure message.
    pub(crate) fn log_tails(&self) -> String {
        self.procs
            .iter()
            .map(|(_, p)| p.log_tail(20))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
