//! The short form of the chaos suite, inside `make test`: three real worker processes crawl
//! a few thousand pages of the synthetic site on a Redis and a Kafka of the suite's own while
//! workers are killed, Redis and the broker are killed and restarted and the workers'
//! connections to both are cut, stalled and reset, then every page must be in Kafka. The full suite (20,000 pages, every kind of fault, the operator
//! pair) is `make chaos`.
//!
//! The seed is printed; `KUBECRAWL_CHAOS_SEED=<seed>` replays a run. Needs `make env-up`'s
//! environment and the workspace's debug binaries (`make test` builds them).

use std::time::Duration;

use kubecrawl_e2e::chaos::{self, ChaosConfig};

/// The whole run, services' start-up included (about a minute on a quiet machine).
const DEADLINE: Duration = Duration::from_secs(600);

/// The fault kinds the short form injects: worker kills and every Redis and Kafka fault. (The
/// Redis faults were left out while a Redis error during a policy read lost the lease's page;
/// docs/reliability.md has the run that found it.)
const SHORT_FAULTS: &str = "worker_kill=6,redis_restart=1,redis_reset=1,redis_drop=1,redis_stall=1,\
                            kafka_kill=1,kafka_drop=1,kafka_stall=1,kafka_reset=1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_through_worker_kills_redis_and_kafka_faults_loses_no_page() {
    let seed = std::env::var("KUBECRAWL_CHAOS_SEED")
        .ok()
        .map(|s| s.parse().expect("KUBECRAWL_CHAOS_SEED is a number"))
        .unwrap_or_else(chaos::fresh_seed);
    println!("chaos seed {seed} (KUBECRAWL_CHAOS_SEED={seed} replays it)");
    let mut config = ChaosConfig::full(seed, chaos::default_bin_dir().expect("bin dir"));
    config.pages = 3_000;
    config.offsite_pages = (300, 100);
    config.delay = Duration::from_millis(10);
    config.operator = false;
    config.deadline = Duration::from_secs(420);
    config.faults = chaos::parse_counts(SHORT_FAULTS).expect("a valid fault list");
    let report = tokio::time::timeout(DEADLINE, chaos::run(config))
        .await
        .expect("the chaos run hung")
        .expect("the chaos run could set up and inject every fault");
    println!("{}", report.figures);
    assert!(
        report.passed(),
        "seed {seed}: {}\n(logs in {})",
        report.failures.join("\n"),
        report.run_dir.display()
    );
}
