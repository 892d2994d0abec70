//! `kubecrawl-worker run` and its dependencies. With a wrong CA, a wrong password or a
//! plaintext client on a TLS port, against the TLS Redis and the SASL_SSL Kafka of
//! `make env-up`, it must exit non-zero within seconds, naming the endpoint and the cause;
//! once running, `/readyz` is false while a dependency (Redis or Kafka) does not answer.

use kubecrawl_e2e::chaos::services::Kafka;
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

/// `/readyz` follows the dependencies: ready while Redis and Kafka answer, not ready within a
/// probe interval once Redis goes away (a Redis of this test's own, so that stopping it
/// disturbs nobody), ready again when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_false_while_redis_is_unreachable() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("kc-readyz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let start_redis = || {
        std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir", &dir.display().to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starts redis-server")
    };
    let mut redis = start_redis();
    let kafka = std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS (make env-up)");
    let (mut worker, readyz) = worker(
        &format!("redis://127.0.0.1:{port}"),
        &kafka,
        &format!("kc-readyz-{}", std::process::id()),
    );
    wait_for_status(&readyz, 200).await;
    redis.kill().expect("stops the test's redis");
    redis.wait().expect("reaps the test's redis");
    wait_for_status(&readyz, 503).await;
    let mut redis = start_redis();
    wait_for_status(&readyz, 200).await;
    worker.kill().await.expect("stops the worker");
    redis.kill().expect("stops the test's redis");
    let _ = redis.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same for Kafka: a broker of this test's own (tests/env/kafka-node.sh, as the chaos
/// suite runs it) is killed while the worker runs; `/readyz` turns false within a probe
/// interval and true again once the restarted broker answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_false_while_kafka_is_unreachable() {
    let dir = std::env::temp_dir().join(format!("kc-readyz-kafka-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let listener = free_port();
    let mut kafka = Kafka::start(&dir, listener, listener)
        .await
        .expect("starts the test's own broker");
    let redis = std::env::var("REDIS_URL").expect("REDIS_URL (make env-up)");
    let (mut worker, readyz) = worker(
        &redis,
        &kafka.brokers(),
        &format!("kc-readyz-kafka-{}", std::process::id()),
    );
    wait_for_status(&readyz, 200).await;
    kafka.kill9().await.expect("kills the test's broker");
    wait_for_status(&readyz, 503).await;
    kafka
        .start_again()
        .await
        .expect("restarts the test's broker");
    wait_for_status(&readyz, 200).await;
    worker.kill().await.expect("stops the worker");
    kafka.stop().await.expect("stops the test's broker");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `kubecrawl-worker run` (spider `link`) on `redis` and `kafka` with keys under
/// `prefix`; returns it and its `/readyz` URL.
fn worker(redis: &str, kafka: &str, prefix: &str) -> (tokio::process::Child, String) {
    let metrics_port = free_port();
    let worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubecrawl-worker"))
        .arg("run")
        .env_clear()
        .env("KUBECRAWL_SPIDER", "link")
        .env("KUBECRAWL_REDIS_URL", redis)
        .env("KUBECRAWL_REDIS_PREFIX", prefix)
        .env("KUBECRAWL_KAFKA_BROKERS", kafka)
        .env(
            "KUBECRAWL_METRICS_ADDR",
            format!("127.0.0.1:{metrics_port}"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starts the worker");
    (worker, format!("http://127.0.0.1:{metrics_port}/readyz"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `url` until it answers `status`, for at most 30 s (a probe runs every 5 s).
async fn wait_for_status(url: &str, status: u16) {
    let _already = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if let Ok(response) = client.get(url).send().await
                && response.status().as_u16() == status
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{url} never answered {status}"));
}
