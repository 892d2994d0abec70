//! Start-up against a wrong TLS or authentication setting: every binary that connects must
//! exit non-zero within seconds, naming the endpoint and the cause, never retry in silence.
//!
//! [`redis_cases`] and [`kafka_cases`] are the wrong settings (a CA that did not sign the
//! server, a wrong password, a plaintext client on a TLS port) against the TLS Redis and the
//! SASL_SSL Kafka of `make env-up`; [`expect_startup_failure`] runs one binary with one case.

use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a binary may take to give up. The connect timeouts are 10 s by default; the
/// cases below must end well before that, except a plaintext client on a TLS Kafka
/// listener, which may take the whole timeout.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// One wrong setting: environment variables for the binary, and the fragments its error
/// output must contain (the endpoint and the cause).
#[derive(Debug, Clone)]
pub struct BadConnection {
    /// What is wrong, for messages.
    pub name: &'static str,
    /// `KUBECRAWL_…` variables that make the binary connect this way.
    pub env: Vec<(String, String)>,
    /// Each must appear in stderr.
    pub expect: Vec<String>,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the TLS services of `make env-up` \
             (run them with `make test`, or `make env-up` and `. .testenv/env`)"
        )
    })
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// `host:port` of a `rediss://host:port` URL.
fn host_port(url: &str) -> String {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .to_owned()
}

/// Wrong Redis settings, each with otherwise good Kafka settings (the plaintext Kafka).
pub fn redis_cases() -> Vec<BadConnection> {
    let url = var("REDIS_TLS_URL");
    let user = var("REDIS_TLS_USERNAME");
    let password_file = var("REDIS_TLS_PASSWORD_FILE");
    let kafka = var("KAFKA_BROKERS");
    let good = |url: &str, ca: String, password_file: &str| {
        env(&[
            ("KUBECRAWL_REDIS_URL", url.to_owned()),
            ("KUBECRAWL_REDIS_CA_FILE", ca),
            ("KUBECRAWL_REDIS_USERNAME", user.clone()),
            ("KUBECRAWL_REDIS_PASSWORD_FILE", password_file.to_owned()),
            ("KUBECRAWL_KAFKA_BROKERS", kafka.clone()),
        ])
    };
    let wrong_password = std::env::temp_dir().join(format!("kc-wrong-pw-{}", std::process::id()));
    std::fs::write(&wrong_password, "not-the-password\n").expect("writes a temp file");
    let wrong_password = wrong_password.display().to_string();
    let plain_url = format!("redis://{}", host_port(&url));
    let mut plaintext = good(&plain_url, String::new(), &password_file);
    plaintext.retain(|(k, _)| k != "KUBECRAWL_REDIS_CA_FILE");
    vec![
        BadConnection {
            name: "redis: a CA that did not sign the server",
            env: good(&url, var("TLS_WRONG_CA_FILE"), &password_file),
            expect: vec![url.clone(), "certificate".to_owned()],
        },
        BadConnection {
            name: "redis: a wrong password",
            env: good(&url, var("TLS_CA_FILE"), &wrong_password),
            expect: vec![url.clone(), "authentication failed".to_owned()],
        },
        BadConnection {
            name: "redis: a plaintext client on the TLS port",
            env: plaintext,
            expect: vec![plain_url, "TLS port".to_owned()],
        },
    ]
}

/// Wrong Kafka settings, each with good Redis settings (the plaintext Redis).
pub fn kafka_cases() -> Vec<BadConnection> {
    let brokers = var("KAFKA_SASL_BROKERS");
    let user = var("KAFKA_SASL_USERNAME");
    let password_file = var("KAFKA_SASL_PASSWORD_FILE");
    let redis = var("REDIS_URL");
    let sasl = |ca: String, password: Option<&str>| {
        let mut pairs = vec![
            ("KUBECRAWL_REDIS_URL", redis.clone()),
            ("KUBECRAWL_KAFKA_BROKERS", brokers.clone()),
            ("KUBECRAWL_KAFKA_SECURITY_PROTOCOL", "sasl_ssl".to_owned()),
            ("KUBECRAWL_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
            ("KUBECRAWL_KAFKA_USERNAME", user.clone()),
            ("KUBECRAWL_KAFKA_CA_FILE", ca),
        ];
        match password {
            Some(p) => pairs.push(("KUBECRAWL_KAFKA_PASSWORD", p.to_owned())),
            None => pairs.push(("KUBECRAWL_KAFKA_PASSWORD_FILE", password_file.clone())),
        }
        env(&pairs)
    };
    vec![
        BadConnection {
            name: "kafka: a CA that did not sign the broker",
            env: sasl(var("TLS_WRONG_CA_FILE"), None),
            expect: vec![brokers.clone(), "certificate verify failed".to_owned()],
        },
        BadConnection {
            name: "kafka: a wrong password",
            env: sasl(var("TLS_CA_FILE"), Some("not-the-password")),
            expect: vec![brokers.clone(), "Authentication failed".to_owned()],
        },
        BadConnection {
            name: "kafka: a plaintext client on the SASL_SSL listener",
            env: env(&[
                ("KUBECRAWL_REDIS_URL", redis.clone()),
                ("KUBECRAWL_KAFKA_BROKERS", brokers.clone()),
            ]),
            expect: vec![brokers.clone(), "TLS listener".to_owned()],
        },
    ]
}

/// Runs `program` with `args`, `case`'s environment plus `extra_env`, and nothing else of
/// this process's environment but `PATH` and `KUBECONFIG`, and asserts that it exits
/// non-zero within [`STARTUP_DEADLINE`] with every expected fragment, and no password, in its
/// stderr. Returns how long it took.
///
/// # Panics
/// When the binary keeps running, succeeds, or says something else.
pub async fn expect_startup_failure(
    program: &str,
    args: &[&str],
    extra_env: &[(&str, &str)],
    case: &BadConnection,
) -> Duration {
    let started = Instant::now();
    let child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(std::env::var("KUBECONFIG").ok().map(|k| ("KUBECONFIG", k)))
        .envs(case.env.iter().cloned())
        .envs(extra_env.iter().copied())
        .env("KUBECRAWL_METRICS_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starts the binary");
    let output = tokio::time::timeout(STARTUP_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{}: still running after {STARTUP_DEADLINE:?}: a silent retry loop",
                case.name
            )
        })
        .expect("waits for the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "{}: exited successfully\n{stderr}",
        case.name
    );
    for fragment in &case.expect {
        assert!(
            stderr.contains(fragment.as_str()),
            "{}: the error does not name {fragment:?}:\n{stderr}",
            case.name
        );
    }
    for (key, value) in &case.env {
        if key.ends_with("_PASSWORD") {
            assert!(
                !stderr.contains(value.as_str()),
                "{}: the password appears in the output:\n{stderr}",
                case.name
            );
        }
    }
    started.elapsed()
}
