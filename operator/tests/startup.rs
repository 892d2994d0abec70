//! `kubecrawl-operator` with a wrong CA, a wrong password or a plaintext client on the TLS
//! Redis of `make env-up`: it must exit non-zero within seconds, naming the endpoint and the
//! cause (the operator talks to Redis; Kafka only through its workers).

use kubecrawl_e2e::startup::{expect_startup_failure, redis_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_with_a_wrong_redis_ca_password_or_protocol_fails_at_start_up() {
    for case in &redis_cases() {
        let took = expect_startup_failure(
            env!("CARGO_BIN_EXE_kubecrawl-operator"),
            &[],
            &[("KUBECRAWL_LEADER_ELECTION", "false")],
            case,
        )
        .await;
        println!("{}: refused in {:.1} s", case.name, took.as_secs_f64());
    }
}
