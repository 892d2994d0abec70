//! Known pages: per job, the requests its recrawl rounds acknowledged, kept across rounds.
//!
//! A job that recrawls starts each round by purging its frontier state and seeding it again.
//! A page that answers 304 Not Modified has no links, so the next round cannot rediscover it
//! by following links: the frontier keeps, per job, the requests the rounds acknowledged
//! ([`crate::Outcome::remembering`]) in two sets keyed by URL, which [`crate::Frontier::purge`]
//! leaves alone:
//!
//! - the *current* set, where each acknowledgement that remembers a request writes it (a later
//!   one of the same URL replaces an earlier one);
//! - the *previous* set, the last round's, which the operator seeds again.
//!
//! A round starts with [`crate::Frontier::rotate_known`] (current becomes previous), seeds what
//! [`crate::Frontier::known_pages`] reads, and once it finished drops the previous set
//! ([`crate::Frontier::drop_known`] with [`Known::Previous`]). Deleting the job drops both.
//! The frontier never reads the requests' meta (validators for conditional requests): it only
//! keeps them.

/// Where a walk of a job's known pages is: pass it back to [`crate::Frontier::known_pages`].
/// Opaque; only meaningful to the kind of frontier that returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownCursor {
    /// The shard being read (always 0 for one Redis and for the in-memory twin).
    pub(crate) shard: usize,
    /// Whether the walk reached the current set (the previous set comes first).
    pub(crate) current: bool,
    /// Where in that set: Redis's `HSCAN` cursor (0 from the start), or how many pages of the
    /// in-memory set were returned already.
    pub(crate) at: u64,
}

impl KnownCursor {
    /// The start of a walk: the previous set of the first shard.
    pub(crate) fn start() -> Self {
        Self {
            shard: 0,
            current: false,
            at: 0,
        }
    }
}

/// Which of a job's known pages [`crate::Frontier::drop_known`] drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// The previous round's (after its pages were seeded again and the round finished).
    Previous,
    /// Both sets (the job is deleted or expired).
    All,
}

/// Known pages read (and seeded) per frontier call by [`seed_known`].
pub const SEED_CHUNK: usize = 1000;

/// Starts a recrawl round of `job`: its known pages become the ones to seed from
/// ([`crate::Frontier::rotate_known`]), then its queues, dedupe and counters are purged.
/// Register the job and [`seed_known`] next. Returns whether the pages rotated (false: a
/// previous set was still there, from a start that was interrupted; it is seeded from).
///
/// # Errors
/// The frontier's; calling it again after an error is safe.
pub async fn start_round(
    frontier: &dyn crate::Frontier,
    job: &crate::JobRef,
) -> crate::Result<bool> {
    let rotated = frontier.rotate_known(job).await?;
    frontier.purge(job).await?;
    Ok(rotated)
}

/// Seeds `job` (registered) with its known pages, [`SEED_CHUNK`] at a time, and returns what
/// the frontier admitted. A page in both sets is offered twice and admitted once.
///
/// # Errors
/// The frontier's; seeding again is safe (dedupe).
pub async fn seed_known(
    frontier: &dyn crate::Frontier,
    job: &crate::JobRef,
) -> crate::Result<crate::Admission> {
    let mut admission = crate::Admission::default();
    let mut cursor = None;
    loop {
        let (pages, next) = frontier.known_pages(job, cursor, SEED_CHUNK).await?;
        if !pages.is_empty() {
            admission += frontier.seed(job, &pages).await?;
        }
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(admission),
        }
    }
}
