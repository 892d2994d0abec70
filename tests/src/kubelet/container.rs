//! The supervisor of one container: it starts the container's process, restarts it when it
//! exits (as the Pod's `restartPolicy` says, with backoff), signals it on request, and stops
//! it (TERM, then KILL after the grace period) when the Pod goes away.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, timeout};

use super::Context;
use super::spec::{self, NotStartable, ProcessSpec};

/// A process that ran at least this long before exiting resets the restart backoff.
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// A request to a container supervisor.
#[derive(Debug)]
pub(super) enum ContainerCtl {
    /// Send `signal` to the process (not its group); the reply is its pid, or `None` when no
    /// process runs now.
    Signal {
        signal: Signal,
        reply: oneshot::Sender<Option<u32>>,
    },
    /// Stop the process (group): SIGTERM, then SIGKILL after `grace`; then end.
    Stop { grace: Duration },
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Exit {
    /// The exit code, or 128 + the signal that killed it, as Kubernetes reports it.
    pub(super) code: i32,
    pub(super) signal: Option<i32>,
    pub(super) pid: u32,
    pub(super) started_at: Timestamp,
    pub(super) finished_at: Timestamp,
}

/// What a supervisor tells its Pod worker.
#[derive(Debug, Clone)]
pub(super) enum Change {
    /// No process runs, and one will be started (again) later.
    Waiting { reason: String, message: String },
    /// A process started; `restart_count` counts the ones before it that exited.
    Started {
        pid: u32,
        at: Timestamp,
        restart_count: i32,
    },
    /// The process exited by itself (or from a signal sent from outside).
    Exited { exit: Exit, will_restart: bool },
    /// The process was stopped at the Pod worker's request (if one ran); the supervisor ends.
    Stopped { exit: Option<Exit> },
}

/// A [`Change`] of container number `index` of the Pod.
#[derive(Debug, Clone)]
pub(super) struct ContainerEvent {
    pub(super) index: usize,
    pub(super) change: Change,
}

/// Restart policies of a Pod.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub(super) fn of(pod: &Pod) -> Self {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("Never") => Self::Never,
            Some("OnFailure") => Self::OnFailure,
            _ => Self::Always,
        }
    }

    fn restarts_after(self, code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => code != 0,
            Self::Never => false,
        }
    }
}

/// One container's supervisor; [`Supervisor::run`] is its task.
pub(super) struct Supervisor {
    pub(super) index: usize,
    pub(super) ctx: Arc<Context>,
    pub(super) pod: Arc<Pod>,
    pub(super) container: Container,
    pub(super) restart: RestartPolicy,
    pub(super) log_path: PathBuf,
    pub(super) scratch_dir: PathBuf,
    /// Unbounded: a supervisor sends a handful of events per process start, and starts are
    /// paced by the restart backoff, so the queue stays short; a bounded one could deadlock
    /// with the Pod worker waiting for this supervisor's reply to a signal request.
    pub(super) events: mpsc::UnboundedSender<ContainerEvent>,
}

/// What ended a wait: its time, or a stop request.
enum Waited {
    Elapsed,
    Stop,
}

impl Supervisor {
    /// Runs the container until the Pod worker asks it to stop (or goes away).
    pub(super) async fn run(self, mut ctl: mpsc::Receiver<ContainerCtl>) {
        let mut restart_count = 0;
        let mut quick_exits = 0;
        loop {
            let delay = self.backoff(quick_exits);
            let spawned = match spec::resolve(&self.ctx, &self.pod, &self.container).await {
                Ok(spec) => self
                    .spawn(&spec, restart_count)
                    .map_err(|e| (format!("cannot start: {}", e.message), e)),
                Err(e) => Err((format!("cannot start: {}: {}", e.reason, e.message), e)),
            };
            let mut child = match spawned {
                Ok(child) => child,
                Err((line, not_startable)) => {
                    quick_exits += 1;
                    match self
                        .not_started(&line, not_startable, delay, &mut ctl)
                        .await
                    {
                        Waited::Elapsed => continue,
                        Waited::Stop => return self.send(Change::Stopped { exit: None }),
                    }
                }
            };
            let Some(pid) = child.id() else {
                // A child that was just spawned has not been waited for, so it has an id.
                continue;
            };
            let started_at = Timestamp::now();
            let started = Instant::now();
            self.log_line(&format!("started pid {pid} (restart {restart_count})"));
            self.send(Change::Started {
                pid,
                at: started_at,
                restart_count,
            });

            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    request = ctl.recv() => match request {
                        Some(ContainerCtl::Signal { signal, reply }) => {
                            let _ = reply.send(signal_process(&child, signal));
                        }
                        Some(ContainerCtl::Stop { grace }) => {
                            let exit = stop(&mut child, grace)
                                .await
                                .map(|status| exit_of(status, pid, started_at));
                            if let Some(exit) = &exit {
                                self.log_line(&format!("stopped pid {pid}: exit code {}", exit.code));
                            }
                            return self.send(Change::Stopped { exit });
                        }
                        // The Pod worker is gone: dropping `child` kills the process.
                        None => return,
                    },
                }
            };
            let exit = match status {
                Ok(status) => exit_of(status, pid, started_at),
                Err(error) => {
                    tracing::warn!(pid, %error, "waiting for a container process failed");
                    Exit {
                        code: 1,
                        signal: None,
                        pid,
                        started_at,
                        finished_at: Timestamp::now(),
                    }
                }
            };
            let will_restart = self.restart.restarts_after(exit.code);
            self.log_line(&format!(
                "pid {pid} exited: exit code {}{}",
                exit.code,
                if will_restart { ", restarting" } else { "" }
            ));
            self.send(Change::Exited { exit, will_restart });
            if !will_restart {
                // The container stays terminated until the Pod goes away.
                while let Some(request) = ctl.recv().await {
                    match request {
                        ContainerCtl::Signal { reply, .. } => {
                            let _ = reply.send(None);
                        }
                        ContainerCtl::Stop { .. } => break,
                    }
                }
                return self.send(Change::Stopped { exit: None });
            }
            quick_exits = if started.elapsed() >= BACKOFF_RESET {
                0
            } else {
                quick_exits + 1
            };
            restart_count += 1;
            match self.wait(self.backoff(quick_exits), &mut ctl).await {
                Waited::Elapsed => {}
                Waited::Stop => return self.send(Change::Stopped { exit: None }),
            }
        }
    }

    /// The restart delay after `quick_exits` exits in a row, doubling from the configured
    /// initial backoff to its maximum.
    fn backoff(&self, quick_exits: u32) -> Duration {
        let config = &self.ctx.config;
        let factor = 1u32 << quick_exits.saturating_sub(1).min(16);
        config
            .restart_backoff
            .saturating_mul(factor)
            .min(config.max_restart_backoff)
    }

    /// Logs `line`, reports the container Waiting for why it could not start, and waits
    /// `delay` before the next try.
    async fn not_started(
        &self,
        line: &str,
        why: NotStartable,
        delay: Duration,
        ctl: &mut mpsc::Receiver<ContainerCtl>,
    ) -> Waited {
        self.log_line(line);
        self.send(Change::Waiting {
            reason: why.reason.to_owned(),
            message: why.message,
        });
        self.wait(delay, ctl).await
    }

    /// Waits `delay` while no process runs, answering signal requests with "nothing runs".
    async fn wait(&self, delay: Duration, ctl: &mut mpsc::Receiver<ContainerCtl>) -> Waited {
        let deadline = sleep(delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return Waited::Elapsed,
                request = ctl.recv() => match request {
                    Some(ContainerCtl::Signal { reply, .. }) => {
                        let _ = reply.send(None);
                    }
                    Some(ContainerCtl::Stop { .. }) | None => return Waited::Stop,
                },
            }
        }
    }

    /// Starts the process, in its own process group, with its output appended to the log file.
    fn spawn(&self, spec: &ProcessSpec, restart_count: i32) -> Result<Child, NotStartable> {
        let run_error = |message: String| NotStartable {
            reason: "RunContainerError",
            message,
        };
        if !spec::program_exists(&spec.program, spec.env.get("PATH").map(String::as_str)) {
            return Err(run_error(format!(
                "program {} not found",
                spec.program.display()
            )));
        }
        let working_dir = match &spec.working_dir {
            Some(dir) => dir.clone(),
            None => {
                std::fs::create_dir_all(&self.scratch_dir).map_err(|e| {
                    run_error(format!("creating {}: {e}", self.scratch_dir.display()))
                })?;
                self.scratch_dir.clone()
            }
        };
        let mut log = self
            .open_log()
            .map_err(|e| run_error(format!("opening {}: {e}", self.log_path.display())))?;
        let _ = writeln!(
            log,
            "fake-kubelet: starting {} {:?} (restart {restart_count})",
            spec.program.display(),
            spec.args
        );
        let stderr = log
            .try_clone()
            .map_err(|e| run_error(format!("duplicating the log file handle: {e}")))?;
        let mut command = match &self.ctx.setpriv {
            // The parent-death signal kills the process even when this test process dies
            // without unwinding (a signal, an abort), which `kill_on_drop` cannot cover.
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command
                    .args(["--pdeathsig", "KILL", "--"])
                    .arg(&spec.program);
                command
            }
            None => Command::new(&spec.program),
        };
        command
            .args(&spec.args)
            .env_clear()
            .envs(&spec.env)
            .current_dir(working_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true);
        command
            .spawn()
            .map_err(|e| run_error(format!("starting {}: {e}", spec.program.display())))
    }

    fn open_log(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
    }

    /// Appends one line of the kubelet's own to the container's log.
    fn log_line(&self, line: &str) {
        if let Ok(mut log) = self.open_log() {
            let _ = writeln!(log, "fake-kubelet: {line}");
        }
    }

    fn send(&self, change: Change) {
        // The Pod worker outlives its supervisors; if it is gone, nobody needs to know.
        let _ = self.events.send(ContainerEvent {
            index: self.index,
            change,
        });
    }
}

/// Sends `signal` to the child process alone, if it has not been reaped; returns its pid.
fn signal_process(child: &Child, signal: Signal) -> Option<u32> {
    // `id()` is `None` once the child has been reaped, after which its pid may belong to
    // someone else; until then the pid (running or a zombie) is still ours.
    let pid = child.id()?;
    let raw = i32::try_from(pid).ok()?;
    match kill(Pid::from_raw(raw), signal) {
        Ok(()) => Some(pid),
        Err(error) => {
            tracing::warn!(pid, %error, "signalling a container process failed");
            None
        }
    }
}

/// Sends `signal` to the child's process group (its pid: it leads its own group), if the
/// child has not been reaped: the group cannot have been reused while its leader is unreaped.
fn signal_group(child: &Child, signal: Signal) {
    let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
        return;
    };
    if let Err(error) = killpg(Pid::from_raw(pid), signal) {
        // ESRCH: the group is gone but the leader not yet reaped; nothing to do.
        tracing::debug!(pid, %error, "signalling a container process group failed");
    }
}

/// SIGTERM to the process group, then SIGKILL once `grace` has passed; returns how the process
/// ended.
async fn stop(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    signal_group(child, Signal::SIGTERM);
    if let Ok(status) = timeout(grace, child.wait()).await {
        return status.ok();
    }
    signal_group(child, Signal::SIGKILL);
    child.wait().await.ok()
}

fn exit_of(status: ExitStatus, pid: u32, started_at: Timestamp) -> Exit {
    let signal = status.signal();
    let code = status
        .code()
        .or_else(|| signal.map(|signal| 128 + signal))
        .unwrap_or(1);
    Exit {
        code,
        signal,
        pid,
        started_at,
        finished_at: Timestamp::now(),
    }
}
