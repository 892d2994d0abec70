//! One conformance suite, run against both implementations: the in-memory twin (on a manual
//! clock) and Redis (the real one at REDIS_URL; these tests fail, never skip, without it).
//! Each Redis test uses its own key prefix and deletes its keys at the end.

mod harness;
mod suite;

/// How long any one conformance test may take before it counts as deadlocked.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = crate::harness::memory();
                    tokio::time::timeout(crate::DEADLINE, crate::suite::$name(&h))
                        .await
                        .expect(concat!(stringify!($name), " deadlocked (memory)"));
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = crate::harness::redis(stringify!($name)).await;
                    tokio::time::timeout(crate::DEADLINE, crate::suite::$name(&h))
                        .await
                        .expect(concat!(stringify!($name), " deadlocked (redis)"));
                    h.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    seeding_is_idempotent,
    priority_across_domains_then_fifo,
    politeness_spaces_dispatches_per_domain,
    complete_filters_children_and_accounts,
    budgets_cap_admissions,
    expired_leases_come_back_once,
    retry_backs_off_then_gives_up,
    release_puts_the_request_back_first,
    suspend_parks_and_resume_restores,
    purge_forgets_one_job_only,
    purge_of_a_large_job_leaves_another_untouched,
    expired_job_accepts_nothing,
    spider_stats_and_heartbeats,
    bad_input_is_refused,
    policy_reads_back_what_was_registered,
);
