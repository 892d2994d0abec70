//! `kubecrawl-worker run` with a wrong CA, a wrong password or a plaintext client on a TLS
//! port, against the TLS Redis and the SASL_SSL Kafka of `make env-up`: it must exit
//! non-zero within seconds, naming the endpoint and the cause.

use kubecrawl_e2e::startup::{expect_startup_failure, kafka_cases, redis_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_wrong_ca_password_or_protocol_fails_at_start_up() {
    for case in redis_cases().iter().chain(&kafka_cases()) {
        let took = expect_startup_failure(
            env!("CARGO_BIN_EXE_kubecrawl-worker"),
            &["run"],
            &[("KUBECRAWL_SPIDER", "link")],
            case,
        )
        .await;
        println!("{}: refused in {:.1} s", case.name, took.as_secs_f64());
    }
}
