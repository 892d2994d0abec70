//! Reconciling one CrawlJob: validate, register, seed, suspend/resume, expire, report status,
//! keep the fleet scaled; purge on deletion.
//!
//! # Expected flow
//! 1. The finalizer `kubecrawl.io/frontier` is added first, so a job's frontier state is
//!    always purged before the object goes away.
//! 2. The spec is checked ([`crate::validate`]); an invalid job gets `Valid=False`, phase
//!    Failed, no frontier state and no workers.
//! 3. A valid job's policy is registered in the frontier when its generation is new, and its
//!    seeds handed over (idempotent: the frontier's dedupe makes a second seeding enqueue
//!    nothing). `suspend` suspends or resumes it. After `expires` it is purged and Expired.
//! 4. Status is computed from the frontier's O(1) accounting ([`crate::status`]) and written
//!    only when it differs from the stored one.
//! 5. The fleets are synced ([`crate::fleet::Fleets::sync`]), which writes a Deployment only
//!    when its replicas or template must change.
//! 6. An active job is reconciled again after the status interval.
//!
//! # Guarantees
//! Reconcile is idempotent and safe to cancel at any await: every step re-reads what it
//! needs and every write is either idempotent (register, seed, apply) or guarded (status is
//! written only when changed). An operator restart therefore seeds nothing twice and carries
//! on where the status left off.
//!
//! # Assumptions
//! The operator is the only writer of CrawlJob status and of the worker Deployments (leader
//! election makes sure only one operator replica acts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use kubecrawl_api::{CrawlJob, CrawlRequest, JobRef, Phase};
use kubecrawl_frontier::{Admission, Frontier, JobPolicy, JobStats, Known, known};

use crate::fleet::Fleets;
use crate::metrics::Metrics;
use crate::{Error, Result, status, validate};

/// The finalizer that guarantees a job's frontier state is purged.
pub const FINALIZER: &str = "kubecrawl.io/frontier";

/// Timing of the reconcile loop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often an active job's status is refreshed.
    pub status_interval: Duration,
    /// How long a seeded job must be out of work before it is Succeeded.
    pub completion_grace: Duration,
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The shared frontier.
    pub frontier: Arc<dyn Frontier>,
    /// The spider fleets.
    pub fleets: Fleets,
    /// Every CrawlJob the controller sees (its reflector's store).
    pub jobs: Store<CrawlJob>,
    /// Publishes Kubernetes events.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Metrics,
    /// Timing.
    pub settings: Settings,
    idle_since: Mutex<HashMap<ObjectRef<CrawlJob>, Instant>>,
    last_write: Mutex<HashMap<ObjectRef<CrawlJob>, Instant>>,
}

impl Context {
    /// Assembles a context.
    pub fn new(
        client: Client,
        frontier: Arc<dyn Frontier>,
        fleets: Fleets,
        jobs: Store<CrawlJob>,
        recorder: Recorder,
        metrics: Metrics,
        settings: Settings,
    ) -> Self {
        Self {
            client,
            frontier,
            fleets,
            jobs,
            recorder,
            metrics,
            settings,
            idle_since: Mutex::new(HashMap::new()),
            last_write: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a job's counters may be written again (a status interval since the last write).
    fn write_due(&self, job: &ObjectRef<CrawlJob>) -> bool {
        let writes = self
            .last_write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writes
            .get(job)
            .is_none_or(|at| at.elapsed() >= self.settings.status_interval)
    }

    fn wrote(&self, job: &ObjectRef<CrawlJob>) {
        let mut writes = self
            .last_write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writes.insert(job.clone(), Instant::now());
    }

    fn forget(&self, job: &ObjectRef<CrawlJob>) {
        self.last_write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(job);
        self.idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(job);
    }

    fn idle_for(&self, job: &ObjectRef<CrawlJob>, finished: bool) -> Option<Duration> {
        let mut idle = self
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if finished {
            Some(
                idle.entry(job.clone())
                    .or_insert_with(Instant::now)
                    .elapsed(),
            )
        } else {
            idle.remove(job);
            None
        }
    }
}

/// The frontier's name for a job.
pub fn job_ref(job: &CrawlJob) -> JobRef {
    JobRef {
        spiderid: job.spec.spiderid.clone(),
        appid: job.spec.appid.clone(),
        crawlid: job.crawlid().to_owned(),
    }
}

/// Reconciles one CrawlJob (see the module docs).
///
/// # Errors
/// Kubernetes or frontier failures; the controller retries after [`error_policy`]'s delay.
pub async fn reconcile(job: Arc<CrawlJob>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<CrawlJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Event::Apply(job) => apply(&job, &api, &ctx).await,
            Event::Cleanup(job) => cleanup(&job, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(started.elapsed(), result.is_ok());
    result
}

/// What the controller does after a failed reconcile: log, count, retry in a few seconds.
pub fn error_policy(job: Arc<CrawlJob>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), namespace = ?job.namespace(), error = %kubecrawl_process::format_chain(error), "reconcile failed");
    let _ = ctx;
    Action::requeue(Duration::from_secs(5))
}

async fn apply(job: &CrawlJob, api: &Api<CrawlJob>, ctx: &Context) -> Result<Action> {
    let key = ObjectRef::from_obj(job);
    let jobref = job_ref(job);
    let others = ctx.jobs.state();
    let validity = validate::check(job, ctx.fleets.config(), &others);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let expires = job.spec.expires.as_ref().map(|t| t.0);
    let expired = expires.is_some_and(|t| t <= now.0);
    let current = job.status.clone().unwrap_or_default();

    let mut driven = Driven::default();
    let stats = if validity.is_err() {
        None
    } else if expired {
        if frontier_op("job_stats", ctx.frontier.job_stats(&jobref).await)?.is_some() {
            frontier_op("purge", ctx.frontier.purge(&jobref).await)?;
            tracing::info!(job = %jobref, "expired job purged");
        }
        // Whether or not the spec recrawls now: an earlier generation may have.
        frontier_op(
            "drop_known",
            ctx.frontier.drop_known(&jobref, Known::All).await,
        )?;
        None
    } else {
        driven = drive(job, &jobref, &current, &now, ctx).await?;
        Some(driven.stats.clone())
    };

    let finished = stats.as_ref().is_some_and(JobStats::finished);
    let observed = status::Observed {
        validity: validity.clone(),
        expired,
        idle_for: ctx.idle_for(&key, finished),
        ready_workers: ctx.fleets.ready_workers(&job.spec.spiderid),
        stats,
        seeds_refused: driven.seeds_refused,
        epoch: driven.epoch,
        frontier_lost: driven.frontier_lost.clone(),
        round_started: driven.round_started,
    };
    let next = status::next(job, &observed, ctx.settings.completion_grace, &now);
    // A recrawl round that just finished no longer needs the pages it was seeded from.
    if job.spec.recrawl.is_some()
        && next.phase == Phase::Succeeded
        && current.phase != Phase::Succeeded
    {
        frontier_op(
            "drop_known",
            ctx.frontier.drop_known(&jobref, Known::Previous).await,
        )?;
    }
    write_status(
        job,
        api,
        ctx,
        &next,
        validity.as_ref().err(),
        driven.frontier_lost.as_deref(),
    )
    .await?;
    // Scale with this job's new phase, not the store's older copy of it.
    let mut updated = job.clone();
    updated.status = Some(next.clone());
    let jobs: Vec<Arc<CrawlJob>> = others
        .into_iter()
        .map(|o| {
            if ObjectRef::from_obj(o.as_ref()) == key {
                Arc::new(updated.clone())
            } else {
                o
            }
        })
        .collect();
    ctx.fleets.sync(&jobs, None).await?;
    Ok(requeue(&next, expires, &now, ctx))
}

/// Writes `next` as the job's status when it changed: a new phase or condition at once,
/// counters at most once per status interval (a status write triggers a reconcile of its
/// own, which must not write again). Announces a new phase and a lost frontier as events.
async fn write_status(
    job: &CrawlJob,
    api: &Api<CrawlJob>,
    ctx: &Context,
    next: &kubecrawl_api::CrawlJobStatus,
    invalid: Option<&String>,
    frontier_lost: Option<&str>,
) -> Result<()> {
    let key = ObjectRef::from_obj(job);
    let significant = job
        .status
        .as_ref()
        .is_none_or(|old| old.phase != next.phase || old.conditions != next.conditions);
    if !status::changed(job.status.as_ref(), next) || !(significant || ctx.write_due(&key)) {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": status_patch(next) });
    api.patch_status(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::kube("patch crawljob status"))?;
    ctx.metrics.status_written();
    ctx.wrote(&key);
    let before = job.status.as_ref().map(|s| s.phase);
    if before != Some(next.phase) {
        announce(ctx, job, next.phase, invalid).await;
    }
    if let Some(lost) = frontier_lost {
        warn_event(ctx, job, status::FRONTIER_LOST, lost).await;
    }
    if let Some(traps) = status::traps_reported(Some(next))
        && status::traps_reported(job.status.as_ref()) != Some(traps)
    {
        warn_event(ctx, job, status::TRAP_DETECTED, traps).await;
    }
    if let Some((failed, message)) = status::sitemaps_failed(Some(next))
        && status::sitemaps_failed(job.status.as_ref()).map(|(n, _)| n) != Some(failed)
    {
        warn_event(ctx, job, status::SITEMAPS_FAILED, &message).await;
    }
    Ok(())
}

/// `status` as a JSON merge patch: the fields the operator clears (an unset time, a next
/// round that is over) are written as null, since a merge patch keeps whatever it omits.
fn status_patch(status: &kubecrawl_api::CrawlJobStatus) -> serde_json::Value {
    let mut patch = serde_json::to_value(status).unwrap_or_default();
    let clear = |object: &mut serde_json::Value, fields: &[&str]| {
        if let Some(map) = object.as_object_mut() {
            for field in fields {
                map.entry(*field).or_insert(serde_json::Value::Null);
            }
        }
    };
    clear(
        &mut patch,
        &["startTime", "completionTime", "recrawl", "sitemaps"],
    );
    if let Some(recrawl) = patch.get_mut("recrawl") {
        clear(recrawl, &["roundStartTime", "nextRoundTime"]);
    }
    patch
}

/// When to look at a job again: a running one at the next status interval (or its expiry,
/// if sooner), a suspended one in 30 s, a finished one when its next recrawl round is due,
/// else only when it changes.
fn requeue(
    status: &kubecrawl_api::CrawlJobStatus,
    expires: Option<k8s_openapi::jiff::Timestamp>,
    now: &Time,
    ctx: &Context,
) -> Action {
    let next_round = status
        .recrawl
        .as_ref()
        .and_then(|r| r.next_round_time.as_ref());
    if let (Phase::Succeeded, Some(at)) = (status.phase, next_round) {
        let wait = if at.0 > now.0 {
            at.0.duration_since(now.0).unsigned_abs()
        } else {
            Duration::ZERO
        };
        return Action::requeue(wait.max(Duration::from_millis(100)));
    }
    match status.phase {
        Phase::Pending | Phase::Running => {
            let mut wait = ctx.settings.status_interval;
            if let Some(at) = expires {
                let left = at.duration_since(now.0).unsigned_abs();
                wait = wait.min(left.max(Duration::from_millis(100)));
            }
            Action::requeue(wait)
        }
        Phase::Suspended => Action::requeue(Duration::from_secs(30)),
        Phase::Succeeded | Phase::Failed | Phase::Expired => Action::await_change(),
    }
}

/// What driving a job found.
#[derive(Debug, Default)]
struct Driven {
    /// The job's accounting.
    stats: JobStats,
    /// Why every seed was refused, when none was admitted: the job then fails instead of
    /// waiting forever, and is not seeded again until its spec changes.
    seeds_refused: Option<String>,
    /// The frontier's epoch for the job's spider.
    epoch: Option<String>,
    /// The frontier lost the job's state since it was seeded (its epoch changed); the job
    /// was seeded again.
    frontier_lost: Option<String>,
    /// A new recrawl round was started: the job was purged and seeded again.
    round_started: bool,
}

/// Registers, seeds, suspends or resumes a valid, unexpired job; returns what it found.
///
/// A job whose frontier state was lost (the epoch changed) is registered and seeded again,
/// unless it had already succeeded: then its counts are kept from its status and nothing is
/// crawled again.
async fn drive(
    job: &CrawlJob,
    jobref: &JobRef,
    current: &kubecrawl_api::CrawlJobStatus,
    now: &Time,
    ctx: &Context,
) -> Result<Driven> {
    let frontier = &ctx.frontier;
    let epoch = frontier_op("epoch", frontier.epoch(&jobref.spiderid).await)?;
    let new_generation = current.observed_generation != job.metadata.generation;
    let mut known = frontier_op("job_stats", frontier.job_stats(jobref).await)?;
    // A round is started only over a finished one: a reconcile that reads a status older
    // than the round it started a moment ago finds that round's work in the frontier.
    let round_started = !new_generation
        && status::round_due(job, current, now)
        && known.as_ref().is_none_or(JobStats::finished)
        && {
            start_round(jobref, ctx).await?;
            known = frontier_op("job_stats", frontier.job_stats(jobref).await)?;
            true
        };
    let lost = current
        .frontier_epoch
        .as_ref()
        .filter(|before| **before != epoch)
        .map(|before| {
            format!(
                "the frontier lost its state (epoch {before} became {epoch}: Redis restarted without persistence or failed over to an empty replica); pages fetched before may be fetched again"
            )
        });
    if current.phase == Phase::Succeeded && !new_generation && !round_started && known.is_none() {
        if let Some(message) = &lost {
            tracing::warn!(job = %jobref, message, "frontier state lost after the job succeeded; nothing crawled again");
        }
        return Ok(Driven {
            stats: finished_stats(current),
            epoch: Some(epoch),
            ..Driven::default()
        });
    }
    let frontier_lost = lost.map(|message| {
        tracing::error!(job = %jobref, message, "frontier state lost, seeding the job again");
        format!("{message}; the job was seeded again")
    });
    if known.is_none() || new_generation {
        frontier_op(
            "register",
            frontier
                .register(jobref, &JobPolicy::from_spec(&job.spec))
                .await,
        )?;
    }
    let seeded = known.as_ref().is_some_and(|s| s.seeded);
    let mut refused = status::seeds_refused(Some(current), job.metadata.generation);
    if frontier_lost.is_some() {
        refused = None;
    }
    if (!seeded || new_generation) && !job.spec.suspend && refused.is_none() {
        refused = seed(job, jobref, seeded, ctx).await?;
    }
    Ok(Driven {
        stats: settle_suspension(job, jobref, ctx).await?,
        seeds_refused: refused,
        epoch: Some(epoch),
        frontier_lost,
        round_started,
    })
}

/// Starts a recrawl round of a job whose previous round succeeded: the pages that round
/// acknowledged become the ones to seed from, then the job's queues, dedupe and counters are
/// purged; [`drive`] then registers and seeds it as new ([`seed`] adds the known pages).
///
/// Interrupted anywhere, it is started again whole at the next reconcile (the job is still
/// Succeeded in its status): the rotation keeps the pages to seed from until the round
/// finished, and purging a half-seeded round only repeats its seeding.
async fn start_round(jobref: &JobRef, ctx: &Context) -> Result<()> {
    let rotated = frontier_op(
        "start_round",
        known::start_round(ctx.frontier.as_ref(), jobref).await,
    )?;
    tracing::info!(job = %jobref, rotated, "recrawl round starting");
    Ok(())
}

/// Offers the job's seeds; returns why every one was refused when none was admitted the
/// first time.
async fn seed(
    job: &CrawlJob,
    jobref: &JobRef,
    seeded: bool,
    ctx: &Context,
) -> Result<Option<String>> {
    let mut seeds: Vec<CrawlRequest> = job
        .spec
        .seeds
        .iter()
        .map(|u| CrawlRequest::seed(u.as_str(), job.spec.priority))
        .collect();
    if let Some(sitemaps) = &job.spec.sitemaps {
        seeds.extend(sitemaps.requests(&job.spec.seeds, job.spec.priority));
    }
    let mut admission = Admission::default();
    // Known pages first: a seed page then keeps its validators.
    if job.spec.recrawl.is_some() {
        admission = frontier_op(
            "seed_known",
            known::seed_known(ctx.frontier.as_ref(), jobref).await,
        )?;
        tracing::info!(job = %jobref, admitted = admission.admitted, duplicates = admission.duplicates, "known pages seeded");
    }
    admission += frontier_op("seed", ctx.frontier.seed(jobref, &seeds).await)?;
    tracing::info!(job = %jobref, admitted = admission.admitted, duplicates = admission.duplicates, "seeded");
    if !seeded && admission.admitted == 0 && admission.duplicates == 0 {
        let message = refusal_message(seeds.len(), &admission);
        tracing::warn!(job = %jobref, message, "every seed was refused");
        return Ok(Some(message));
    }
    Ok(None)
}

/// Suspends or resumes the job in the frontier as its spec says, and returns its
/// accounting. `settling`: an earlier suspend or resume was interrupted; doing it again
/// finishes it.
async fn settle_suspension(job: &CrawlJob, jobref: &JobRef, ctx: &Context) -> Result<JobStats> {
    let frontier = &ctx.frontier;
    let stats = frontier_op("job_stats", frontier.job_stats(jobref).await)?.unwrap_or_default();
    if job.spec.suspend && (!stats.suspended || stats.settling) {
        frontier_op("suspend", frontier.suspend(jobref).await)?;
    } else if !job.spec.suspend && (stats.suspended || stats.settling) {
        frontier_op("resume", frontier.resume(jobref).await)?;
    } else {
        return Ok(stats);
    }
    Ok(frontier_op("job_stats", frontier.job_stats(jobref).await)?.unwrap_or_default())
}

/// The accounting of a job that succeeded, as its status recorded it.
fn finished_stats(status: &kubecrawl_api::CrawlJobStatus) -> JobStats {
    JobStats {
        pages: status.pages,
        items: status.items,
        bytes: status.bytes,
        errors: status.errors,
        retries: status.retries,
        furthest_step: status.steps,
        status_codes: status
            .status_codes
            .iter()
            .filter_map(|(code, n)| Some((code.parse().ok()?, *n)))
            .collect(),
        seeded: true,
        ..JobStats::default()
    }
}

async fn warn_event(ctx: &Context, job: &CrawlJob, reason: &str, note: &str) {
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(note.to_owned()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}

/// Says why `total` seeds all went nowhere, one count per reason.
fn refusal_message(total: usize, admission: &kubecrawl_frontier::Admission) -> String {
    let reasons: Vec<String> = [
        (admission.blacklisted, "on the spider's domain blacklist"),
        (admission.over_budget, "over the job's page budget"),
        (admission.filtered, "not fetchable URLs"),
        (admission.refused, "refused by the job's state"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    format!(
        "all {total} seeds were refused ({}); change the spec (or the blacklist, then the spec) to seed again",
        reasons.join(", ")
    )
}

async fn cleanup(job: &CrawlJob, ctx: &Context) -> Result<Action> {
    let jobref = job_ref(job);
    // A job refused for sharing another job's crawlid never owned that frontier state.
    if validate::conflict(job, &ctx.jobs.state()).is_none() {
        let purged = frontier_op("purge", ctx.frontier.purge(&jobref).await)?;
        frontier_op(
            "drop_known",
            ctx.frontier.drop_known(&jobref, Known::All).await,
        )?;
        tracing::info!(job = %jobref, purged, "deleted job purged");
    }
    ctx.fleets
        .sync(&ctx.jobs.state(), Some(&ObjectRef::from_obj(job)))
        .await?;
    ctx.forget(&ObjectRef::from_obj(job));
    Ok(Action::await_change())
}

async fn announce(ctx: &Context, job: &CrawlJob, phase: Phase, invalid: Option<&String>) {
    let (type_, note) = match (phase, invalid) {
        (Phase::Failed, Some(message)) => (EventType::Warning, message.clone()),
        (Phase::Failed, None) => (
            EventType::Warning,
            "every seed was refused; see the Seeded condition".to_owned(),
        ),
        (Phase::Running, _) => (EventType::Normal, "seeded; workers are crawling".to_owned()),
        (Phase::Succeeded, _) => (EventType::Normal, "nothing left to crawl".to_owned()),
        (Phase::Expired, _) => (
            EventType::Normal,
            "expires passed; frontier state purged".to_owned(),
        ),
        (Phase::Suspended, _) => (EventType::Normal, "suspended; frontier kept".to_owned()),
        (phase, _) => (EventType::Normal, format!("phase {phase}")),
    };
    let event = KubeEvent {
        type_,
        reason: phase.to_string(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}

fn frontier_op<T>(op: &'static str, result: kubecrawl_frontier::Result<T>) -> Result<T> {
    result.map_err(Error::frontier(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a merge patch keeps what it omits, so a cleared completion time (a job
    /// running again) or next round time stayed, and a recrawling job started its next round
    /// at once, from its first round's completion time.
    #[test]
    fn the_status_patch_clears_what_is_unset() {
        let status = kubecrawl_api::CrawlJobStatus {
            phase: Phase::Running,
            recrawl: Some(kubecrawl_api::RecrawlStatus {
                round: 2,
                ..kubecrawl_api::RecrawlStatus::default()
            }),
            ..kubecrawl_api::CrawlJobStatus::default()
        };
        let patch = status_patch(&status);
        assert_eq!(patch["completionTime"], serde_json::Value::Null);
        assert!(
            patch
                .as_object()
                .is_some_and(|m| m.contains_key("completionTime"))
        );
        assert!(
            patch["recrawl"]
                .as_object()
                .is_some_and(|m| m.contains_key("nextRoundTime"))
        );
        assert_eq!(patch["recrawl"]["round"], 2);
        assert_eq!(patch["phase"], "Running");
        let plain = status_patch(&kubecrawl_api::CrawlJobStatus::default());
        assert_eq!(
            plain["recrawl"],
            serde_json::Value::Null,
            "a job that stopped recrawling loses its recrawl status"
        );
        assert!(plain.as_object().is_some_and(|m| m.contains_key("recrawl")));
    }
}
