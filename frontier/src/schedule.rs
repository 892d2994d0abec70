//! The order in which requests are served: priority across domains, then first in, first out.
//!
//! Every queued request carries a sequence number, drawn per spider when it is enqueued. A
//! (job, domain, priority) queue is a FIFO list, so its head is its oldest request; its
//! *score* is `(PRIORITY_MAX - priority) * 2^40 + sequence`, smaller first. A domain's score
//! is the best score of its queues, and among the domains that may be fetched now the lease
//! takes the best. So the next request is the highest-priority one among the ready domains,
//! and the oldest among equal priorities.
//!
//! Scores stay below 2⁵³, so they are exact in an IEEE double (Redis sorted-set scores and
//! Lua numbers).

/// The highest priority honoured; higher values are treated as this.
pub const PRIORITY_MAX: i32 = 2000;
/// The lowest priority honoured; lower values are treated as this.
pub const PRIORITY_MIN: i32 = -2000;
/// Sequence numbers per spider before scores would lose order (2⁴⁰, about 10¹²).
pub const SEQ_SPAN: u64 = 1 << 40;

/// A priority clamped to the range the scheduler orders.
pub fn clamp_priority(priority: i32) -> i32 {
    priority.clamp(PRIORITY_MIN, PRIORITY_MAX)
}

/// The score of a queue head: smaller is served first.
pub fn score(priority: i32, seq: u64) -> u64 {
    let rank = u64::try_from(PRIORITY_MAX - clamp_priority(priority)).unwrap_or(0);
    rank * SEQ_SPAN + (seq % SEQ_SPAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_first_then_older_first() {
        assert!(score(5, 100) < score(4, 1));
        assert!(score(5, 1) < score(5, 2));
        assert!(score(PRIORITY_MIN, SEQ_SPAN - 1) < (1u64 << 53));
        assert_eq!(clamp_priority(i32::MAX), PRIORITY_MAX);
    }
}
