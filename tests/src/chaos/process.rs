//! A child process the chaos suite started and may kill: its pid, its log file, signals.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long a process may take to die after SIGKILL.
const KILL_DEADLINE: Duration = Duration::from_secs(30);

/// One process, started by the suite, with stdout and stderr appended to a log file (every
/// run of the same service shares the file).
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` with its output appended to `log`. The process is killed if the
    /// `Proc` is dropped while it runs.
    pub(crate) fn spawn(name: &str, command: &mut Command, log: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    /// The process's name in the suite's messages.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its pid while it runs (not yet reaped).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub(crate) fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("polling {}", self.name))
    }

    /// Sends `signal`. The pid is this process's own: it has not been reaped.
    pub(crate) fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("{} already exited", self.name))?;
        kill(Pid::from_raw(i32::try_from(pid)?), signal)
            .with_context(|| format!("signalling {}", self.name))
    }

    /// `kill -9`, and waits until it is gone.
    pub(crate) async fn kill9(&mut self) -> Result<ExitStatus> {
        if self.pid().is_some() {
            self.signal(Signal::SIGKILL)?;
        }
        tokio::time::timeout(KILL_DEADLINE, self.child.wait())
            .await
            .with_context(|| format!("{} did not die after SIGKILL", self.name))?
            .with_context(|| format!("waiting for {}", self.name))
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_GRACE`]; waits until it is
    /// gone.
    pub(crate) async fn stop(&mut self) -> Result<ExitStatus> {
        if self.pid().is_some() {
            self.signal(Signal::SIGTERM)?;
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(status) => status.with_context(|| format!("waiting for {}", self.name)),
            Err(_) => self.kill9().await,
        }
    }

    /// The end of its log, for a failure message.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- last {} lines of {} ({}) ---\n{}",
            all.len() - from,
            self.name,
            self.log.display(),
            all[from..].join("\n")
        )
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("binding port 0")?;
    Ok(listener.local_addr()?.port())
}
