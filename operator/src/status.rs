//! Computing a CrawlJob's status from what the operator observed. Pure functions: no I/O,
//! so every transition is unit-tested.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::SignedDuration;
use kubecrawl_api::{CrawlJob, CrawlJobStatus, Phase, RecrawlStatus, SitemapStatus};
use kubecrawl_frontier::JobStats;

/// Condition type: the spec passed the operator's checks.
pub const VALID: &str = "Valid";
/// Condition type: the seeds were handed to the frontier.
pub const SEEDED: &str = "Seeded";
/// Condition type: the job has run out of work (or expired).
pub const COMPLETE: &str = "Complete";
/// Condition type: the frontier's state of this job was lost (Redis lost its data) and the
/// job was seeded again.
pub const FRONTIER_LOST: &str = "FrontierLost";
/// Condition type: workers cut hosts off for this job as crawler traps (hosts that explode:
/// errors only, endless duplicates, growing URLs); the message names them and why.
pub const TRAP_DETECTED: &str = "TrapDetected";
/// Event reason: more of the job's sitemaps could not be read whole.
pub const SITEMAPS_FAILED: &str = "SitemapsFailed";
/// Hosts named in a [`TRAP_DETECTED`] message at most; the rest are counted.
const TRAP_HOSTS_SHOWN: usize = 10;
/// Reason of `Seeded=False`: the frontier refused every seed (blacklisted domains, budgets),
/// so the job can make no progress.
pub const SEEDS_REFUSED: &str = "SeedsRefused";

/// What the operator saw of a job during one reconcile.
#[derive(Debug, Clone)]
pub struct Observed {
    /// `Err(message)` when the spec is not valid.
    pub validity: Result<(), String>,
    /// The job's `expires` has passed.
    pub expired: bool,
    /// The frontier's accounting (`None` when the job is not registered, e.g. purged).
    pub stats: Option<JobStats>,
    /// How long the job has been out of work (queued and in flight both zero), if it is.
    pub idle_for: Option<Duration>,
    /// Ready workers of the job's fleet.
    pub ready_workers: u32,
    /// Why every seed was refused, when none was admitted (see [`SEEDS_REFUSED`]).
    pub seeds_refused: Option<String>,
    /// The frontier's epoch for the job's spider, when it was read.
    pub epoch: Option<String>,
    /// What was lost, when the epoch changed since the job was seeded ([`FRONTIER_LOST`]).
    pub frontier_lost: Option<String>,
    /// A new recrawl round was started (purged and seeded again) in this reconcile.
    pub round_started: bool,
}

impl Default for Observed {
    fn default() -> Self {
        Self {
            validity: Ok(()),
            expired: false,
            stats: None,
            idle_for: None,
            ready_workers: 0,
            seeds_refused: None,
            epoch: None,
            frontier_lost: None,
            round_started: false,
        }
    }
}

impl Observed {
    /// Whether the frontier reports the job's seeds as handed over.
    fn seeded(&self) -> bool {
        self.stats.as_ref().is_some_and(|s| s.seeded)
    }

    /// Why every seed was refused, unless the job was seeded after all.
    fn refused(&self) -> Option<&str> {
        self.seeds_refused.as_deref().filter(|_| !self.seeded())
    }
}

/// The status a job should have, given its current status and what was observed.
///
/// `completion_grace`: how long a seeded job must be out of work before it is Succeeded.
pub fn next(
    job: &CrawlJob,
    observed: &Observed,
    completion_grace: Duration,
    now: &Time,
) -> CrawlJobStatus {
    let current = job.status.clone().unwrap_or_default();
    let mut status = current.clone();
    status.observed_generation = job.metadata.generation;
    status.ready_workers = observed.ready_workers;
    if let Some(stats) = &observed.stats {
        copy_counts(&mut status, stats);
    }
    if observed.epoch.is_some() {
        status.frontier_epoch.clone_from(&observed.epoch);
    }
    if observed.seeded() && status.start_time.is_none() {
        status.start_time = Some(now.clone());
    }
    // A new round starts over: its own start, its own completion.
    let was = if observed.round_started {
        status.start_time = Some(now.clone());
        status.completion_time = None;
        Phase::Running
    } else {
        current.phase
    };
    status.phase = phase(job, observed, was, completion_grace);

    let mut conditions = Conditions {
        list: &mut status.conditions,
        generation: job.metadata.generation,
        now,
    };
    conditions.observed(observed);
    conditions.completion(status.phase);

    let terminal = matches!(
        status.phase,
        Phase::Succeeded | Phase::Expired | Phase::Failed
    );
    if terminal && status.completion_time.is_none() {
        status.completion_time = Some(now.clone());
    } else if !terminal {
        status.completion_time = None;
    }
    status.recrawl = recrawl(job, &status, observed);
    status
}

/// The recrawl status: the round (one more when a round was just started), when it
/// started, when the next starts (a Succeeded job with rounds left: its completion time plus
/// `afterSeconds`), and the round's `changed` and `unchanged` counters.
fn recrawl(job: &CrawlJob, status: &CrawlJobStatus, observed: &Observed) -> Option<RecrawlStatus> {
    let spec = job.spec.recrawl.as_ref()?;
    let mut recrawl = status.recrawl.clone().unwrap_or_default();
    recrawl.round = recrawl.round.max(1);
    if observed.round_started {
        recrawl.round += 1;
        recrawl.round_start_time = None;
    }
    if recrawl.round_start_time.is_none() {
        recrawl.round_start_time.clone_from(&status.start_time);
    }
    if let Some(stats) = &observed.stats {
        let counter = |name: &str| stats.counters.get(name).copied().unwrap_or(0);
        recrawl.changed = counter("changed");
        recrawl.unchanged = counter("unchanged");
    }
    let rounds_left = spec.max_rounds.is_none_or(|max| recrawl.round < max);
    recrawl.next_round_time = match (&status.completion_time, status.phase) {
        (Some(done), Phase::Succeeded) if rounds_left && !job.spec.suspend => done
            .0
            .checked_add(SignedDuration::from_secs(i64::from(spec.after_seconds)))
            .ok()
            .map(Time),
        _ => None,
    };
    Some(recrawl)
}

/// Whether the job's next recrawl round should start now: it recrawls, its last round
/// succeeded, it is not suspended, and the status's next round time has come.
pub fn round_due(job: &CrawlJob, current: &CrawlJobStatus, now: &Time) -> bool {
    job.spec.recrawl.is_some()
        && !job.spec.suspend
        && current.phase == Phase::Succeeded
        && current
            .recrawl
            .as_ref()
            .and_then(|r| r.next_round_time.as_ref())
            .is_some_and(|at| at.0 <= now.0)
}

/// The frontier's accounting, as the status shows it.
fn copy_counts(status: &mut CrawlJobStatus, stats: &JobStats) {
    status.pages = stats.pages;
    status.items = stats.items;
    status.bytes = stats.bytes;
    status.errors = stats.errors;
    status.retries = stats.retries;
    status.queued = stats.queued;
    status.in_flight = stats.in_flight;
    status.steps = stats.furthest_step;
    status.status_codes = stats
        .status_codes
        .iter()
        .map(|(code, n)| (code.to_string(), *n))
        .collect();
    let counter = |name: &str| stats.counters.get(name).copied().unwrap_or(0);
    status.sitemaps = job_has_sitemaps(stats).then(|| SitemapStatus {
        read: counter("sitemaps_read"),
        failed: counter("sitemaps_failed"),
        urls: counter("sitemap_urls"),
        unmodified: counter("sitemap_unmodified"),
    });
}

/// Whether workers reported reading any sitemap of the job.
fn job_has_sitemaps(stats: &JobStats) -> bool {
    stats.counters.keys().any(|k| k.starts_with("sitemap"))
}

/// "2 sitemaps could not be read whole (of 7 read)": the Warning a rise of
/// `status.sitemaps.failed` raises; `None` while none failed.
pub fn sitemaps_failed(status: Option<&CrawlJobStatus>) -> Option<(u64, String)> {
    let sitemaps = status?.sitemaps.as_ref().filter(|s| s.failed > 0)?;
    let noun = if sitemaps.failed == 1 {
        "sitemap"
    } else {
        "sitemaps"
    };
    Some((
        sitemaps.failed,
        format!(
            "{} {noun} could not be read whole (missing, malformed or past a bound; {} read): the workers' logs name each with its reason",
            sitemaps.failed, sitemaps.read
        ),
    ))
}

/// The phase, first match wins: invalid, expired, suspended, seeds refused, out of work
/// (for `completion_grace`, or already Succeeded), seeded, else pending.
fn phase(job: &CrawlJob, observed: &Observed, was: Phase, completion_grace: Duration) -> Phase {
    let finished = observed.stats.as_ref().is_some_and(JobStats::finished);
    if observed.validity.is_err() {
        Phase::Failed
    } else if observed.expired {
        Phase::Expired
    } else if job.spec.suspend {
        Phase::Suspended
    } else if observed.refused().is_some() {
        Phase::Failed
    } else if finished
        && (was == Phase::Succeeded
            || observed
                .idle_for
                .is_some_and(|idle| idle >= completion_grace))
    {
        Phase::Succeeded
    } else if observed.seeded() {
        Phase::Running
    } else {
        Phase::Pending
    }
}

/// The conditions of one status being computed, set for one generation at one time.
struct Conditions<'a> {
    list: &'a mut Vec<Condition>,
    generation: Option<i64>,
    now: &'a Time,
}

impl Conditions<'_> {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        set_condition(
            self.list,
            type_,
            status,
            reason,
            message,
            self.generation,
            self.now,
        );
    }

    /// [`FRONTIER_LOST`], [`VALID`] and [`SEEDED`], from what was observed.
    fn observed(&mut self, observed: &Observed) {
        if let Some(message) = &observed.frontier_lost {
            self.set(FRONTIER_LOST, true, "RedisDataLost", message);
        }
        match &observed.validity {
            Ok(()) => self.set(
                VALID,
                true,
                "Accepted",
                "the spec passed the operator's checks",
            ),
            Err(message) => self.set(VALID, false, "InvalidSpec", message),
        }
        if observed.seeded() {
            self.set(
                SEEDED,
                true,
                "Seeded",
                "the seeds were handed to the frontier",
            );
        }
        if let Some(message) = observed.refused() {
            self.set(SEEDED, false, SEEDS_REFUSED, message);
        }
        if let Some(stats) = observed.stats.as_ref().filter(|s| !s.traps.is_empty()) {
            self.set(TRAP_DETECTED, true, "HostsCutOff", &trap_message(stats));
        }
    }

    /// [`COMPLETE`], from the phase: set when the job is done, reset to False once it has
    /// work again, left alone when it failed.
    fn completion(&mut self, phase: Phase) {
        match phase {
            Phase::Succeeded => {
                self.set(COMPLETE, true, "OutOfWork", "nothing queued or in flight");
            }
            Phase::Expired => self.set(COMPLETE, true, "Expired", "the job's expires time passed"),
            Phase::Failed => {}
            _ => {
                if self.list.iter().any(|c| c.type_ == COMPLETE) {
                    self.set(COMPLETE, false, "Working", "the job has work");
                }
            }
        }
    }
}

/// "2 hosts cut off as crawler traps: a.test (errors: …), b.test (duplicates: …)", naming at
/// most [`TRAP_HOSTS_SHOWN`].
fn trap_message(stats: &JobStats) -> String {
    let n = stats.traps.len();
    let shown: Vec<String> = stats
        .traps
        .iter()
        .take(TRAP_HOSTS_SHOWN)
        .map(|(host, reason)| format!("{host} ({reason})"))
        .collect();
    let more = if n > TRAP_HOSTS_SHOWN {
        format!(" and {} more", n - TRAP_HOSTS_SHOWN)
    } else {
        String::new()
    };
    let hosts = if n == 1 { "host" } else { "hosts" };
    format!(
        "{n} {hosts} cut off as crawler traps: {}{more}",
        shown.join(", ")
    )
}

/// The message of the job's [`TRAP_DETECTED`] condition, if it has one.
pub fn traps_reported(status: Option<&CrawlJobStatus>) -> Option<&str> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == TRAP_DETECTED && c.status == "True")
        .map(|c| c.message.as_str())
}

/// The message of a `Seeded=False` / [`SEEDS_REFUSED`] condition written for this generation
/// of the spec: every seed was refused then, and seeding again is pointless until the spec
/// changes.
pub fn seeds_refused(status: Option<&CrawlJobStatus>, generation: Option<i64>) -> Option<String> {
    status?
        .conditions
        .iter()
        .find(|c| {
            c.type_ == SEEDED
                && c.status == "False"
                && c.reason == SEEDS_REFUSED
                && c.observed_generation == generation
        })
        .map(|c| c.message.clone())
}

/// Whether two statuses differ in anything worth a write (timestamps of unchanged
/// conditions are kept by [`set_condition`], so plain equality works).
pub fn changed(old: Option<&CrawlJobStatus>, new: &CrawlJobStatus) -> bool {
    old != Some(new)
}

/// Sets a condition, keeping its lastTransitionTime when its status did not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status;
            c.reason = reason.to_owned();
            c.message = message.to_owned();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubecrawl_api::CrawlJobSpec;

    fn job() -> CrawlJob {
        let spec: CrawlJobSpec = serde_json::from_value(serde_json::json!({
            "spiderid": "link", "appid": "a", "seeds": ["http://site.test/"]
        }))
        .expect("spec");
        let mut job = CrawlJob::new("j", spec);
        job.metadata.generation = Some(2);
        job
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("valid"))
    }

    fn stats(queued: u64, in_flight: u64, pages: u64) -> JobStats {
        JobStats {
            seeded: true,
            queued,
            in_flight,
            pages,
            ..JobStats::default()
        }
    }

    /// A recrawling job: round 1 runs, succeeds and gets a next round time; a started round
    /// counts one more, starts over (no completion time) and shows its own counters; the
    /// last round has no next one.
    #[test]
    fn recrawl_rounds_are_counted_and_scheduled() {
        let mut j = job();
        j.spec.recrawl = Some(kubecrawl_api::Recrawl {
            after_seconds: 60,
            max_rounds: Some(2),
        });
        let grace = Duration::from_secs(5);
        let running = Observed {
            stats: Some(stats(3, 1, 0)),
            ..Observed::default()
        };
        let s = next(&j, &running, grace, &now());
        let r = s.recrawl.clone().expect("recrawl status");
        assert_eq!((r.round, r.next_round_time), (1, None));
        assert_eq!(r.round_start_time, s.start_time);
        j.status = Some(s);
        let mut done = stats(0, 0, 10);
        done.counters.insert("changed".to_owned(), 0);
        let finished = Observed {
            stats: Some(done),
            idle_for: Some(grace),
            ..Observed::default()
        };
        let s = next(&j, &finished, grace, &now());
        assert_eq!(s.phase, Phase::Succeeded);
        let due = Time(now().0 + SignedDuration::from_secs(60));
        assert_eq!(
            s.recrawl.as_ref().and_then(|r| r.next_round_time.clone()),
            Some(due.clone())
        );
        j.status = Some(s.clone());
        assert!(!round_due(&j, &s, &now()), "not before its time");
        assert!(round_due(&j, &s, &due));

        let mut round = stats(5, 0, 0);
        round.counters.insert("unchanged".to_owned(), 4);
        round.counters.insert("changed".to_owned(), 1);
        let started = Observed {
            stats: Some(round),
            round_started: true,
            ..Observed::default()
        };
        let s = next(&j, &started, grace, &due);
        assert_eq!(s.phase, Phase::Running);
        assert_eq!(s.completion_time, None);
        assert_eq!(s.start_time, Some(due.clone()));
        let r = s.recrawl.clone().expect("recrawl status");
        assert_eq!((r.round, r.changed, r.unchanged), (2, 1, 4));
        assert_eq!(r.round_start_time, Some(due.clone()));
        j.status = Some(s);
        let s = next(&j, &finished, grace, &due);
        assert_eq!(s.phase, Phase::Succeeded);
        let r = s.recrawl.clone().expect("recrawl status");
        assert_eq!(
            (r.round, r.next_round_time),
            (2, None),
            "maxRounds 2 reached"
        );
        assert!(!round_due(
            &j,
            &s,
            &Time(due.0 + SignedDuration::from_secs(3600))
        ));
    }

    #[test]
    fn a_new_valid_job_is_pending_then_running() {
        let j = job();
        let s = next(&j, &Observed::default(), Duration::from_secs(5), &now());
        assert_eq!(s.phase, Phase::Pending);
        assert_eq!(s.observed_generation, Some(2));
        let observed = Observed {
            stats: Some(stats(3, 1, 0)),
            ..Observed::default()
        };
        let s = next(&j, &observed, Duration::from_secs(5), &now());
        assert_eq!(s.phase, Phase::Running);
        assert_eq!(s.queued, 3);
        assert!(s.start_time.is_some());
        assert!(
            s.conditions
                .iter()
                .any(|c| c.type_ == SEEDED && c.status == "True")
        );
    }

    /// Regression: a job whose every seed was refused stayed Pending forever, kept its
    /// workers and was seeded again every status interval.
    #[test]
    fn a_job_whose_seeds_were_all_refused_fails_and_says_why() {
        let mut j = job();
        let observed = Observed {
            stats: Some(JobStats::default()),
            seeds_refused: Some("all 1 seeds were refused (1 on the blacklist)".to_owned()),
            ..Observed::default()
        };
        let s = next(&j, &observed, Duration::from_secs(5), &now());
        assert_eq!(s.phase, Phase::Failed);
        assert!(s.completion_time.is_some());
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == SEEDED)
            .expect("a Seeded condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", SEEDS_REFUSED)
        );
        assert!(c.message.contains("blacklist"), "{}", c.message);
        // Remembered for this generation, forgotten for the next.
        j.status = Some(s);
        assert!(seeds_refused(j.status.as_ref(), Some(2)).is_some());
        assert!(seeds_refused(j.status.as_ref(), Some(3)).is_none());
    }

    #[test]
    fn sitemap_counters_show_in_the_status_and_failures_warn() {
        let j = job();
        let plain = Observed {
            stats: Some(stats(1, 1, 10)),
            ..Observed::default()
        };
        let s = next(&j, &plain, Duration::from_secs(5), &now());
        assert_eq!(s.sitemaps, None, "no sitemaps, no sitemap status");
        let mut read = stats(1, 1, 10);
        read.counters = [
            ("sitemaps_read".to_owned(), 7),
            ("sitemaps_failed".to_owned(), 3),
            ("sitemap_urls".to_owned(), 123),
            ("sitemap_unmodified".to_owned(), 4),
            ("other".to_owned(), 9),
        ]
        .into();
        let observed = Observed {
            stats: Some(read),
            ..Observed::default()
        };
        let s = next(&j, &observed, Duration::from_secs(5), &now());
        assert_eq!(
            s.sitemaps,
            Some(SitemapStatus {
                read: 7,
                failed: 3,
                urls: 123,
                unmodified: 4
            })
        );
        let (failed, message) = sitemaps_failed(Some(&s)).expect("a warning");
        assert_eq!(failed, 3);
        assert!(
            message.starts_with("3 sitemaps could not be read whole"),
            "{message}"
        );
    }

    #[test]
    fn hosts_cut_off_as_traps_are_a_condition_naming_them() {
        let mut j = job();
        let mut with_traps = stats(1, 1, 10);
        with_traps
            .traps
            .insert("cal.test".to_owned(), "duplicates: ...".to_owned());
        let observed = Observed {
            stats: Some(with_traps.clone()),
            ..Observed::default()
        };
        let s = next(&j, &observed, Duration::from_secs(5), &now());
        assert_eq!(s.phase, Phase::Running, "a trap does not stop the job");
        let message = traps_reported(Some(&s)).expect("a TrapDetected condition");
        assert_eq!(
            message,
            "1 host cut off as crawler traps: cal.test (duplicates: ...)"
        );
        j.status = Some(s);
        for i in 0..12 {
            with_traps
                .traps
                .insert(format!("h{i:02}.test"), "errors".to_owned());
        }
        let observed = Observed {
            stats: Some(with_traps),
            ..Observed::default()
        };
        let s = next(&j, &observed, Duration::from_secs(5), &now());
        let message = traps_reported(Some(&s)).expect("still there");
        assert!(
            message.starts_with(
                "13 hosts cut off as crawler traps: cal.test (duplicates: ...), h00.test (errors)"
            ),
            "{message}"
        );
        assert!(message.ends_with(" and 3 more"), "{message}");
        assert!(
            traps_reported(Some(&next(
                &job(),
                &Observed::default(),
                Duration::from_secs(5),
                &now()
            )))
            .is_none()
        );
    }

    #[test]
    fn success_waits_for_the_grace_period() {
        let mut j = job();
        let idle = |secs| Observed {
            stats: Some(stats(0, 0, 10)),
            idle_for: Some(Duration::from_secs(secs)),
            ..Observed::default()
        };
        let s = next(&j, &idle(1), Duration::from_secs(5), &now());
        assert_eq!(s.phase, Phase::Running);
        let s = next(&j, &idle(5), Duration::from_secs(5), &now());
        assert_eq!(s.phase, Phase::Succeeded);
        assert!(s.completion_time.is_some());
        // Once Succeeded it stays so without waiting again (e.g. after an operator restart).
        j.status = Some(s);
        let s = next(
            &j,
            &Observed {
                stats: Some(stats(0, 0, 10)),
                ..Observed::default()
            },
            Duration::from_secs(5),
            &now(),
        );
        assert_eq!(s.phase, Phase::Succeeded);
    }

    #[test]
    fn invalid_expired_and_suspended_win_in_that_order() {
        let mut j = job();
        j.spec.suspend = true;
        let observed = Observed {
            validity: Err("bad regex".into()),
            expired: true,
            ..Observed::default()
        };
        let s = next(&j, &observed, Duration::ZERO, &now());
        assert_eq!(s.phase, Phase::Failed);
        let valid = s
            .conditions
            .iter()
            .find(|c| c.type_ == VALID)
            .expect("valid condition");
        assert_eq!(
            (valid.status.as_str(), valid.message.as_str()),
            ("False", "bad regex")
        );
        let s = next(
            &j,
            &Observed {
                expired: true,
                ..Observed::default()
            },
            Duration::ZERO,
            &now(),
        );
        assert_eq!(s.phase, Phase::Expired);
        let s = next(&j, &Observed::default(), Duration::ZERO, &now());
        assert_eq!(s.phase, Phase::Suspended);
    }

    #[test]
    fn an_unchanged_observation_is_not_a_change() {
        let mut j = job();
        let observed = Observed {
            stats: Some(stats(3, 1, 7)),
            ..Observed::default()
        };
        let first = next(&j, &observed, Duration::ZERO, &now());
        j.status = Some(first.clone());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_100).expect("valid"));
        let second = next(&j, &observed, Duration::ZERO, &later);
        assert!(
            !changed(Some(&first), &second),
            "same counts, same conditions: no write"
        );
        let third = next(
            &j,
            &Observed {
                stats: Some(stats(2, 1, 8)),
                ..Observed::default()
            },
            Duration::ZERO,
            &later,
        );
        assert!(changed(Some(&first), &third));
    }
}
