//! Acknowledgements in batches: lease tasks hand their outcome to one task, which sends all
//! that have gathered meanwhile in one [`Frontier::complete_many`] call and answers each task.
//!
//! Nothing waits to fill a batch: when one acknowledgement is ready and no call is in flight,
//! it goes at once, alone. Under load, those that arrive while a call is in flight make up the
//! next one, so the Redis frontier runs one script (one round trip) for many pages. A lease
//! task still waits for its own answer, so a page is acknowledged only after its records were
//! published, as before.

use std::sync::Arc;

use kubecrawl_frontier::{Completion, Frontier, Lease, Outcome};
use kubecrawl_process::format_chain;
use tokio::sync::{mpsc, oneshot};

/// One acknowledgement waiting to be sent, and where its answer goes.
struct Pending {
    lease: Lease,
    outcome: Outcome,
    answer: oneshot::Sender<Result<Completion, String>>,
}

/// The lease tasks' side: hands over acknowledgements.
#[derive(Debug)]
pub(super) struct Acks {
    pending: mpsc::UnboundedSender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("lease", &self.lease.id)
            .finish_non_exhaustive()
    }
}

impl Acks {
    /// Starts the task that sends batches of at most `max_batch` acknowledgements to
    /// `frontier`. It ends once every `Acks` handle is dropped and the last batch answered.
    /// Needs a Tokio runtime.
    pub(super) fn start(frontier: Arc<dyn Frontier>, max_batch: usize) -> Self {
        let (pending, queue) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(frontier, queue, max_batch.max(1)));
        Self { pending }
    }

    /// Acknowledges `lease` with `outcome` in the next batch and waits for its answer. An error
    /// is the chain of the batch's error, as text (the whole batch shares it).
    pub(super) async fn complete(
        &self,
        lease: &Lease,
        outcome: Outcome,
    ) -> Result<Completion, String> {
        let (answer, answered) = oneshot::channel();
        let stopped = || "the acknowledgement task stopped".to_owned();
        self.pending
            .send(Pending {
                lease: lease.clone(),
                outcome,
                answer,
            })
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

async fn send_batches(
    frontier: Arc<dyn Frontier>,
    mut queue: mpsc::UnboundedReceiver<Pending>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        let (acks, answers): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|p| ((p.lease, p.outcome), p.answer))
            .unzip();
        let done = match frontier.complete_many(&acks).await {
            Ok(done) if done.len() == answers.len() => Ok(done),
            Ok(done) => Err(format!(
                "the frontier answered {} of {} acknowledgements",
                done.len(),
                answers.len()
            )),
            Err(e) => Err(format_chain(&e)),
        };
        // A task that gave up waiting (page timeout) has dropped its receiver.
        match done {
            Ok(done) => {
                for (answer, completion) in answers.into_iter().zip(done) {
                    let _ = answer.send(Ok(completion));
                }
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kubecrawl_api::{CrawlRequest, JobRef};
    use kubecrawl_frontier::{FrontierConfig, JobPolicy, MemoryFrontier};

    use super::*;

    #[tokio::test]
    async fn each_lease_gets_its_own_answer_when_many_arrive_together() {
        let frontier: Arc<dyn Frontier> = Arc::new(MemoryFrontier::new(FrontierConfig::default()));
        let job = JobRef {
            spiderid: "link".to_owned(),
            appid: "test".to_owned(),
            crawlid: "acks".to_owned(),
        };
        frontier
            .register(&job, &JobPolicy::unlimited())
            .await
            .expect("registers");
        let seeds: Vec<CrawlRequest> = (0..40)
            .map(|i| CrawlRequest::seed(format!("http://h{i}.test/"), 1))
            .collect();
        frontier.seed(&job, &seeds).await.expect("seeds");
        let leases = frontier
            .lease("link", 40, Duration::from_secs(60))
            .await
            .expect("leases");
        assert_eq!(leases.len(), 40);
        let acks = Acks::start(frontier.clone(), 64);
        // Every lease at once, and the first one a second time: that one is stale.
        let answers = futures::future::join_all(
            leases
                .iter()
                .chain(std::iter::once(&leases[0]))
                .enumerate()
                .map(|(i, lease)| {
                    let status = if i % 2 == 0 { 200 } else { 404 };
                    acks.complete(lease, Outcome::status(status, 1))
                }),
        )
        .await;
        // All 41 were queued before the task ran: one batch, answered lease by lease.
        assert!(
            answers[..40]
                .iter()
                .all(|a| matches!(a, Ok(Completion::Acked(_)))),
            "{answers:?}"
        );
        assert_eq!(answers[40], Ok(Completion::Stale), "{answers:?}");
        let stats = frontier
            .job_stats(&job)
            .await
            .expect("reads")
            .expect("registered");
        assert_eq!(
            (stats.pages, stats.in_flight, stats.status_codes.get(&404)),
            (40, 0, Some(&20)),
            "{stats:?}"
        );
    }
}
