//! Tasks owned by their process: each spawned under a name, in a span that names it, and
//! reported by that name when it ends ([`Ended`]), so a process can tell which of its
//! critical tasks stopped and why, and stop with it.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tracing::Instrument;

/// The error a task may end with.
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

/// A set of named tasks. Dropping it aborts the tasks still running.
#[derive(Debug, Default)]
pub struct Tasks {
    set: JoinSet<Result<(), TaskError>>,
    names: HashMap<Id, &'static str>,
}

/// How a task ended.
#[derive(Debug)]
pub enum Outcome {
    /// It returned.
    Returned,
    /// It returned an error.
    Failed(TaskError),
    /// It panicked.
    Panicked,
    /// It was aborted.
    Aborted,
}

/// One task that ended, and how. As an error its Display names the task; a task's own error
/// is its source.
#[derive(Debug)]
pub struct Ended {
    /// The task's name.
    pub task: &'static str,
    /// How it ended.
    pub outcome: Outcome,
}

impl Ended {
    /// Whether the task returned without an error.
    pub fn returned(&self) -> bool {
        matches!(self.outcome, Outcome::Returned)
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.outcome {
            Outcome::Returned => "returned",
            Outcome::Failed(_) => "failed",
            Outcome::Panicked => "panicked",
            Outcome::Aborted => "was aborted",
        };
        write!(f, "task {:?} {how}", self.task)
    }
}

impl std::error::Error for Ended {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.outcome {
            Outcome::Failed(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task` named `name`, in the span `task{task=name}`.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_fallible(name, async move {
            task.await;
            Ok::<(), std::convert::Infallible>(())
        });
    }

    /// Spawns `task` named `name`, in the span `task{task=name}`; its error is kept for
    /// [`Ended`].
    pub fn spawn_fallible<F, E>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let span = tracing::info_span!("task", task = name);
        let handle = self.set.spawn(
            async move { task.await.map_err(|e| Box::new(e) as TaskError) }.instrument(span),
        );
        self.names.insert(handle.id(), name);
    }

    /// Whether no task is left.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Waits for the next task to end; `None` when none is left.
    pub async fn next(&mut self) -> Option<Ended> {
        let (id, outcome) = match self.set.join_next_with_id().await? {
            Ok((id, Ok(()))) => (id, Outcome::Returned),
            Ok((id, Err(e))) => (id, Outcome::Failed(e)),
            Err(e) if e.is_panic() => (e.id(), Outcome::Panicked),
            Err(e) => (e.id(), Outcome::Aborted),
        };
        let task = self.names.remove(&id).unwrap_or("unnamed");
        Some(Ended { task, outcome })
    }

    /// Waits up to `deadline` for every task to end (the caller has told them to stop), then
    /// aborts the rest, naming them in a warning. Returns the first task that ended with an
    /// error or a panic; each of those is logged. A task aborted at the deadline is not
    /// reported: stopping late is not a failure of the work it did.
    pub async fn drain(mut self, deadline: Duration) -> Option<Ended> {
        let mut first = None;
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(until, self.next()).await {
                Ok(None) => break,
                Ok(Some(ended)) if ended.returned() => {}
                Ok(Some(ended)) => {
                    tracing::error!(task = ended.task, error = %crate::format_chain(&ended), "task ended with an error while stopping");
                    first.get_or_insert(ended);
                }
                Err(_) => {
                    let late: Vec<_> = self.names.values().copied().collect();
                    tracing::warn!(tasks = ?late, deadline = ?deadline, "tasks did not stop in time, aborted");
                    self.set.abort_all();
                    while self.next().await.is_some() {}
                    break;
                }
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("broke")]
    struct Broke;

    #[tokio::test]
    async fn an_ended_task_is_reported_by_name_with_its_error() {
        let mut tasks = Tasks::new();
        tasks.spawn("forever", std::future::pending());
        tasks.spawn_fallible("breaks", async { Err(Broke) });
        let ended = tokio::time::timeout(Duration::from_secs(5), tasks.next())
            .await
            .expect("no task ended")
            .expect("a task");
        assert_eq!(ended.task, "breaks");
        assert_eq!(crate::format_chain(&ended), "task \"breaks\" failed: broke");
    }

    #[tokio::test]
    async fn a_panic_is_reported_by_name() {
        let mut tasks = Tasks::new();
        tasks.spawn("panics", async { panic!("on purpose") });
        let ended = tasks.next().await.expect("a task");
        assert_eq!(ended.task, "panics");
        assert!(matches!(ended.outcome, Outcome::Panicked));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_aborts_what_does_not_stop_by_the_deadline() {
        let mut tasks = Tasks::new();
        tasks.spawn("stops", async {});
        tasks.spawn("hangs", std::future::pending());
        let started = tokio::time::Instant::now();
        assert!(tasks.drain(Duration::from_secs(5)).await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn drain_reports_a_task_that_fails_while_stopping() {
        let mut tasks = Tasks::new();
        tasks.spawn("stops", async {});
        tasks.spawn_fallible("breaks", async { Err(Broke) });
        let failed = tasks
            .drain(Duration::from_secs(5))
            .await
            .expect("the failure is reported");
        assert_eq!(failed.task, "breaks");
    }
}
