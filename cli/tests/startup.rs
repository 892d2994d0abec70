//! `kubecrawl stats` (Redis) and `kubecrawl dump` (Kafka) with a wrong CA, a wrong password
//! or a plaintext client on a TLS port, against the TLS services of `make env-up`: each must
//! exit non-zero within seconds, naming the endpoint and the cause. `ingest` connects through
//! the same two functions.

use kubecrawl_e2e::startup::{expect_startup_failure, kafka_cases, redis_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_dump_with_a_wrong_ca_password_or_protocol_fail_at_start_up() {
    let program = env!("CARGO_BIN_EXE_kubecrawl");
    for case in &redis_cases() {
        let took = expect_startup_failure(program, &["stats"], &[], case).await;
        println!(
            "stats, {}: refused in {:.1} s",
            case.name,
            took.as_secs_f64()
        );
    }
    for case in &kafka_cases() {
        let took = expect_startup_failure(program, &["dump", "--max", "1"], &[], case).await;
        println!(
            "dump, {}: refused in {:.1} s",
            case.name,
            took.as_secs_f64()
        );
    }
}
