//! How the handling of one lease ended.

use crate::fetch::FetchErrorKind;

/// How the handling of one lease ended: acknowledged (and why), retried, or given back.
///
/// Its [label](Self::as_str) is the `outcome` label of `kubecrawl_worker_leases_total` and
/// the key of a standalone crawl's outcome counts, so the labels are part of dashboards and
/// alerts: a label never changes, a new way to end gets a new variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeaseOutcome {
    /// `ok`: fetched, parsed, every item published, acknowledged.
    Ok,
    /// `unchanged`: a recrawl round found the page as the previous round left it (304 Not
    /// Modified, or the same body); acknowledged, nothing published.
    Unchanged,
    /// `retry`: a transient fetch failure, or a status the server asks to retry (429, 5xx);
    /// a retry was scheduled.
    Retry,
    /// `page_timeout`: the page took longer than the page timeout; a retry was scheduled.
    PageTimeout,
    /// `policy_unavailable`: the frontier could not be asked for the job's policy; the
    /// lease was given back.
    PolicyUnavailable,
    /// `policy_unreadable`: the job's policy could not be read; a retry was scheduled.
    PolicyUnreadable,
    /// `job_gone`: the job was purged or never registered; the lease was dropped.
    JobGone,
    /// `invalid_url`: the request's URL does not parse; acknowledged as an error.
    InvalidUrl,
    /// `robots_unreachable`: robots.txt could not be fetched; a retry was scheduled.
    RobotsUnreachable,
    /// `robots_denied`: robots.txt disallows the URL; acknowledged as an error.
    RobotsDenied,
    /// The fetch failed for good (its kind's label); acknowledged as an error.
    FetchFailed(FetchErrorKind),
    /// `spider_panicked`: the spider's `parse` panicked; acknowledged with the page's status.
    SpiderPanicked,
    /// `render_retry`: the browser rendering the page died or stopped answering; a retry was
    /// scheduled (the next render starts a new browser).
    RenderRetry,
    /// `publish_failed`: the sink could not publish (Kafka unreachable); the lease was
    /// given back.
    PublishFailed,
    /// `publish_retry`: the sink refused a record for good; a retry was scheduled.
    PublishRetry,
    /// `warc_failed`: the page's WARC records could not be written (disk full, directory
    /// gone); the lease was given back.
    WarcFailed,
    /// `dead_lettered`: the sink refused a record after every retry; a dead-letter record
    /// was published and the lease acknowledged as an error.
    DeadLettered,
    /// `parked`: the job is suspended; the frontier put the request back in its queue and
    /// counted nothing.
    Parked,
    /// `stale`: the lease was not held any more (reclaimed after its deadline); nothing
    /// changed.
    Stale,
    /// `gave_up`: a retry was asked for with none left; the frontier counted the request as
    /// an error.
    GaveUp,
    /// `ack_failed`: acknowledging or scheduling the retry failed; the lease will expire.
    AckFailed,
}

impl LeaseOutcome {
    /// The outcome's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unchanged => "unchanged",
            Self::Retry => "retry",
            Self::PageTimeout => "page_timeout",
            Self::PolicyUnavailable => "policy_unavailable",
            Self::PolicyUnreadable => "policy_unreadable",
            Self::JobGone => "job_gone",
            Self::InvalidUrl => "invalid_url",
            Self::RobotsUnreachable => "robots_unreachable",
            Self::RobotsDenied => "robots_denied",
            Self::FetchFailed(kind) => kind.as_str(),
            Self::SpiderPanicked => "spider_panicked",
            Self::RenderRetry => "render_retry",
            Self::PublishFailed => "publish_failed",
            Self::PublishRetry => "publish_retry",
            Self::WarcFailed => "warc_failed",
            Self::DeadLettered => "dead_lettered",
            Self::Parked => "parked",
            Self::Stale => "stale",
            Self::GaveUp => "gave_up",
            Self::AckFailed => "ack_failed",
        }
    }
}

impl std::fmt::Display for LeaseOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every outcome with its label.
    fn every_outcome() -> Vec<(LeaseOutcome, &'static str)> {
        vec![
            (LeaseOutcome::Ok, "ok"),
            (LeaseOutcome::Unchanged, "unchanged"),
            (LeaseOutcome::Retry, "retry"),
            (LeaseOutcome::PageTimeout, "page_timeout"),
            (LeaseOutcome::PolicyUnavailable, "policy_unavailable"),
            (LeaseOutcome::PolicyUnreadable, "policy_unreadable"),
            (LeaseOutcome::JobGone, "job_gone"),
            (LeaseOutcome::InvalidUrl, "invalid_url"),
            (LeaseOutcome::RobotsUnreachable, "robots_unreachable"),
            (LeaseOutcome::RobotsDenied, "robots_denied"),
            (
                LeaseOutcome::FetchFailed(FetchErrorKind::InvalidUrl),
                "invalid_url",
            ),
            (
                LeaseOutcome::FetchFailed(FetchErrorKind::PrivateDestination),
                "private_destination",
            ),
            (
                LeaseOutcome::FetchFailed(FetchErrorKind::Timeout),
                "timeout",
            ),
            (
                LeaseOutcome::FetchFailed(FetchErrorKind::Transport),
                "transport",
            ),
            (
                LeaseOutcome::FetchFailed(FetchErrorKind::TooManyRedirects),
                "too_many_redirects",
            ),
            (
                LeaseOutcome::FetchFailed(FetchErrorKind::Undecodable),
                "undecodable",
            ),
            (LeaseOutcome::SpiderPanicked, "spider_panicked"),
            (LeaseOutcome::RenderRetry, "render_retry"),
            (LeaseOutcome::PublishFailed, "publish_failed"),
            (LeaseOutcome::PublishRetry, "publish_retry"),
            (LeaseOutcome::WarcFailed, "warc_failed"),
            (LeaseOutcome::DeadLettered, "dead_lettered"),
            (LeaseOutcome::Parked, "parked"),
            (LeaseOutcome::Stale, "stale"),
            (LeaseOutcome::GaveUp, "gave_up"),
            (LeaseOutcome::AckFailed, "ack_failed"),
        ]
    }

    /// The labels dashboards and alerts select on: changing one breaks them silently.
    #[test]
    fn labels_are_stable() {
        for (outcome, label) in every_outcome() {
            assert_eq!(outcome.as_str(), label);
            assert_eq!(outcome.to_string(), label);
        }
    }

    #[test]
    fn every_label_is_documented_for_operators() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
        let docs = std::fs::read_to_string(path).expect("docs/operations.md is readable");
        for (_, label) in every_outcome() {
            assert!(
                docs.contains(&format!("`{label}`")),
                "docs/operations.md does not explain the outcome `{label}`"
            );
        }
    }
}
