//! Waiting until something holds: a probe polled at an interval under a deadline, and on
//! timeout an error (or a test failure) that says what was awaited and shows the logs that
//! explain why it never came.

use std::time::Duration;

use anyhow::{Result, bail};

/// How often a probe runs unless [`Wait::every`] says otherwise.
pub const DEFAULT_EVERY: Duration = Duration::from_millis(250);

/// A wait for `what`, at most `timeout`.
///
/// ```ignore
/// let job = Wait::new("the job to succeed", Duration::from_secs(60))
///     .explained_by(|| cluster.all_logs())
///     .until(async || cluster.jobs().get_opt("j").await.ok()?.filter(done))
///     .await;
/// ```
pub struct Wait<'a> {
    what: String,
    timeout: Duration,
    every: Duration,
    explain: Option<Box<dyn Fn() -> String + 'a>>,
}

impl<'a> Wait<'a> {
    /// A wait for `what` (named in the failure), polling every [`DEFAULT_EVERY`].
    pub fn new(what: impl Into<String>, timeout: Duration) -> Self {
        Self {
            what: what.into(),
            timeout,
            every: DEFAULT_EVERY,
            explain: None,
        }
    }

    /// Polls every `every` instead.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// On timeout, adds what `explain` returns (typically logs) to the failure.
    pub fn explained_by(mut self, explain: impl Fn() -> String + 'a) -> Self {
        self.explain = Some(Box::new(explain));
        self
    }

    /// Polls `probe` until it returns `Some`, and returns its value.
    ///
    /// # Panics
    /// After the timeout, naming what was awaited, with the explanation.
    pub async fn until<T>(self, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
        self.try_until(async || Ok(probe().await))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Polls `probe` until it returns `Ok(Some)`; an `Err` from it ends the wait at once.
    ///
    /// # Errors
    /// The probe's error, or a timeout naming what was awaited, with the explanation.
    pub async fn try_until<T>(
        self,
        mut probe: impl AsyncFnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let polled = tokio::time::timeout(self.timeout, async {
            loop {
                if let Some(value) = probe().await? {
                    return Ok(value);
                }
                tokio::time::sleep(self.every).await;
            }
        })
        .await;
        match polled {
            Ok(result) => result,
            Err(_) => {
                let explanation = self
                    .explain
                    .as_ref()
                    .map(|f| format!("\n{}", f()))
                    .unwrap_or_default();
                bail!(
                    "timed out after {:?} waiting for {}{explanation}",
                    self.timeout,
                    self.what
                )
            }
        }
    }
}
