//! One conformance suite, run against both implementations: the in-memory twin (on a manual
//! clock) and Redis — one server (REDIS_URL), three independent shards (REDIS_SHARD_URLS) and a
//! Redis Cluster of three primaries (REDIS_CLUSTER_URLS); these tests fail, never skip, without
//! them.
//! Each Redis test uses its own key prefix and deletes its keys at the end.

mod domains;
mod harness;
mod known;
mod suite;

/// How long any one conformance test may take before it counts as deadlocked.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

macro_rules! conformance {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = crate::harness::memory();
                    tokio::time::timeout(crate::DEADLINE, crate::$module::$name(&h))
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
                    tokio::time::timeout(crate::DEADLINE, crate::$module::$name(&h))
                        .await
                        .expect(concat!(stringify!($name), " deadlocked (redis)"));
                    h.cleanup().await;
                }
            )*
        }
        mod shards {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = crate::harness::shards(stringify!($name)).await;
                    tokio::time::timeout(crate::DEADLINE, crate::$module::$name(&h))
                        .await
                        .expect(concat!(stringify!($name), " deadlocked (3 shards)"));
                    h.cleanup().await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = crate::harness::cluster(stringify!($name)).await;
                    tokio::time::timeout(crate::DEADLINE, crate::$module::$name(&h))
                        .await
                        .expect(concat!(stringify!($name), " deadlocked (redis cluster)"));
                    h.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    suite::seeding_is_idempotent,
    suite::priority_across_domains_then_fifo,
    suite::politeness_spaces_dispatches_per_domain,
    suite::an_adaptive_delay_spaces_a_domain_until_cleared,
    suite::complete_filters_children_and_accounts,
    suite::a_batch_of_acknowledgements_is_the_same_as_one_by_one,
    suite::budgets_cap_admissions,
    suite::expired_leases_come_back_once,
    suite::extended_leases_outlive_their_first_deadline,
    suite::the_epoch_is_stable_while_the_state_lives,
    suite::retry_backs_off_then_gives_up,
    suite::release_puts_the_request_back_first,
    suite::suspend_parks_and_resume_restores,
    suite::purge_forgets_one_job_only,
    suite::purge_of_a_large_job_leaves_another_untouched,
    suite::expired_job_accepts_nothing,
    suite::spider_stats_and_heartbeats,
    suite::bad_input_is_refused,
    suite::policy_reads_back_what_was_registered,
    domains::a_throttle_spaces_a_domain_and_its_subdomains,
    domains::a_throttle_below_the_jobs_interval_changes_nothing,
    domains::the_blacklist_refuses_and_drops_and_counts,
    domains::the_backlog_counts_queues_per_domain,
    domains::the_backlog_reads_every_domain_of_a_large_spider,
    domains::a_jobs_backlog_counts_its_own_queues_per_domain_and_priority,
    domains::a_jobs_backlog_reads_every_queue_of_a_large_job,
    domains::a_cut_off_domain_is_dropped_and_refused_for_its_job_only,
    known::an_applied_acknowledgement_remembers_its_request,
    known::known_pages_outlive_a_purge_and_rotate_per_round,
    known::a_walk_of_known_pages_returns_every_page_and_ends,
);
